"""Acoustic extractors: openSMILE (eGeMAPS / ComParE), librosa, wav2vec2 / HuBERT on tiny local models."""

from __future__ import annotations

import numpy as np
import pytest

from msa_toolkit.errors import ModelLoadError
from msa_toolkit.extractors.base import create_extractor, list_extractors

SR = 16000


def test_registered():
    assert {"opensmile", "librosa", "wav2vec2"} <= set(list_extractors("audio"))


def _check(seq, ex, duration):
    spec = ex.spec
    assert seq.values.shape == (seq.length, spec.dim) and seq.values.dtype == np.float32
    assert np.isfinite(seq.values).all() and seq.mask.all()
    assert np.all(np.diff(seq.times) > 0) and seq.times[0] >= 0 and seq.times[-1] <= duration + 0.05
    if spec.feature_names:
        assert tuple(seq.names) == spec.feature_names
    # frame count matches the frame rate over the clip (within a few frames)
    assert abs(seq.length - duration * spec.frame_rate) <= 5


@pytest.mark.parametrize("feature_set,dim", [("eGeMAPSv02", 25), ("ComParE_2016", 65)])
def test_opensmile(speech, feature_set, dim):
    ex = create_extractor("opensmile", feature_set=feature_set)
    seq = ex.extract(speech, SR)
    assert ex.dim == dim and ex.frame_rate == 100.0
    _check(seq, ex, len(speech) / SR)
    if feature_set == "eGeMAPSv02":
        f0 = seq.values[:, seq.names.index("F0semitoneFrom27.5Hz_sma3nz")]
        assert (f0 > 0).mean() > 0.3  # voiced speech has pitch


def test_opensmile_bad_set_and_short_input():
    with pytest.raises(ValueError, match="feature_set"):
        create_extractor("opensmile", feature_set="emobase")
    seq = create_extractor("opensmile").extract(np.zeros(100, np.float32), SR)
    assert seq.length == 0 and seq.dim == 25


@pytest.mark.parametrize("pitch", ["yin", "pyin"])
def test_librosa(speech, pitch):
    ex = create_extractor("librosa", pitch=pitch)
    seq = ex.extract(speech, SR)
    assert ex.dim == 16 and seq.names[-3:] == ["f0_hz", "rms", "zcr"]
    _check(seq, ex, len(speech) / SR)
    f0 = seq.values[:, seq.names.index("f0_hz")]
    rms = seq.values[:, seq.names.index("rms")]
    loud = rms > np.percentile(rms, 70)
    # voiced speech: typical espeak pitch range on the loud frames
    assert 70 < np.median(f0[loud]) < 300


def _save_tiny(kind, folder):
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
              num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    cfg_cls, model_cls = (Wav2Vec2Config, Wav2Vec2Model) if kind == "wav2vec2" else (HubertConfig, HubertModel)
    model_cls(cfg_cls(**kw)).save_pretrained(folder)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_wav2vec2_family_from_local_folder(tmp_path, speech, kind):
    _save_tiny(kind, tmp_path)
    ex = create_extractor("wav2vec2", model=str(tmp_path))
    seq = ex.extract(speech, SR)
    assert ex.dim == 32 and ex.frame_rate == 50.0
    _check(seq, ex, len(speech) / SR)
    # chunked encoding keeps the frame grid: same times, one row per 20 ms
    chunked = create_extractor("wav2vec2", model=str(tmp_path), chunk_seconds=2.0).extract(speech, SR)
    assert abs(chunked.length - seq.length) <= 3
    np.testing.assert_allclose(np.diff(chunked.times[:50]), 0.02, atol=1e-6)
    # a different layer gives different features
    first = create_extractor("wav2vec2", model=str(tmp_path), layer=0).extract(speech, SR)
    assert not np.allclose(first.values, seq.values)


def test_wav2vec2_needs_model(tmp_path):
    with pytest.raises(ValueError, match="local folder"):
        create_extractor("wav2vec2")
    (tmp_path / "x").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        create_extractor("wav2vec2", model=str(tmp_path / "x"))
    with pytest.raises(ModelLoadError, match="offline"):
        _ = create_extractor("wav2vec2", model="no-such-org/no-such-w2v").dim


def test_opensmile_chunked_matches_whole(speech):
    x = np.tile(speech, 3)  # ~18.6 s
    whole = create_extractor("opensmile", chunk_seconds=0).extract(x, SR)
    chunked = create_extractor("opensmile", chunk_seconds=4).extract(x, SR)
    assert chunked.length == whole.length
    np.testing.assert_allclose(chunked.times, whole.times, atol=1e-6)
    # chunks see 1 s of context either side: the LLDs come out the same
    np.testing.assert_allclose(chunked.values, whole.values, atol=1e-3)
