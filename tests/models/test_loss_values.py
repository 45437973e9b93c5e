"""Loss values computed by hand on small tensors (not only signs or inequalities).

Each expected number is worked out in the comment above it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from msa_toolkit.models.base import ModelOutput
from msa_toolkit.models.dlf import DLFConfig, DLFObjective
from msa_toolkit.layers.losses import modified_triplet_loss, soft_orthogonality

MODALITIES = ("text", "audio", "vision")


def test_soft_orthogonality_by_hand():
    # a's column means are (1, 1): centred rows (1, 0), (0, 1), (-1, -1) -> normalised
    # (1, 0), (0, 1), (-1, -1)/sqrt2.  b's mean is 1: centred (2, 0, -2) -> normalised (1, 0, -1)
    # (the zero row stays zero).  a^T b = (1 + 1/sqrt2, 1/sqrt2); the mean of the squares is
    # ((1 + 1/sqrt2)^2 + 1/2) / 2 = 1 + sqrt2/2.
    a = torch.tensor([[2.0, 1.0], [1.0, 2.0], [0.0, 0.0]])
    b = torch.tensor([[3.0], [1.0], [-1.0]])
    assert float(soft_orthogonality(a, b)) == pytest.approx(1 + math.sqrt(2) / 2, rel=1e-6)
    # orthogonal subspaces give exactly 0: columns (1, -1, 0, 0) and (0, 0, 1, -1) after centring
    x = torch.tensor([[1.0], [-1.0], [0.0], [0.0]])
    y = torch.tensor([[0.0], [0.0], [1.0], [-1.0]])
    assert float(soft_orthogonality(x, y)) == 0.0


FEATS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [3.0, 4.0]])
LABELS = torch.tensor([2.0, 2.0, -1.0, 1.0])


def test_modified_triplet_loss_by_hand():
    # cos: c01 = 0, c02 = -1, c03 = 0.6, c12 = 0, c13 = 0.8, c23 = -0.6; margin 0.1.
    # Anchor 0 (y = 2): positive 1, negatives 2 (gap 0.1 * 3 = 0.3) and 3 (gap 0.1 * 1 = 0.1):
    #   max(0, 0.3 - 0 + (-1)) = 0,  max(0, 0.1 - 0 + 0.6) = 0.7  -> mean 0.35
    # Anchor 1 (y = 2): positive 0, negatives 2 and 3:
    #   max(0, 0.3 - 0 + 0) = 0.3,   max(0, 0.1 - 0 + 0.8) = 0.9  -> mean 0.6
    # Anchors 2 and 3 have no positive and are left out: (0.35 + 0.6) / 2 = 0.475.
    assert float(modified_triplet_loss(FEATS, LABELS, margin=0.1)) == pytest.approx(0.475, rel=1e-6)
    # the same features scaled: cosine similarity does not change
    assert float(modified_triplet_loss(5 * FEATS, LABELS, margin=0.1)) == pytest.approx(0.475, rel=1e-6)
    # sample 3 excluded: anchor 0 -> 0, anchor 1 -> 0.3; mean 0.15
    valid = torch.tensor([True, True, True, False])
    assert float(modified_triplet_loss(FEATS, LABELS, margin=0.1, valid=valid)) == pytest.approx(0.15, rel=1e-6)
    # margin 0.5: anchor 0: max(0, 1.5 - 1) = 0.5, max(0, 0.5 + 0.6) = 1.1 -> 0.8;
    # anchor 1: 1.5, 0.5 + 0.8 = 1.3 -> 1.4; mean 1.1
    assert float(modified_triplet_loss(FEATS, LABELS, margin=0.5)) == pytest.approx(1.1, rel=1e-6)


def _dlf_output():
    """DLF aux tensors, B = 1, L = 2, d = 2; text's second step is padding."""
    z = torch.zeros(1, 2, 2)
    t = lambda rows: torch.tensor([rows], dtype=torch.float32)  # noqa: E731
    aux = {"pred_shared": torch.zeros(1), "mask_text": torch.tensor([[True, False]]),
           "mask_audio": torch.ones(1, 2, dtype=torch.bool), "mask_vision": torch.ones(1, 2, dtype=torch.bool)}
    # specific: specific_recon_m against specific_m
    #   text:   steps (1, 1) and (5, 5) against 0 -> step errors 1 and 25, step 2 padded -> 1
    #   audio:  (2, 0), (0, 0) against (0, 0), (0, 0) -> errors 2, 0 -> 1
    #   vision: (1, 1), (0, 3) against (1, 1), (0, 0) -> errors 0, 4.5 -> 2.25      sum 4.25
    specific = {"text": (z, t([[1, 1], [5, 5]])), "audio": (z, t([[2, 0], [0, 0]])),
                "vision": (t([[1, 1], [0, 0]]), t([[1, 1], [0, 3]]))}
    # reconstruction: recon_m against proj_m
    #   text:   (0, 2), (9, 9) against 0 -> 2 (step 2 padded)
    #   audio:  (1, 1), (1, 1) against (0, 0), (3, 3) -> errors 1, 4 -> 2.5
    #   vision: (4, 0), (0, 0) against 0 -> errors 8, 0 -> 4                        sum 8.5
    recon = {"text": (z, t([[0, 2], [9, 9]])), "audio": (t([[0, 0], [3, 3]]), t([[1, 1], [1, 1]])),
             "vision": (z, t([[4, 0], [0, 0]]))}
    for m in MODALITIES:
        aux[f"specific_{m}"], aux[f"specific_recon_{m}"] = specific[m]
        aux[f"proj_{m}"], aux[f"recon_{m}"] = recon[m]
        aux[f"pred_{m}"] = torch.zeros(1)
        aux[f"shared_{m}"] = torch.zeros(1, 2, 2)        # orthogonality 0 (zero vectors)
        aux[f"shared_embed_{m}"] = torch.zeros(1, 2)     # triplet 0 (one label: no negatives)
    return ModelOutput(torch.zeros(1), aux)


def test_dlf_specific_and_reconstruction_terms_by_hand():
    masks = {"text": torch.tensor([[True, False]]), "audio": torch.ones(1, 2, dtype=torch.bool),
             "vision": torch.ones(1, 2, dtype=torch.bool)}
    batch = SimpleNamespace(label=torch.tensor([0.5]), present=lambda m: masks[m].any(dim=1))
    out = DLFObjective(DLFConfig())(_dlf_output(), batch)
    c = {k: float(v) for k, v in out.components.items()}
    # weights 0.1 (specific), 0.1 (reconstruction), the reference's 0.1 * (specific + recon + ...)
    assert c["specific"] == pytest.approx(0.1 * 4.25, rel=1e-6)
    assert c["reconstruction"] == pytest.approx(0.1 * 8.5, rel=1e-6)
    assert c["orthogonality"] == 0.0 and c["triplet"] == 0.0
    # every L1 term: |0 - 0.5| = 0.5, times its weight (final 1, shared 1, text 3, vision 1, audio 1)
    cfg = DLFConfig()
    for name, w in (("final_l1", cfg.w_final), ("shared_l1", cfg.w_shared), ("text_l1", cfg.w_text),
                    ("vision_l1", cfg.w_vision), ("audio_l1", cfg.w_audio)):
        assert c[name] == pytest.approx(0.5 * w, rel=1e-6)
    assert float(out.total) == pytest.approx(sum(c.values()), rel=1e-6)
