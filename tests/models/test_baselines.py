"""Baselines: TFN's tensor fusion, late fusion modes, MulT's six crossmodal directions.

Padding invariance is checked for every model in test_registry.py.
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7, text_len=6, audio_len=9, vision_len=7)


def build(name, **kw):
    torch.manual_seed(0)
    return create_model(name, preset="tiny", **{**DIMS, **kw}).eval()


def test_tfn_fuses_the_outer_product_of_padded_vectors():
    model = build("tfn")
    c = model.config
    fused_in = model.post[1].in_features
    assert fused_in == (c.text_out + 1) * (c.audio_hidden + 1) * (c.vision_hidden + 1)
    out = model(synthetic_batch(2, (6, 9, 7), (16, 5, 7)))
    assert out.aux["z_audio"].shape == (2, c.audio_hidden)


def test_late_fusion_mean_uses_present_modalities_only():
    model = build("late_fusion", fusion="mean")
    b = synthetic_batch(3, (6, 9, 7), (16, 5, 7))
    full = model(b).prediction
    text_only = model(b.drop("audio", "vision")).prediction
    reps = model(b).aux["h_text"]
    assert torch.allclose(text_only, model.heads["text"](reps).squeeze(-1), atol=1e-6)
    assert not torch.allclose(full, text_only)
    with pytest.raises(ValueError):
        build("late_fusion", fusion="max")


def test_mult_has_six_crossmodal_directions():
    model = build("mult")
    assert sorted(model.cross) == sorted(f"{s}_to_{t}" for s in ("text", "audio", "vision")
                                         for t in ("text", "audio", "vision") if s != t)


def test_tfn_state_dict_keys_unchanged_by_the_shared_fusion_layers():
    """TFN's subnetwork and fusion moved to layers/fusion.py (shared with MTFN): its checkpoints still load, the
    parameter names being those of the checkpoints written before the move (listed here from that commit)."""
    from msa_toolkit.models import create_model

    keys = sorted(create_model("tfn", "tiny", text_dim=16, audio_dim=5, vision_dim=7).state_dict())
    sub = [f"{m}.net.{i}.{p}" for m in ("audio_net", "vision_net") for i in (0, 2, 4, 6) for p in ("bias", "weight")]
    assert keys == sorted([*sub, "lstm.bias_hh_l0", "lstm.bias_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l0",
                           *[f"post.{i}.{p}" for i in (1, 3, 5) for p in ("bias", "weight")],
                           "text_out.1.bias", "text_out.1.weight"])
