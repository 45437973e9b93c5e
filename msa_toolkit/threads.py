"""The CPU thread count of a run: one setting, applied once when a command starts.

``msa train``, ``msa benchmark`` and ``msa predict`` take ``--threads N`` (and ``MSA_THREADS=N`` in the
environment, read by the CLI before torch loads); 0 or unset keeps torch's default (one thread per core).
The toolkit never changes the count behind the user's back: where fewer threads are faster (small batches
on a small CPU, several runs sharing a machine) is the user's choice (``docs/cli.md``).
"""

from __future__ import annotations

from .errors import MSAError

__all__ = ["set_threads"]


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` for a positive count; 0 or None keeps the current one."""
    if threads is None or threads == 0:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise MSAError(f"threads must be a positive integer (0 = torch's default), got {threads!r}")
    import torch

    torch.set_num_threads(threads)
