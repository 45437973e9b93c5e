"""Pass 2 of extract() on a Ray cluster (``msa extract --backend ray``).

Each Ray worker is an actor (:class:`ExtractorActor`) that loads the extractors once and then
extracts one file per call, storing its bundle in the content-addressed cache. The cache must
therefore be a path every node sees (a shared file system: NFS, Lustre, CephFS, ...); the driver
copies finished bundles from there to ``-o`` and records them exactly as with local workers
(``RunState.record``), so the progress bar, the failure report and resuming are the same: a file
whose bundle is in the cache is skipped by the look-up pass of the next run.

Scheduling: every actor has at most one file in flight, so a dead actor (out of memory, killed
node) loses one file. That file goes back to the queue and, when another actor is alive, is
retried there; the dead actor is restarted by Ray (``max_restarts``), reloads its models and
rejoins once it answers a ping. A file that has killed :data:`MAX_ATTEMPTS` actors fails at stage
"worker"; so do the files left when every actor is gone for good.

``ray`` is an optional dependency (``pip install msa_toolkit[ray]``), imported only here.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import ExtractConfigError, MSAError
from .config import ExtractConfig
from .results import Failure
from .jobs import Job, compute, take_worker_env, worker_env
from .lanes import WORKER_THREADS_ENV
from .state import RunState
from .runner import LoadedExtractors

#: attempts per file: a file whose actor died this many times fails at stage "worker"
MAX_ATTEMPTS = 3
#: how often Ray restarts one dead actor before it is gone for good
MAX_ACTOR_RESTARTS = 3
#: environment variable: CPUs each actor reserves (and its torch/OpenMP threads); default 1
CPUS_PER_WORKER_ENV = "MSA_RAY_CPUS_PER_WORKER"
#: object store of a local cluster started by the driver: bundles go through the file system, not Ray
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024
#: test hook: "<file name>:<marker path>" makes an actor os._exit on that file once (marker absent)
CRASH_ONCE_ENV = "MSA_RAY_TEST_CRASH_ONCE"
#: what the error says when ray is missing
INSTALL_HINT = 'the Ray backend needs ray: pip install "msa_toolkit[ray]" (or pip install "ray>=2.9")'


class ExtractorActor:
    """One Ray worker: loads the extractors of ``config`` once and extracts files into the cache."""

    def __init__(self, config: ExtractConfig, env: dict[str, str]):
        take_worker_env(env)
        # the loaded extractors, or None when loading failed
        self.runner: LoadedExtractors | None = None
        # the loading error (re-raised by ready(), so the driver reports it once)
        self.error: BaseException | None = None
        try:
            self.runner = LoadedExtractors(config)
            self.runner.load()
        except Exception as e:
            self.error = e

    def ready(self) -> str:
        """The node this actor runs on, once its models are loaded (raises the loading error)."""
        if self.error is not None:
            raise self.error
        import socket

        return socket.gethostname()

    def process(self, job: Job, cache_root: str) -> Failure | None:
        """Extract one file into the cache (see :func:`~msa_toolkit.extraction.jobs.compute`)."""
        if self.error is not None:
            raise self.error
        _maybe_crash(job)
        assert self.runner is not None
        return compute(self.runner, job, cache_root)


def _maybe_crash(job: Job) -> None:
    """Test hook (:data:`CRASH_ONCE_ENV`): kill this actor's process on one file, once."""
    spec = os.environ.get(CRASH_ONCE_ENV)
    if not spec:
        return
    name, _, marker = spec.partition(":")
    if job.path.name == name and marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


@dataclass
class _Entry:
    """A file waiting in the queue."""

    # the file
    job: Job
    # actors that died on it so far
    attempts: int = 0
    # index of the actor it last died on (retried elsewhere when another actor is alive)
    avoid: int = -1


def import_ray() -> Any:
    """The ray module, or an MSAError saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    try:
        import ray
    except ImportError:
        raise MSAError(INSTALL_HINT) from None
    return ray


def cpus_per_worker() -> int:
    """CPUs each actor reserves (:data:`CPUS_PER_WORKER_ENV`, default 1)."""
    raw = os.environ.get(CPUS_PER_WORKER_ENV, "1")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ExtractConfigError(f"{CPUS_PER_WORKER_ENV} must be a positive integer, got {raw!r}")
    return value


def connect(ray: Any, address: str | None, num_cpus: int) -> bool:
    """Join the cluster at ``address`` ("auto" or HOST:PORT), or start a private local one on
    127.0.0.1 with ``num_cpus`` CPUs and no dashboard. True when this call started Ray (the caller
    shuts it down); an already initialised Ray (e.g. a test's cluster) is used as it is."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
    if address:
        try:
            ray.init(address=address, **common)
        except Exception as e:  # noqa: BLE001 - ConnectionError, ray's AuthenticationError, RuntimeError, ...
            raise MSAError(_join_error(address, e)) from None
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 **common)
    return True


def _join_error(address: str, e: BaseException) -> str:
    """One message for a cluster that cannot be joined; with the token hint when Ray refused the token."""
    chain = " ".join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
    msg = f"cannot join the Ray cluster at {address}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if "InvalidAuthToken" in chain or "Authentication" in chain:
        msg += ("; the cluster uses token authentication: set RAY_AUTH_MODE=token with the cluster's token "
                "(~/.ray/auth_token or RAY_AUTH_TOKEN; docs/scaling.md)")
    return msg


