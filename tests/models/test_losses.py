"""Shared criteria: values on hand-checkable inputs."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.models.losses import (barlow_twins_loss, cosine_matrix, cosine_orthogonality, hsic, jsd_mi,
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
