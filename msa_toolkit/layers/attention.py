"""Multi-head attention: :func:`attend` (the one scaled dot-product call) and :class:`MultiHeadAttention`.

Shapes are batch-first; key masks are bool ``[B, Lk]`` with True on valid keys. A sample with no valid key
(an absent modality) gets an exactly zero attention output instead of NaN, so residual connections pass
its queries through unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import keep_mask
from .masking import unpadded

__all__ = ["attend", "MultiHeadAttention", "AdditiveAttention", "MATH_PATH_MAX_KEYS"]

#: CPU attention over at most this many keys is computed as plain matmul-softmax-matmul: SDPA's CPU flash
#: kernel has a fixed cost per call that only pays over longer key sequences (the seed models' aligned
#: sequences have 50 steps; unaligned audio and vision have hundreds)
MATH_PATH_MAX_KEYS = 64


def _attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                    p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """Softmax(q k^T / sqrt(Dh)) v with inverted dropout ``p`` on the weights (the distribution of SDPA's).

    ``q``/``k``/``v`` [B, H, L, Dh]; ``attn_mask`` bool, broadcastable to [B, H, Lq, Lk] (True = attend).
    The 1 / (1 - p) scale is applied to the [.., Lq, Dh] output (the same product, fewer multiplies).
    Why not SDPA with ``dropout_p`` on the CPU: its fused CPU kernel takes no dropout, and its math path
    draws the mask with the serial ``bernoulli_`` (:func:`~.dropout.keep_mask` draws it with NumPy).
    """
    scores = torch.matmul(q * (q.shape[-1] ** -0.5 if scale is None else scale), k.transpose(-2, -1))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if p == 0.0:
        return torch.matmul(weights, v)
    keep = keep_mask(weights.shape, p, weights.dtype, weights.device)
    return torch.matmul(weights * keep, v) * (1.0 / (1.0 - p))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, key_mask: torch.Tensor | None = None,
           dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """Multi-head scaled dot-product attention on projected inputs, safe for all-False key masks.

    ``q`` [B, Lq, H*Dh], ``k``/``v`` [B, Lk, H*Dh], ``key_mask`` [B, Lk] (True = valid)
    -> [B, Lq, H*Dh]. Rows of a sample with no valid key are exactly zero. ``scale`` multiplies the scores
    (default ``Dh ** -0.5``).

    One rule for the kernel: on the CPU, with attention dropout or over at most :data:`MATH_PATH_MAX_KEYS`
    keys, :func:`_attention_math`; everywhere else ``F.scaled_dot_product_attention`` (its own dropout on an
    accelerator). A CPU mask without padding is dropped (:func:`~.masking.unpadded`).
    """
    B, Lq, inner = q.shape
    split = lambda x: x.view(B, x.shape[1], heads, inner // heads).transpose(1, 2)  # noqa: E731
    attn_mask, has_key = None, None
    key_mask = unpadded(key_mask)
    if key_mask is not None:
        has_key = key_mask.any(dim=1)
        # samples with no valid key attend over their (placeholder) keys; the result is zeroed below
        attn_mask = (key_mask | ~has_key.unsqueeze(1))[:, None, None, :]
    cpu = q.device.type == "cpu" and not torch.compiler.is_compiling()
    if cpu and (dropout_p > 0.0 or k.shape[1] <= MATH_PATH_MAX_KEYS):
        out = _attention_math(split(q), split(k), split(v), attn_mask, dropout_p, scale)
    else:
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask, dropout_p=dropout_p,
                                             scale=scale)
    out = out.transpose(1, 2).reshape(B, Lq, inner)
    if has_key is not None:
        out = out * has_key[:, None, None].to(out.dtype)
    return out


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (self or cross) with padding masks that never produce NaN.

    Args:
        dim: query (and output) dim.
        heads: number of heads.
        dim_head: per-head dim (default ``dim // heads``).
        kv_dim: key/value input dim (default ``dim``).
        qkv_bias / out_bias: biases of the input / output projections.
        dropout: attention-probability dropout.
        scale: multiplier of the scores (default ``dim_head ** -0.5``; CENET's enhancement uses 8).
        out_proj: False = no output projection (``to_out`` is the identity; CENET's enhancement has none).

    ``forward(q [B, Lq, D], k [B, Lk, Dkv], v [B, Lk, Dkv], key_mask [B, Lk] | None) -> [B, Lq, D]``.
    For a sample whose ``key_mask`` is all False (absent modality) the output is exactly zero.

    When ``kv_dim == dim`` the three input projections are one ``qkv`` Linear(dim, 3 inner) (rows q, k, v),
    initialised as three separate Linears would be; self-attention (``q is k is v``) projects in one product,
    and a query of other rows than the keys (cross-attention, or the last step only) slices its weights.
    With another ``kv_dim`` the projections are separate (``to_q``, ``to_k``, ``to_v``).
    """

    def __init__(self, dim: int, heads: int, dim_head: int | None = None, kv_dim: int | None = None,
                 qkv_bias: bool = True, out_bias: bool = True, dropout: float = 0.0, scale: float | None = None,
                 out_proj: bool = True):
        super().__init__()
        if dim_head is None:
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}")
            dim_head = dim // heads
        kv_dim = kv_dim or dim
        inner = heads * dim_head
        self.heads, self.dim_head, self.dropout, self.inner, self.scale = heads, dim_head, dropout, inner, scale
        if kv_dim == dim:
            # allocated without drawing (on the default device: meta while a model's size is checked)
            self.qkv = torch.nn.utils.skip_init(nn.Linear, dim, 3 * inner, bias=qkv_bias,
                                                device=torch.get_default_device())
            self._init_like_separate(dim)
        else:
            self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
            self.to_k = nn.Linear(kv_dim, inner, bias=qkv_bias)
            self.to_v = nn.Linear(kv_dim, inner, bias=qkv_bias)
        if not out_proj and inner != dim:
            raise ValueError(f"without an output projection heads x dim_head ({inner}) must equal dim ({dim})")
        self.to_out = nn.Linear(inner, dim, bias=out_bias) if out_proj else nn.Identity()

    @torch.no_grad()
    def _init_like_separate(self, fan_in: int) -> None:
        """Initialise ``qkv`` as three ``nn.Linear(fan_in, inner)`` for q, k and v (same bounds, same draws)."""
        bound = 1.0 / math.sqrt(fan_in)
        for i in range(3):
            rows = slice(i * self.inner, (i + 1) * self.inner)
            nn.init.kaiming_uniform_(self.qkv.weight[rows], a=math.sqrt(5))
            if self.qkv.bias is not None:
                nn.init.uniform_(self.qkv.bias[rows], -bound, bound)

    def project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projected queries, keys and values (one product for self-attention, two for ``k is v``)."""
        if not hasattr(self, "qkv"):
            return self.to_q(q), self.to_k(k), self.to_v(v)
        w, b, n = self.qkv.weight, self.qkv.bias, self.inner
        if q is k and k is v:
            return self.qkv(q).chunk(3, dim=-1)
        piece = lambda x, lo, hi: F.linear(x, w[lo:hi], None if b is None else b[lo:hi])  # noqa: E731
        if k is v:
            return (piece(q, 0, n), *piece(k, n, 3 * n).chunk(2, dim=-1))
        return piece(q, 0, n), piece(k, n, 2 * n), piece(v, 2 * n, 3 * n)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention on already projected q/k/v: [B, L, inner] -> [B, Lq, inner] (not yet out-projected)."""
        return attend(q, k, v, self.heads, key_mask, self.dropout if self.training else 0.0, self.scale)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.to_out(self.attend(*self.project(q, k, v), key_mask))
        if key_mask is not None:  # keep out_bias from leaking into rows that attended over nothing
            out = out * key_mask.any(dim=1)[:, None, None].to(out.dtype)
        return out


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention weights of one query over a sequence of keys.

    ``score_j = v^T tanh(W [query; key_j])`` (``W``: Linear(query_dim + key_dim, hidden), ``v``: Linear(hidden, 1),
    both without bias, as in seq2seq decoders), softmax over the valid keys.
    ``forward(query [B, Dq], keys [B, L, Dk], key_mask [B, L] | None) -> weights [B, L]``; a sample with no valid
    key gets all-zero weights.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden: int):
        super().__init__()
        self.attn = nn.Linear(query_dim + key_dim, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = query.unsqueeze(1).expand(-1, keys.shape[1], -1)
        scores = self.v(torch.tanh(self.attn(torch.cat([q, keys], dim=-1)))).squeeze(-1)
        key_mask = unpadded(key_mask)
        if key_mask is None:
            return torch.softmax(scores, dim=-1)
        has_key = key_mask.any(dim=1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~(key_mask | ~has_key), float("-inf")), dim=-1)
        return weights * has_key.to(weights.dtype)
