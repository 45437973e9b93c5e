"""Blocks of the recurrent and utterance-level models (TFN lineage, LMF, LF-DNN, MFN, EF-LSTM, Self-MM, MISA, MMIM).

- :func:`run_rnn`: run an LSTM/GRU, in fp32 under CPU autocast (oneDNN's bf16 RNN kernel needs AVX-512)
- :class:`SequenceLSTM`: an LSTM over each sample's valid steps (packed; zero states for an empty sample)
- :class:`UtteranceSubNet`: TFN's audio/visual subnetwork (masked mean, norm, dropout, three ReLU layers)
- :class:`TextSubNet`: TFN's language subnetwork (LSTM, state at the last valid step, dropout, Linear)
- :class:`StepBatchNorm`: batch normalisation with the time steps as channels (MMSA's EF-LSTM input norm), masked
- :func:`align_steps`, :func:`text_timeline`: resample a sequence's valid steps onto another's (word alignment)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .dropout import Dropout
from .masking import last_valid, mask_fill, masked_mean

__all__ = ["run_rnn", "valid_lengths", "SequenceLSTM", "UtteranceSubNet", "TextSubNet", "StepBatchNorm", "align_steps",
           "text_timeline"]


def run_rnn(rnn: nn.Module, x):
    """Run ``rnn`` on ``x`` (a tensor or a PackedSequence); under CPU autocast, in fp32 with autocast off.

    CPU autocast sends LSTMs to oneDNN's bf16 RNN kernel, which only exists on CPUs with AVX-512 (on an AMD
    EPYC without it: "could not create a primitive descriptor for the LSTM forward propagation primitive").
    The models' LSTMs are small, so they run in fp32 on every CPU; on CUDA autocast handles them as usual.
    """
    data = x.data if isinstance(x, nn.utils.rnn.PackedSequence) else x
    if data.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return rnn(x.float() if isinstance(x, torch.Tensor) else x._replace(data=x.data.float()))
    return rnn(x)


class UtteranceSubNet(nn.Module):
    """TFN's audio/visual subnetwork: masked mean over time, then norm, dropout and three Linear+ReLU layers.

    ``forward(x [B, L, D], mask [B, L]) -> [B, hidden]``. The norm is a LayerNorm (per sample, so batches
    of one train); the reference code's is a BatchNorm1d over the batch.
    """

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.net(masked_mean(x, mask))


class TextSubNet(nn.Module):
    """TFN's language subnetwork: one-layer LSTM, the state at the last valid step, dropout, Linear.

    ``forward(x [B, L, D], mask [B, L]) -> [B, out_dim]`` (zeros into the Linear for a sample without text).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.drop = Dropout(dropout)
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        states, _ = run_rnn(self.rnn, x)
        return self.linear(self.drop(last_valid(states, mask)))


