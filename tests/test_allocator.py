"""glibc malloc settings for model work (msa_toolkit/allocator.py): applied by `msa train`, `msa evaluate` and
`msa benchmark`, never against the user's own settings, and they really serve large tensors from the heap and keep
freed memory there (glibc's accounting; the page faults saved are measured by benchmarks/page_faults.py)."""

import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from msa_toolkit import allocator
from msa_toolkit.cli.main import app


class FakeLibc:
    """Records mallopt calls; reports success."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.mark.parametrize("env, reason", [
    ({}, None),
    ({"MSA_MALLOC": "default"}, "MSA_MALLOC=default"),
    ({"MSA_MALLOC": "tuned"}, None),
    ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX"),
    ({"MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_TOP_PAD_": "0"}, "MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "GLIBC_TUNABLES"),
    ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, None),
])
def test_the_users_own_settings_win(monkeypatch, env, reason):
    fake = FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    got = allocator.user_choice(env)
    assert (got is None) == (reason is None) and (reason is None or reason in got)
    assert allocator.keep_freed_memory(env) is (reason is None)
    if reason is None:
        assert sorted(fake.calls) == sorted([(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
                                             (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD),
                                             (allocator.M_TOP_PAD, allocator.TOP_PAD)])
    else:
        assert fake.calls == []


def test_benchmark_choice_records_what_the_process_runs_with(monkeypatch):
    """``benchmarks/malloc_choice.py``: a benchmark's ``--malloc`` option (the switch lives with the benchmarks)."""
    from benchmarks.malloc_choice import apply_choice

    fake = FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    monkeypatch.delenv("MSA_MALLOC", raising=False)
    assert apply_choice("default") == "default" and fake.calls == []
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert apply_choice("tuned") == "default (not applied: the user's MALLOC_ARENA_MAX)"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert apply_choice("tuned") == "tuned" and len(fake.calls) == 3
    assert not hasattr(allocator, "apply_choice")


def test_nothing_changes_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory({}) is False


def test_values_fit_mallopts_int_argument():
    for v in (allocator.MMAP_THRESHOLD, allocator.TRIM_THRESHOLD, allocator.TOP_PAD):
        assert 0 < v <= 2 ** 31 - 1


HEAP_STATE = textwrap.dedent("""
    import ctypes, json, sys
    import torch
    from msa_toolkit.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):  # glibc >= 2.33
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
    info = lambda: {k: getattr(libc.mallinfo2(), k) for k in ("arena", "hblkhd", "fordblks")}
    before = info()
    x = torch.empty(int(sys.argv[2]) // 4).fill_(1.0)  # above glibc's 32 MiB mmap ceiling
    during = info()
    del x
    print(json.dumps({"applied": applied, "before": before, "during": during, "after": info()}))
""")

#: the tensor HEAP_STATE allocates: 64 MiB, above glibc's adaptive mmap threshold (at most 32 MiB)
BLOCK = 64 << 20


