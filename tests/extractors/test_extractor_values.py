"""Extractors against their libraries, value for value (issue 39 item 6).

* openSMILE: the extractor's columns, values and frame times equal ``opensmile.Smile.process_signal`` on
  the same signal (NaN -> 0 is the extractor's documented change);
* wav2vec2 (a tiny randomly initialised model saved to a local folder, as tests/extractors/test_audio.py
  does): a whole-clip run equals the transformers model called directly; a chunked run equals the model
  called on each chunk alone, and, at the layer whose frames see only their neighbours, equals the
  whole-clip run on every frame whose receptive field does not cross a chunk boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msa_toolkit.extractors.base import create_extractor

SR = 16000


@pytest.mark.parametrize("feature_set", ["eGeMAPSv02", "ComParE_2016"])
def test_opensmile_equals_process_signal(speech, feature_set):
    import opensmile

    seq = create_extractor("opensmile", feature_set=feature_set).extract(speech, SR)
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    df = smile.process_signal(speech, SR)
    assert list(seq.names) == list(df.columns)
    want = np.nan_to_num(df.to_numpy(dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    np.testing.assert_array_equal(seq.values, want)
    start = df.index.get_level_values("start").total_seconds().to_numpy()
    end = df.index.get_level_values("end").total_seconds().to_numpy()
    np.testing.assert_array_equal(seq.times, ((start + end) / 2).astype(np.float32))  # times are float32


# -- wav2vec2 ----------------------------------------------------------------------------------------
#: the tiny model's pos-conv kernel: frames at layer 0 see their 8 neighbours either side
POS_KERNEL = 16


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = tmp_path_factory.mktemp("tiny_w2v")
    torch.manual_seed(0)
    # "layer" feature-encoder norm (per frame), not "group" (over the whole input): frames stay local
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=POS_KERNEL, num_conv_pos_embedding_groups=2,
                         feat_extract_norm="layer", conv_bias=True)
    Wav2Vec2Model(cfg).eval().save_pretrained(folder)
    model = Wav2Vec2Model.from_pretrained(folder).eval()
    return folder, model


def _direct(model, x: np.ndarray, layer: int, normalize: bool) -> np.ndarray:
    if normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.inference_mode():
        out = model(torch.from_numpy(np.ascontiguousarray(x))[None], output_hidden_states=True)
    return out.hidden_states[layer][0].numpy()


HOP, RF = 320, 400  # the default conv strides (5, 2, 2, 2, 2, 2, 2) and kernels (10, 3, 3, 3, 3, 2, 2)


@pytest.mark.parametrize("layer", [-1, 0])
def test_wav2vec2_whole_clip_equals_the_model(speech, tiny_w2v, layer):
    folder, model = tiny_w2v
    seq = create_extractor("wav2vec2", model=str(folder), layer=layer, chunk_seconds=60.0).extract(speech, SR)
    want = _direct(model, speech, layer, normalize=True)  # no preprocessor config: inputs normalised
    np.testing.assert_allclose(seq.values, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seq.times, (np.arange(len(want)) * HOP + RF / 2) / SR, atol=1e-9)


def test_wav2vec2_chunks_equal_the_model_on_each_chunk(speech, tiny_w2v):
    folder, model = tiny_w2v
    chunk = int(2.0 * SR) // HOP * HOP
    seq = create_extractor("wav2vec2", model=str(folder), chunk_seconds=2.0).extract(speech, SR)
    parts = [_direct(model, speech[c:c + chunk], -1, normalize=True)
             for c in range(0, len(speech), chunk) if len(speech[c:c + chunk]) >= RF]
    np.testing.assert_allclose(seq.values, np.concatenate(parts), rtol=1e-5, atol=1e-5)
    starts = [c for c in range(0, len(speech), chunk) if len(speech[c:c + chunk]) >= RF]
    times = np.concatenate([(c + np.arange(len(p)) * HOP + RF / 2) / SR for c, p in zip(starts, parts)])
    np.testing.assert_allclose(seq.times, times, atol=1e-9)


def test_wav2vec2_chunked_equals_whole_away_from_chunk_boundaries(speech, tiny_w2v):
    """At layer 0 (feature encoder, per-frame norm, then the positional convolution over +-8 frames) a frame
    depends on samples [i*hop - 8*hop, i*hop + rf + 7*hop) only: chunked and whole runs agree on every frame
    whose span lies inside one chunk (unnormalised inputs: the per-chunk normalisation is the other change)."""
    folder, _ = tiny_w2v
    whole = create_extractor("wav2vec2", model=str(folder), layer=0, normalize=False, chunk_seconds=60.0)
    chunked = create_extractor("wav2vec2", model=str(folder), layer=0, normalize=False, chunk_seconds=1.0)
    w, c = whole.extract(speech, SR), chunked.extract(speech, SR)
    chunk = int(1.0 * SR) // HOP * HOP
    half = POS_KERNEL // 2
    inside, at = [], []  # frame index in the whole run, and in the chunked run
    pos = 0
    for lo in range(0, len(speech), chunk):
        hi = min(lo + chunk, len(speech))
        n = (hi - lo - RF) // HOP + 1 if hi - lo >= RF else 0  # frames of this chunk alone
        for j in range(n):
            i = lo // HOP + j  # the chunk's frame j sits on the whole run's grid at lo / hop + j
            if lo <= i * HOP - half * HOP and i * HOP + RF + (half - 1) * HOP <= hi:
                inside.append(i)
                at.append(pos + j)
        pos += n
    assert pos == len(c.values)
    assert len(inside) > 0.4 * len(w.values)
    np.testing.assert_allclose(c.times[at], w.times[inside], atol=1e-6)
    np.testing.assert_allclose(c.values[at], w.values[inside], rtol=1e-4, atol=1e-5)
    # the frames near a boundary do differ (the chunks really are encoded apart), and each chunk of 1 s
    # (50 hops) yields 49 frames: its last hop has no full receptive field
    edge = [p for p in range(len(c.values)) if p not in set(at)]
    assert len(edge) > 0 and len(c.values) == 49 * (len(speech) // chunk) + (len(speech) % chunk - RF) // HOP + 1