class StepBatchNorm(nn.Module):
    """Batch normalisation whose channels are the time steps: ``nn.BatchNorm1d(max_len)`` applied to [B, L, D].

    Step t is normalised with the mean and (biased) variance of every feature of every sample at step t, then
    scaled by ``weight[t]`` and shifted by ``bias[t]`` (MMSA's EF-LSTM input norm). Differences from
    ``nn.BatchNorm1d``: the statistics count the valid steps only (``mask``), a batch may be shorter than
    ``max_len`` (its first L channels are used), padded steps come out zero, and a step no sample has leaves
    the running statistics alone. One sample suffices in training (it has D values per step).
    ``forward(x [B, L, D], mask [B, L] | None) -> [B, L, D]``.
    """

    def __init__(self, max_len: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.max_len, self.eps, self.momentum = max_len, eps, momentum
        self.weight = nn.Parameter(torch.ones(max_len))
        self.bias = nn.Parameter(torch.zeros(max_len))
        self.register_buffer("running_mean", torch.zeros(max_len))
        self.register_buffer("running_var", torch.ones(max_len))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, L, D = x.shape
        if L > self.max_len:
            raise ValueError(f"sequence of {L} steps exceeds the {self.max_len} steps of the input norm; raise "
                             "the model's text_len")
        if self.training:
            m = torch.ones(B, L, 1, dtype=x.dtype, device=x.device) if mask is None else \
                mask.unsqueeze(-1).to(x.dtype)
            count = m.sum(dim=(0, 2)) * D  # [L]
            mean = (x * m).sum(dim=(0, 2)) / count.clamp_min(1.0)
            var = (((x - mean[:, None]) ** 2) * m).sum(dim=(0, 2)) / count.clamp_min(1.0)
            with torch.no_grad():
                seen = count > 1
                unbiased = var * count / (count - 1).clamp_min(1.0)
                for buf, new in ((self.running_mean, mean), (self.running_var, unbiased)):
                    part = buf[:L]
                    part.copy_(torch.where(seen, (1 - self.momentum) * part + self.momentum * new.detach(), part))
        else:
            mean, var = self.running_mean[:L], self.running_var[:L]
        y = (x - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps) * self.weight[:L, None] + self.bias[:L, None]
        return mask_fill(y, mask)


def align_steps(x: torch.Tensor, mask: torch.Tensor | None, target_mask: torch.Tensor) -> torch.Tensor:
    """Average ``x``'s valid steps onto the valid steps of a target sequence (per sample).

    ``x`` [B, Ls, D] with ``mask`` [B, Ls]; ``target_mask`` [B, Lt] -> [B, Lt, D]. With n source and m target
    valid steps (each taken in order), the target step of rank j gets the mean of the source steps of rank in
    [floor(j n / m), ceil((j + 1) n / m)): the identity when n == m, repetition when n < m, averaging when
    n > m. Padded target steps and samples with no valid source step get zeros.
    """
    src = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask
    n = src.sum(dim=1)[:, None, None]  # [B, 1, 1]
    m = target_mask.sum(dim=1)[:, None, None]
    rank_s = (src.long().cumsum(dim=1) - 1)[:, None, :]  # [B, 1, Ls]
    rank_t = (target_mask.long().cumsum(dim=1) - 1)[:, :, None]  # [B, Lt, 1]
    start = rank_t * n // m.clamp_min(1)
    end = ((rank_t + 1) * n + m - 1) // m.clamp_min(1)
    w = (rank_s >= start) & (rank_s < end) & src[:, None, :] & target_mask[:, :, None]
    w = w.to(x.dtype)
    return torch.bmm(w, x) / w.sum(dim=-1, keepdim=True).clamp_min(1.0)


def text_timeline(text_mask: torch.Tensor) -> torch.Tensor:
    """The steps word-aligned models align every modality onto: the text's valid steps, and one step for a
    sample without text (so its audio and vision are averaged into one step). ``text_mask`` [B, Lt] -> [B, Lt].
    MMSA aligns onto the text's steps too (word-aligned features, or its AlignSubNet pooled to the text length).
    """
    mask = text_mask.clone()
    mask[:, 0] |= ~mask.any(dim=1)
    return mask


def valid_lengths(mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor:
    """int64 [B] on the CPU: steps up to and including each sample's last valid one (``length`` without mask)."""
    if mask is None:
        return torch.full((batch,), length, dtype=torch.long)
    steps = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    return (steps * mask).amax(dim=1).cpu()


class SequenceLSTM(nn.Module):
    """``nn.LSTM`` (batch-first) over the valid steps of each sample.

    ``forward(x [B, L, D], mask [B, L] | None) -> (states [B, L, dirs*H], h_n [layers*dirs, B, H])``:
    states are zero after each sample's last valid step, ``h_n`` holds the final state of each layer and
    direction (PyTorch's layout); a sample with no valid step has zero states and ``h_n``.
    :meth:`last` gives the last layer's final state(s) concatenated, ``[B, dirs*H]``.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                           bidirectional=bidirectional, batch_first=True)
        self.dirs = 2 if bidirectional else 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, L = x.shape[:2]
        lengths = valid_lengths(mask, B, L)
        packed = pack_padded_sequence(x, lengths.clamp_min(1), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = run_rnn(self.rnn, packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        present = (lengths > 0).to(device=x.device, dtype=states.dtype)
        return states * present[:, None, None], h_n * present[None, :, None]

    def last(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's final state of each direction, concatenated: [B, dirs * H]."""
        _, h_n = self(x, mask)
        return torch.cat(list(h_n[-self.dirs:]), dim=-1)