def compute_with_ray(config: ExtractConfig, todo: Sequence[Job], workers: int, state: RunState,
                     address: str | None = None) -> None:
    """Pass 2 on ``workers`` Ray actors (same contract as ``run._compute_in_pool``).

    ``address``: None starts a local cluster for this run; "auto" or HOST:PORT joins a running one.
    """
    ray = import_ray()
    cpus = cpus_per_worker()
    n = min(workers, len(todo))
    env = worker_env(workers)
    env[WORKER_THREADS_ENV] = str(cpus)  # the actor's CPUs, whatever this machine has
    started = connect(ray, address, n * cpus)
    actor_cls = ray.remote(num_cpus=cpus, max_restarts=MAX_ACTOR_RESTARTS, max_task_retries=0)(ExtractorActor)
    actors = [actor_cls.remote(config, env) for _ in range(n)]
    try:
        state.show(f"starting {n} Ray worker(s)")
        _Scheduler(ray, actors, str(state.cache.root), state).run(todo)
    finally:
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        if started:
            ray.shutdown()


class _Scheduler:
    """Hands files to idle actors one at a time, retries the files of dead actors, records results."""

    def __init__(self, ray: Any, actors: list[Any], cache_root: str, state: RunState):
        # the ray module
        self.ray = ray
        # actor handles; an index leaves `alive` when its actor is gone for good
        self.actors = actors
        self.alive = set(range(len(actors)))
        # actors waiting for work
        self.idle: list[int] = []
        # deaths seen per actor (restarts used)
        self.deaths = [0] * len(actors)
        # files not yet handed out (retries go to the front)
        self.queue: deque[_Entry] = deque()
        # object ref -> (actor index, the entry it runs, or None for a ready() ping)
        self.pending: dict[Any, tuple[int, _Entry | None]] = {}
        self.cache_root = cache_root
        self.state = state

    def run(self, todo: Sequence[Job]) -> None:
        self.queue.extend(_Entry(job) for job in todo)
        for i, actor in enumerate(self.actors):
            self.pending[actor.ready.remote()] = (i, None)
        while self.queue or any(e is not None for _, e in self.pending.values()):
            self._assign()
            if not self.pending:  # every actor is gone: the rest fails
                for entry in self.queue:
                    self.state.record(entry.job, Failure(str(entry.job.path), "worker",
                                                         "no Ray worker left (every actor died)"))
                self.queue.clear()
                break
            (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
            self._collect(ref)

    def _assign(self) -> None:
        """Give each idle actor the first queued file that did not just kill it (unless no other actor
        is working, then it takes any: better a retry on the restarted actor than a wait)."""
        for i in list(self.idle):
            entry = next((e for e in self.queue if e.avoid != i), None)
            if entry is None and self.queue and not self._others_working(i):
                entry = self.queue[0]
            if entry is None:
                continue
            self.queue.remove(entry)
            self.idle.remove(i)
            self.pending[self.actors[i].process.remote(entry.job, self.cache_root)] = (i, entry)

    def _others_working(self, i: int) -> bool:
        """Whether an actor other than ``i`` is idle or extracting a file."""
        return any(j != i for j in self.idle) or any(e is not None and j != i for j, e in self.pending.values())

    def _collect(self, ref: Any) -> None:
        """Record the outcome of one finished call (a file, or an actor's ready() ping)."""
        i, entry = self.pending.pop(ref)
        try:
            value = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            self._actor_died(i, entry, e)
            return
        except Exception as e:
            if entry is None:  # ready() failed: the models cannot load, a configuration problem as in a serial run
                cause = getattr(e, "cause", None)
                if isinstance(cause, MSAError):
                    raise cause from None
                raise
            # an unexpected error inside the actor: this file fails, the actor goes on
            value = Failure(str(entry.job.path), "worker", f"Ray worker failed: {type(e).__name__}: {e}")
        self.idle.append(i)
        if entry is not None:
            self.state.show(entry.job.name)
            self.state.record(entry.job, value)

    def _actor_died(self, i: int, entry: _Entry | None, error: Exception) -> None:
        """Requeue the dead actor's file (or fail it after MAX_ATTEMPTS); ping the actor back in."""
        self.deaths[i] += 1
        if entry is not None:
            entry.attempts += 1
            entry.avoid = i
            if entry.attempts >= MAX_ATTEMPTS:
                self.state.show(entry.job.name)
                self.state.record(entry.job, Failure(str(entry.job.path), "worker",
                                                     f"Ray worker died {entry.attempts} times on this file: "
                                                     f"{type(error).__name__}"))
            else:
                self.queue.appendleft(entry)
        if self.deaths[i] > MAX_ACTOR_RESTARTS + 1:  # restarts used up: gone for good
            self.alive.discard(i)
            return
        # a restarting actor queues this call and answers once its models are loaded again;
        # one that is gone for good raises RayActorError again, until its deaths run out
        self.pending[self.actors[i].ready.remote()] = (i, None)
