"""One intra-op thread for a stretch of small CPU work, the caller's thread count restored after it.

Under ``OMP_WAIT_POLICY=PASSIVE`` (the CLI's default) each parallel torch op wakes the sleeping OpenMP pool,
about 50 us on the project's 2-core machine; an op on a tensor just above torch's grain size (32,768
elements) pays that for little parallel gain. Work made of many such ops runs faster on one thread: the fused
optimiser step of a model of small tensors (``training/optim.py``) and DLF's inference on small batches
(``models/dlf.py``).

For such a model a batch too large for one thread is better split than spread: :func:`run_split` runs the parts
of a batch concurrently, each on one intra-op thread (``MSAModel.predict``). Two intra-op threads gave DLF's
eval forward at batch 64 (aligned, 2-core CPU, PASSIVE) only 1.06x over one thread (198 vs 210 ms), while two
halves on one thread each took 147 ms (1.37x); at batch 16 halves gained nothing (73 vs 72 ms: both Python
threads then spend their time dispatching small ops under the GIL, hence the floor on a part's size in
``MSAModel.predict_parts``). Models of wide matrix products gain nothing (MInD 1.03x, MMCL 1.01x).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["one_thread", "one_thread_for", "run_split"]

T = TypeVar("T")
R = TypeVar("R")


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


_POOL: ThreadPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The worker threads of :func:`run_split` (kept between calls; grown when more are needed)."""
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_WORKERS = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="msa-split"), workers
        return _POOL


def _forget_pool() -> None:
    # a forked child has none of the parent's worker threads: a pool inherited from it would queue work forever
    global _POOL, _POOL_WORKERS, _POOL_LOCK
    _POOL, _POOL_WORKERS, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _on_one_thread(fn: Callable[[T], R], part: T, inference: bool) -> R:
    # a worker thread: one intra-op thread (OpenMP and MKL keep the count per thread), the caller's grad modes
    torch.set_num_threads(1)
    with torch.inference_mode(inference), torch.no_grad():
        return fn(part)


def run_split(fn: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """``[fn(p) for p in parts]`` computed concurrently, each call on one intra-op thread: the caller's thread
    runs the first part, pooled worker threads the others. For work without gradients only (raises
    otherwise): the workers run under ``no_grad``, and under ``inference_mode`` when the caller is in it.
    The caller's thread count is restored afterwards (``torch.set_num_threads`` also sets the count that
    threads started later begin with), also when a part raises; the first exception is re-raised after
    every part has finished."""
    if torch.is_grad_enabled():
        raise RuntimeError("run_split runs work without gradients only (call it under torch.no_grad)")
    if len(parts) <= 1:
        return [fn(p) for p in parts]
    threads = torch.get_num_threads()
    inference = torch.is_inference_mode_enabled()
    futures = [_pool(len(parts) - 1).submit(_on_one_thread, fn, p, inference) for p in parts[1:]]
    try:
        with one_thread():
            first = fn(parts[0])
        return [first] + [f.result() for f in futures]
    finally:
        for f in futures:  # every part done before the count is restored (and before an error propagates)
            f.exception()
        torch.set_num_threads(threads)
