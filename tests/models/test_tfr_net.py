"""TFR-Net: missing-feature simulation in training (seeded, valid steps only, off in eval) and its
reconstruction objective on the dropped steps."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model
from msa_toolkit.models._tfr_parts import central_moment_discrepancy, drop_steps, reconstruction_loss

LENGTHS, FEAT_DIMS = (6, 9, 7), (16, 5, 7)
DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7, text_len=6, audio_len=9, vision_len=7)


def _model(**kw):
    torch.manual_seed(0)
    return create_model("tfr_net", "tiny", **DIMS, **kw)


def test_training_drops_valid_steps_only_and_reconstructs_them_deterministically():
    model, b = _model(), synthetic_batch(6, LENGTHS, FEAT_DIMS, seed=1)
    model.train()
    torch.manual_seed(5)
    out = model(b)
    torch.manual_seed(5)
    again = model(b)
    for m in ("text", "audio", "vision"):
        dropped = out.aux[f"dropped_{m}"]
        assert dropped.any() and not (dropped & ~b.features(m)[1]).any()  # only valid steps are dropped
        assert torch.equal(dropped, again.aux[f"dropped_{m}"])            # the same draw under the same seed
        assert torch.equal(out.aux[f"target_{m}"], b.features(m)[0])      # the target is the un-dropped input
    torch.manual_seed(6)
    assert not torch.equal(model(b).aux["dropped_audio"], out.aux["dropped_audio"])
    loss = model.objective(out, b)
    assert set(loss.components) == {"prediction_l1", "reconstruction_text", "reconstruction_audio",
                                    "reconstruction_vision"}
    assert all(loss.components[f"reconstruction_{m}"] > 0 for m in ("text", "audio", "vision"))


def test_evaluation_sees_the_batch_as_given():
    model, b = _model(), synthetic_batch(4, LENGTHS, FEAT_DIMS, seed=2)
    model.eval()
    out = model(b)
    assert not any(k.startswith("dropped_") for k in out.aux)
    loss = model.objective(out, b)
    assert float(loss.components["reconstruction_audio"]) == 0.0
    other = _model(missing_rate_text=0.9, missing_rate_audio=0.9, missing_rate_vision=0.9).eval()
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(b).prediction, out.prediction)  # the rate only acts in training
    none = _model(missing_rate_text=0.0, missing_rate_audio=0.0, missing_rate_vision=0.0).train()
    assert not any(k.startswith("dropped_") for k in none(b).aux)


def test_a_missing_rate_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="missing_rate_audio is a probability"):
        _model(missing_rate_audio=1.5)


def test_drop_rate_and_reconstruction_mask():
    torch.manual_seed(0)
    mask = torch.ones(200, 50, dtype=torch.bool)
    mask[:, 40:] = False
    d = drop_steps(mask, 0.2)
    assert not d[:, 40:].any() and d[:, :40].float().mean().item() == pytest.approx(0.2, abs=0.02)
    pred, target = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    dropped = torch.zeros(3, 5, dtype=torch.bool)
    dropped[0, 1] = dropped[2, 3] = True
    base = reconstruction_loss(pred, target, dropped, 5.0)
    pred2 = pred.clone()
    pred2[~dropped] = 100.0  # steps that were not dropped do not count
    assert reconstruction_loss(pred2, target, dropped, 5.0) == pytest.approx(float(base))
    # smooth-L1 summed over the dropped elements / their count (+1e-4), plus 5 * CMD / the same
    m = dropped.unsqueeze(-1).expand_as(pred).float()
    want = (torch.nn.functional.smooth_l1_loss(pred * m, target * m, reduction="sum")
            + 5 * central_moment_discrepancy(pred * m, target * m)) / (m.sum() + 1e-4)
    assert float(base) == pytest.approx(float(want), rel=1e-6)


def test_a_fine_tuned_text_encoder_reads_unk_for_dropped_tokens(tiny_bert, monkeypatch):
    model = create_model("tfr_net", "tiny", text_encoder=tiny_bert, text_dim=999, audio_dim=5, vision_dim=7,
                         text_unk_id=1, missing_rate_text=0.5).train()
    b = synthetic_batch(3, LENGTHS, FEAT_DIMS, with_tokens=True)
    seen = []
    real = model.text_encoder.forward
    monkeypatch.setattr(model.text_encoder, "forward", lambda tokens, mask=None: seen.append(tokens) or real(tokens,
                                                                                                           mask))
    torch.manual_seed(1)
    out = model(b)
    with pytest.raises(ValueError, match="text_unk_id 100 is not a token id"):
        create_model("tfr_net", "tiny", text_encoder=tiny_bert, text_dim=999, audio_dim=5, vision_dim=7)
    full, dropped_tokens = seen  # the un-dropped target, then the input with [UNK] in the dropped places
    assert torch.equal(full, b.text_tokens)
    d = out.aux["dropped_text"]
    assert d.any() and torch.equal(dropped_tokens, b.text_tokens.masked_fill(d, 1))
