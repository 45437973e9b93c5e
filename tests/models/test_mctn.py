"""MCTN (issue 37): additive attention on hand-made cases, text-only prediction, the translation terms."""

from __future__ import annotations

import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.layers import AdditiveAttention
from msa_toolkit.models import create_model

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7)


def test_additive_attention_hand_made_weights():
    att = AdditiveAttention(2, 2, 2)
    with torch.no_grad():
        att.attn.weight.copy_(torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))  # reads key[0]
        att.v.weight.copy_(torch.tensor([[1.0, 0.0]]))
    keys = torch.tensor([[[0.0, 5.0], [1.0, 5.0], [9.0, 9.0]]])
    scores = torch.tanh(torch.tensor([0.0, 1.0]))
    want = torch.softmax(scores, 0)
    got = att(torch.zeros(1, 2), keys, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(got, torch.cat([want, torch.zeros(1)]).unsqueeze(0))
    assert torch.equal(att(torch.zeros(1, 2), keys, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 3))


def test_prediction_needs_text_only_and_translations_are_weighted_mses():
    torch.manual_seed(0)
    model = create_model("mctn", "tiny", **DIMS, translation_weight=2.0, cycle_weight=0.0).eval()
    b = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=0)
    out = model(b)
    b2 = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=0)
    b2.audio, b2.vision = torch.randn_like(b2.audio), torch.randn_like(b2.vision)
    torch.testing.assert_close(model(b2).prediction, out.prediction)
    v = out.aux["translation_vision"]
    assert v.shape == (3, 7, 16) and float(v[:, 0].detach().abs().max()) == 0.0  # step 0 is not predicted
    target = torch.nn.functional.pad(b.vision, (0, 16 - 7))
    err = (v - target).pow(2).mean(-1)[b.vision_mask].mean()
    loss = model.objective(out, b)
    torch.testing.assert_close(loss.components["translation_vision"], 2.0 * err)
    assert float(loss.components["cycle_text"].detach()) == 0.0
