"""extract(): media files and folders -> cached FeatureBundles (+ copies, manifest and reports in out_dir).

A run has two passes. Pass 1 hashes every file and looks its key up in the
content-addressed cache (:mod:`msa_toolkit.cache`); a whole entry (checked, see
:meth:`FeatureCache.lookup`) finishes at once, a damaged one is removed and
recomputed, and an ``align="words"`` file whose unaligned bundle is cached is
aligned from it (a cheap transform) without running any extractor. Pass 2
extracts the misses, in this process or in a pool of spawned worker processes,
and stores each bundle in the cache as soon as it is done, so a killed run
resumes where it stopped. Extractors load their models on first use: a run with
nothing to compute imports no model library at all.

Compute once: each miss is claimed (the entry's lock) while it is extracted. An
entry another process is computing is skipped and taken up again at the end,
when the claim waits and then usually finds the entry stored.

One bad file never stops a run: its failure is recorded with the stage it
failed in. Only a configuration problem that affects every file (an unknown
extractor, a model that cannot be loaded) raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .._io import progress_bar
from ..cache import FeatureCache, cache_key, hash_file, hash_text
from ..errors import ExtractConfigError, ExtractionError
from ..features import BundleReadError
from .config import ExtractConfig
from .inputs import collect_inputs, find_user_transcript, parse_shard, require_media, select_shard
from .jobs import BUSY, FOUND, NO_BASE, Job, compute, derive_aligned, take_worker_env, worker_env
from .outputs import write_reports
from .results import ExtractResult, Failure
from .runner import LoadedExtractors, input_token
from .state import RunState
from .safety import check_output_dir, exit_on_sigterm, sigterm_as_interrupt, watch_parent

#: where pass 2 runs: this machine (serial or a process pool) or Ray actors (extraction/ray_backend.py)
BACKENDS = ("local", "ray")


#: the loaded extractors of this worker process (set by _init_worker)
_WORKER: LoadedExtractors | None = None


def _init_worker(config: ExtractConfig, env: dict[str, str], parent: int) -> None:
    """Worker process start: take the parent's settings; models load once, on first use."""
    global _WORKER
    exit_on_sigterm()  # first: the threads started below inherit SIGTERM blocked (one thread awaits it)
    watch_parent(parent)  # exit when the parent (pid ``parent``) is killed: no worker outlives its run
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops the pool
    take_worker_env(env)
    _WORKER = LoadedExtractors(config)


def _worker_task(job: Job, cache_root: str, wait: bool = True) -> Failure | str | None:
    assert _WORKER is not None
    return compute(_WORKER, job, cache_root, wait=wait)


# ---------------------------------------------------------------------------------------------
# the two passes
# ---------------------------------------------------------------------------------------------
def _look_up(files: Sequence[tuple[Path, str]], transcripts: Any, runner: LoadedExtractors,
             state: RunState) -> list[Job]:
    """Pass 1: hash every file; cache hits finish at once. Returns the files left to extract."""
    todo: list[Job] = []
    fingerprint = runner.spec.fingerprint()
    # with align="words", the unaligned bundle's spec: an aligned bundle derives from it
    base_fingerprint = runner.unaligned().spec.fingerprint() if runner.config.align != "none" else None
    for path, name in files:
        started = time.perf_counter()
        state.show(name)
        try:
            sha = hash_file(path)
            tr = find_user_transcript(path, name, transcripts)
            token = input_token(runner.extractors, path)
        except ExtractionError as e:  # a sidecar input an extractor needs is missing or unreadable
            state.fail(Failure(str(path), e.stage, e.cause))
            continue
        except OSError as e:
            state.fail(Failure(str(path), "input", f"cannot read: {e}"))
            continue
        except (ValueError, KeyError) as e:
            state.fail(Failure(str(path), "input", f"bad user transcript: {e}"))
            continue
        extra = (hash_text(json.dumps(tr.to_dict(), sort_keys=True)) if tr else "") + token
        # an aligned bundle is derived from the cached unaligned one, unless the user's words still
        # need times from Whisper: only the aligned run itself times them (runner.times_user_words)
        derivable = base_fingerprint and not runner.times_user_words(tr)
        base_key = cache_key(sha, base_fingerprint, extra) if derivable else None
        job = Job(path, name, cache_key(sha, fingerprint, extra), sha, tr, started, base_key)
        if not _serve_from_cache(runner, job, state):
            todo.append(job)
    return todo


def _serve_from_cache(runner: LoadedExtractors, job: Job, state: RunState) -> bool:
    """Finish ``job`` from the cache when its entry is whole (or, aligned, derivable from the cached
    unaligned bundle); True when done (finished or failed), False when it must be computed."""
    header = state.cache.lookup(job.key)
    if header is not None:
        try:
            state.finish(job, cached=True, header=header)
        except BundleReadError:  # the bytes differ from the json's sha256: derive or recompute below
            state.cache.discard(job.key)
        except (OSError, json.JSONDecodeError):
            return False
        else:
            state.cache.hits += 1
            state.bar.advance(state.task)
            return True
    if job.base_key is None:
        return False
    derived = derive_aligned(runner, job, state.cache)
    if derived == NO_BASE:
        return False
    if derived is None:
        state.record(job, FOUND)  # nothing extracted: counts as cached
    else:
        state.fail(derived)
    return True


def _compute_here(runner: LoadedExtractors, todo: Sequence[Job], state: RunState, show_stages: bool) -> None:
    """Pass 2 in this process; entries another process is computing are taken up last (then waited for)."""
    busy: list[Job] = []
    for wait, jobs in ((False, todo), (True, busy)):
        for job in jobs:
            state.show(job.name)
            note = partial(state.show_stage, job.name) if show_stages else None
            outcome = compute(runner, job, str(state.cache.root), note, wait=wait)
            if outcome == BUSY:
                busy.append(job)
            else:
                state.record(job, outcome)


