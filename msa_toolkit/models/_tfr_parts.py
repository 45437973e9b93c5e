"""Blocks only TFR-Net uses: the gated GRU utterance encoder of its fusion, its reconstruction criterion and the
missing-feature simulation of its training (see :mod:`msa_toolkit.models.tfr_net`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..layers import Dropout

#: added to the element count of a reconstruction loss's mask (MMSA's eps)
REC_EPS = 1e-4
#: inside the central-moment discrepancy's square roots
CMD_EPS = 1e-12


def valid_lengths(mask: torch.Tensor) -> torch.Tensor:
    """long [B]: index of the last valid step + 1 (0 for a sample with none)."""
    idx = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (mask.long() * idx).amax(dim=1)


class GatedUtteranceEncoder(nn.Module):
    """TFR-Net's fusion encoder of one modality (``C_GATE``): a bidirectional GRU over the valid steps, a
    convolutional gate on its states, ``tanh(Linear([x; tanh(h) · gate]))`` per step, max over the valid steps,
    dropout: [B, L, d_in] -> [B, hidden]. A sample without valid steps gives zeros."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.gate = nn.Conv1d(2 * hidden, 1, kernel_size=3, padding=1)
        self.fc = nn.Linear(2 * hidden + in_dim, hidden)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = valid_lengths(mask)
        with torch.autocast(x.device.type, enabled=False):  # the GRU in fp32 (see layers.fusion.run_rnn)
            xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            packed = pack_padded_sequence(xf, lengths.clamp_min(1).cpu(), batch_first=True,
                                          enforce_sorted=False)
            h, _ = self.gru(packed)
        h = pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])[0].to(x.dtype)
        gate = torch.sigmoid(self.gate(h.transpose(1, 2)).transpose(1, 2))
        rep = torch.tanh(self.fc(torch.cat([x, torch.tanh(h) * gate], dim=-1)))
        steps = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        rep = rep.masked_fill(~steps.unsqueeze(-1), float("-inf")).amax(dim=1)
        rep = torch.where(lengths[:, None] > 0, rep, torch.zeros_like(rep))
        return self.drop(rep)


def central_moment_discrepancy(x1: torch.Tensor, x2: torch.Tensor, moments: int = 3) -> torch.Tensor:
    """CMD (Zellinger et al., ICLR 2017) between the rows of ``x1`` and ``x2`` (flattened to [N, D]): the distance
    of the means plus the distances of the central moments 2..``moments``, each ``sqrt(Σ diff² + eps)``."""
    x1, x2 = x1.reshape(-1, x1.shape[-1]), x2.reshape(-1, x2.shape[-1])
    m1, m2 = x1.mean(0), x2.mean(0)
    total = ((m1 - m2).pow(2).sum() + CMD_EPS).sqrt()
    for k in range(2, moments + 1):
        total = total + (((x1 - m1).pow(k).mean(0) - (x2 - m2).pow(k).mean(0)).pow(2).sum() + CMD_EPS).sqrt()
    return total


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        sim_weight: float) -> torch.Tensor:
    """TFR-Net's reconstruction loss on the steps in ``mask`` [B, L] (the dropped ones): summed smooth-L1 over
    their elements / (their element count + eps), plus ``sim_weight`` · CMD of the masked tensors / the same."""
    m = mask.unsqueeze(-1).expand_as(pred).to(pred.dtype)
    p, t = pred * m, target * m
    count = m.sum() + REC_EPS
    loss = nn.functional.smooth_l1_loss(p, t, reduction="sum") / count
    if sim_weight:
        loss = loss + sim_weight * central_moment_discrepancy(p, t) / count
    return loss


def drop_steps(mask: torch.Tensor, rate: float) -> torch.Tensor:
    """bool [B, L]: each valid step of ``mask`` dropped with probability ``rate`` (torch's global generator, so
    a seeded run draws the same steps)."""
    if rate <= 0:
        return torch.zeros_like(mask)
    return (torch.rand(mask.shape, device=mask.device) < rate) & mask
