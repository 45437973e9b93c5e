"""glibc ``malloc`` settings for model work on the CPU: keep freed memory for reuse.

Why. PyTorch's CPU tensors come from ``malloc``. With glibc's defaults a block larger than the
mmap threshold (adaptive, at most 32 MiB) is a fresh ``mmap`` on every allocation, and free space
at the top of the heap is handed back to the kernel once it exceeds the trim threshold. A training
step that allocates and frees the same large activations every step then touches new pages every
step, and each first touch is a page fault that zeroes a page in the kernel. With the settings below
the pages are reused: no fault after the first steps. Large models and long sequences gain most; the
measurements are in ``benchmarks/results/reference_speed.md`` and ``extract_speed.md``.

Cost: the process keeps the heap it grew to (its peak) instead of returning it between steps, and
the heap grows in steps of :data:`TOP_PAD` of address space (pages are only backed when touched).
:func:`keep_freed_memory` is called by the commands that run models: ``msa train``, ``evaluate``,
``benchmark``, ``extract`` and ``predict``; it records itself as ``MSA_MALLOC=tuned`` in the
environment, so extraction worker processes (spawned) and Ray actors apply it too (:func:`follow_parent`).

Only glibc has these knobs (``mallopt``); elsewhere nothing is changed. A user's own glibc malloc
settings (``MALLOC_*_`` variables, ``GLIBC_TUNABLES`` with ``glibc.malloc``) are left alone, and
``MSA_MALLOC=default`` turns the change off.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Mapping

#: ``mallopt`` parameter numbers (glibc ``malloc.h``)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: blocks up to this size come from the heap instead of a fresh mmap each time (1 GiB: larger than any
#: activation of the seed models at their published batch sizes; glibc's adaptive threshold stops at 32 MiB)
MMAP_THRESHOLD = 1 << 30
#: free space at the heap's top up to this much is kept (the largest value mallopt's int argument takes)
TRIM_THRESHOLD = 2 ** 31 - 1
#: address space added beyond each heap extension, and kept when trimming (1 GiB; only touched pages cost memory)
TOP_PAD = 1 << 30
#: environment variable: "default" leaves glibc's malloc settings as they are; set to :data:`TUNED` once applied
MALLOC_ENV = "MSA_MALLOC"
#: the value :data:`MALLOC_ENV` takes in a process that applied the settings (read by its spawned workers)
TUNED = "tuned"
#: a user's glibc malloc variables; any of them set means the user chose, and nothing is changed
USER_MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_",
                    "MALLOC_ARENA_MAX")


def _glibc() -> ctypes.CDLL | None:
    """The running C library when it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None
    return libc


def user_choice(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the malloc settings are left alone by request (``MSA_MALLOC=default`` or the user's own
    glibc malloc settings), or None when they may be changed."""
    env = os.environ if environ is None else environ
    if env.get(MALLOC_ENV, "").strip().lower() == "default":
        return f"{MALLOC_ENV}=default"
    own = [v for v in USER_MALLOC_VARS if env.get(v)]
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        own.append("GLIBC_TUNABLES")
    return f"the user's {', '.join(own)}" if own else None


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Serve large blocks from the heap and keep freed memory for reuse (see the module docstring).

    Returns True when the settings were applied; False when glibc is not the C library or the user
    chose otherwise (:func:`user_choice`). Safe to call more than once.
    """
    if user_choice(environ) is not None:
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    ok &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ok &= libc.mallopt(M_TOP_PAD, TOP_PAD)
    if ok and environ is None:
        os.environ[MALLOC_ENV] = TUNED  # child processes see that the parent applied it
    return bool(ok)


def follow_parent() -> bool:
    """In a spawned worker: apply :func:`keep_freed_memory` when the parent did (``MSA_MALLOC=tuned``)."""
    return os.environ.get(MALLOC_ENV, "").strip().lower() == TUNED and keep_freed_memory()
