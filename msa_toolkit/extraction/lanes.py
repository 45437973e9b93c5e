"""Overlapped stages: the CPU thread budget of one process and the two lanes a file's stages run in.

After decoding, a file's stages form two chains that share nothing but the
(read-only) waveform: the *speech lane* (Whisper, then the text encoder on its
transcript) and the *other lane* (the visual extractor, frames streamed from
the decoder). The acoustic extractor is a *shared* step, taken by whichever lane
is free first. With ``parallel`` the other lane runs in a second thread: the
native libraries (CTranslate2, onnxruntime, MediaPipe/TFLite, openSMILE, torch)
release the GIL, so two cores are busy. Without it the steps run one after the
other in pipeline order (asr, text, audio, vision), exactly as before.

The thread budget (:class:`ThreadPlan`) is ``$MSA_WORKER_THREADS`` (set per
worker process: cores / workers) or the CPUs this process may run on; each lane
gets half of it, in both modes, so the switch changes only the scheduling and
the features stay bit-for-bit the same.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

#: environment variable with the CPU threads this process may use (run.py sets it per worker: cores / workers)
WORKER_THREADS_ENV = "MSA_WORKER_THREADS"
#: environment switch: "0" runs the stages one after the other, anything else (default) overlaps them
PARALLEL_ENV = "MSA_PARALLEL_STAGES"
#: the stages in pipeline order: the first failing stage in this order is the one a file fails with
STAGE_ORDER = ("decode", "asr", "text", "audio", "vision", "align")
#: seconds the speech lane waits for a cancelled other lane to stop (it stops at the next video frame)
CANCEL_WAIT_S = 30.0


def available_cores() -> int:
    """CPU threads this process may use: ``$MSA_WORKER_THREADS`` when set, else its CPU affinity."""
    env = os.environ.get(WORKER_THREADS_ENV, "").strip()
    if env:
        with contextlib.suppress(ValueError):
            return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def parallel_from_env() -> bool:
    """The default of :attr:`LoadedExtractors.parallel_stages`: on unless ``$MSA_PARALLEL_STAGES`` is 0/false/off."""
    return os.environ.get(PARALLEL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads each lane's libraries get (the same in both modes: the features do not depend on it)."""

    # CPU threads of this process ($MSA_WORKER_THREADS, else its CPU affinity)
    cores: int
    # speech lane: CTranslate2 cpu_threads of Whisper, torch intra-op threads (text encoder, wav2vec2)
    speech: int
    # other lane: OpenCV threads of the visual extractor
    other: int

    @classmethod
    def for_cores(cls, cores: int) -> "ThreadPlan":
        """Half the cores to each lane (the speech lane gets the odd one: Whisper is the longest stage)."""
        cores = max(1, int(cores))
        return cls(cores, max(1, (cores + 1) // 2), max(1, cores // 2))


def thread_plan() -> ThreadPlan:
    """The plan for this process's thread budget (:func:`available_cores`)."""
    return ThreadPlan.for_cores(available_cores())


@contextlib.contextmanager
def library_threads(plan: ThreadPlan) -> Iterator[None]:
    """Cap torch's and OpenCV's process-wide thread pools at the plan's lane size while stages run,
    restoring the caller's settings afterwards. Only libraries already imported are touched (the
    extractors that use them are loaded before this is entered)."""
    saved: list[Callable[[], None]] = []
    torch = sys.modules.get("torch")
    if torch is not None:
        before = torch.get_num_threads()
        if before != plan.speech:
            torch.set_num_threads(plan.speech)
            saved.append(lambda: torch.set_num_threads(before))
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "getNumThreads"):
        cv_before = cv2.getNumThreads()
        if cv_before != plan.other:
            cv2.setNumThreads(plan.other)
            saved.append(lambda: cv2.setNumThreads(cv_before))
    try:
        yield
    finally:
        for restore in reversed(saved):
            with contextlib.suppress(Exception):
                restore()


class Cancelled(BaseException):
    """Raised inside the other lane when the speech lane failed (the file fails anyway). A BaseException,
    so no stage wrapper turns it into a stage failure."""


def until_cancelled(items: Iterable[Any], cancel: threading.Event) -> Iterator[Any]:
    """``items`` (e.g. decoded video frames), stopping with :class:`Cancelled` once ``cancel`` is set."""
    for item in items:
        if cancel.is_set():
            raise Cancelled()
        yield item


#: one step of a lane: (stage name, a callable running it and storing its result)
Step = tuple[str, Callable[[], None]]


class _Shared:
    """Steps either lane may take (the acoustic extractor): each is taken exactly once."""

    def __init__(self, steps: Sequence[Step]):
        self._steps = list(steps)
        self._lock = threading.Lock()

    def take(self) -> Step | None:
        with self._lock:
            return self._steps.pop(0) if self._steps else None


def _run_lane(own: Sequence[Step], shared: _Shared, errors: dict[str, BaseException]) -> None:
    """A lane: its own steps, then shared steps until none is left; stops at its first failure."""
    try:
        for stage, fn in own:
            _step(stage, fn, errors)
        while (step := shared.take()) is not None:
            _step(*step, errors)
    except _LaneFailed:
        pass


class _LaneFailed(Exception):
    """Internal: a step of this lane failed (recorded in ``errors``)."""


def _step(stage: str, fn: Callable[[], None], errors: dict[str, BaseException]) -> None:
    try:
        fn()
    except Cancelled:
        raise _LaneFailed() from None
    except Exception as e:  # ExtractionError, ModelLoadError: re-raised by run_lanes in pipeline order
        errors[stage] = e
        raise _LaneFailed() from None


def run_lanes(speech: Sequence[Step], other: Sequence[Step], shared: Sequence[Step], parallel: bool,
              cancel: threading.Event) -> None:
    """Run the steps; raise the failure of the earliest stage in :data:`STAGE_ORDER` (as a
    one-after-the-other run would have raised it first).

    Sequential: speech, shared, other steps in that order, stopping at the first failure.
    Parallel: the other lane in a daemon thread, the speech lane here; a speech-lane failure
    cancels the other lane at its next frame (``cancel`` must be checked by its frame source,
    :func:`until_cancelled`); an other-lane failure lets the speech lane finish, since one of its
    stages, earlier in pipeline order, may fail too.
    """
    errors: dict[str, BaseException] = {}
    if not parallel:
        _run_lane([*speech, *shared, *other], _Shared(()), errors)
    else:
        pool = _Shared(shared)
        side = threading.Thread(target=_run_lane, args=(other, pool, errors), name="msa-other-lane", daemon=True)
        side.start()
        try:
            _run_lane(speech, pool, errors)
            if errors:
                cancel.set()
        except BaseException:  # Ctrl-C / SIGTERM: stop the other lane at its next frame, then go
            cancel.set()
            side.join(CANCEL_WAIT_S)
            raise
        side.join()
    if errors:
        first = min(errors, key=lambda s: STAGE_ORDER.index(s) if s in STAGE_ORDER else len(STAGE_ORDER))
        raise errors[first]
