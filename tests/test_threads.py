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
