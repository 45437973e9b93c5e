"""`--backend ray` on a real local Ray cluster (this machine only, 2 CPUs, no dashboard): same bundles as the
serial run, a dead actor's file retried on another actor, resume after the driver is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.errors import ExtractConfigError, MSAError
from msa_toolkit.extraction import ExtractConfig, extract
from msa_toolkit.features import FeatureBundle

ray = pytest.importorskip("ray")

#: the cheapest configuration that still decodes every file (openSMILE only)
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)
FILES = ["speech.wav", "speech.flac", "speech.mp3", "corrupt.mp4"]


def _copy(assets: Path, dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(assets / n, dst / n)
    return dst


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module; yields its GCS address (HOST:PORT) for other drivers."""
    from msa_toolkit.extraction.ray_backend import import_ray

    import_ray()  # usage stats off before the cluster starts
    ctx = ray.init(num_cpus=2, include_dashboard=False,
                   object_store_memory=100 * 1024 * 1024, log_to_driver=False, logging_level="warning")
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def serial(assets_dir, tmp_path_factory):
    """The reference: the same folder extracted in this process."""
    root = tmp_path_factory.mktemp("serial")
    inp = _copy(assets_dir, root / "in", FILES)
    return inp, extract(inp, out_dir=root / "out", config=CHEAP, cache_dir=root / "c", progress=False)


def _assert_same_bundles(res, ref) -> None:
    assert [i.name for i in res] == [i.name for i in ref]
    assert [(Path(f.path).name, f.stage) for f in res.failures] == [(Path(f.path).name, f.stage) for f in ref.failures]
    for a, b in zip(res, ref):
        assert a.key == b.key
        # the arrays file is identical byte for byte (the json differs only in timings)
        assert Path(a.bundle_path).with_suffix(".safetensors").read_bytes() == \
            Path(b.bundle_path).with_suffix(".safetensors").read_bytes()
        ba, bb = a.load(), b.load()
        for m, seq in bb.sequences.items():
            np.testing.assert_array_equal(ba.sequences[m].values, seq.values)
            np.testing.assert_array_equal(ba.sequences[m].mask, seq.mask)


def test_ray_matches_serial_run(cluster, serial, tmp_path):
    inp, ref = serial
    res = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c", workers=2,
                  progress=False, backend="ray")
    assert len(res.items) == 3 and res.n_cached == 0
    assert [(Path(f.path).name, f.stage) for f in res.failures] == [("corrupt.mp4", "decode")]
    _assert_same_bundles(res, ref)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["files"]) == 3 and len(manifest["failures"]) == 1
    assert (tmp_path / "out" / "errors.json").is_file()
    # a re-run finds everything in the cache before any actor starts
    again = extract(inp, config=CHEAP, cache_dir=tmp_path / "c", workers=2, progress=False, backend="ray")
    assert again.n_cached == 3


def test_dead_actor_file_is_retried_on_another(cluster, serial, tmp_path, monkeypatch):
    from msa_toolkit.extraction.ray_backend import CRASH_ONCE_ENV

    inp, ref = serial
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, f"speech.flac:{marker}")
    res = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c", workers=2,
                  progress=False, backend="ray")
    assert marker.is_file()  # an actor did die (os._exit) on speech.flac ...
    assert len(res.items) == 3 and [f.stage for f in res.failures] == ["decode"]  # ... and the file was redone
    _assert_same_bundles(res, ref)


