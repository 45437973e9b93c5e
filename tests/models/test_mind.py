"""MInD specifics: shapes, named components, reversed gradients, GRL schedule, absent modalities, fit.

Generic checks (gradients reach every parameter, edge inputs, padding invariance) run for every model
in test_registry.py; the loss helpers MInD uses are tested in test_losses.py.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.models import create_model, list_models
from msa_toolkit.models.mind import MInD

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7)
COMPONENTS = {"prediction", "info", "consistency", "difference", "reconstruction", "cyclic", "noise_prediction"}


def tiny(**kw) -> MInD:
    torch.manual_seed(0)
    return create_model("mind", preset="tiny", **{**DIMS, **kw})


def batch(b=5, lengths=(6, 9, 7), seed=0) -> Batch:
    return synthetic_batch(b, lengths=lengths, dims=(16, 5, 7), seed=seed)


def test_registered_with_presets():
    assert "mind" in list_models()
    mosi = create_model("mind", preset="mosi")
    assert mosi.config.d_model == 512 and mosi.config.prediction_loss == "l1"
    mosei = create_model("mind", preset="mosei")
    assert mosei.config.d_model == 256 and mosei.config.prediction_loss == "mse+l1"
    again = create_model("mind", **json.loads(json.dumps(mosei.config.to_dict())))
    assert again.config == mosei.config and again.num_parameters() == mosei.num_parameters()


def test_forward_shapes_and_named_components():
    m = tiny()
    b = batch()
    out = m(b)
    d = m.config.d_model
    assert out.prediction.shape == (5,)
    for k in "tav":
        for name in ("u", "invariant", "specific", "noise", "gauss"):
            assert out.aux[f"{name}_{k}"].shape == (5, d)
    loss = m.objective(out, b)
    assert set(loss.components) == COMPONENTS
    for v in loss.components.values():
        assert v.dim() == 0 and torch.isfinite(v)
    assert torch.allclose(loss.total, sum(loss.components.values()))


def test_weights_scale_components():
    b = batch()
    base = tiny()
    torch.manual_seed(5)
    l1 = base.objective(base(b), b).components
    heavy = tiny(alpha_info=2e-2, beta_consistency=3e-4, gamma_difference=4e-3, lambda_reconstruction=0.5)
    torch.manual_seed(5)
    l2 = heavy.objective(heavy(b), b).components
    assert torch.allclose(l2["info"], 2 * l1["info"], rtol=1e-4)
    assert torch.allclose(l2["consistency"], 3 * l1["consistency"], rtol=1e-4)
    assert torch.allclose(l2["difference"], 4 * l1["difference"], rtol=1e-4)
    assert torch.allclose(l2["reconstruction"], 5 * l1["reconstruction"], rtol=1e-4)


def test_noise_prediction_gradient_is_reversed_into_private_encoders():
    m = tiny(grl_alpha=1.0, grl_warmup_steps=0)
    m.eval()  # no dropout: the two head evaluations below must match
    b = batch()
    out = m(b)
    loss = m.objective(out, b)
    noise_t = out.aux["noise_t"]
    # gradient of the noise-prediction loss w.r.t. the noise components is the negated head gradient
    g_rev, = torch.autograd.grad(loss.components["noise_prediction"], noise_t, retain_graph=True)
    noise_all = torch.cat([out.aux[f"noise_{k}"] for k in "tav"], -1).detach().requires_grad_(True)
    pred = m.objective.noise_head(noise_all).squeeze(-1)
    g_plain, = torch.autograd.grad(m.objective.prediction_loss(pred, b.label, clamp_l1=False), noise_all)
    d = m.config.d_model
    assert torch.allclose(g_rev, -g_plain[:, :d], atol=1e-6)
    # while the head itself descends the loss (its gradient is not reversed)
    head_w = m.objective.noise_head[0].weight
    g_head, = torch.autograd.grad(loss.components["noise_prediction"], head_w)
    assert float(g_head.abs().sum()) > 0


def test_grl_schedule_and_step_counter():
    m = tiny(grl_alpha=1.0, grl_warmup_steps=10)
    obj = m.objective
    assert obj.grl_scale() == 0.0
    for _ in range(5):
        obj.after_step(m)
    assert int(obj.step) == 5
    assert math.isclose(obj.grl_scale(), 2 / (1 + math.exp(-5)) - 1, rel_tol=1e-9)
    for _ in range(20):
        obj.after_step(m)
    assert math.isclose(obj.grl_scale(), 2 / (1 + math.exp(-10)) - 1, rel_tol=1e-9)
    assert "objective_.step" in m.state_dict()
    assert tiny(grl_alpha=0.3).objective.grl_scale() == 0.3


@pytest.mark.parametrize("drop", [("audio",), ("vision",), ("audio", "vision"), ("text", "audio", "vision")])
def test_absent_modalities_no_nan(drop):
    m = tiny()
    b = batch().drop(*drop)
    out = m(b)
    loss = m.objective(out, b)
    loss.total.backward()
    assert torch.isfinite(out.prediction).all()
    assert all(torch.isfinite(v) for v in loss.components.values())
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    for mod in drop:
        assert float(out.aux[f"u_{MInD.KEYS[mod]}"].detach().abs().sum()) == 0


def test_length_one_and_batch_size_one():
    m = tiny(prediction_loss="mse+l1")
    for b in (batch(b=3, lengths=(1, 1, 1)), batch(b=1)):
        loss = m.objective(m(b), b)
        loss.total.backward()
        assert torch.isfinite(loss.total)


def test_eval_prediction_deterministic_and_seeded_training_reproducible():
    b = batch()
    m = tiny()
    m.eval()
    assert torch.equal(m(b).prediction, m(b).prediction)  # noise only feeds the losses
    totals = []
    for _ in range(2):
        mm = tiny()
        torch.manual_seed(3)
        totals.append(mm.objective(mm(b), b).total)
    assert torch.equal(totals[0], totals[1])


def test_eval_loss_is_reproducible_and_leaves_the_global_rng_alone():
    """The eval loss drew its noise inputs from the global RNG: two evaluations of one checkpoint on one batch
    gave different losses, and every evaluation shifted the training draws that followed it."""
    b = batch()
    m = tiny()
    m.eval()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    with torch.no_grad():
        first = m.objective(m(b), b)
        second = m.objective(m(b), b)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(first.total, second.total)
    assert all(torch.equal(first.components[k], second.components[k]) for k in first.components)
    # training still draws fresh noise from the global RNG
    m.train()
    g1, g2 = m(b).aux["gauss_t"], m(b).aux["gauss_t"]
    assert not torch.equal(g1, g2)
    assert not torch.equal(torch.get_rng_state(), before)


def synthetic_task(n=48, seed=0) -> Batch:
    """Label depends on text, audio and vision (last valid audio/vision steps, mean text)."""
    b = synthetic_batch(n, lengths=(6, 9, 7), dims=(16, 5, 7), seed=seed)
    t = (b.text[..., 0] * b.text_mask).sum(1) / b.text_mask.sum(1)
    a = (b.audio[..., 0] * b.audio_mask).sum(1) / b.audio_mask.sum(1)
    v = (b.vision[..., 0] * b.vision_mask).sum(1) / b.vision_mask.sum(1)
    b.label = 3 * torch.tanh(t + a - v)
    return b


def test_short_fit_reduces_prediction_loss():
    m = tiny(d_model=32, backbone_heads=4, fusion_dim=32, dropout=0.0, classifier_dropout=0.0,
             backbone_attn_dropout=0.0, backbone_embed_dropout=0.0, backbone_relu_dropout=0.0,
             backbone_res_dropout=0.0, grl_warmup_steps=50)
    b = synthetic_task()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = last = None
    for _ in range(60):
        opt.zero_grad()
        loss = m.objective(m(b), b)
        loss.total.backward()
        opt.step()
        m.objective.after_step(m)
        v = float(loss.components["prediction"].detach())
        first = v if first is None else first
        last = v
    assert last < 0.5 * first, (first, last)


def test_fine_tunes_text_encoder(tiny_bert):
    m = tiny(text_encoder=tiny_bert, text_dim=999)
    b = synthetic_batch(3, (6, 4, 4), (3, 5, 7), with_tokens=True)  # text features are ignored
    loss = m.objective(m(b), b)
    loss.total.backward()
    emb = m.text_encoder.model.embeddings.word_embeddings.weight
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0
    assert m.num_parameters() < m.num_parameters(exclude_text_encoder=False)


def test_backbone_positions_follow_the_reference_and_old_checkpoints_keep_theirs():
    """The reference's fairseq embedding numbers positions from 1 (padding index 0): row 0 of the
    toolkit's table must be the reference's position 1, i.e. "halves" shifted by one row."""
    from msa_toolkit.models import create_model
    from msa_toolkit.layers import sinusoidal_table
    from msa_toolkit.training.checkpoint import _config_values

    model = create_model("mind", "tiny")
    assert model.config.positions == "fairseq"
    d = model.config.d_model
    x = torch.zeros(1, 4, d)
    table = next(m for m in model.modules() if type(m).__name__ == "SinusoidalPositionalEncoding")(x)
    assert torch.allclose(table, sinusoidal_table(5, d, "halves", x.device, x.dtype)[1:])
    assert _config_values("mind", {}) == {"positions": "halves"}


def test_roll_back_keeps_the_step_counter_counting():
    """A roll-back restores the best weights and optimiser state but not the GRL step counter (the reference's
    global step keeps counting), so the reversal scale does not fall back to its start."""
    from msa_toolkit.training import selection as S

    m = tiny(grl_alpha=1.0, grl_warmup_steps=10)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for _ in range(2):
        m.objective.after_step(m)
    best = {k: v.detach().clone() for k, v in m.state_dict().items()}
    snap = S.snapshot_optimizer(opt)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    for _ in range(3):
        m.objective.after_step(m)
    scale = m.objective.grl_scale()
    S.roll_back(m, opt, best, snap, 0.5)
    assert int(m.objective.step) == 5 and m.objective.grl_scale() == scale
    assert all(torch.equal(v, best[k]) for k, v in m.state_dict().items() if k != "objective_.step")
    assert S.rollback_kept_keys(m) == {"objective_.step"}


def test_a_float64_model_keeps_float64_inputs():
    """The backbones' inputs are widened to float32 (e.g. from float16 storage), not narrowed from float64: a
    float64 model (the training-trajectory parity runs one) takes a float64 batch (was a dtype error)."""
    model = tiny().double()
    b = batch()
    for m in ("text", "audio", "vision"):
        setattr(b, m, getattr(b, m).double())
    b.label = b.label.double()
    out = model(b)
    assert out.prediction.dtype == torch.float64
    assert model.objective(out, b).total.dtype == torch.float64
