"""Overlapped stages (extraction/lanes.py): same bundle as one after the other, failures in pipeline
order, a failed file stops its other lane, and the per-process thread budget."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from msa_toolkit.errors import ExtractionError
from msa_toolkit.extraction import ExtractConfig
from msa_toolkit.extraction.lanes import (PARALLEL_ENV, WORKER_THREADS_ENV, Cancelled, ThreadPlan, available_cores,
                                          library_threads, parallel_from_env, run_lanes, until_cancelled)
from msa_toolkit.extraction.runner import LoadedExtractors, apply_thread_plan


def _assert_same_bundle(a, b) -> None:
    assert a.spec == b.spec
    assert set(a.sequences) == set(b.sequences)
    for m in a.sequences:
        sa, sb = a.sequences[m], b.sequences[m]
        np.testing.assert_array_equal(sa.values, sb.values, err_msg=m)
        np.testing.assert_array_equal(sa.times, sb.times, err_msg=m)
        np.testing.assert_array_equal(sa.mask, sb.mask, err_msg=m)
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=k)
    assert a.transcript == b.transcript
    strip = lambda meta: {k: v for k, v in meta.items() if k != "timings"}  # noqa: E731
    assert strip(a.meta) == strip(b.meta)


@pytest.mark.parametrize("clip", ["speech_positive.mp4", "noface.mp4", "speech.wav"])
def test_overlapped_run_gives_the_sequential_bundle(assets_dir, clip, monkeypatch):
    monkeypatch.setenv(WORKER_THREADS_ENV, "2")  # two lanes even on a one-CPU test machine
    runner = LoadedExtractors(ExtractConfig())
    assert runner.parallel_stages and runner.threads == ThreadPlan(2, 1, 1)
    runner.parallel_stages = False
    seq = runner.run(assets_dir / clip)
    runner.parallel_stages = True
    par = runner.run(assets_dir / clip)
    _assert_same_bundle(seq, par)
    assert set(par.meta["timings"]) >= {"decode", "total"} | set(par.sequences)


def test_overlapped_run_with_word_alignment(assets_dir, monkeypatch):
    monkeypatch.setenv(WORKER_THREADS_ENV, "2")
    runner = LoadedExtractors(ExtractConfig(align="words"))
    runner.parallel_stages = False
    seq = runner.run(assets_dir / "speech_positive.mp4")
    runner.parallel_stages = True
    _assert_same_bundle(seq, runner.run(assets_dir / "speech_positive.mp4"))


# -- run_lanes on fake steps ------------------------------------------------------------------
def _fail(stage: str, delay: float = 0.0):
    def fn():
        time.sleep(delay)
        raise ExtractionError("f.mp4", stage, f"{stage} broke")
    return stage, fn


def _ok(stage: str, log: list[str], delay: float = 0.0):
    def fn():
        time.sleep(delay)
        log.append(stage)
    return stage, fn


@pytest.mark.parametrize("parallel", [False, True])
def test_the_earliest_failing_stage_is_reported(parallel):
    log: list[str] = []
    # vision fails at once, asr later: a sequential run would have failed at asr first
    with pytest.raises(ExtractionError) as e:
        run_lanes([_fail("asr", 0.05), _ok("text", log)], [_fail("vision")], [_ok("audio", log)], parallel,
                  threading.Event())
    assert e.value.stage == "asr" and "text" not in log


@pytest.mark.parametrize("parallel", [False, True])
def test_a_later_failure_still_lets_earlier_stages_finish(parallel):
    log: list[str] = []
    with pytest.raises(ExtractionError) as e:
        run_lanes([_ok("asr", log, 0.05), _ok("text", log)], [_fail("vision")], [_ok("audio", log)], parallel,
                  threading.Event())
    assert e.value.stage == "vision" and log[:2] == ["asr", "text"] and "audio" in log


def test_the_shared_step_runs_once_on_the_free_lane():
    log: list[str] = []
    seen: list[str] = []

    def audio():
        seen.append(threading.current_thread().name)
        log.append("audio")

    run_lanes([_ok("asr", log, 0.2)], [_ok("vision", log)], [("audio", audio)], True, threading.Event())
    assert log.count("audio") == 1 and seen == ["msa-other-lane"]  # vision was done long before asr


def test_a_speech_failure_cancels_the_other_lane_at_its_next_frame():
    cancel = threading.Event()
    reached = threading.Event()
    frames_seen: list[int] = []

    def vision():
        for i in until_cancelled(range(1000), cancel):
            frames_seen.append(i)
            if i == 3:  # hold frame 3 until the speech lane has failed and the lanes are cancelled
                reached.set()
                assert cancel.wait(30)

    def asr():
        assert reached.wait(30)
        raise ExtractionError("f.mp4", "asr", "asr broke")

    with pytest.raises(ExtractionError) as e:
        run_lanes([("asr", asr)], [("vision", vision)], [], True, cancel)
    assert e.value.stage == "asr" and cancel.is_set()
    assert frames_seen == [0, 1, 2, 3]  # the next frame after the cancellation is never handed out


def test_until_cancelled_raises_a_base_exception():
    ev = threading.Event()
    it = until_cancelled(iter([1, 2]), ev)
    assert next(it) == 1
    ev.set()
    with pytest.raises(Cancelled):
        next(it)
    assert not issubclass(Cancelled, Exception)  # stage wrappers (run_stage) do not turn it into a failure


# -- the thread budget ----------------------------------------------------------------------
def test_thread_plan_splits_the_cores():
    assert ThreadPlan.for_cores(1) == ThreadPlan(1, 1, 1)
    assert ThreadPlan.for_cores(2) == ThreadPlan(2, 1, 1)
    assert ThreadPlan.for_cores(3) == ThreadPlan(3, 2, 1)
    assert ThreadPlan.for_cores(16) == ThreadPlan(16, 8, 8)


def test_worker_threads_env_sets_the_budget_and_the_switch(monkeypatch):
    monkeypatch.setenv(WORKER_THREADS_ENV, "3")
    assert available_cores() == 3
    monkeypatch.setenv(WORKER_THREADS_ENV, "junk")
    assert available_cores() >= 1
    monkeypatch.setenv(PARALLEL_ENV, "0")
    assert not parallel_from_env()
    assert not LoadedExtractors(ExtractConfig(asr=None, text=None, vision=None)).parallel_stages
    monkeypatch.delenv(PARALLEL_ENV)
    assert parallel_from_env()


def test_whisper_gets_the_speech_lane_threads_unless_set(monkeypatch):
    monkeypatch.setenv(WORKER_THREADS_ENV, "4")
    runner = LoadedExtractors(ExtractConfig(audio=None))  # vision may run beside it: half the budget
    assert runner.extractors["asr"].params["cpu_threads"] == 2
    runner = LoadedExtractors(ExtractConfig(vision=None))  # so may audio
    assert runner.extractors["asr"].params["cpu_threads"] == 2
    runner = LoadedExtractors(ExtractConfig(audio=None, vision=None))  # nothing beside it: the whole budget
    assert runner.extractors["asr"].params["cpu_threads"] == 4
    runner = LoadedExtractors(ExtractConfig(asr_params={"cpu_threads": 3}, text=None, audio=None, vision=None))
    assert runner.extractors["asr"].params["cpu_threads"] == 3
    apply_thread_plan({}, ThreadPlan.for_cores(2))  # no asr stage: nothing to do
    # cpu_threads is a runtime parameter: the cache key does not change with the thread budget
    monkeypatch.setenv(WORKER_THREADS_ENV, "1")
    one = LoadedExtractors(ExtractConfig()).spec.fingerprint()
    monkeypatch.setenv(WORKER_THREADS_ENV, "8")
    assert LoadedExtractors(ExtractConfig()).spec.fingerprint() == one


def test_library_threads_caps_torch_and_opencv_and_restores():
    torch = pytest.importorskip("torch")
    cv2 = pytest.importorskip("cv2")
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    try:
        with library_threads(ThreadPlan(2, 1, 1)):
            assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 2
    finally:
        torch.set_num_threads(1)


def test_each_worker_gets_its_share_of_the_cores(monkeypatch):
    from msa_toolkit.extraction.jobs import worker_env as _worker_env

    monkeypatch.delenv(WORKER_THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("msa_toolkit.extraction.jobs.available_cores", lambda: 16)
    env = _worker_env(4)
    assert env[WORKER_THREADS_ENV] == "4" and env["OMP_NUM_THREADS"] == "4"
    assert _worker_env(32)[WORKER_THREADS_ENV] == "1"
    monkeypatch.setenv(WORKER_THREADS_ENV, "3")  # the user's budget wins
    assert _worker_env(4)[WORKER_THREADS_ENV] == "3"
