"""``_threads.one_thread``: one intra-op thread inside, the caller's count restored, also on error."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit._threads import one_thread


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_one_thread_inside_and_restored(two_threads):
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with one_thread(when=False):
        assert torch.get_num_threads() == 2


def test_restored_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError, match="boom"):
        with one_thread():
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_one_thread_for_follows_the_model_but_never_a_compiled_step(two_threads):
    from msa_toolkit._threads import one_thread_for

    class Small:
        def prefers_one_thread(self, batch):
            return batch == "small"

    for model, batch, compiled, want in [(Small(), "small", False, 1), (Small(), "big", False, 2),
                                         (Small(), "small", True, 2), (object(), "small", False, 2)]:
        with one_thread_for(model, batch, compiled=compiled):
            assert torch.get_num_threads() == want, (batch, compiled)
        assert torch.get_num_threads() == 2


def test_nested_and_already_single(two_threads):
    with one_thread():
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_run_split_keeps_order_one_thread_per_part_and_restores_the_count(two_threads):
    import threading

    from msa_toolkit._threads import run_split

    def work(i):
        return i, torch.get_num_threads(), threading.get_ident(), torch.is_inference_mode_enabled()

    with torch.no_grad():
        out = run_split(work, [0, 1, 2])
    assert [o[0] for o in out] == [0, 1, 2] and all(o[1] == 1 for o in out)
    assert out[0][2] == threading.get_ident() and len({o[2] for o in out}) >= 2  # the caller took the first
    assert not any(o[3] for o in out)
    assert torch.get_num_threads() == 2
    with torch.inference_mode():
        assert all(o[3] for o in run_split(work, [0, 1]))  # the caller's inference mode reaches the workers
    assert torch.get_num_threads() == 2


def test_run_split_needs_no_grad_and_reraises_after_every_part(two_threads):
    import time

    from msa_toolkit._threads import run_split

    with pytest.raises(RuntimeError, match="without gradients"):
        run_split(lambda x: x, [1, 2])
    finished = []

    def work(i):
        if i == 0:
            raise ValueError("part 0 failed")
        time.sleep(0.05)
        finished.append(i)
        return i

    with torch.no_grad(), pytest.raises(ValueError, match="part 0 failed"):
        run_split(work, [0, 1])
    assert finished == [1]  # the worker's part had finished before the error reached the caller
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_run_split_works_in_a_forked_child(two_threads):
    """A child forked after the worker pool started gets a pool of its own (the parent's threads do not
    exist in it; the inherited pool would wait for them forever)."""
    import os
    import signal
    import time

    from msa_toolkit._threads import run_split

    with torch.no_grad():
        assert run_split(lambda i: i * 2, [1, 2]) == [2, 4]  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only when run_split finishes with the right values
        ok = False
        try:
            with torch.no_grad():
                ok = run_split(lambda i: i * 3, [1, 2]) == [3, 6]
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("run_split hung in the forked child")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
