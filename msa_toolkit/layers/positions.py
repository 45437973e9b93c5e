"""Positional encodings: fixed sine/cosine tables in three layouts, and a learned table."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SINUSOID_LAYOUTS", "sinusoidal_table", "SinusoidalPositionalEncoding", "LearnedPositionalEncoding"]

#: layouts of :func:`sinusoidal_table`
SINUSOID_LAYOUTS = ("interleaved", "halves", "fairseq")


def sinusoidal_table(length: int, dim: int, layout: str = "interleaved", device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[length, dim] fixed sine/cosine position table, computed in float32 and cast to ``dtype``.

    Row ``t`` encodes step ``t = 0 .. length-1``; ``h = dim // 2``.
    - ``"interleaved"`` (Vaswani et al.): position ``p = t``, ``T[t, 2i] = sin(p w_i)``,
      ``T[t, 2i+1] = cos(p w_i)`` with ``w_i = exp(-2i ln(10000) / dim)``.
    - ``"halves"`` (tensor2tensor): ``p = t``, ``T[t, i] = sin(p w_i)``, ``T[t, h+i] = cos(p w_i)``,
      ``w_i = exp(-i ln(10000) / (h - 1))``, ``i < h``; a zero last column when ``dim`` is odd.
    - ``"fairseq"`` (fairseq's ``SinusoidalPositionalEmbedding``, padding index 0, used by the MulT
      and DLF reference code): the ``"halves"`` formula at ``p = t + 1`` (fairseq's row 0 is padding).
    """
    first = 1 if layout == "fairseq" else 0
    pos = torch.arange(first, first + length, device=device, dtype=torch.float32).unsqueeze(1)
    if layout == "interleaved":
        div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(length, dim, device=device)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    elif layout in ("halves", "fairseq"):
        half = dim // 2
        scale = math.log(10000.0) / max(half - 1, 1)
        ang = pos * torch.exp(torch.arange(half, device=device, dtype=torch.float32) * -scale)[None, :]
        table = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
        if dim % 2:
            table = torch.cat([table, torch.zeros(length, 1, device=device)], dim=1)
    else:
        raise ValueError(f"unknown sinusoid layout {layout!r}; expected one of {SINUSOID_LAYOUTS}")
    return table.to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine positions for any length (:func:`sinusoidal_table`); no parameters.

    ``forward(x)`` returns the [L, D] table for ``x`` [B, L, D] in ``x``'s dtype (add it yourself).
    One table per (device, dtype) is kept, as long as the longest sequence seen, and shorter
    sequences get its first rows (a row depends on its step only): a DLF forward asked for 17
    tables, each about eight small ops, and a table per length would grow with every new length
    of a length-bucketed run. Under ``torch.compile`` the table is computed in the graph.
    """

    def __init__(self, dim: int, layout: str = "interleaved"):
        super().__init__()
        if layout not in SINUSOID_LAYOUTS:
            raise ValueError(f"unknown sinusoid layout {layout!r}; expected one of {SINUSOID_LAYOUTS}")
        self.dim, self.layout = dim, layout
        self._tables: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if torch.compiler.is_compiling():
            return sinusoidal_table(L, self.dim, self.layout, x.device, x.dtype)
        key = (x.device, x.dtype)
        table = self._tables.get(key)
        if table is None or table.shape[0] < L:
            with torch.inference_mode(False):  # a table first built under inference_mode must serve autograd later
                table = self._tables[key] = sinusoidal_table(L, self.dim, self.layout, x.device, x.dtype)
        return table if table.shape[0] == L else table[:L]


class LearnedPositionalEncoding(nn.Module):
    """A learned [max_len, D] table (initialised N(0, 1) as in ViT-style code); returns its first L rows."""

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        self.max_len = max_len
        self.table = nn.Parameter(torch.randn(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        if L > self.max_len:
            raise ValueError(f"sequence of length {L} exceeds the positional table ({self.max_len}); "
                             "raise the model's *_len config field")
        return self.table[:L]
