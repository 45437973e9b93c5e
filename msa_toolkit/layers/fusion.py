"""Tensor fusion pieces shared by TFN and its multi-task variant MTFN (Zadeh et al., EMNLP 2017).

- :class:`PooledSubNet`: the audio/visual subnetwork, masked mean over time then three ReLU layers.
- :func:`tensor_fusion`: the flattened outer product of ``[z_m; 1]`` over the modalities.
- :func:`run_rnn`: an RNN call that stays in fp32 under CPU autocast (the text subnetwork's LSTM).
"""

from __future__ import annotations

import torch
from torch import nn

from .dropout import Dropout
from .masking import masked_mean

__all__ = ["PooledSubNet", "tensor_fusion", "run_rnn"]


class PooledSubNet(nn.Module):
    """TFN's audio/visual subnetwork: masked mean then ``LayerNorm -> Dropout -> 3 x (Linear, ReLU)``:
    [B, L, D] -> [B, hidden]. The LayerNorm stands in for the reference code's BatchNorm1d (batch-size-1 safe).
    Parameter names (``net.<i>``) are those of TFN's checkpoints."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(masked_mean(x, mask))


def tensor_fusion(*zs: torch.Tensor) -> torch.Tensor:
    """The flattened outer product of ``[z; 1]`` over ``zs`` (each [B, d_i]): [B, Π (d_i + 1)], the first
    argument's index varying slowest. With three inputs: TFN's fusion tensor (unimodal, bimodal and trimodal
    interactions in one tensor)."""
    out = None
    for z in zs:
        z1 = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=1)
        out = z1 if out is None else (out.unsqueeze(2) * z1.unsqueeze(1)).flatten(1)
    if out is None:
        raise ValueError("tensor_fusion needs at least one input")
    return out


def run_rnn(rnn: nn.Module, x: torch.Tensor):
    """Run ``rnn`` on ``x``; under CPU autocast, in fp32 with autocast off.

    CPU autocast sends LSTMs to oneDNN's bf16 RNN kernel, which only exists on CPUs with
    AVX-512 (on an AMD EPYC without it: "could not create a primitive descriptor for the LSTM
    forward propagation primitive"). The text LSTM is small, so it runs in fp32 on every CPU;
    on CUDA autocast handles it as usual.
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return rnn(x.float())
    return rnn(x)
