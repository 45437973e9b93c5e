"""``Batch.split``: consecutive groups of samples, views of the batch, every field cut alike."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import synthetic_batch


@pytest.mark.parametrize("size,parts,sizes", [(5, 2, [3, 2]), (4, 4, [1, 1, 1, 1]), (3, 1, [3]), (2, 3, [1, 1, 0])])
def test_split_cuts_every_field_into_consecutive_groups(size, parts, sizes):
    b = synthetic_batch(size, with_tokens=True)
    out = b.split(parts)
    assert [p.size for p in out] == sizes
    assert sum((p.ids for p in out), []) == b.ids
    for name in ("text", "text_mask", "audio", "audio_mask", "vision", "vision_mask", "label", "text_tokens"):
        torch.testing.assert_close(torch.cat([getattr(p, name) for p in out]), getattr(b, name))
    assert out[0].audio.data_ptr() == b.audio.data_ptr()  # a view, not a copy


def test_split_keeps_absent_tokens_and_rejects_zero_parts():
    b = synthetic_batch(3)
    assert all(p.text_tokens is None for p in b.split(2))
    with pytest.raises(ValueError, match="parts"):
        b.split(0)
