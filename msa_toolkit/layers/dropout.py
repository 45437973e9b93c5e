"""Dropout with a fast CPU mask draw, used by every model in place of ``nn.Dropout`` / ``F.dropout``.

:func:`keep_mask` draws the inverted-dropout mask (NumPy's PCG64 for large CPU masks, seeded from torch's
generator); :func:`dropout` and :class:`Dropout` apply it and defer to torch where the draw would not pay
(CUDA, small inputs, ``p`` of 0 or 1, in-place, ``torch.compile``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FAST_DRAW_MIN_NUMEL", "keep_mask", "dropout", "Dropout"]

#: a CPU dropout mask of at least this many entries is drawn with NumPy (:func:`keep_mask`), a smaller one by
#: torch: setting up NumPy's generator has a fixed cost that only a larger draw repays
FAST_DRAW_MIN_NUMEL = 2 ** 14


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype, device: torch.device | str,
              scale: float = 1.0) -> torch.Tensor:
    """Inverted-dropout mask of ``shape``: each entry ``scale`` with probability ``1 - p``, else 0, independently.

    An entry is kept when a uniform float32 in [0, 1) is >= ``p`` (resolution 2^-24, as torch's own
    dropout). Large CPU masks (:data:`FAST_DRAW_MIN_NUMEL`) are drawn with NumPy's PCG64, seeded with
    one 62-bit draw from torch's default generator, so ``torch.manual_seed`` still makes runs
    repeatable: torch's CPU generator (a serial Mersenne twister behind ``bernoulli_``, ``rand`` and
    ``random_``) draws more slowly than PCG64, and models with dropout everywhere draw a lot.
    Other masks (small, or on an accelerator) come from ``torch.rand``. The draws differ from
    ``nn.Dropout``'s, the distribution does not.
    """
    numel = math.prod(shape)
    if torch.device(device).type == "cpu" and numel >= FAST_DRAW_MIN_NUMEL:
        seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
        u = np.random.Generator(np.random.PCG64(seed)).random(numel, dtype=np.float32)
        # compare and scale in NumPy, in place: its single-threaded loops beat two torch ops here (no
        # OpenMP wake-ups); the same values as torch's ``(u >= p) * scale`` in float32
        np.multiply(u >= np.float32(p), np.float32(scale), out=u)
        mask = torch.from_numpy(u).view(shape)
        return mask if dtype == torch.float32 else mask.to(dtype)
    keep = torch.rand(shape, device=device) >= p
    return keep.to(dtype) if scale == 1.0 else (keep * scale).to(dtype)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the mask of :func:`keep_mask` for large CPU inputs (same distribution).

    CUDA, small inputs, ``p`` of 0 or 1 and ``torch.compile`` use ``F.dropout`` itself.
    """
    if (not training or not 0.0 < p < 1.0 or x.device.type != "cpu" or x.numel() < FAST_DRAW_MIN_NUMEL
            or torch.compiler.is_compiling()):
        return F.dropout(x, p, training)
    return x * keep_mask(x.shape, p, x.dtype, x.device, scale=1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same parameters, no state) drawing its mask with :func:`keep_mask` (see :func:`dropout`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)