def _sigkill_once(proc: subprocess.Popen, ready, timeout: float = 240.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False when it had already exited by then."""
    end = time.time() + timeout
    while proc.poll() is None and time.time() < end and not ready():
        time.sleep(0.02)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    return alive


@pytest.mark.slow
def test_resume_after_driver_is_killed(cluster, assets_dir, tmp_path):
    """SIGKILL a `msa extract --backend ray --address` driver after its first bundle lands; the re-run
    computes only the rest (the look-up pass finds the finished files in the cache)."""
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3", "noface.mp4"])
    cache = tmp_path / "c"
    # ASR only: about a second per file, so the kill lands mid-run
    cmd = [sys.executable, "-m", "msa_toolkit", "extract", str(inp), "-o", str(tmp_path / "out"), "--text", "none",
           "--audio", "none", "--vision", "none", "--cache-dir", str(cache), "-q", "--backend", "ray",
           "--address", cluster, "--workers", "1"]
    killed = _sigkill_once(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                           lambda: any(cache.rglob("*.json")))
    before = [FeatureBundle.load(p) for p in cache.rglob("*.json")]  # each loads: nothing half-written is visible
    cfg = ExtractConfig(text=None, audio=None, vision=None)
    res = extract(inp, out_dir=tmp_path / "out", config=cfg, cache_dir=cache, workers=2, progress=False,
                  backend="ray")
    assert len(res.items) == 4 and not res.failures
    assert res.n_cached == len(before) >= 1
    if killed:
        assert len(before) < 4
    print(f"killed={killed} finished_before_kill={len(before)}")


def test_backend_arguments_are_checked(assets_dir, tmp_path):
    with pytest.raises(ExtractConfigError, match="backend"):
        extract(assets_dir / "speech.wav", config=CHEAP, cache_dir=tmp_path, progress=False, backend="spark")
    with pytest.raises(ExtractConfigError, match="Ray address"):
        extract(assets_dir / "speech.wav", config=CHEAP, cache_dir=tmp_path, progress=False, ray_address="auto")


def test_unreachable_or_refusing_cluster_is_one_clear_error():
    """ray.init's ConnectionError (e.g. InvalidAuthToken) becomes an MSAError naming the address and the fix."""
    from msa_toolkit.extraction.ray_backend import connect

    class FakeRay:
        def __init__(self, error):
            self.error = error

        def is_initialized(self):
            return False

        def init(self, **kw):
            try:
                raise RuntimeError("RPC error: InvalidAuthToken: Authentication token is missing")
            except RuntimeError as inner:
                raise self.error from inner

    with pytest.raises(MSAError, match=r"cannot join the Ray cluster at 10\.0\.0\.1:6379: ConnectionError.*"
                                       r"RAY_AUTH_MODE=token"):
        connect(FakeRay(ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")), "10.0.0.1:6379", 1)

    class NoAuth(FakeRay):
        def init(self, **kw):
            raise ConnectionError("Failed to connect to Ray cluster at h:1")

    with pytest.raises(MSAError, match=r"cannot join the Ray cluster at h:1") as info:
        connect(NoAuth(None), "h:1", 1)
    assert "RAY_AUTH_MODE" not in str(info.value)


def test_missing_ray_says_how_to_install(monkeypatch):
    from msa_toolkit.extraction.ray_backend import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MSAError, match=r"pip install .*msa_toolkit\[ray\]"):
        import_ray()


# ---------------------------------------------------------------------------------------------
# the scheduler's retry rules, with a fake Ray (no cluster): fast, deterministic
# ---------------------------------------------------------------------------------------------
class _Died(Exception):
    """Stands in for ray.exceptions.RayActorError."""


class _FakeRay:
    """ray.wait/get over already-computed results; calls finish in submission order."""

    class exceptions:
        RayActorError = _Died

    def wait(self, refs, num_returns=1):
        first = min(refs, key=lambda r: r[0])
        return [first], [r for r in refs if r is not first]

    def get(self, ref):
        if isinstance(ref[1], BaseException):
            raise ref[1]
        return ref[1]


class _FakeActor:
    """Dies on every file named in ``poison``; gone for good after ``lives`` deaths."""

    counter = [0]

    def __init__(self, index, poison, lives, log):
        self.index, self.poison, self.lives, self.log, self.deaths = index, poison, lives, log, 0
        self.ready = self._method(self._ready)
        self.process = self._method(self._process)

    def _method(self, fn):
        class _M:
            @staticmethod
            def remote(*args):
                self.counter[0] += 1
                try:
                    return (self.counter[0], fn(*args))
                except BaseException as e:
                    return (self.counter[0], e)
        return _M

    def _ready(self):
        if self.deaths >= self.lives:
            raise _Died("gone")
        return "node"

    def _process(self, job, root):
        self.log.append((job.name, self.index))
        if self.deaths >= self.lives or job.name in self.poison:
            self.deaths += 1
            raise _Died("died")
        return None


class _FakeState:
    def __init__(self):
        self.records = {}

    def show(self, current):
        pass

    def record(self, job, failure):
        assert job.name not in self.records
        self.records[job.name] = failure


def _schedule(names, poison, actors=2, lives=10):
    from msa_toolkit.extraction.ray_backend import _Scheduler
    from msa_toolkit.extraction.jobs import Job

    log: list = []
    handles = [_FakeActor(i, poison, lives, log) for i in range(actors)]
    state = _FakeState()
    jobs = [Job(Path(n), n, n, n, None, 0.0) for n in names]
    _Scheduler(_FakeRay(), handles, "/cache", state).run(jobs)
    return state.records, log


def test_scheduler_retries_elsewhere_then_gives_up():
    from msa_toolkit.extraction.ray_backend import MAX_ATTEMPTS

    records, log = _schedule(["a", "bad", "c", "d"], poison={"bad"})
    assert set(records) == {"a", "bad", "c", "d"}
    assert records["a"] is None and records["c"] is None and records["d"] is None
    assert records["bad"].stage == "worker" and f"died {MAX_ATTEMPTS} times" in records["bad"].message
    tries = [actor for name, actor in log if name == "bad"]
    assert len(tries) == MAX_ATTEMPTS
    assert all(x != y for x, y in zip(tries, tries[1:]))  # each retry on the other actor


def test_scheduler_fails_the_rest_when_every_actor_is_gone():
    records, _ = _schedule(["bad", "x", "y"], poison={"bad"}, actors=1, lives=1)
    assert {n: f.stage for n, f in records.items()} == {"bad": "worker", "x": "worker", "y": "worker"}
    assert "no Ray worker left" in records["y"].message
