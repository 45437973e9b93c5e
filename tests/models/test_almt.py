"""ALMT specifics: published parameter count, presets, language-guided hyper-modality.

Padding invariance is checked for every model in test_registry.py.
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model
from msa_toolkit.models.almt import ALMTConfig

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7, text_len=6, audio_len=9, vision_len=7)


def tiny(**kw):
    torch.manual_seed(0)
    return create_model("almt", preset="tiny", **{**DIMS, **kw}).eval()


def test_mosi_preset_matches_reference_parameter_count():
    model = create_model("almt", preset="mosi")
    assert model.num_parameters() == 2_603_649
    c = model.config
    assert (c.text_len, c.audio_len, c.vision_len, c.text_dim, c.audio_dim, c.vision_dim) == (50, 375, 500, 768, 5, 20)
    assert (c.optimizer, c.lr, c.weight_decay, c.batch_size, c.scheduler, c.warmup_ratio) == \
        ("adamw", 1e-4, 1e-4, 64, "cosine", 0.1)
    assert create_model("almt", preset="mosei").config.fusion_depth == 4
    assert ALMTConfig().token_len == 8 and ALMTConfig().dim == 128 and ALMTConfig().ahl_depth == 3


def test_three_language_scales_feed_three_ahl_layers():
    model = tiny()
    h = torch.randn(2, 2, 16)
    assert len(model.language_encoder(h)) == model.config.ahl_depth == len(model.ahl)


def test_audio_and_vision_reach_the_prediction_and_too_long_input_is_clear():
    model = tiny()
    b = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=5)
    ref = model(b).prediction
    for m in ("audio", "vision"):
        b2 = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=5)
        setattr(b2, m, getattr(b2, m) * 3.0)
        assert not torch.allclose(model(b2).prediction, ref)
    long = synthetic_batch(2, (6, 20, 7), (16, 5, 7))
    # audio is 20 steps (22 with ALMT's two extra tokens) against audio_len 9 (a table of 11)
    with pytest.raises(ValueError) as e:
        model(long)
    assert str(e.value) == ("sequence of length 22 exceeds the positional table (11); "
                            "raise the model's *_len config field")
