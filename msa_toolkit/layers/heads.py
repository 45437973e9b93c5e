"""Input projections, prediction heads and gradient reversal shared by the assembled models.

Attention, transformer blocks and positional encodings have their own modules; this module holds
the simpler parts around them: :class:`ConvProjection` (MulT / DLF temporal input projection),
:class:`MLPHead`, :class:`ResidualHead`, and :func:`grad_reverse` / :class:`GradientReversal`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout
from .masking import activation, mask_fill

__all__ = ["ConvProjection", "MLPHead", "ResidualHead", "GradReverse", "grad_reverse", "GradientReversal"]

#: padding modes of :class:`ConvProjection`
CONV_PADDINGS = ("same", "valid")


class ConvProjection(nn.Module):
    """Temporal 1-D convolution from ``in_dim`` to ``dim`` with kernel ``k`` (MulT / DLF input projection).

    ``padding="same"`` keeps the input length (length-1 inputs work for any kernel).
    ``padding="valid"`` (PyTorch's ``padding=0``, as in the DLF reference) gives ``L - k + 1``
    steps (the input is zero-extended to ``k`` steps when shorter); use :meth:`output_mask` for
    the mask of the result: a sample of ``n`` valid steps (up to its last valid one) keeps its
    ``max(n - k + 1, 1)`` windows, so the result does not depend on how far the batch is padded.
    Padded steps are zeroed before and after the convolution.
    ``forward(x [B, L, in_dim], mask [B, L] | None) -> [B, L', dim]``.
    """

    def __init__(self, in_dim: int, dim: int, kernel_size: int = 1, bias: bool = False, padding: str = "same"):
        super().__init__()
        if padding not in CONV_PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; expected one of {CONV_PADDINGS}")
        self.kernel_size, self.padding = kernel_size, padding
        self.conv = nn.Conv1d(in_dim, dim, kernel_size, padding="same" if padding == "same" else 0, bias=bias)

    def output_mask(self, mask: torch.Tensor | None, length: int | None = None) -> torch.Tensor | None:
        """The mask of :meth:`forward`'s output for an input ``mask`` [B, L] (the same mask for "same")."""
        if mask is None or self.padding == "same":
            return mask
        k, L = self.kernel_size, mask.shape[1]
        out_len = max(L, k) - k + 1 if length is None else length
        n = (torch.arange(1, L + 1, device=mask.device) * mask).amax(dim=1)  # steps up to the last valid one
        windows = (n - k + 1).clamp_min(1) * (n > 0)
        return torch.arange(out_len, device=mask.device)[None, :] < windows[:, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = mask_fill(x, mask)
        if self.padding == "valid" and x.shape[1] < self.kernel_size:
            x = F.pad(x, (0, 0, 0, self.kernel_size - x.shape[1]))
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return mask_fill(y, self.output_mask(mask, y.shape[1]))


class MLPHead(nn.Sequential):
    """``layers`` Linear layers with activation + dropout between them: [*, in_dim] -> [*, out_dim]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int = 1, layers: int = 2, dropout: float = 0.0,
                 act: str = "relu"):
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden), activation(act), Dropout(dropout)]
            d = hidden
        mods.append(nn.Linear(d, out_dim))
        super().__init__(*mods)


class ResidualHead(nn.Module):
    """MulT's output head: ``h + Linear(Dropout(ReLU(Linear(h))))`` then ``Linear(dim, out_dim)``.

    ``forward(h [B, dim]) -> (prediction [B, out_dim], representation [B, dim])``.
    """

    def __init__(self, dim: int, out_dim: int = 1, dropout: float = 0.0):
        super().__init__()
        self.proj1, self.proj2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.drop = Dropout(dropout)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep = h + self.proj2(self.drop(F.relu(self.proj1(h))))
        return self.out(rep), rep


# --------------------------------------------------------------------------- gradient reversal


class GradReverse(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``-scale`` backward (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient reversal: ``x`` forward, ``-scale * grad`` backward."""
    return GradReverse.apply(x, scale)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
