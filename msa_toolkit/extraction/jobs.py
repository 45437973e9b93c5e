"""One file on its way through an extraction run: the :class:`Job`, its computation into the cache, and the
environment a worker process (pool or Ray actor) starts with. Shared by :mod:`.run` and :mod:`.ray_backend`."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..allocator import follow_parent
from ..cache import FeatureCache
from ..errors import ExtractionError
from ..features import BundleReadError, FeatureBundle, Transcript
from .lanes import WORKER_THREADS_ENV, available_cores
from .results import Failure
from .runner import LoadedExtractors, StageCallback

#: environment variables (by prefix) handed to worker processes (model locations, offline flags, threads)
WORKER_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "NUMBA_", "OMP_", "MSA_")


@dataclass(frozen=True)
class Job:
    """One input file on its way through a run."""

    # the input file
    path: Path
    # output name (<name>.safetensors / <name>.json in out_dir)
    name: str
    # cache key: content hash + spec fingerprint (+ hash of the user transcript)
    key: str
    # sha256 of the file's bytes (recorded in the bundle meta)
    sha: str
    # user transcript replacing ASR, or None
    transcript: Transcript | None
    # time.perf_counter() when work on this file began
    started: float
    # with align="words": the key of the unaligned bundle the aligned one derives from; else None
    base_key: str | None = None


#: compute() outcome: another process holds the entry's claim (only with wait=False); try again later
BUSY = "busy"
#: compute() outcome: the entry was found whole after claiming it (another process stored it)
FOUND = "found"
#: derive_aligned() outcome: no whole unaligned bundle in the cache to align
NO_BASE = "no-base"


def derive_aligned(runner: LoadedExtractors, job: Job, cache: FeatureCache) -> Failure | str | None:
    """Store ``job``'s word-aligned bundle made from its cached unaligned one (no extractor runs).

    None when stored, the Failure when alignment fails, NO_BASE when the unaligned bundle is not
    (whole) in the cache.
    """
    # full: the base's bytes are checked against its sha256 (as a direct hit is when copied out);
    # a same-size corruption would otherwise flow into the aligned bundle and its new cache entry
    if job.base_key is None or cache.lookup(job.base_key, full=True) is None:
        return NO_BASE
    try:
        base = FeatureBundle.load(cache.stem(job.base_key))
    except BundleReadError:
        cache.discard(job.base_key)
        return NO_BASE
    try:
        bundle = runner.align_cached(job.path, base)
    except ExtractionError as e:
        return Failure(str(job.path), e.stage, e.cause)
    try:
        cache.put(job.key, bundle)
    except Exception as e:
        return Failure(str(job.path), "save", f"{type(e).__name__}: {e}")
    return None


def compute(runner: LoadedExtractors, job: Job, cache_root: str,
            on_stage: StageCallback | None = None, wait: bool = True) -> Failure | str | None:
    """Extract ``job`` and store its bundle in the cache, claiming the entry while doing it.

    Returns the Failure, None on success, FOUND when another process stored the entry first, or
    BUSY (only with ``wait=False``) when another process is computing it now. With word alignment
    the unaligned bundle is stored too and the aligned one is derived from it.
    """
    cache = FeatureCache(cache_root)
    with cache.claim(job.key, wait=wait) as claimed:
        if not claimed:
            return BUSY
        if cache.lookup(job.key) is not None:
            return FOUND
        if job.base_key is not None:
            derived = derive_aligned(runner, job, cache)
            if derived != NO_BASE:  # aligned from an unaligned bundle another process stored meanwhile
                return derived
        return _extract_and_store(runner, job, cache, on_stage)


def _extract_and_store(runner: LoadedExtractors, job: Job, cache: FeatureCache,
                       on_stage: StageCallback | None) -> Failure | None:
    """Run the extractors on ``job`` and store the bundle (and, with alignment, its unaligned base)."""
    base_runner = runner.unaligned() if job.base_key is not None else runner
    try:
        bundle = (base_runner.run(job.path, job.transcript, on_stage) if on_stage
                  else base_runner.run(job.path, job.transcript))
    except ExtractionError as e:
        return Failure(str(job.path), e.stage, e.cause)
    bundle.meta["sha256"] = job.sha
    try:
        if job.base_key is None:
            cache.put(job.key, bundle)
            return None
        cache.put(job.base_key, bundle)
    except Exception as e:
        return Failure(str(job.path), "save", f"{type(e).__name__}: {e}")
    # aligned from the stored unaligned bundle, exactly as a later run deriving it would
    failure = derive_aligned(runner, job, cache)
    return Failure(str(job.path), "save", "the unaligned bundle just stored is unreadable") if failure == NO_BASE \
        else failure


def take_worker_env(env: Mapping[str, str]) -> None:
    """A worker's start (pool process or Ray actor): the parent's variables (:func:`_worker_env`), its malloc
    settings when it applied them (allocator.py), and the worker's share of the CPU threads for torch."""
    os.environ.update(env)
    follow_parent()
    with contextlib.suppress(Exception):  # torch missing or its threads already fixed: keep the defaults
        import torch

        torch.set_num_threads(max(1, int(env.get(WORKER_THREADS_ENV, "1"))))


def worker_env(workers: int) -> dict[str, str]:
    """The parent's environment variables workers need, plus their share of the CPU threads
    (cores / workers): read by the runner's thread plan (CTranslate2, torch, OpenCV; lanes.py) and,
    through OMP_NUM_THREADS, by any OpenMP library a worker loads."""
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
    env.setdefault(WORKER_THREADS_ENV, str(max(1, available_cores() // workers)))
    env.setdefault("OMP_NUM_THREADS", env[WORKER_THREADS_ENV])
    return env