def _compute_in_pool(config: ExtractConfig, todo: Sequence[Job], workers: int, state: RunState) -> None:
    """Pass 2 in ``workers`` spawned processes; a worker that dies fails its file at stage "worker"."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(config, worker_env(workers), os.getpid()))
    try:
        # first pass skips entries another process is computing; they are resubmitted to wait for them
        futures = {pool.submit(_worker_task, job, str(state.cache.root), False): job for job in todo}
        while futures:
            later = {}
            for fut in as_completed(futures):
                job = futures[fut]
                try:
                    failure = fut.result()
                except Exception as e:  # a worker died (e.g. out of memory) or failed to start
                    failure = Failure(str(job.path), "worker", f"worker process failed: {type(e).__name__}: {e}")
                if failure == BUSY:
                    later[pool.submit(_worker_task, job, str(state.cache.root), True)] = job
                    continue
                state.show(job.name)
                state.record(job, failure)
            futures = later
    except BaseException:  # Ctrl-C / SIGTERM: stop the workers now, keep what finished
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: Any) -> None:
    """Cancel the queued files and terminate the workers of ``pool`` (their running files are lost;
    finished ones are in the cache already)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=5)


def extract(paths: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
            config: ExtractConfig = ExtractConfig(), cache_dir: str | os.PathLike | None = None,
            workers: int = 1, shard: str | tuple[int, int] | None = None,
            transcripts: str | os.PathLike | Mapping[str, Any] | None = None, progress: bool = True,
            save_srt: bool = False, extractors: LoadedExtractors | None = None, backend: str = "local",
            ray_address: str | None = None) -> ExtractResult:
    """Extract features from media files and folders (see the module docstring).

    Args:
        paths: files and/or folders (searched recursively for media extensions).
        out_dir: where to write ``<name>.safetensors``/``.json`` per file, ``manifest.json`` and
            the failure report; None keeps bundles in the cache only.
        config: which extractors run, with which parameters.
        cache_dir: the content-addressed cache (default ``$MSA_CACHE_DIR`` or ``~/.cache/msa_toolkit``).
        workers: processes (spawn); each loads the models once.
        shard: ``"i/n"`` to process only every n-th file of the sorted list, starting at i (0-based).
        transcripts: user transcripts replacing ASR: a folder of ``<name>.txt``/``.json`` or a mapping
            path/name/stem -> text. A sidecar ``clip.txt`` next to ``clip.mp4`` is always honoured.
        progress: show a rich progress bar on stderr.
        save_srt: also write ``<name>.srt`` subtitles to out_dir.
        extractors: already loaded extractors (:func:`load_extractors`) reused across calls, so a
            long-lived caller (e.g. a Predictor) loads Whisper and the encoders once; must match ``config``.
        backend: ``"local"`` (this process, or ``workers`` spawned processes) or ``"ray"`` (``workers``
            Ray actors; needs ``pip install msa_toolkit[ray]`` and a cache every node sees).
        ray_address: with ``backend="ray"``: None starts a local Ray cluster, ``"auto"`` or
            ``HOST:PORT`` joins a running one.
    """
    t_start = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    shard_t = parse_shard(shard)
    files, failures, skipped = collect_inputs(paths)
    require_media(paths, files, failures, skipped)
    files = select_shard(files, shard_t)
    if workers < 1:
        raise ExtractConfigError(f"workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise ExtractConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if ray_address is not None and backend != "ray":
        raise ExtractConfigError("a Ray address needs backend='ray' (--backend ray)")
    if extractors is not None and extractors.config != config:
        raise ExtractConfigError("extract(): the loaded extractors were built for another ExtractConfig")
    runner = extractors if extractors is not None else LoadedExtractors(config)
    # every output location is checked before any work starts (OutputError, one line, exit 2)
    out = check_output_dir(out_dir, "output folder") if out_dir is not None else None
    cache = FeatureCache(cache_dir)
    check_output_dir(cache.root, "cache folder")
    interrupted = False
    with progress_bar(progress, current=True) as bar:
        state = RunState(cache, out, save_srt, bar, bar.add_task("extract", total=len(files),
                                                                                     current=""), failures,
                          require=config.require)
        try:
            with sigterm_as_interrupt():
                todo = _look_up(files, transcripts, runner, state)
                if todo and backend == "ray":
                    from .ray_backend import compute_with_ray

                    compute_with_ray(config, todo, workers, state, ray_address)
                elif todo and workers == 1:
                    _compute_here(runner, todo, state, show_stages=progress)
                elif todo:
                    _compute_in_pool(config, todo, workers, state)
        except KeyboardInterrupt:
            interrupted = True
        state.show("interrupted" if interrupted else "done")
    result = _result(runner, state, skipped, interrupted, t_start)
    if out is not None:
        result.manifest_path = write_reports(out, result, config, shard_t)
    if interrupted:
        raise ExtractionInterrupted(result)
    return result


class ExtractionInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; ``result`` holds the files that finished (and were reported)."""

    def __init__(self, result: ExtractResult):
        super().__init__(f"interrupted after {len(result.items)} file(s)")
        # what finished before the interruption (its manifest is written when out_dir was given)
        self.result = result


def _result(runner: LoadedExtractors, state: RunState, skipped: list[Failure], interrupted: bool,
            t_start: float) -> ExtractResult:
    """The ExtractResult of a (possibly interrupted) run, files and failures sorted by path."""
    state.items.sort(key=lambda i: i.path)
    state.failures.sort(key=lambda f: f.path)
    return ExtractResult(runner.spec, state.items, state.failures, None, time.perf_counter() - t_start,
                         skipped=skipped, interrupted=interrupted)
