"""Shared criteria: values on hand-checkable inputs."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.layers.losses import (barlow_twins_loss, cosine_matrix, cosine_orthogonality, hsic, jsd_mi,
                                       masked_mse, modified_triplet_loss, regression_loss, soft_orthogonality)


def test_regression_loss():
    p, y = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert regression_loss(p, y, "l1") == 1.5
    assert regression_loss(p, y, "mse") == 2.5
    with pytest.raises(ValueError):
        regression_loss(p, y, "huber")


def test_masked_mse_ignores_padding():
    x, y = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)
    y[0, 2] = 10.0
    assert masked_mse(x, y, torch.tensor([[True, True, False]])) == 0
    assert masked_mse(x, y, torch.zeros(1, 3, dtype=torch.bool)) == 0
    assert masked_mse(x, y) > 0


def test_orthogonality():
    torch.manual_seed(0)
    a = torch.randn(64, 4)
    assert soft_orthogonality(a, a) > soft_orthogonality(a, torch.randn(64, 4))
    e = torch.eye(4)
    assert cosine_orthogonality(e, e.roll(1, 0)) == 0
    assert torch.isclose(cosine_orthogonality(e, e), torch.tensor(1.0))
    assert cosine_orthogonality(e, -e) == 0


def test_modified_triplet():
    labels = torch.tensor([1.0, 1.0, -1.0, -1.0])
    good = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    bad = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    assert modified_triplet_loss(good, labels, margin=0.15) < 1e-6
    assert modified_triplet_loss(bad, labels) > 0.5
    # hand-computed: anchor 0, positive 1 (cos 0), negative 2 (cos ~1), margin 0.15*2
    # no positive/negative pairs -> 0
    assert modified_triplet_loss(good, torch.tensor([0.0, 1.0, 2.0, 3.0])) == 0
    valid = torch.tensor([True, False, True, True])
    assert torch.isfinite(modified_triplet_loss(bad, labels, valid=valid))


def test_barlow_twins_hsic_jsd():
    torch.manual_seed(0)
    z = torch.randn(256, 8)
    assert barlow_twins_loss(z, z) < barlow_twins_loss(z, torch.randn(256, 8))
    assert barlow_twins_loss(z, z) < 0.1
    x = torch.randn(128, 3)
    assert hsic(x, x) > 10 * hsic(x, torch.randn(128, 3))
    assert hsic(x[:1], x[:1]) == 0
    hi = jsd_mi(torch.full((10,), 5.0), torch.full((10,), -5.0))
    lo = jsd_mi(torch.zeros(10), torch.zeros(10))
    assert hi > lo and abs(float(hi)) < 0.02


def test_cosine_matrix():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(cosine_matrix(a, a), torch.eye(2))
    assert cosine_matrix(torch.randn(3, 4, 5), torch.randn(3, 6, 5)).shape == (3, 4, 6)


def test_mind_loss_helpers():
    """The Barlow Twins, HSIC and JSD criteria as MInD uses them (moved from test_mind.py)."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    # Barlow Twins: identical views -> diag(C) = 1 -> invariance term ~ 0; independent views -> large
    assert float(barlow_twins_loss(x, x, offdiag_weight=0.0)) < 1e-3
    c = torch.corrcoef(x.T)
    expected = (c.pow(2).sum() - c.diagonal().pow(2).sum()) / 8  # default off-diagonal weight 1/d
    assert torch.allclose(barlow_twins_loss(x, x), expected, rtol=1e-3, atol=1e-4)
    assert float(barlow_twins_loss(x, torch.randn(64, 8))) > 1.0
    assert torch.isfinite(barlow_twins_loss(x[:1], x[:1]))  # batch of one stays finite
    # HSIC (linear kernels): zero for a constant, positive for dependent, ~tr formula
    y = torch.randn(64, 5)
    assert abs(float(hsic(x, torch.ones(64, 3)))) < 1e-4
    assert float(hsic(x, x)) > float(hsic(x, y))
    n = 64
    H = torch.eye(n) - 1.0 / n
    ref = torch.trace(x @ x.T @ H @ y @ y.T @ H) / (n - 1) ** 2
    assert torch.allclose(hsic(x, y), ref, rtol=1e-4)
    assert float(hsic(x[:1], y[:1])) == 0.0
    # JSD estimator: separable joint/marginal scores -> lower loss than indistinguishable ones
    # (MInD minimises -jsd_mi)
    assert float(-jsd_mi(torch.full((8,), 5.0), torch.full((8,), -5.0))) < \
        float(-jsd_mi(torch.zeros(8), torch.zeros(8)))


def test_barlow_twins_standardises_like_the_reference_batchnorm():
    """Pins the Barlow Twins variant: ``(z - mean) / sqrt(var + eps)``, a training-mode BatchNorm1d(affine=False).

    Note: losses.py used to divide by ``std + eps`` while mind.py kept its own copy with
    ``sqrt(var + eps)``; the two were merged on the variant the MInD reference (WeeeicheN/MInD,
    ``BTLoss`` with ``nn.BatchNorm1d(embdim, affine=False)``) uses, so MInD's values are unchanged.
    The two differ visibly only for features with a variance near ``eps`` (the case below).
    """
    torch.manual_seed(0)
    z1, z2 = torch.randn(16, 4), torch.randn(16, 4)
    z1[:, 0] *= 1e-3  # variance ~1e-6, below eps = 1e-5
    bn = torch.nn.BatchNorm1d(4, affine=False).train()
    c = bn(z1).T @ bn(z2) / 16
    on = (1 - c.diagonal()).pow(2).sum()
    off = c.pow(2).sum() - c.diagonal().pow(2).sum()
    assert torch.allclose(barlow_twins_loss(z1, z2), on + off / 4, rtol=1e-5, atol=1e-6)
    std_variant_c = ((z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-5)).T @ bn(z2) / 16
    assert not torch.allclose(std_variant_c, c, atol=1e-3)  # the old variant gives another matrix here