def _heap_state(mode: str) -> dict:
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in allocator.USER_MALLOC_VARS and k not in ("MSA_MALLOC", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", HEAP_STATE, mode, str(BLOCK)], capture_output=True, text=True,
                         env=env, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_tensors_come_from_the_heap_and_freed_memory_is_kept():
    """glibc's own accounting (mallinfo2), not a page-fault count: with glibc's defaults a 64 MiB tensor is a
    fresh mmap (hblkhd grows by it, and shrinks back when it is freed); with the settings it is carved from the
    heap (arena grows, hblkhd does not) and, freed, stays in the heap as free space (fordblks) for the next
    step. The page faults and times this saves are measured by benchmarks/page_faults.py."""
    libc = allocator._glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc >= 2.33 (mallinfo2)")
    t = _heap_state("tuned")
    assert t["applied"] is True
    b, d, a = t["before"], t["during"], t["after"]
    assert d["hblkhd"] == b["hblkhd"], t  # not an mmap of its own: from the heap
    assert a["arena"] == d["arena"] and a["fordblks"] - d["fordblks"] >= BLOCK, t  # kept, not trimmed
    default = _heap_state("default")
    b, d, a = default["before"], default["during"], default["after"]
    assert default["applied"] is False
    assert d["hblkhd"] - b["hblkhd"] >= BLOCK and a["hblkhd"] == b["hblkhd"], default  # mmap, then munmap


@pytest.mark.parametrize("command", ["train", "evaluate", "benchmark", "extract", "predict"])
def test_model_commands_apply_it(tmp_path, monkeypatch, command):
    """Every command that runs models keeps freed memory for reuse before its work starts (extract and
    predict did not before they were measured to gain from it)."""
    import msa_toolkit.extraction as extraction
    import msa_toolkit.prediction as prediction
    import msa_toolkit.training.api as api
    import msa_toolkit.training.benchmark as bench

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda *a, **k: calls.append(command) or True)

    def stop(*args, **kwargs):
        assert calls == [command], "the allocator must be set before the command's work starts"
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", stop)
    monkeypatch.setattr(api, "evaluate", stop)
    monkeypatch.setattr(bench, "run_benchmark", stop)
    monkeypatch.setattr(extraction, "extract", stop)
    monkeypatch.setattr(prediction.Predictor, "load", stop)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ck.safetensors").write_bytes(b"")
    (tmp_path / "clip.mp4").write_bytes(b"")
    data = ["--data", str(tmp_path / "ds")]
    args = {"train": ["train", "--model", "text_only", "-o", str(tmp_path / "out"), *data],
            "evaluate": ["evaluate", str(tmp_path / "ck.safetensors"), *data],
            "benchmark": ["benchmark", "--models", "text_only", "-o", str(tmp_path / "out"), *data],
            "extract": ["extract", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out")],
            "predict": ["predict", str(tmp_path / "clip.mp4")]}[command]
    CliRunner().invoke(app, args)
    assert calls == [command]


def test_applying_it_is_recorded_for_spawned_workers(monkeypatch):
    """keep_freed_memory() marks the environment (MSA_MALLOC=tuned); a worker applies it only then."""
    fake = FakeLibc()
    monkeypatch.setattr(allocator, "_glibc", lambda: fake)
    monkeypatch.delenv("MSA_MALLOC", raising=False)
    assert allocator.follow_parent() is False and fake.calls == []  # the parent did not apply it
    assert allocator.keep_freed_memory() is True
    assert __import__("os").environ["MSA_MALLOC"] == "tuned" and len(fake.calls) == 3
    assert allocator.follow_parent() is True and len(fake.calls) == 6
    monkeypatch.setenv("MSA_MALLOC", "default")
    assert allocator.follow_parent() is False and len(fake.calls) == 6


def test_extraction_workers_follow_the_parent(monkeypatch):
    import msa_toolkit.extraction.jobs as jobs
    import msa_toolkit.extraction.run as run

    followed = []
    monkeypatch.setattr(jobs, "follow_parent", lambda: followed.append(True) or True)
    monkeypatch.setattr(run, "watch_parent", lambda pid: None)
    monkeypatch.setattr(run.signal, "signal", lambda *a: None)
    monkeypatch.setattr(run, "LoadedExtractors", lambda config: "loaded")
    for k in ("MSA_MALLOC", "MSA_WORKER_THREADS"):
        monkeypatch.setenv(k, __import__("os").environ.get(k, ""))  # restored after the test
    import torch

    threads = torch.get_num_threads()
    try:
        run._init_worker(None, {"MSA_MALLOC": "tuned", "MSA_WORKER_THREADS": str(threads)}, 0)
    finally:
        torch.set_num_threads(threads)
    assert followed == [True] and run._WORKER == "loaded"
    monkeypatch.setattr(run, "_WORKER", None)


def test_ray_actors_follow_the_driver(monkeypatch):
    import torch

    import msa_toolkit.extraction.jobs as jobs
    import msa_toolkit.extraction.ray_backend as rb

    followed = []

    class Loaded:
        def __init__(self, config):
            pass

        def load(self):
            pass

    monkeypatch.setattr(jobs, "follow_parent", lambda: followed.append(True) or True)
    monkeypatch.setattr(rb, "LoadedExtractors", Loaded)
    for k in ("MSA_MALLOC", rb.WORKER_THREADS_ENV):
        monkeypatch.setenv(k, __import__("os").environ.get(k, ""))  # restored after the test
    threads = torch.get_num_threads()
    try:
        actor = rb.ExtractorActor(None, {"MSA_MALLOC": "tuned", rb.WORKER_THREADS_ENV: str(threads)})
    finally:
        torch.set_num_threads(threads)
    assert followed == [True] and actor.error is None
