"""Word-level alignment of frame sequences and token pooling."""

from __future__ import annotations

import numpy as np
import pytest

from msa_toolkit.align import align_frames, pool_tokens
from msa_toolkit.features import FeatureSequence, Word


def _frames(n=100, rate=100.0, mask=None):
    t = np.arange(n) / rate
    values = np.stack([t, 2 * t], axis=1)
    return FeatureSequence(values, t, np.ones(n, bool) if mask is None else mask, ["a", "b"])


def test_average_inside_each_word_span():
    seq = _frames()
    words = [Word("hi", 0.10, 0.20), Word("there", 0.50, 0.90)]
    out = align_frames(seq, words, 100.0)
    assert out.values.shape == (2, 2) and out.mask.all() and out.names == ["a", "b"]
    # frames 0.10 .. 0.19 -> mean 0.145
    np.testing.assert_allclose(out.values[0], [0.145, 0.29], atol=1e-6)
    np.testing.assert_allclose(out.values[1], [0.695, 1.39], atol=1e-6)
    np.testing.assert_allclose(out.times, [0.10, 0.50])


def test_masked_frames_are_excluded():
    mask = np.ones(100, bool)
    mask[10:15] = False
    out = align_frames(_frames(mask=mask), [Word("w", 0.10, 0.20)], 100.0)
    np.testing.assert_allclose(out.values[0, 0], np.mean(np.arange(15, 20) / 100), atol=1e-6)
    # a word whose frames are all masked, far from any valid frame, is zero and masked
    mask2 = np.zeros(100, bool)
    mask2[:5] = True
    out2 = align_frames(_frames(mask=mask2), [Word("w", 0.6, 0.8)], 100.0)
    assert not out2.mask[0] and (out2.values[0] == 0).all()


def test_short_word_takes_nearest_frame_within_one_period():
    seq = _frames(n=10, rate=10.0)  # frames at 0.0, 0.1, ...
    out = align_frames(seq, [Word("a", 0.31, 0.33), Word("b", 5.0, 5.01)], 10.0)
    assert out.mask.tolist() == [True, False]
    np.testing.assert_allclose(out.values[0, 0], 0.3, atol=1e-6)


def test_unknown_word_times_are_an_error():
    with pytest.raises(ValueError, match="timings"):
        align_frames(_frames(), [Word("x", float("nan"), float("nan"))])


def test_empty_inputs():
    assert align_frames(_frames(), []).length == 0
    empty = FeatureSequence.empty(2)
    out = align_frames(empty, [Word("x", 0.0, 0.5)])
    assert out.length == 1 and not out.mask[0]


def test_pool_tokens_mean_per_word():
    vals = np.arange(12, dtype=np.float32).reshape(6, 2)  # CLS w0 w0 w1 w2(truncated away) SEP
    seq = FeatureSequence(vals, np.zeros(6), np.ones(6, bool))
    word_index = np.array([-1, 0, 0, 1, -1, -1])
    words = [Word("a", 0.0, 0.1), Word("b", 0.2, 0.3), Word("c", 0.4, 0.5)]
    out = pool_tokens(seq, word_index, words)
    assert out.values.shape == (3, 2)
    np.testing.assert_allclose(out.values[0], vals[1:3].mean(0))
    np.testing.assert_allclose(out.values[1], vals[3])
    assert out.mask.tolist() == [True, True, False]
    np.testing.assert_allclose(out.times, [0.0, 0.2, 0.4])
