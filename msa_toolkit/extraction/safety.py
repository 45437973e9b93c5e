"""Failing early and failing late without losing anything.

- :func:`check_output_dir` / :func:`check_output_file`: an output location that cannot be
  written (a file where a folder is needed, a folder under a file, no permission, read-only
  file system) is an :class:`OutputError` raised *before* any work starts.
- :func:`write_or_fallback`: a write that still fails at the end goes to a fallback file in
  the temp folder, whose path is returned for the caller to print.
- :func:`watch_parent`: a worker process exits as soon as the process that started it is gone
  (the parent was SIGKILLed), so no worker outlives an interrupted run.
- :func:`sigterm_as_interrupt`: SIGTERM raises :class:`KeyboardInterrupt` like Ctrl-C, so both
  stop a run through the same clean path (pool shut down, finished files kept and reported).
- :func:`exit_on_sigterm`: a worker the stopping parent terminates ends at once and cleanly: the
  semaphores it created (e.g. tqdm's lock in Whisper's progress bar) are unlinked and unregistered,
  so no ``resource_tracker: ... leaked semaphore objects`` warning follows the run.

Imports only the standard library.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from ..errors import OutputError

#: seconds between two checks of a worker's parent process
PARENT_POLL_S = 0.5
#: exit status of a worker whose parent died
ORPHAN_EXIT_STATUS = 3
#: prefix of the fallback files written to the temp folder when an output cannot be written
FALLBACK_PREFIX = "msa-"


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) that is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def _probe_dir(folder: Path, what: str) -> None:
    """Create ``folder`` (and parents) and write then remove a probe file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".msa-write-check.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"{what} {folder} is not writable: {e.strerror or e}") from None


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Make sure ``path`` is (or can be made) a writable folder; creates it. Raises OutputError."""
    p = Path(path).expanduser()
    block = _blocking_file(p)
    if block == p:
        raise OutputError(f"{what} {p} is a file, not a folder")
    if block is not None:
        raise OutputError(f"{what} {p} is under {block}, which is a file")
    _probe_dir(p, what)
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Make sure the file ``path`` can be written (its folder made and written to). Raises OutputError."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"{what} {p} is a folder, not a file")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"{what} {p} is not writable")
    block = _blocking_file(p.parent)
    if block is not None:
        raise OutputError(f"{what} {p} is under {block}, which is a file")
    _probe_dir(p.parent, f"the folder of {what}")
    return p


def fallback_path(name: str) -> Path:
    """A fresh file in the temp folder for output ``name`` that could not be written where asked."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem, ext = os.path.splitext(Path(name).name)
    fd, tmp = tempfile.mkstemp(prefix=f"{FALLBACK_PREFIX}{stem}-{stamp}-", suffix=ext or ".txt")
    os.close(fd)
    return Path(tmp)


def write_or_fallback(path: str | os.PathLike, write: Callable[[Path], None]) -> tuple[Path, OSError | None]:
    """``write(path)``; when that fails with an OSError, ``write(fallback)`` to a temp file instead.

    Returns the path written and the error that sent it to the fallback (None when ``path`` worked),
    so the caller can print where the results went.
    """
    try:
        write(Path(path))
        return Path(path), None
    except OSError as e:
        fb = fallback_path(Path(path).name)
        write(fb)
        return fb, e


# ---------------------------------------------------------------------------------------------
# worker processes and signals
# ---------------------------------------------------------------------------------------------
def release_and_exit(status: int) -> None:
    """End this (worker) process now, after running multiprocessing's exit finalizers: those unlink
    the semaphores it created and unregister them from the resource tracker, which would otherwise
    warn about "leaked semaphore objects" once the run ends. No other clean-up runs (``os._exit``)."""
    with contextlib.suppress(Exception):
        from multiprocessing import util

        util._run_finalizers(0)  # what a normal exit runs first: SemLock clean-ups, queue closes
    os._exit(status)


def _await_sigterm() -> None:
    signal.sigwait({signal.SIGTERM})
    release_and_exit(128 + signal.SIGTERM)


def exit_on_sigterm() -> threading.Thread | None:
    """In a worker process: SIGTERM (the parent stopping the pool) ends it at once and cleanly
    (:func:`release_and_exit`), whatever its main thread is doing, even inside a long native call.

    SIGTERM is blocked in this thread, and so in every thread started after it (call this first),
    and awaited (``sigwait``) by a daemon thread. None where the platform cannot.
    """
    if not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigwait"):
        return None
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    t = threading.Thread(target=_await_sigterm, name="msa-sigterm", daemon=True)
    t.start()
    return t


def _watch(parent: int, poll_s: float) -> None:
    while True:
        if os.getppid() != parent:  # re-parented: the parent is gone
            release_and_exit(ORPHAN_EXIT_STATUS)
        time.sleep(poll_s)


def watch_parent(parent: int | None = None, poll_s: float = PARENT_POLL_S) -> threading.Thread:
    """Start a daemon thread that ends this process (``os._exit``) once its parent process is gone.

    ``parent`` is the pid the parent had when it started this process (pass it: a parent killed
    while this process was still starting up has already been replaced by ``os.getppid()``).

    A killed parent (SIGKILL, out-of-memory) runs no clean-up, and pool workers blocked on their
    task queue would otherwise live on. Polling ``os.getppid()`` works on every POSIX system
    (Linux's PR_SET_PDEATHSIG fires on the death of the parent *thread*, which a pool may not be).
    """
    parent = os.getppid() if parent is None else parent
    t = threading.Thread(target=_watch, args=(parent, poll_s), name="msa-parent-watch", daemon=True)
    t.start()
    return t


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are held and raised as KeyboardInterrupt when it ends (main thread
    only; elsewhere a no-op): a file's copy to ``out_dir`` and its record in the run happen both or neither,
    so an interrupted run's manifest lists every bundle it copied."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt(f"signal {pending[0]}")
