"""Shared training criteria. All functions return scalar tensors unless stated otherwise.

- :func:`regression_loss` — L1 / MSE on predictions.
- :func:`masked_mse` — MSE over the valid steps of sequences (reconstruction).
- :func:`soft_orthogonality` — squared cross-correlation of two centred, normalised feature sets.
- :func:`central_moment_discrepancy` — CMD between two feature distributions (MISA's similarity loss).
- :func:`cosine_orthogonality` — positive cosine similarity between paired vectors (hinge at 0).
- :func:`modified_triplet_loss` — label-aware triplet hinge with a margin growing with the label gap.
- :func:`barlow_twins_loss` — redundancy-reduction loss between two views.
- :func:`hsic` — Hilbert–Schmidt independence criterion with inner-product (linear) kernels.
- :func:`jsd_mi` — Jensen–Shannon mutual-information lower bound from statistics-network scores.
- :func:`cosine_matrix` — pairwise cosine similarities (batched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "regression_loss", "masked_mse", "soft_orthogonality", "central_moment_discrepancy", "cosine_orthogonality",
    "modified_triplet_loss",
    "barlow_twins_loss", "hsic", "jsd_mi", "cosine_matrix",
]


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 (``kind="l1"``) or squared (``"mse"``) error between ``pred`` and ``target`` (same shape)."""
    target = target.to(pred.dtype)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"loss kind must be 'l1' or 'mse', got {kind!r}")


