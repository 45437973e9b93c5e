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
