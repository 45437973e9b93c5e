"""Recurrent encoders over padded sequences: :class:`SequenceLSTM` and :func:`run_rnn`.

An LSTM reads each sample's steps up to its last valid one (packed, so a backward direction starts at the
sample's own end and padding never reaches a state); a sample with no valid step gives zero states. CPU
autocast runs the LSTM in fp32 (:func:`run_rnn`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["run_rnn", "valid_lengths", "SequenceLSTM"]


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
