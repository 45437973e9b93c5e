"""The Memory Fusion Network's recurrent core (Zadeh et al., AAAI 2018), the block of MFN and MFM.

:class:`MemoryFusionCore` runs one LSTMCell per modality over word-aligned sequences, a delta-memory attention
over the cell states of the previous and the current step, and a multi-view gated memory; it returns the last
hidden states and the memory (MFN, MFM). :func:`text_aligned` gives the aligned inputs from a batch (the sequences
as they are when every modality has the text's steps; else each modality's utterance mean at every text step, or
its steps aligned onto the text's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout
from .masking import mask_fill, masked_mean
from .recurrent import align_steps, text_timeline

__all__ = ["MemoryFusionCore", "text_aligned", "MFN_WINDOW"]

#: MFN's memory window: the attention reads the cell states of the previous and the current step
MFN_WINDOW = 2


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout -> Linear`` (each of MFN's small networks)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, out_dim))


class MemoryFusionCore(nn.Module):
    """MFN's system of LSTMs, delta-memory attention and gated memory.

    At step t each modality's LSTMCell updates (h_m, c_m); c* = [c_{t-1}; c_t] is weighted by
    a = softmax(attention(c*)); the proposal u = tanh(proposal(a * c*)); with g1 = sigmoid(retain([a * c*; mem])),
    g2 = sigmoid(write([a * c*; mem])) the memory becomes g1 * mem + g2 * u. Steps where ``mask`` is False leave
    every state unchanged, so the result is the state at each sample's last valid step.

    ``nets`` are (hidden width, dropout) of the attention, proposal, retain and write networks.
    ``fusion`` (optional) replaces the delta-memory attention: a module with an ``out_dim`` attribute called as
    ``fusion(previous, current)`` with each modality's (h, c) before and after the step, returning the
    [B, out_dim] input of the proposal and gates (Graph-MFN's Dynamic Fusion Graph); the attention entry of
    ``nets`` is then unused.
    ``forward(xs: [B, L, D_m] per modality, mask [B, L]) -> [B, sum(hidden) + mem_dim]`` (= [h_1; ...; mem]).
    """

    def __init__(self, in_dims: tuple[int, ...], hidden: tuple[int, ...], mem_dim: int,
                 nets: tuple[tuple[int, float], tuple[int, float], tuple[int, float], tuple[int, float]],
                 fusion: nn.Module | None = None):
        super().__init__()
        self.mem_dim = mem_dim
        self.cells = nn.ModuleList([nn.LSTMCell(d, h) for d, h in zip(in_dims, hidden)])
        (ah, ad), (uh, ud), (rh, rd), (wh, wd) = nets
        self.fusion = fusion
        if fusion is None:
            att_in = sum(hidden) * MFN_WINDOW
            self.attention = _mlp(att_in, ah, att_in, ad)
        else:
            att_in = fusion.out_dim
        self.proposal = _mlp(att_in, uh, mem_dim, ud)
        self.retain = _mlp(att_in + mem_dim, rh, mem_dim, rd)
        self.write = _mlp(att_in + mem_dim, wh, mem_dim, wd)
        self.out_dim = sum(hidden) + mem_dim

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        B = mask.shape[0]
        hs = [xs[0].new_zeros(B, cell.hidden_size) for cell in self.cells]
        cs = [h.clone() for h in hs]
        mem = xs[0].new_zeros(B, self.mem_dim)
        for t in range(mask.shape[1]):
            step = [cell(x[:, t], (h, c)) for cell, x, h, c in zip(self.cells, xs, hs, cs)]
            if self.fusion is None:
                c_star = torch.cat(cs + [s[1] for s in step], dim=1)
                attended = F.softmax(self.attention(c_star), dim=1) * c_star
            else:
                attended = self.fusion(list(zip(hs, cs)), step)
            proposal = torch.tanh(self.proposal(attended))
            both = torch.cat([attended, mem], dim=1)
            new_mem = torch.sigmoid(self.retain(both)) * mem + torch.sigmoid(self.write(both)) * proposal
            valid = mask[:, t:t + 1]
            mem = torch.where(valid, new_mem, mem)
            hs = [torch.where(valid, s[0], h) for s, h in zip(step, hs)]
            cs = [torch.where(valid, s[1], c) for s, c in zip(step, cs)]
        return torch.cat(hs + [mem], dim=1)


def text_aligned(text: torch.Tensor, batch, pool: bool | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """([text, audio, vision] on the text's steps, their mask :func:`~.recurrent.text_timeline`) for a recurrent
    core over aligned steps.

    Audio and vision that have exactly the text's valid steps (word-aligned features, as MMSA feeds MFN-based
    models) are used as they are. ``pool``: True = each is its utterance mean (over its valid steps) repeated at
    every text step, aligned or not (MMSA's loader for MFN, need_normalized); False = unaligned ones are aligned
    per sample onto the text's valid steps (:func:`~.recurrent.align_steps`); None = unaligned ones are pooled
    (MFM). A sample without text runs one step, so it still has a state.
    """
    mask = text_timeline(batch.text_mask)
    L = mask.shape[1]
    out = [mask_fill(text, batch.text_mask)]
    for x, m in ((batch.audio, batch.audio_mask), (batch.vision, batch.vision_mask)):
        aligned = m is not None and m.shape == batch.text_mask.shape and torch.equal(m, batch.text_mask)
        if pool or (pool is None and not aligned):
            out.append(masked_mean(x, m)[:, None].expand(-1, L, -1))
        else:
            out.append(mask_fill(x, m) if aligned else align_steps(x, m, mask))
    return out, mask
