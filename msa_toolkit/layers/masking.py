"""Masks and pooling over padded sequences, and activations by name.

Sequences are batch-first ``[B, L, D]``; masks are bool ``[B, L]`` with True on valid steps (the
:class:`~msa_toolkit.data.batch.Batch` convention). ``None`` as a mask means "every step valid". A sample
whose mask is all False (an absent modality) pools to zeros.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "activation", "unpadded", "mask_fill", "masked_mean", "last_valid", "take_last",
           "zero_empty"]

#: activation modules by config name
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU,
                                           "leakyrelu": nn.LeakyReLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (a key of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()



def unpadded(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``None`` when ``mask`` [B, L] has no padding and lives on the CPU, else ``mask`` itself.

    Every block here takes ``None`` as "all steps valid" and skips its masking work then (the results
    are the same: masks of ones multiply by 1, pool over every step, attend over every key). The check
    reads the mask on the host, so on an accelerator (a synchronisation) and under ``torch.compile``
    (a graph break) the mask is kept as it is.
    """
    if mask is None or mask.device.type != "cpu" or torch.compiler.is_compiling() or not bool(mask.all()):
        return mask
    return None


def mask_fill(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded steps of ``x`` [B, L, D] (mask [B, L], True = valid)."""
    if mask is None:
        return x
    return x * mask.unsqueeze(-1).to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over valid steps: [B, L, D] -> [B, D]; a sample with no valid step gives zeros."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def last_valid(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The state at the last valid step: [B, L, D] -> [B, D]; zeros for a sample with none.

    Works for any mask (not only right padding): the largest valid index is taken.
    """
    if mask is None:
        return x[:, -1]
    return take_last(x, mask).squeeze(1) * mask.any(dim=1, keepdim=True).to(x.dtype)


def take_last(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The row at the largest valid index of each sample: [B, L, D] -> [B, 1, D] (a view when ``mask`` is None).

    Unlike :func:`last_valid` a sample with no valid step is not zeroed (it gets its row at index 0):
    the ``forward_last`` methods of :mod:`.transformer` zero such samples once, at the end.
    """
    if mask is None:
        return x[:, -1:]
    pos = torch.arange(x.shape[1], device=x.device).unsqueeze(0) * mask.long()
    return x[torch.arange(x.shape[0], device=x.device), pos.argmax(dim=1)].unsqueeze(1)


def zero_empty(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[B, 1, D] -> [B, D], zero for a sample whose ``mask`` has no valid step."""
    x = x.squeeze(1)
    return x if mask is None else x * mask.any(dim=1, keepdim=True).to(x.dtype)
