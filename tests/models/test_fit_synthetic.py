"""Every registered model fits a small synthetic set whose label needs audio and vision, beating text only.

Data: each sample has one latent score per modality ``z_m ~ N(0, 1)``; every valid step of
modality m is ``z_m * w_m + noise`` (``w_m`` a fixed unit direction) with random valid
lengths; the label is ``clip(1.5 (z_t + z_a + z_v) / sqrt(3), -3, 3)``. Text alone explains
at most a third of the label variance, so a model that uses audio and vision must reach a
clearly lower held-out MAE than the text-only baseline trained the same way.

The training loop follows the trainer contract (forward, objective, backward, step,
``objective.after_step``). The fast version (CI) uses tiny presets and 150 steps; the slow
one trains longer on more data.
"""

from __future__ import annotations

import math

import pytest
import torch

from msa_toolkit.data.batch import Batch
from msa_toolkit.models import create_model, get_entry, list_models

LENGTHS = (8, 10, 8)
FEAT_DIMS = (8, 4, 4)
DIMS = dict(text_dim=FEAT_DIMS[0], audio_dim=FEAT_DIMS[1], vision_dim=FEAT_DIMS[2],
            text_len=LENGTHS[0], audio_len=LENGTHS[1], vision_len=LENGTHS[2])


def make_data(n: int, seed: int, noise: float = 0.5) -> Batch:
    g = torch.Generator().manual_seed(1234)  # fixed directions shared by every split
    dirs = [torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0) for d in FEAT_DIMS]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    kw = {}
    for i, (m, L, d) in enumerate(zip(("text", "audio", "vision"), LENGTHS, FEAT_DIMS)):
        x = z[:, i, None, None] * dirs[i] + noise * torch.randn(n, L, d, generator=g)
        valid = torch.randint(math.ceil(L / 2), L + 1, (n,), generator=g)
        mask = torch.arange(L)[None] < valid[:, None]
        kw[m], kw[f"{m}_mask"] = x * mask.unsqueeze(-1), mask
    label = (1.5 * z.sum(1) / math.sqrt(3)).clamp(-3, 3)
    # what each modality alone says, for multi-task models (no extra draws: the rest is unchanged)
    uni = {f"label_{t}": (1.5 * z[:, i]).clamp(-3, 3) for i, t in enumerate("TAV")}
    return Batch(label=label, ids=[f"{seed}:{i}" for i in range(n)], **kw, **uni)


def subset(b: Batch, idx: torch.Tensor) -> Batch:
    return Batch(text=b.text[idx], text_mask=b.text_mask[idx], audio=b.audio[idx], audio_mask=b.audio_mask[idx],
                 vision=b.vision[idx], vision_mask=b.vision_mask[idx], label=b.label[idx],
                 ids=[b.ids[i] for i in idx.tolist()], **{f"label_{t}": b.unimodal_label(t)[idx] for t in "TAV"})


def fit(name: str, train: Batch, steps: int, batch_size: int = 32, lr: float = 3e-3, seed: int = 0):
    torch.manual_seed(seed)
    preset = "tiny" if "tiny" in get_entry(name).presets else None
    model = create_model(name, preset=preset, **DIMS)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        batch = subset(train, torch.randint(0, train.size, (batch_size,), generator=g))
        out = model(batch)
        loss = model.objective(out, batch)
        opt.zero_grad()
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        model.objective.after_step(model)
        # the prediction's error, not the objective's total: Self-MM's unimodal terms start at 0 and switch on
        # from a sample's second visit, so its total rises while the fit improves
        losses.append(float((out.prediction.detach() - batch.label).abs().mean()))
    return model, losses


@torch.no_grad()
def heldout_mae(model, data: Batch) -> float:
    model.eval()
    return float((model(data).prediction - data.label).abs().mean())


def _check(name: str, n_train: int, steps: int, margin: float):
    train, test = make_data(n_train, seed=1), make_data(200, seed=2)
    text_model, _ = fit("text_only", train, steps)
    text_mae = heldout_mae(text_model, test)
    model, losses = fit(name, train, steps)
    k = max(5, steps // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < 0.8 * first, f"{name}: training loss did not go down ({first:.3f} -> {last:.3f})"
    mae = heldout_mae(model, test)
    assert mae < margin * text_mae, f"{name}: held-out MAE {mae:.3f} vs text-only {text_mae:.3f}"
    return mae, text_mae


#: models whose prediction reads the text alone by design (``text_only_inference``, e.g. MCTN: the other
#: modalities only shape its joint representation through the translation losses) are left out
MULTIMODAL = [n for n in list_models()
              if n != "text_only" and not getattr(get_entry(n).builder, "text_only_inference", False)]


def test_text_only_cannot_explain_the_label():
    train, test = make_data(300, seed=1), make_data(200, seed=2)
    model, losses = fit("text_only", train, 150)
    assert sum(losses[-15:]) < sum(losses[:15])
    # the label std is 1.5 and text explains a third of its variance: MAE stays well above the noise floor
    assert heldout_mae(model, test) > 0.7


@pytest.mark.parametrize("name", MULTIMODAL)
def test_fits_and_beats_text_only_fast(name):
    _check(name, n_train=300, steps=150, margin=0.85)


@pytest.mark.slow
@pytest.mark.parametrize("name", MULTIMODAL)
def test_fits_and_beats_text_only_long(name):
    mae, text_mae = _check(name, n_train=1000, steps=600, margin=0.7)
    assert mae < 0.6