def masked_mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between ``x`` and ``y`` [B, L, D] averaged over valid steps (mask [B, L]); 0 when none is valid."""
    err = (x - y).pow(2).mean(dim=-1)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def soft_orthogonality(a: torch.Tensor, b: torch.Tensor, detach_norm: bool = False) -> torch.Tensor:
    """Soft orthogonality between two feature sets ``a`` [N, Da], ``b`` [N, Db].

    Each set is centred over the N samples and each row L2-normalised; the loss is
    the mean squared entry of ``a^T b`` (a scaled squared Frobenius norm), zero when
    the two subspaces are orthogonal (the "difference loss" of MISA / DSN).
    ``detach_norm``: rows are divided by ``norm.detach() + 1e-6`` (no gradient through the norm), as the
    DSN / MISA code computes it; else by the norm itself (``F.normalize``).
    """
    a, b = a - a.mean(dim=0, keepdim=True), b - b.mean(dim=0, keepdim=True)
    if detach_norm:
        a = a / (a.norm(dim=1, keepdim=True).detach() + 1e-6)
        b = b / (b.norm(dim=1, keepdim=True).detach() + 1e-6)
    else:
        a, b = F.normalize(a, dim=1, eps=1e-6), F.normalize(b, dim=1, eps=1e-6)
    return (a.t() @ b).pow(2).mean()


def central_moment_discrepancy(x: torch.Tensor, y: torch.Tensor, moments: int = 5) -> torch.Tensor:
    """Central moment discrepancy (Zellinger et al., ICLR 2017) between ``x`` [N, D] and ``y`` [M, D].

    ``||E x - E y||_2 + sum_{k=2..moments} ||E (x - E x)^k - E (y - E y)^k||_2`` (the features are not
    rescaled to a bounded interval, as in MISA). MISA's similarity loss between shared representations.
    A norm of exactly zero (e.g. one sample: every central moment is 0) has gradient 0 instead of NaN.
    """
    def norm(d: torch.Tensor) -> torch.Tensor:
        s = d.pow(2).sum()
        return torch.where(s > 0, s.clamp_min(torch.finfo(s.dtype).tiny).sqrt(), s)

    cx, cy = x - x.mean(0), y - y.mean(0)
    total = norm(x.mean(0) - y.mean(0))
    for k in range(2, moments + 1):
        total = total + norm(cx.pow(k).mean(0) - cy.pow(k).mean(0))
    return total


def cosine_orthogonality(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean ``max(0, cos(a_i, b_i))`` over paired rows (``a``, ``b`` [N, D]; optional bool mask [N]).

    Equals PyTorch's cosine-embedding loss with target -1 and margin 0: it pushes
    paired vectors to be orthogonal or opposite.
    """
    cos = F.cosine_similarity(a, b, dim=-1, eps=1e-6).clamp_min(0.0)
    if mask is None:
        return cos.mean()
    m = mask.to(cos.dtype)
    return (cos * m).sum() / m.sum().clamp_min(1.0)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pairwise cosine similarities: [..., N, D] x [..., M, D] -> [..., N, M]."""
    return F.normalize(a, dim=-1, eps=eps) @ F.normalize(b, dim=-1, eps=eps).transpose(-1, -2)


def modified_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 0.15,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """Label-aware triplet hinge on cosine similarity with a label-scaled margin.

    For every anchor ``i``, every positive ``j != i`` with the same label and every
    negative ``k`` with a different label, the term is
    ``max(0, margin * |y_i - y_k| - cos(f_i, f_j) + cos(f_i, f_k))``. Terms are
    averaged per anchor, then over anchors that have at least one positive and one
    negative (0 when none has). ``features`` [N, D]; ``labels`` [N]; ``valid`` an
    optional bool [N] excluding rows (e.g. absent modalities).
    """
    N = features.shape[0]
    if valid is None:
        valid = torch.ones(N, dtype=torch.bool, device=features.device)
    cos = cosine_matrix(features, features)                       # [N, N]
    y = labels.to(features.dtype).reshape(-1)
    same = (y[:, None] == y[None, :]) & valid[:, None] & valid[None, :]
    eye = torch.eye(N, dtype=torch.bool, device=features.device)
    pos = same & ~eye                                              # [i, j]
    neg = ~same & valid[:, None] & valid[None, :] & ~eye           # [i, k]
    gap = margin * (y[:, None] - y[None, :]).abs()                 # [i, k]
    # hinge[i, j, k] = gap[i, k] - cos[i, j] + cos[i, k]
    hinge = (gap[:, None, :] - cos[:, :, None] + cos[:, None, :]).clamp_min(0.0)
    pair = (pos[:, :, None] & neg[:, None, :]).to(hinge.dtype)
    n_pairs = pair.sum(dim=(1, 2))
    per_anchor = (hinge * pair).sum(dim=(1, 2)) / n_pairs.clamp_min(1.0)
    has = (n_pairs > 0).to(hinge.dtype)
    return (per_anchor * has).sum() / has.sum().clamp_min(1.0)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, offdiag_weight: float | None = None,
                      eps: float = 1e-5) -> torch.Tensor:
    """Barlow Twins (Zbontar et al., 2021) between two views ``z1``, ``z2`` [N, D].

    Each view is standardised over the batch as a training-mode ``BatchNorm1d(affine=False)``
    does, ``(z - mean) / sqrt(var + eps)`` with the biased variance (the Barlow Twins and
    MInD reference code normalise with that layer); ``C = z1^T z2 / N``; the loss is
    ``sum_i (1 - C_ii)^2 + w * sum_{i!=j} C_ij^2`` with ``w = offdiag_weight``
    (default ``1 / D``, close to the paper's 5e-3 for D ~ 200). With N = 1 the
    standardisation is undefined; the centred views are then zero and C = 0.
    """
    N, D = z1.shape
    w = 1.0 / D if offdiag_weight is None else offdiag_weight
    z1 = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)
    z2 = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)
    c = z1.t() @ z2 / N
    on = (1 - torch.diagonal(c)).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + w * off


def hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased HSIC estimator with inner-product kernels: ``tr(K H L H) / (N-1)^2``.

    ``x`` [N, Dx], ``y`` [N, Dy]; ``K = x x^T``, ``L = y y^T``, ``H = I - 1/N``.
    Zero when the two sets are linearly uncorrelated; 0 for N = 1.
    """
    N = x.shape[0]
    if N < 2:
        return (x.sum() + y.sum()) * 0.0
    k, l = x @ x.t(), y @ y.t()
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()  # H K H
    # tr(K H L H) = sum((H K H) * L); computed in this order, MInD's loss values stay as they were
    return (kc * l).sum() / (N - 1) ** 2


def jsd_mi(joint_scores: torch.Tensor, marginal_scores: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon MI lower bound (Hjelm et al., 2019, Deep InfoMax) from statistics-network scores.

    ``joint_scores`` = T(x, y) on paired samples, ``marginal_scores`` = T(x, y')
    on shuffled pairs. Returns the estimate ``E_P[-softplus(-T)] - E_Q[softplus(T)]``
    (maximise it, i.e. use ``-jsd_mi`` as a loss, to increase mutual information).
    """
    return (-F.softplus(-joint_scores)).mean() - F.softplus(marginal_scores).mean()
