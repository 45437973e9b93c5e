"""One intra-op thread for a stretch of small CPU work, the caller's thread count restored after it.

Under ``OMP_WAIT_POLICY=PASSIVE`` (the CLI's default) each parallel torch op wakes the sleeping OpenMP pool,
about 50 us on the project's 2-core machine; an op on a tensor just above torch's grain size (32,768
elements) pays that for little parallel gain. Work made of many such ops runs faster on one thread: the fused
optimiser step of a model of small tensors (``training/optim.py``) and DLF's inference on small batches
(``models/dlf.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["one_thread", "one_thread_for"]


@contextlib.contextmanager
def one_thread(when: bool = True) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(1)`` if ``when`` (and more than one thread is set); the
    former count is restored afterwards, also when the block raises. The count is process-wide: two Python
    threads entering this at once could leave one thread set (nothing in the toolkit does that)."""
    threads = torch.get_num_threads()
    if not when or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_thread_for(model: object, batch: object, compiled: bool = False) -> contextlib.AbstractContextManager:
    """``one_thread`` where ``model.prefers_one_thread(batch)`` (``MSAModel``'s per-batch choice). Never for a
    compiled step (inductor writes the OpenMP thread count into its CPU kernels when it generates them, so a
    count changed per batch would not be followed) nor for a model without that method."""
    ask = getattr(model, "prefers_one_thread", None)
    return one_thread(not compiled and ask is not None and bool(ask(batch)))
