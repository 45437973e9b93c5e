"""TFN's tensor fusion (Zadeh et al., EMNLP 2017), shared by TFN and its multi-task variant MTFN."""

from __future__ import annotations

import torch

__all__ = ["tensor_fusion"]


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
