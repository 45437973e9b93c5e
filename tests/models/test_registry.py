"""Every registered model, forward and backward, on tiny batches.

Conventions the models follow so this test covers them automatically:

- a ``"tiny"`` preset (small widths/depths) is used when the model registers one;
  the test then overrides only the input dims and maximum lengths (:data:`DIMS`);
- a model whose parameters are legitimately unused in a training step lists their
  name prefixes in a class attribute ``grad_exempt`` (documented in its docstring);
  every other trainable parameter must receive a non-zero gradient.
"""

from __future__ import annotations

import json

import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.models import create_model, get_entry, list_models

LENGTHS = (6, 9, 7)
FEAT_DIMS = (16, 5, 7)
DIMS = dict(text_dim=FEAT_DIMS[0], audio_dim=FEAT_DIMS[1], vision_dim=FEAT_DIMS[2],
            text_len=LENGTHS[0], audio_len=LENGTHS[1], vision_len=LENGTHS[2])
MODELS = list_models()


def tiny(name: str, **extra):
    preset = "tiny" if "tiny" in get_entry(name).presets else None
    return create_model(name, preset=preset, **{**DIMS, **extra})


def absent_av_batch(batch_size: int = 4, seed: int = 1) -> Batch:
    b = synthetic_batch(batch_size, LENGTHS, FEAT_DIMS, seed=seed)
    B = batch_size
    return Batch(text=b.text, text_mask=b.text_mask, label=b.label,
                 audio=torch.zeros(B, 1, FEAT_DIMS[1]), audio_mask=torch.zeros(B, 1, dtype=torch.bool),
                 vision=torch.zeros(B, 1, FEAT_DIMS[2]), vision_mask=torch.zeros(B, 1, dtype=torch.bool))


def run_step(model, batch):
    out = model(batch)
    loss = model.objective(out, batch)
    return out, loss


def check_loss(loss, batch_size: int | None = None):
    assert loss.components, "an objective must report named components"
    for k, v in loss.components.items():
        assert v.dim() == 0, f"component {k} is not a scalar"
        assert torch.isfinite(v), f"component {k} = {v}"
    assert torch.isfinite(loss.total)
    total = sum(loss.components.values())
    assert torch.allclose(loss.total, total, rtol=1e-5, atol=1e-6), (float(loss.total), float(total))


def test_registry_lists_required_models():
    for name in ("text_only", "late_fusion", "tfn", "mult", "dlf", "almt"):
        assert name in MODELS


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_gradients(name):
    torch.manual_seed(0)
    model = tiny(name)
    model.train()
    # odd batch size: with an L1 loss an even batch can give an exactly zero output-bias gradient
    batch = synthetic_batch(5, LENGTHS, FEAT_DIMS, seed=0)
    out, loss = run_step(model, batch)
    assert out.prediction.shape == (5,)
    assert torch.isfinite(out.prediction).all()
    for k, v in out.aux.items():
        assert isinstance(v, torch.Tensor), k
    check_loss(loss)
    loss.total.backward()
    exempt = tuple(getattr(model, "grad_exempt", ()))
    dead = [n for n, p in model.named_parameters()
            if p.requires_grad and not n.startswith(exempt) and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, f"{name}: parameters without gradient: {dead}"
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), n
    model.objective.after_step(model)  # must run without error


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_seed(name):
    batch = synthetic_batch(4, LENGTHS, FEAT_DIMS, seed=3)
    results = []
    for _ in range(2):
        torch.manual_seed(123)
        model = tiny(name)
        model.train()
        out, loss = run_step(model, batch)
        loss.total.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out.prediction.detach(), loss.total.detach(), grads))
    (p1, l1, g1), (p2, l2, g2) = results
    assert torch.equal(p1, p2)
    assert torch.equal(l1, l2)
    assert len(g1) == len(g2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("case", ["absent_audio_vision", "absent_text", "length_1", "batch_1"])
def test_edge_inputs(name, case):
    torch.manual_seed(0)
    model = tiny(name)
    if case == "absent_audio_vision":
        batch = absent_av_batch()
    elif case == "absent_text":
        b = synthetic_batch(4, LENGTHS, FEAT_DIMS, seed=1)
        batch = Batch(text=torch.zeros(4, 1, FEAT_DIMS[0]), text_mask=torch.zeros(4, 1, dtype=torch.bool),
                      audio=b.audio, audio_mask=b.audio_mask, vision=b.vision, vision_mask=b.vision_mask,
                      label=b.label)
    elif case == "length_1":
        batch = synthetic_batch(3, (1, 1, 1), FEAT_DIMS, seed=2)
    else:
        batch = synthetic_batch(1, LENGTHS, FEAT_DIMS, seed=2)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        model.zero_grad(set_to_none=True)
        out, loss = run_step(model, batch)
        assert out.prediction.shape == (batch.size,)
        assert torch.isfinite(out.prediction).all(), (case, mode)
        check_loss(loss)
        if mode == "train":
            loss.total.backward()
            for n, p in model.named_parameters():
                if p.grad is not None:
                    assert torch.isfinite(p.grad).all(), (case, n)
            model.objective.after_step(model)


@pytest.mark.parametrize("name", MODELS)
def test_config_roundtrip(name):
    model = tiny(name)
    d = model.config.to_dict()
    json.dumps(d)  # JSON-serialisable
    again = create_model(name, **d)
    assert again.config == model.config
    sd1, sd2 = model.state_dict(), again.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(sd1[k].shape == sd2[k].shape for k in sd1)
    assert model.num_parameters() > 0


@pytest.mark.parametrize("name,preset", [(n, p) for n in MODELS for p in get_entry(n).presets if p != "tiny"])
def test_published_presets_build(name, preset):
    model = create_model(name, preset=preset)
    assert model.num_parameters() > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.gpu
@pytest.mark.parametrize("name", MODELS)
def test_cuda_mixed_precision_step(name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    model = tiny(name).cuda().train()
    batches = (synthetic_batch(5, LENGTHS, FEAT_DIMS, seed=0), absent_av_batch(),
               synthetic_batch(2, (1, 1, 1), FEAT_DIMS))
    for batch in batches:
        batch = batch.to("cuda")
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, loss = run_step(model, batch)
        assert out.prediction.shape == (batch.size,)
        assert torch.isfinite(loss.total)
        loss.total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.objective.after_step(model)
