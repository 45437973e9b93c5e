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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .._io import progress_bar
from ..allocator import follow_parent
from ..cache import FeatureCache, cache_key, hash_file, hash_text
from ..errors import ExtractConfigError, ExtractionError
from ..features import BundleReadError, FeatureBundle, Transcript, check_bundle
from .config import ExtractConfig
from .lanes import WORKER_THREADS_ENV, available_cores
from .inputs import collect_inputs, find_user_transcript, parse_shard, require_media, select_shard
from .outputs import export_bundle, out_is_current, write_reports, write_srt
from .results import ExtractResult, Failure, FileResult, unmet_requirement
from .runner import LoadedExtractors, StageCallback, input_token
from .safety import check_output_dir, exit_on_sigterm, sigterm_as_interrupt, watch_parent

#: environment variables (by prefix) handed to worker processes (model locations, offline flags, threads)
WORKER_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "NUMBA_", "OMP_", "MSA_")
#: where pass 2 runs: this machine (serial or a process pool) or Ray actors (extraction/ray_backend.py)
BACKENDS = ("local", "ray")


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


@dataclass
class _RunState:
    """Where one run's finished files go: cache, out_dir copies, results, failures and the progress bar."""

    # the content-addressed cache
    cache: FeatureCache
    # the output folder, or None (bundles stay in the cache)
    out: Path | None
    # also write <name>.srt subtitles to out
    save_srt: bool
    # the rich progress bar and its task id
    bar: Any
    task: Any
    # files that failed (the input failures of collect_files first)
    failures: list[Failure]
    # processed files
    items: list[FileResult] = field(default_factory=list)
    # stages a file must have (ExtractConfig.require): a cached bundle lacking one is a failure
    require: tuple[str, ...] = ()

    def show(self, current: str) -> None:
        """Name the file (or file: stage) being worked on in the progress bar."""
        self.bar.update(self.task, current=current)

    def show_stage(self, name: str, stage: str) -> None:
        self.show(f"{name}: {stage}")

    def fail(self, failure: Failure) -> None:
        """Record a failed file and move the progress bar on."""
        self.failures.append(failure)
        self.bar.advance(self.task)

    def finish(self, job: Job, cached: bool, header: dict | None = None) -> None:
        """Record a file whose bundle is in the cache; copy it to out_dir (unless already there).

        ``header`` is the entry's checked json when the caller has it. A copy (or, without out_dir,
        the cached entry) whose bytes differ from the entry's record raises BundleReadError (the
        entry is damaged).
        """
        stem = self.cache.stem(job.key)
        if self.require and self.fail_required(job, stem):
            return
        if self.out is not None:
            if cached and out_is_current(self.out, job.name, job.key):
                stem = self.out / job.name
            else:
                stem = export_bundle(self.cache, job.key, self.out, job.name, job.path, header)
            if self.save_srt:
                write_srt(stem)
        elif cached:  # no copy whose bytes are checked: the caller reads the entry, so check it here
            check_bundle(stem, full=True, sealed=True)
        meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
        # computed files report their extraction time; cache hits the time to find and copy them
        seconds = time.perf_counter() - job.started if cached else float(meta.get("timings", {}).get("total", 0.0))
        self.items.append(FileResult.from_meta(str(job.path), job.name, str(stem), job.key, cached, seconds, meta))

    def fail_required(self, job: Job, stem: Path) -> bool:
        """Record a failure when the bundle at ``stem`` lacks what ``require`` asks for (a cached bundle
        made without ``require``: absence and completeness are recorded in its meta); True when it did."""
        meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
        failure = unmet_requirement(str(job.path), meta, self.require)
        if failure is not None:
            self.failures.append(failure)
        return failure is not None

    def record(self, job: Job, failure: Failure | str | None) -> None:
        """Record the outcome of extracting ``job`` (None = stored in the cache, FOUND = stored by
        another process meanwhile) and move the bar on."""
        if failure is None or failure == FOUND:
            try:
                self.finish(job, cached=failure == FOUND)
            except (OSError, BundleReadError) as e:
                self.failures.append(Failure(str(job.path), "save", str(e)))
        else:
            self.failures.append(failure)
        self.bar.advance(self.task)


# ---------------------------------------------------------------------------------------------
# one file -> the cache (in this process or a worker)
# ---------------------------------------------------------------------------------------------
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


def take_worker_env(env: Mapping[str, str]) -> None:
    """A worker's start (pool process or Ray actor): the parent's variables (:func:`_worker_env`), its malloc
    settings when it applied them (allocator.py), and the worker's share of the CPU threads for torch."""
    os.environ.update(env)
    follow_parent()
    with contextlib.suppress(Exception):  # torch missing or its threads already fixed: keep the defaults
        import torch

        torch.set_num_threads(max(1, int(env.get(WORKER_THREADS_ENV, "1"))))


def _worker_task(job: Job, cache_root: str, wait: bool = True) -> Failure | str | None:
    assert _WORKER is not None
    return compute(_WORKER, job, cache_root, wait=wait)


def _worker_env(workers: int) -> dict[str, str]:
    """The parent's environment variables workers need, plus their share of the CPU threads
    (cores / workers): read by the runner's thread plan (CTranslate2, torch, OpenCV; lanes.py) and,
    through OMP_NUM_THREADS, by any OpenMP library a worker loads."""
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
    env.setdefault(WORKER_THREADS_ENV, str(max(1, available_cores() // workers)))
    env.setdefault("OMP_NUM_THREADS", env[WORKER_THREADS_ENV])
    return env


# ---------------------------------------------------------------------------------------------
# the two passes
# ---------------------------------------------------------------------------------------------
def _look_up(files: Sequence[tuple[Path, str]], transcripts: Any, runner: LoadedExtractors,
             state: _RunState) -> list[Job]:
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


def _serve_from_cache(runner: LoadedExtractors, job: Job, state: _RunState) -> bool:
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


def _compute_here(runner: LoadedExtractors, todo: Sequence[Job], state: _RunState, show_stages: bool) -> None:
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


def _compute_in_pool(config: ExtractConfig, todo: Sequence[Job], workers: int, state: _RunState) -> None:
    """Pass 2 in ``workers`` spawned processes; a worker that dies fails its file at stage "worker"."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(config, _worker_env(workers), os.getpid()))
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
        state = _RunState(cache, out, save_srt, bar, bar.add_task("extract", total=len(files),
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


def _result(runner: LoadedExtractors, state: _RunState, skipped: list[Failure], interrupted: bool,
            t_start: float) -> ExtractResult:
    """The ExtractResult of a (possibly interrupted) run, files and failures sorted by path."""
    state.items.sort(key=lambda i: i.path)
    state.failures.sort(key=lambda f: f.path)
    return ExtractResult(runner.spec, state.items, state.failures, None, time.perf_counter() - t_start,
                         skipped=skipped, interrupted=interrupted)
