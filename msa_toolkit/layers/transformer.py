"""Transformer blocks shared by the assembled models.

- :class:`FeedForward`: position-wise Linear-activation-Dropout-Linear
- :class:`TransformerBlock`: pre-LN self- or cross-attention block (MulT / DLF / ALMT)
- :class:`EncoderLayer`: post- or pre-norm self-attention layer with fused projections that zeroes padded
  steps (MMCL / MInD)
- :class:`CrossModalTransformer`: MulT's cross-modal / self-attention encoder, also DLF's building block

Each has a ``forward_last`` (not FeedForward) for models that keep only the state at the last valid step:
the final block computes that step alone, exactly (see :meth:`TransformerBlock.forward_last`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .attention import MultiHeadAttention
from .dropout import Dropout
from .masking import activation, last_valid, take_last, zero_empty
from .positions import SinusoidalPositionalEncoding

__all__ = ["FeedForward", "TransformerBlock", "EncoderLayer", "CrossModalTransformer"]


class FeedForward(nn.Sequential):
    """Position-wise ``Linear(dim, hidden) -> act -> Dropout -> Linear(hidden, dim)``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, act: str = "relu"):
        super().__init__(nn.Linear(dim, hidden), activation(act), Dropout(dropout), nn.Linear(hidden, dim))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: (cross-)attention + feed-forward, both residual.

    Self-attention when ``cross=False``; with ``cross=True`` the queries come from
    ``x`` and keys/values from ``context``, both normalised by ``norm_q`` when ``shared_kv_norm``
    (MulT's and DLF's reference), else the context by its own ``norm_kv`` (the earlier layout).

    ``forward(x [B, Lq, D], mask [B, Lq] | None, context [B, Lk, D] | None, context_mask [B, Lk] | None)
    -> [B, Lq, D]``. Padded query steps are computed but carry no information
    (callers pool with the mask).
    """

    def __init__(self, dim: int, heads: int, ff_dim: int | None = None, dropout: float = 0.1,
                 attn_dropout: float = 0.0, ff_dropout: float | None = None, act: str = "relu",
                 cross: bool = False, dim_head: int | None = None, qkv_bias: bool = True,
                 shared_kv_norm: bool = False):
        super().__init__()
        self.cross, self.shared_kv_norm = cross, shared_kv_norm
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim) if cross and not shared_kv_norm else None
        self.attn = MultiHeadAttention(dim, heads, dim_head=dim_head, dropout=attn_dropout, qkv_bias=qkv_bias)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim or 4 * dim, dropout if ff_dropout is None else ff_dropout, act)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm_q(x)
        if self.cross:
            if context is None:
                raise ValueError("a cross-attention block needs a context")
            kv, kv_mask = (self.norm_q if self.norm_kv is None else self.norm_kv)(context), context_mask
        else:
            kv, kv_mask = h, mask
        x = x + self.drop(self.attn(h, kv, kv, kv_mask))
        return x + self.drop(self.ff(self.norm_ff(x)))

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                     context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``take_last(forward(x, ...), mask)`` [B, 1, D] with only the last valid step as query.

        Exact: a pre-LN block's output at one step depends on that step's input and on the keys and
        values (all of ``x`` for self-attention, ``context`` for cross-attention), so the other rows'
        queries, out-projections and feed-forward are skipped (a model that keeps only the last state
        of its final block does ~1/L of that block's per-step work). Dropout draws as many numbers as
        it has rows: the same distribution, another RNG stream than ``forward``.
        """
        last = take_last(x, mask)
        if self.cross:
            if context is None:
                raise ValueError("a cross-attention block needs a context")
            h = self.norm_q(last)
            kv, kv_mask = (self.norm_q if self.norm_kv is None else self.norm_kv)(context), context_mask
        else:
            kv, kv_mask = self.norm_q(x), mask
            h = take_last(kv, mask)
        last = last + self.drop(self.attn(h, kv, kv, kv_mask))
        return last + self.drop(self.ff(self.norm_ff(last)))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Refuse ``norm_kv.*`` weights in a shared-norm block: two trained norms cannot become one."""
        old = [k for k in state_dict if k.startswith(f"{prefix}norm_kv.")]
        if old and self.norm_kv is None:
            for k in old:
                state_dict.pop(k)
            error_msgs.append(
                f"{prefix}norm_kv: the weights have a separate key/value LayerNorm (toolkit layout before the "
                "shared MulT norm) but this block shares one norm; build the model with shared_kv_norm=False "
                "(and positions='interleaved', the table it was trained with) to load them as trained")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class EncoderLayer(nn.Module):
    """Transformer encoder layer: fused self-attention + feed-forward, each with residual and LayerNorm.

    ``norm_first=False`` is the post-norm layout of the original Transformer (and of
    ``torch.nn.TransformerEncoderLayer``'s default); ``True`` is pre-norm (fairseq's
    ``normalize_before``). ``relu_dropout`` is the feed-forward activation dropout (default
    ``dropout``). Padded steps are zeroed on output, so a sample with no valid step gives zeros.

    ``forward(x [B, L, D], mask [B, L]) -> [B, L, D]``.
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float = 0.1, attn_dropout: float = 0.0,
                 act: str = "relu", norm_first: bool = False, relu_dropout: float | None = None):
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, dropout=attn_dropout)
        self.ff = FeedForward(dim, ff_dim, dropout if relu_dropout is None else relu_dropout, act)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop(self.attn(h, h, h, mask))
            x = x + self.drop(self.ff(self.norm2(x)))
        else:
            x = self.norm1(x + self.drop(self.attn(x, x, x, mask)))
            x = self.norm2(x + self.drop(self.ff(x)))
        return x * mask.unsqueeze(-1).to(x.dtype)

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``last_valid(forward(x, mask), mask)`` [B, D], computing only the last valid step's query,
        out-projection and feed-forward (exact in either norm layout; see ``TransformerBlock.forward_last``)."""
        last = take_last(x, mask)
        if self.norm_first:
            h = self.norm1(x)
            last = last + self.drop(self.attn(take_last(h, mask), h, h, mask))
            last = last + self.drop(self.ff(self.norm2(last)))
        else:
            last = self.norm1(last + self.drop(self.attn(last, x, x, mask)))
            last = self.norm2(last + self.drop(self.ff(last)))
        return zero_empty(last, mask)


class CrossModalTransformer(nn.Module):
    """MulT's transformer encoder (Tsai et al., ACL 2019), cross-modal or self-attention.

    The inputs are scaled by ``sqrt(dim)``, sinusoidal positions are added to both the
    target and the source sequence, embedding dropout is applied, then ``layers``
    pre-LN blocks and a final LayerNorm. With ``cross=True`` the target sequence
    queries the source sequence (``source -> target`` in MulT's notation); with
    ``cross=False`` it is a plain self-attention encoder. Defaults = the reference code:
    ``positions="fairseq"``, ``shared_kv_norm=True`` (``"interleaved"`` / False: the earlier layout);
    ``positions=None`` adds no positions (MMSA's TETFN cross-modal and memory encoders).

    ``forward(x [B, Lt, D], mask [B, Lt], source [B, Ls, D] | None, source_mask [B, Ls] | None) -> [B, Lt, D]``
    """

    def __init__(self, dim: int, heads: int, layers: int, cross: bool = True, ff_mult: int = 4,
                 dropout: float = 0.1, attn_dropout: float = 0.1, ff_dropout: float = 0.1,
                 embed_dropout: float = 0.25, act: str = "relu", scale_embedding: bool = True,
                 positions: str | None = "fairseq", shared_kv_norm: bool = True):
        super().__init__()
        self.cross, self.scale = cross, (math.sqrt(dim) if scale_embedding else 1.0)
        self.pos = SinusoidalPositionalEncoding(dim, positions) if positions else None
        self.embed_drop = Dropout(embed_dropout)
        self.blocks = nn.ModuleList([
            TransformerBlock(dim, heads, ff_mult * dim, dropout=dropout, attn_dropout=attn_dropout,
                             ff_dropout=ff_dropout, act=act, cross=cross, shared_kv_norm=shared_kv_norm)
            for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_drop(self.scale * x + (self.pos(x) if self.pos is not None else 0.0))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self._embed(x)
        src = self._embed(source) if (self.cross and source is not None) else None
        for blk in self.blocks:
            x = blk(x, mask, src, source_mask)
        return self.norm(x)

    def forward_last(self, x: torch.Tensor, mask: torch.Tensor | None = None, source: torch.Tensor | None = None,
                     source_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``last_valid(forward(...), mask)`` [B, D]: the final block computes the last valid step only
        (:meth:`TransformerBlock.forward_last`); zeros for a sample with no valid step."""
        if not self.blocks:
            return last_valid(self.forward(x, mask, source, source_mask), mask)
        x = self._embed(x)
        src = self._embed(source) if (self.cross and source is not None) else None
        for blk in self.blocks[:-1]:
            x = blk(x, mask, src, source_mask)
        return zero_empty(self.norm(self.blocks[-1].forward_last(x, mask, src, source_mask)), mask)
