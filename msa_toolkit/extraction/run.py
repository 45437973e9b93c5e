"""extract(): media files and folders -> cached FeatureBundles (+ copies, manifest and reports in out_dir).

A run has two passes. Pass 1 hashes every file and looks its key up in the
content-addressed cache (:mod:`msa_toolkit.cache`); hits finish at once. Pass 2
extracts the misses, in this process or in a pool of spawned worker processes
that each load the models once, and stores each bundle in the cache as soon as
it is done, so a killed run resumes where it stopped.

One bad file never stops a run: its failure is recorded with the stage it
failed in. Only a configuration problem that affects every file (an unknown
extractor, a model that cannot be loaded) raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .._io import progress_bar
from ..cache import FeatureCache, cache_key, hash_file, hash_text
from ..errors import ExtractConfigError, ExtractionError
from ..features import Transcript
from .config import ExtractConfig
from .inputs import collect_files, find_user_transcript, parse_shard, select_shard
from .outputs import export_bundle, out_is_current, write_reports, write_srt
from .results import ExtractResult, Failure, FileResult
from .runner import LoadedExtractors, StageCallback, input_token

#: environment variables (by prefix) handed to worker processes (model locations, offline flags, threads)
WORKER_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "NUMBA_", "OMP_", "MSA_")
#: environment variable telling a worker how many torch threads to use
WORKER_THREADS_ENV = "MSA_WORKER_THREADS"
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

    def show(self, current: str) -> None:
        """Name the file (or file: stage) being worked on in the progress bar."""
        self.bar.update(self.task, current=current)

    def show_stage(self, name: str, stage: str) -> None:
        self.show(f"{name}: {stage}")

    def fail(self, failure: Failure) -> None:
        """Record a failed file and move the progress bar on."""
        self.failures.append(failure)
        self.bar.advance(self.task)

    def finish(self, job: Job, cached: bool) -> None:
        """Record a file whose bundle is in the cache; copy it to out_dir (unless already there)."""
        stem = self.cache.stem(job.key)
        if self.out is not None:
            if cached and out_is_current(self.out, job.name, job.key):
                stem = self.out / job.name
            else:
                stem = export_bundle(self.cache, job.key, self.out, job.name, job.path)
            if self.save_srt:
                write_srt(stem)
        meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
        # computed files report their extraction time; cache hits the time to find and copy them
        seconds = time.perf_counter() - job.started if cached else float(meta.get("timings", {}).get("total", 0.0))
        self.items.append(FileResult(str(job.path), job.name, str(stem), job.key, cached, seconds,
                                     meta.get("duration"), int(meta.get("n_words", 0))))

    def record(self, job: Job, failure: Failure | None) -> None:
        """Record the outcome of extracting ``job`` (None = stored in the cache) and move the bar on."""
        if failure is None:
            try:
                self.finish(job, cached=False)
            except OSError as e:
                self.failures.append(Failure(str(job.path), "save", str(e)))
        else:
            self.failures.append(failure)
        self.bar.advance(self.task)


# ---------------------------------------------------------------------------------------------
# one file -> the cache (in this process or a worker)
# ---------------------------------------------------------------------------------------------
def compute(runner: LoadedExtractors, job: Job, cache_root: str,
            on_stage: StageCallback | None = None) -> Failure | None:
    """Extract ``job`` and store its bundle in the cache; the Failure, or None on success."""
    try:
        bundle = runner.run(job.path, job.transcript, on_stage) if on_stage else runner.run(job.path, job.transcript)
    except ExtractionError as e:
        return Failure(str(job.path), e.stage, e.cause)
    bundle.meta["sha256"] = job.sha
    try:
        FeatureCache(cache_root).put(job.key, bundle)
    except Exception as e:
        return Failure(str(job.path), "save", f"{type(e).__name__}: {e}")
    return None


#: the loaded extractors of this worker process (set by _init_worker)
_WORKER: LoadedExtractors | None = None


def _init_worker(config: ExtractConfig, env: dict[str, str]) -> None:
    """Worker process start: take the parent's settings, then load the models once."""
    global _WORKER
    os.environ.update(env)
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(max(1, int(env.get(WORKER_THREADS_ENV, "1"))))
    _WORKER = LoadedExtractors(config)
    _WORKER.load()


def _worker_task(job: Job, cache_root: str) -> Failure | None:
    assert _WORKER is not None
    return compute(_WORKER, job, cache_root)


def _worker_env(workers: int) -> dict[str, str]:
    """The parent's environment variables workers need, plus their share of the CPU threads."""
    env = {k: v for k, v in os.environ.items() if k.startswith(WORKER_ENV_PREFIXES)}
    env.setdefault(WORKER_THREADS_ENV, str(max(1, (os.cpu_count() or 1) // workers)))
    return env


# ---------------------------------------------------------------------------------------------
# the two passes
# ---------------------------------------------------------------------------------------------
def _look_up(files: Sequence[tuple[Path, str]], transcripts: Any, runner: LoadedExtractors,
             state: _RunState) -> list[Job]:
    """Pass 1: hash every file; cache hits finish at once. Returns the files left to extract."""
    todo: list[Job] = []
    fingerprint = runner.spec.fingerprint()
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
        key = cache_key(sha, fingerprint, (hash_text(json.dumps(tr.to_dict(), sort_keys=True)) if tr else "") + token)
        job = Job(path, name, key, sha, tr, started)
        if state.cache.contains(key):
            try:
                state.finish(job, cached=True)
                state.cache.hits += 1
                state.bar.advance(state.task)
                continue
            except (OSError, json.JSONDecodeError):
                pass  # damaged entry: recompute
        todo.append(job)
    return todo


def _compute_here(runner: LoadedExtractors, todo: Sequence[Job], state: _RunState, show_stages: bool) -> None:
    """Pass 2 in this process."""
    runner.load()
    for job in todo:
        state.show(job.name)
        note = partial(state.show_stage, job.name) if show_stages else None
        state.record(job, compute(runner, job, str(state.cache.root), note))


def _compute_in_pool(config: ExtractConfig, todo: Sequence[Job], workers: int, state: _RunState) -> None:
    """Pass 2 in ``workers`` spawned processes; a worker that dies fails its file at stage "worker"."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(config, _worker_env(workers))) as pool:
        futures = {pool.submit(_worker_task, job, str(state.cache.root)): job for job in todo}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                failure = fut.result()
            except Exception as e:  # a worker died (e.g. out of memory) or failed to start
                failure = Failure(str(job.path), "worker", f"worker process failed: {type(e).__name__}: {e}")
            state.show(job.name)
            state.record(job, failure)


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
    shard_t = parse_shard(shard)
    files, failures = collect_files(paths)
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
    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with progress_bar(progress, current=True) as bar:
        state = _RunState(FeatureCache(cache_dir), out, save_srt, bar, bar.add_task("extract", total=len(files),
                                                                                     current=""), failures)
        todo = _look_up(files, transcripts, runner, state)
        if todo and backend == "ray":
            from .ray_backend import compute_with_ray

            compute_with_ray(config, todo, workers, state, ray_address)
        elif todo and workers == 1:
            _compute_here(runner, todo, state, show_stages=progress)
        elif todo:
            _compute_in_pool(config, todo, workers, state)
        state.show("done")
    state.items.sort(key=lambda i: i.path)
    state.failures.sort(key=lambda f: f.path)
    result = ExtractResult(runner.spec, state.items, state.failures, None, time.perf_counter() - t_start)
    if out is not None:
        result.manifest_path = write_reports(out, result, config, shard_t)
    return result
