"""Failing late loses nothing (issue 14): outputs checked before work, fallback writes, no orphaned workers,
SIGTERM keeps what finished."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.errors import OutputError
from msa_toolkit.extraction import ExtractConfig, LoadedExtractors, extract
from msa_toolkit.extraction import outputs as outputs_mod
from msa_toolkit.extraction import safety
from msa_toolkit.extraction.safety import check_output_dir, check_output_file, write_or_fallback

ROOT = Path(__file__).resolve().parent.parent
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)


@pytest.fixture()
def no_work(monkeypatch):
    """Fail the test if any file is extracted or any model loaded."""
    def boom(*a, **k):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(LoadedExtractors, "run", boom)
    monkeypatch.setattr(LoadedExtractors, "load", boom)
    from msa_toolkit.prediction import Predictor

    monkeypatch.setattr(Predictor, "load", boom)


def _one_line_exit_2(argv, capfd, one_line: bool = True) -> str:
    """Exit status 2 and no traceback; one line unless click's own usage error (a boxed message) answers."""
    assert main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert "Traceback" not in err, err
    if one_line:
        assert len(err.splitlines()) == 1, err
    return err


def test_unwritable_outputs_refused_before_work(assets_dir, tmp_path, capfd, no_work):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    wav = str(assets_dir / "speech.wav")
    cache = ["--cache-dir", str(tmp_path / "c")]
    # click's own path checks answer these two (usage error, exit 2)
    _one_line_exit_2(["extract", wav, "-o", str(a_file), *cache, "-q"], capfd, False)
    assert "under" in _one_line_exit_2(["extract", wav, "-o", str(a_file / "out"), *cache, "-q"], capfd)
    err = _one_line_exit_2(["extract", wav, "-o", str(tmp_path / "o"), "--cache-dir", str(a_file / "c"), "-q"], capfd)
    assert "cache folder" in err
    for flag in ("--json", "--csv"):
        err = _one_line_exit_2(["predict", wav, flag, str(a_file / "p.out"), *cache, "-q"], capfd)
        assert flag in err and "under" in err
        _one_line_exit_2(["predict", wav, flag, str(tmp_path), *cache, "-q"], capfd, False)
    with pytest.raises(OutputError):
        extract(wav, out_dir=a_file / "x", config=CHEAP, cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_unwritable_folders_refused(tmp_path, monkeypatch, error):
    """A folder whose probe write fails is refused before work, with the OS's reason. The write fails by
    construction (the probe's mkstemp raises inside ``ro``), so the check runs as root too, where a read-only
    folder's permission bits stop nothing."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = safety.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir).is_relative_to(ro):
            raise error
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(safety.tempfile, "mkstemp", mkstemp)
    with pytest.raises(OutputError) as e:
        check_output_dir(ro / "out")
    assert str(e.value) == f"output folder {ro / 'out'} is not writable: {error.strerror}"
    with pytest.raises(OutputError) as e:
        check_output_file(ro / "p.json")
    assert str(e.value) == f"the folder of output file {ro} is not writable: {error.strerror}"
    assert check_output_dir(tmp_path / "ok") == tmp_path / "ok"  # elsewhere writes go through


def test_late_write_failure_goes_to_a_fallback_file(assets_dir, tmp_path, monkeypatch):
    written, err = write_or_fallback(tmp_path / "nope" / "x.json", lambda p: p.write_text("{}"))
    assert err is not None and written.is_file() and written.read_text() == "{}"
    written.unlink()
    real = outputs_mod.atomic_write_json

    def failing(path, obj, **kw):
        if Path(path) == tmp_path / "out" / "manifest.json":
            raise PermissionError(13, "Permission denied")
        return real(path, obj, **kw)

    monkeypatch.setattr(outputs_mod, "atomic_write_json", failing)
    res = extract(assets_dir / "speech.wav", out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c",
                  progress=False)
    assert res.manifest_path.parent != tmp_path / "out" and res.manifest_path.is_file()
    assert json.loads(res.manifest_path.read_text())["files"][0]["name"] == "speech"
    assert any(str(res.manifest_path) in w for w in res.warnings)
    res.manifest_path.unlink()


def test_outputs_written_elsewhere_exit_73(assets_dir, tmp_path, monkeypatch, capfd):
    """A finished run whose manifest or --json went to a fallback file (e.g. the disk filled) exits 73,
    not 0: a script must notice (issue 31); the warning names where the output went."""
    import msa_toolkit._io as io_mod

    real_json, real_text = outputs_mod.atomic_write_json, io_mod.atomic_write_text

    def no_manifest(path, obj, **kw):
        if Path(path).name == "manifest.json" and Path(path).parent == tmp_path / "out":
            raise OSError(28, "No space left on device")
        return real_json(path, obj, **kw)

    monkeypatch.setattr(outputs_mod, "atomic_write_json", no_manifest)
    assert main(["extract", str(assets_dir / "speech.wav"), "-o", str(tmp_path / "out"), "--asr", "none",
                 "--text", "none", "--vision", "none", "--cache-dir", str(tmp_path / "c"), "-q"]) == 73
    out = " ".join(capfd.readouterr().out.split())
    assert "No space left on device" in out and "the manifest was written to" in out
    monkeypatch.setattr(outputs_mod, "atomic_write_json", real_json)
    fallback = Path(out.split("the manifest was written to ")[1].split()[0])
    assert json.loads(fallback.read_text())["files"][0]["name"] == "speech"
    fallback.unlink()

    def no_json(path, text):
        if Path(path) == tmp_path / "p.json":
            raise OSError(28, "No space left on device")
        return real_text(path, text)

    monkeypatch.setattr(io_mod, "atomic_write_text", no_json)
    assert main(["predict", str(assets_dir / "corrupt.mp4"), "--json", str(tmp_path / "p.json"),
                 "--cache-dir", str(tmp_path / "c"), "-q"]) == 73
    err = capfd.readouterr().err
    assert "results written to" in err
    Path(err.split("results written to ")[1].split()[0]).unlink()


# ---- worker processes ------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Pool worker processes (multiprocessing spawn children) of ``pid``, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "spawn_main" in cmd:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_pool_run(assets_dir: Path, tmp_path: Path, cli: bool) -> tuple[subprocess.Popen, list[int]]:
    """A 2-worker extraction in a child process, once both workers are up."""
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(12):  # distinct bytes: every file is a cache miss
        (inp / f"clip{i:02d}.wav").write_bytes((assets_dir / "speech.wav").read_bytes() + bytes([i]) * 2)
    extra = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + extra if extra else ""), "OMP_NUM_THREADS": "1"}
    if cli:
        code = ("import sys; from msa_toolkit.cli.main import main; sys.exit(main(sys.argv[1:]))")
        args = ["extract", str(inp), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "-q",
                "--workers", "2", "--asr", "none", "--text", "none", "--vision", "none"]
    else:
        code = ("import sys; from msa_toolkit.extraction import ExtractConfig, extract; "
                "extract(sys.argv[1], out_dir=sys.argv[2], cache_dir=sys.argv[3], workers=2, progress=False, "
                "config=ExtractConfig(asr=None, text=None, vision=None))")
        args = [str(inp), str(tmp_path / "out"), str(tmp_path / "c")]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        if len(workers) >= 2:
            break
        time.sleep(0.05)
    assert len(workers) >= 2, f"workers never started: {proc.communicate(timeout=30)}"
    return proc, workers


def _reap(proc: subprocess.Popen, workers: list[int]) -> list[int]:
    """Wait up to 10 s for ``workers`` to end; kill (by pid) and return any still alive."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        try:
            os.kill(w, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killing_the_parent_leaves_no_worker(assets_dir, tmp_path):
    proc, workers = _start_pool_run(assets_dir, tmp_path, cli=False)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _reap(proc, workers) == []
    finally:
        _cleanup(proc, workers)


def _sigterm_once(proc: subprocess.Popen, ready) -> bytes:
    """SIGTERM ``proc`` once ``ready()`` is true (or after 60 s); its stderr, after checking it exited 130."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ready():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    return err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_stops_the_pool_and_keeps_what_finished(assets_dir, tmp_path):
    proc, workers = _start_pool_run(assets_dir, tmp_path, cli=True)
    try:
        # let some files finish: recorded by the parent (copied to out), not only stored by a worker
        err = _sigterm_once(proc, lambda: list((tmp_path / "out").glob("*.json")))
        assert b"Traceback" not in err and b"interrupted" in err
        assert _reap(proc, workers) == []
        m = json.loads((tmp_path / "out" / "manifest.json").read_text())
        assert m["interrupted"] is True and 1 <= len(m["files"]) <= 12
        for f in m["files"]:
            assert (tmp_path / "out" / f["bundle"]).is_file()
    finally:
        _cleanup(proc, workers)
    shutil.rmtree(tmp_path / "in")


#: makes each pool worker create what Whisper's progress bar creates there: tqdm's multiprocessing lock,
#: a named semaphore registered with the parent's resource tracker
_WORKER_LOCK_HOOK = """
import sys
if "--multiprocessing-fork" in sys.argv:
    import msa_toolkit.extraction.run as run
    real = run._init_worker
    def _init_worker(*args):
        real(*args)
        import tqdm
        tqdm.tqdm.get_lock()
    run._init_worker = _init_worker
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_leaves_no_leaked_semaphore(assets_dir, tmp_path, monkeypatch):
    """SIGTERM of `msa extract --workers 2` once workers made their locks: the run ends with 130 and no
    "resource_tracker: ... leaked semaphore objects" line (the workers unlink theirs as they stop)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_WORKER_LOCK_HOOK)
    monkeypatch.setenv("PYTHONPATH", str(hook))  # _start_pool_run puts the repository first
    proc, workers = _start_pool_run(assets_dir, tmp_path, cli=True)
    try:
        err = _sigterm_once(proc, lambda: list((tmp_path / "c").rglob("*.json")))
        assert b"leaked semaphore" not in err and b"resource_tracker" not in err, err.decode(errors="replace")
        assert _reap(proc, workers) == []
    finally:
        _cleanup(proc, workers)


def _cleanup(proc: subprocess.Popen, workers: list[int]) -> None:
    """Kill (by pid) whatever this test started and is still running."""
    for pid in [proc.pid, *workers]:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait(timeout=10)


def test_a_signal_during_a_copy_waits_until_the_file_is_recorded(tmp_path, monkeypatch):
    """SIGTERM landing between a bundle's copy to out_dir and its record left a copied file out of the
    interrupted run's manifest (seen once in test_sigterm_stops_the_pool_and_keeps_what_finished): the signal
    is now held until the file is recorded, then raised."""
    import os
    import signal
    import time
    from pathlib import Path as P

    import msa_toolkit.extraction.state as state_mod
    from msa_toolkit.cache import FeatureCache
    from msa_toolkit.extraction.jobs import Job
    from msa_toolkit.extraction.safety import sigterm_as_interrupt

    out = tmp_path / "out"
    out.mkdir()

    def copy_then_signal(cache, key, out_dir, name, path, header):
        (out_dir / f"{name}.json").write_text('{"meta": {}}')
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the copy is being recorded
        time.sleep(0.05)
        return out_dir / name

    monkeypatch.setattr(state_mod, "export_bundle", copy_then_signal)
    bar = type("Bar", (), {"update": lambda *a, **k: None, "advance": lambda *a, **k: None})()
    st = state_mod.RunState(FeatureCache(tmp_path / "cache"), out, False, bar, 0, [])
    job = Job(P("clip.wav"), "clip", "k" * 64, "s" * 64, None, time.perf_counter())
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            st.finish(job, cached=False)
    assert [i.name for i in st.items] == ["clip"]  # recorded before the interrupt was raised
