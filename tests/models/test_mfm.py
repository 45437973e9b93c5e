"""MFM (issue 37): the MMD term on hand-made factors and the objective's components."""

from __future__ import annotations

import math

import torch

from msa_toolkit.data.batch import synthetic_batch
from msa_toolkit.models import create_model
from msa_toolkit.models.mfm import gaussian_mmd


def test_gaussian_mmd_on_hand_made_samples():
    # one 1-d sample at 0 against a prior sample at 1: k = 1 on the diagonals, exp(-1) across
    assert math.isclose(float(gaussian_mmd(torch.zeros(1, 1), torch.ones(1, 1))), 2 - 2 * math.exp(-1), rel_tol=1e-6)
    z = torch.randn(5, 3)
    assert float(gaussian_mmd(z, z.clone())) == 0.0
    # two 2-d rows: kernel exp(-mean_d (x_d - y_d)^2 / D)
    z, p = torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    k = lambda a, b: math.exp(-sum((x - y) ** 2 for x, y in zip(a, b)) / 2 / 2)  # noqa: E731
    rows_z, rows_p = z.tolist(), p.tolist()
    mean = lambda xs, ys: sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))  # noqa: E731
    want = mean(rows_p, rows_p) + mean(rows_z, rows_z) - 2 * mean(rows_p, rows_z)
    assert math.isclose(float(gaussian_mmd(z, p)), want, rel_tol=1e-6)


def test_objective_weights_each_named_term():
    torch.manual_seed(0)
    model = create_model("mfm", "tiny", text_dim=16, audio_dim=5, vision_dim=7, mmd_weight=3.0,
                         recon_text_weight=2.0, recon_audio_weight=0.0, recon_vision_weight=1.0)
    batch = synthetic_batch(4, (6, 9, 7), (16, 5, 7), seed=0)
    out = model(batch)
    torch.manual_seed(5)
    loss = model.objective(out, batch)
    assert set(loss.components) == {"prediction", "recon_text", "recon_audio", "recon_vision", "mmd_z_text",
                                    "mmd_z_audio", "mmd_z_vision", "mmd_z_y"}
    assert float(loss.components["recon_audio"].detach()) == 0.0
    m = batch.text_mask
    err = (out.aux["recon_text"] - batch.text).pow(2).mean(-1)
    torch.testing.assert_close(loss.components["recon_text"], 2.0 * err[m].mean())
    torch.manual_seed(5)
    draws = [torch.randn(out.aux[n].shape) for n in ("z_text", "z_audio", "z_vision", "z_y")]
    torch.testing.assert_close(loss.components["mmd_z_y"], 3.0 * gaussian_mmd(out.aux["z_y"], draws[3]))
    torch.testing.assert_close(loss.total, sum(loss.components.values()))
