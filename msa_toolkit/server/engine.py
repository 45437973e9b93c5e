"""The model behind a bounded queue: :class:`ModelPool`.

``workers`` threads each own a :class:`~msa_toolkit.prediction.Predictor` sharing the one loaded
checkpoint (the model is only read) but with extractors of their own (Whisper and the text encoder
keep per-call state), all loaded when the pool starts. A request is *admitted* for its whole life
(upload, wait, prediction); at most ``workers + queue`` are, and one more is refused at once with
:class:`Busy` (the app answers 503 with ``Retry-After``), so neither memory nor the temporary disk
grows with the number of clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import math
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator

#: recent prediction times kept to estimate Retry-After
SERVICE_WINDOW = 32
#: Retry-After before any prediction has been timed (seconds)
DEFAULT_RETRY_S = 2
#: the name of the per-request feature cache inside the request's private folder (removed with it)
REQUEST_CACHE = "features"
#: prefix of the server's private temporary folder
TEMP_PREFIX = "msa-serve-"


class Busy(Exception):
    """Every slot is taken; ``retry_after`` is an estimate in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy: try again in {retry_after} s")
        self.retry_after = retry_after


def predict_media(predictor: Any, path: Path, segments: bool) -> Any:
    """One stored upload through :func:`~msa_toolkit.prediction.predict` (``msa predict``'s code path) with a
    feature cache inside the request's own folder, so nothing of the upload outlives the request."""
    from ..prediction import predict

    [pred] = predict([path], predictor=predictor, segments=segments, cache_dir=path.parent / REQUEST_CACHE,
                     progress=False)
    return pred


def predict_text(predictor: Any, text: str, segments: bool) -> Any:
    return predictor.predict_text(text, segments=segments)


def worker_predictor(predictor: Any, workers: int) -> Any:
    """One worker's Predictor: the shared checkpoint, extractors of its own, and Whisper's CTranslate2 threads
    set to the worker's share of the cores (``cpu_threads`` is a runtime parameter: the features do not change)."""
    from ..extraction.lanes import available_cores

    cfg = predictor.extract_config
    if getattr(cfg, "asr", None) and not int((cfg.asr_params or {}).get("cpu_threads") or 0):
        share = max(1, available_cores() // workers)
        cfg = dataclasses.replace(cfg, asr_params={**cfg.asr_params, "cpu_threads": share})
    return dataclasses.replace(predictor, extract_config=cfg, _extractors=None)


class ModelPool:
    """``workers`` model threads behind at most ``queue`` waiting requests (see the module docstring)."""

    def __init__(self, predictor: Any, workers: int = 1, queue_size: int = 16, temp_root: str | None = None):
        # the loaded checkpoint every worker shares
        self.predictor = predictor
        self.workers = workers
        self.queue_size = queue_size
        # requests admitted at once: those served plus those waiting
        self.capacity = workers + queue_size
        self._temp_root = temp_root
        self.temp_dir: Path | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._service: deque[float] = deque(maxlen=SERVICE_WINDOW)

    # -- life ------------------------------------------------------------------------------------
    def start(self, warm: bool = True) -> None:
        """Create the private temp folder and start the workers, each loading its extractors (``warm``)."""
        self.temp_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self._temp_root))  # mode 0700
        ready: list[concurrent.futures.Future] = []
        for i in range(self.workers):
            own = self.predictor if self.workers == 1 else worker_predictor(self.predictor, self.workers)
            done: concurrent.futures.Future = concurrent.futures.Future()
            t = threading.Thread(target=self._work, args=(own, done, warm), name=f"msa-model-{i}", daemon=True)
            t.start()
            self._threads.append(t)
            ready.append(done)
        for f in ready:
            f.result()  # a model that fails to load stops the start-up with its error

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def _work(self, predictor: Any, ready: concurrent.futures.Future, warm: bool) -> None:
        try:
            if warm:
                predictor.extractors().load()
        except BaseException as e:  # reported by start()
            ready.set_exception(e)
            return
        ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            t0 = time.perf_counter()
            with self._lock:
                self._running += 1
            try:
                result = fn(predictor, *args)
            except BaseException as e:
                fut.set_exception(e)
            else:
                fut.set_result(result)
            finally:
                with self._lock:
                    self._running -= 1
                    self._service.append(time.perf_counter() - t0)

    # -- requests --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admitted(self) -> Iterator[Path]:
        """Hold one slot for a request, with a private folder of its own (removed at the end, whatever
        happened); raises :class:`Busy` when every slot is taken."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy(self._retry_after())
            self._admitted += 1
        try:
            assert self.temp_dir is not None, "the pool is not started"
            folder = Path(tempfile.mkdtemp(prefix="req-", dir=self.temp_dir))
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            with self._lock:
                self._admitted -= 1

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(predictor, *args)`` on a model thread, awaited (the caller holds a slot)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, args, fut))
        return await asyncio.wrap_future(fut)

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead drained at the recent prediction rate."""
        if not self._service:
            return DEFAULT_RETRY_S
        mean = sum(self._service) / len(self._service)
        return max(1, math.ceil(mean * max(1, self._admitted - self._running + 1) / self.workers))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"workers": self.workers, "capacity": self.capacity, "admitted": self._admitted,
                    "running": self._running, "waiting": max(0, self._admitted - self._running)}
