"""Reusable building blocks shared by the assembled models.

Shape conventions: sequences are batch-first ``[B, L, D]``; masks are bool
``[B, L]`` with True on valid steps (the :class:`~msa_toolkit.data.batch.Batch`
convention). Every block here tolerates a sample whose mask is all False (an
absent modality): pooling returns zeros and attention over no valid key
returns a zero update instead of NaN.

Contents:
- masks and pooling: :func:`unpadded` (None for a CPU mask without padding), :func:`mask_fill`,
  :func:`masked_mean`, :func:`last_valid`, :func:`take_last` (the last valid row, not zeroed)
- dropout (defined in :mod:`.dropout`, re-exported): :func:`keep_mask` (the inverted-dropout mask, drawn
  fast on the CPU), :class:`Dropout` / :func:`dropout` (``nn.Dropout`` / ``F.dropout`` with that draw)
- positions (defined in :mod:`.positions`, re-exported): :func:`sinusoidal_table`,
  :class:`SinusoidalPositionalEncoding` (Vaswani's interleaved, tensor2tensor's sin-half/cos-half or
  fairseq's halves-from-position-1 layout), :class:`LearnedPositionalEncoding`
- attention: :func:`attend` (the one scaled dot-product call, safe key masks), :class:`MultiHeadAttention`
  (fused q/k/v projection, self or cross; loads older separate to_q/to_k/to_v weights), :class:`SelfAttention` (one fused q/k/v projection)
- transformer blocks (defined in :mod:`.transformer`, re-exported): :class:`TransformerBlock` (pre-LN self-
  or cross-attention block, MulT / DLF / ALMT), :class:`EncoderLayer` (post- or pre-norm self-attention layer
  with fused projections that zeroes padded steps, MMCL / MInD), :class:`CrossModalTransformer` (MulT's
  cross-modal / self-attention encoder, also DLF's building block); ``forward_last`` on each computes the
  final block for the last valid step only

Input projections, heads and gradient reversal are in :mod:`.heads`; the optional fine-tuned text
encoder in :mod:`.text_encoder`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import FAST_DRAW_MIN_NUMEL, Dropout, dropout, keep_mask
from .linear import Linear, linear
from .positions import (SINUSOID_LAYOUTS, LearnedPositionalEncoding, SinusoidalPositionalEncoding,
                        sinusoidal_table)

# (the transformer blocks are served by the module's __getattr__ at the end, not listed here)
__all__ = [
    "masked_mean", "last_valid", "take_last", "mask_fill", "unpadded", "sinusoidal_table",
    "SinusoidalPositionalEncoding", "LearnedPositionalEncoding", "attend", "MultiHeadAttention", "SelfAttention",
    "ACTIVATIONS", "activation", "keep_mask", "Dropout", "dropout", "FAST_DRAW_MIN_NUMEL", "SINUSOID_LAYOUTS",
]

#: activation modules by config name
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU,
                                           "leakyrelu": nn.LeakyReLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (a key of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# --------------------------------------------------------------------------- pooling


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


def _zero_empty(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """[B, 1, D] -> [B, D], zero for a sample whose ``mask`` has no valid step."""
    x = x.squeeze(1)
    return x if mask is None else x * mask.any(dim=1, keepdim=True).to(x.dtype)


# --------------------------------------------------------------------------- attention


#: attention on the CPU over at most this many keys takes the math path (:func:`_attention_math`), with or
#: without autograd: SDPA's CPU flash kernel is slower there (2-core CPU, OMP_WAIT_POLICY=PASSIVE, medians in
#: ms, flash vs math). Inference: 16 x 10 heads x 46 x 46 x Dh 5: 2.4-2.8 vs 0.77; 64 x 10 x 46 x 46 x 5:
#: 9.6 vs 4.2; 64 x 8 x 9 x 9 x 64: 2.2-3.6 vs 1.3. Forward + backward (self-attention, the projections'
#: layout): 64 x 10 x 46 x 46 x 5: 60-68 vs 36-39; 128 x 4 x 50 x 50 x 64 (MMCL): 112-148 vs 61-78;
#: 32 x 4 x 50 x 50 x 128 (MInD): 24-33 vs 23; only 16 x 10 x 46 x 46 x 5 is the other way (6.8 vs 9.7).
#: From a few hundred keys flash is far better (16 x 10 x 46 x 496 x 5 inference: 8-15 vs 38-42).
MATH_PATH_MAX_KEYS = 64

#: ... except without gradients for heads at least this wide: there SDPA's fused kernel is the faster one
#: (2-core CPU, PASSIVE, eval, medians in ms, math vs fused, over 30 alternating calls of two runs; unpadded /
#: padded keys): MInD's 32 x 4 heads x 50 x 50 x Dh 128: 3.6-5.0 vs 2.4-2.9 / 3.8 vs 2.4; MMCL's 128 x 4 x 50 x
#: 50 x 64: 12.1-14.7 vs 7.4-8.0 / 8.3 vs 6.3; 64 x 8 x 9 x 9 x 64: 1.4-2.2 vs 1.2 / 1.5 vs 1.4. Narrower heads
#: stay with the math path (64 x 8 x 50 x 32: 3.9-12.4 vs 4.3-5.3, no clear winner; 64 x 8 x 50 x 16: 2.6 vs 3.5;
#: DLF's 64 x 10 x 46 x 46 x 5 padded: 3.0 vs 4.9), and so does training (forward + backward, see above).
#: Whole models, alternating in one process: MInD's eval forward at B = 32 1.03x (two runs of 10 and 20
#: rounds), MMCL's at B = 128 0.98-1.01x (its GEMMs dominate)
FUSED_NO_GRAD_MIN_HEAD = 64


#: heads at most this wide multiply attention weights by values in the transposed orientation
#: (:class:`_NarrowValues`): a batched GEMM whose output is only Dh columns wide is ~3x slower on the CPU
#: than the same product computed as (V^T W^T)^T (2-core CPU, PASSIVE, medians: [160, 46, 46] x [160, 46, 5]
#: 332 us vs 115 us; [640, ...] 1052 vs 300 us); from Dh 32 the plain orientation is faster (596 vs 1167 us).
NARROW_HEAD_MAX = 16


class _NarrowValues(torch.autograd.Function):
    """``weights @ values`` for narrow heads, each GEMM in the orientation whose output is not Dh wide.

    ``w`` [N, Lq, Lk], ``v`` [N, Lk, Dh] -> [N, Lq, Dh] (a transposed view of the [N, Dh, Lq] product).
    Backward: dL/dw = g v^T ([Lq, Dh] x [Dh, Lk]) and dL/dv = (g^T w)^T ([Dh, Lq] x [Lq, Lk]), where
    autograd's matmul would compute w^T g, Dh columns wide again. Same products, summed in another
    order (float rounding differs from ``w @ v`` in the last bits).
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, v)
        return torch.bmm(v.transpose(1, 2), w.transpose(1, 2)).transpose(1, 2)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        w, v = ctx.saved_tensors
        gw = torch.bmm(g, v.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        gv = torch.bmm(g.transpose(1, 2), w).transpose(1, 2) if ctx.needs_input_grad[1] else None
        return gw, gv


def _weigh_values(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``w @ v`` over [B, H, Lq, Lk] x [B, H, Lk, Dh], through :class:`_NarrowValues` for narrow heads."""
    if v.shape[-1] > NARROW_HEAD_MAX:
        return torch.matmul(w, v)
    B, H, Lq, Lk = w.shape
    out = _NarrowValues.apply(w.reshape(B * H, Lq, Lk), v.reshape(B * H, Lk, v.shape[-1]))
    return out.view(B, H, Lq, v.shape[-1])


def _attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None,
                    p: float = 0.0) -> torch.Tensor:
    """SDPA's math path, with inverted dropout on the attention weights drawn cheaply when ``p > 0`` (CPU).

    ``q``/``k``/``v`` [B, H, L, Dh]; ``attn_mask`` bool, broadcastable to [B, H, Lq, Lk] (True = attend).
    With ``p > 0``, same distribution as ``F.scaled_dot_product_attention(..., dropout_p=p)``: each
    weight is kept with probability 1 - p and the kept ones are scaled by 1 / (1 - p) (the scale is
    applied to the [.., Lq, Dh] output, which is the same product). Why: SDPA's CPU fused kernel takes
    no dropout, and its math path draws the mask with ``bernoulli_`` and scales the [Lq, Lk] weights
    twice; one draw (then ``random_`` int32, now :func:`keep_mask`), a comparison and a product with the
    float keep mask made the whole attention forward + backward about 2x faster on the 2-core CPU
    (OMP_WAIT_POLICY=PASSIVE, p = 0.3; DLF's 16 x 10 heads x 46 x 46: 9.3 vs 17.0 ms, 64 x 10 x 46 x 46:
    39 vs 97 ms; 64 x 8 x 50 x 16: 31 vs 81 ms), close to SDPA without dropout. ``torch.where`` in place
    of the product was slower (its kernel and backward).
    """
    scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-2, -1))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if p == 0.0:
        return _weigh_values(weights, v)
    keep = keep_mask(weights.shape, p, weights.dtype, weights.device)  # a float mask: the cheapest product
    return _weigh_values(weights * keep, v) * (1.0 / (1.0 - p))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, key_mask: torch.Tensor | None = None,
           dropout_p: float = 0.0) -> torch.Tensor:
    """Multi-head scaled dot-product attention on projected inputs, safe for all-False key masks.

    ``q`` [B, Lq, H*Dh], ``k``/``v`` [B, Lk, H*Dh], ``key_mask`` [B, Lk] (True = valid)
    -> [B, Lq, H*Dh]. Rows of a sample with no valid key are exactly zero.

    Fast path: a CPU mask with no padding is dropped (SDPA then takes its fused kernel without a
    mask); on an accelerator, and under ``torch.compile``, the mask is always passed, since checking
    it would synchronise the host (break the graph). Attention dropout: on CUDA SDPA's own (its fused
    kernels accept dropout); on CPU :func:`_attention_math` (same distribution, its mask from
    :func:`keep_mask`; SDPA's CPU fused kernel takes no dropout and its math path draws with the slow
    ``bernoulli_``). CPU attention over at most :data:`MATH_PATH_MAX_KEYS` keys takes the math path too,
    unless no gradient is needed and the heads are at least :data:`FUSED_NO_GRAD_MIN_HEAD` wide.
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
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    few_keys = k.shape[1] <= MATH_PATH_MAX_KEYS and (grad or inner // heads < FUSED_NO_GRAD_MIN_HEAD)
    if cpu and (dropout_p > 0.0 or few_keys):
        out = _attention_math(split(q), split(k), split(v), attn_mask, dropout_p)
    else:
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask, dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(B, Lq, inner)
    if has_key is not None:
        out = out * has_key[:, None, None].to(out.dtype)
    return out


#: :meth:`SelfAttention.forward` with a few queries folds the key and value projections into the queries
#: (:func:`attend_folded`) when that costs at most this fraction of the multiply-adds of projecting every key and
#: value. MInD's backbones (one query over 50 keys, d = 512, 4 heads) do 2.8 % of them; measured on the 2-core
#: CPU, alternating in one process, three runs of 6-20 rounds: MInD's eval forward at B = 32 1.03-1.08x, its
#: training step 1.01-1.07x.
FOLD_MAX_COST = 0.5


def folding_pays(queries: int, keys: int, dim: int, heads: int) -> bool:
    """Whether :func:`attend_folded` does at most :data:`FOLD_MAX_COST` of the plain path's multiply-adds for
    ``queries`` queries over ``keys`` keys of width ``dim`` (qkv weight [3 dim, dim]): per query 2 dim^2 (fold the
    query into the key weights, the values' weights into the output) + 2 heads keys dim (scores and weighted
    inputs), against 2 keys dim^2 (the key and value projections) + 2 queries keys dim (attention)."""
    folded = queries * (2 * dim * dim + 2 * heads * keys * dim)
    plain = 2 * keys * dim * dim + 2 * queries * keys * dim
    return folded <= FOLD_MAX_COST * plain


def attend_folded(query: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  heads: int, key_mask: torch.Tensor | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Self-attention of a few query rows over ``x`` without projecting ``x`` into keys and values.

    ``query`` [B, Lq, D] (rows to be projected by the query weights), ``x`` [B, L, D], ``weight`` [3 D, D] and
    ``bias`` [3 D] the fused q/k/v projection (rows q, k, v) -> [B, Lq, D], the attention output before the
    out-projection: what :func:`attend` gives on ``qkv``-projected inputs, up to float rounding. Per head h, with
    q_h the projected, scaled query: the score of key j is q_h . (W_k,h x_j + b_k,h) = (W_k,h^T q_h) . x_j + a
    term constant over j, which softmax ignores; the output sum_j p_j (W_v,h x_j + b_v,h) = W_v,h (sum_j p_j x_j)
    + (sum_j p_j) b_v,h. So x is multiplied by [H Lq] folded query vectors instead of [3 D] weight rows: far
    less work for one query over many keys (:func:`folding_pays`). Attention dropout: the same keep mask and
    1 / (1 - p) scale as :func:`_attention_math` (in distribution, as SDPA's); padding as :func:`attend`
    (a sample with no valid key gives zeros).
    """
    B, L, D = x.shape
    Lq, n = query.shape[1], weight.shape[1]
    dh = n // heads
    bq = None if bias is None else bias[:n]
    q = linear(query, weight[:n], bq).view(B, Lq, heads, dh) * (dh ** -0.5)
    # fold the key weights into the queries, one batched product over heads: [H, B Lq, dh] x [H, dh, D]
    qk = torch.bmm(q.permute(2, 0, 1, 3).reshape(heads, B * Lq, dh), weight[n:2 * n].view(heads, dh, D))
    scores = torch.bmm(qk.view(heads, B, Lq, D).transpose(0, 1).reshape(B, heads * Lq, D), x.transpose(1, 2))
    key_mask = unpadded(key_mask)
    has_key = None
    if key_mask is not None:
        has_key = key_mask.any(dim=1)
        scores = scores.masked_fill(~(key_mask | ~has_key.unsqueeze(1)).unsqueeze(1), float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # [B, H Lq, L]
    if dropout_p > 0.0:
        weights = weights * keep_mask(weights.shape, dropout_p, weights.dtype, weights.device)
    mixed = torch.bmm(weights, x)  # [B, H Lq, D]: the inputs weighted per head and query
    # the value weights on the mixed inputs: [H, B Lq, D] x [H, D, dh]
    out = torch.bmm(mixed.view(B, heads, Lq, D).transpose(0, 1).reshape(heads, B * Lq, D),
                    weight[2 * n:].view(heads, dh, D).transpose(1, 2)).view(heads, B, Lq, dh).transpose(0, 1)
    if bias is not None:  # each head's value bias, times the weights' sum (1 without dropout)
        out = out + weights.view(B, heads, Lq, L).sum(-1, keepdim=True) * bias[2 * n:].view(heads, 1, dh)
    if dropout_p > 0.0:
        out = out * (1.0 / (1.0 - dropout_p))
    out = out.transpose(1, 2).reshape(B, Lq, n)
    return out if has_key is None else out * has_key[:, None, None].to(out.dtype)


#: state-dict names of the separate projections older checkpoints hold (fused on load into ``qkv``)
LEGACY_QKV_NAMES = ("to_q", "to_k", "to_v")


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with padding masks that never produce NaN.

    Args:
        dim: query (and output) dim.
        heads: number of heads.
        dim_head: per-head dim (default ``dim // heads``).
        kv_dim: key/value input dim (default ``dim``).
        qkv_bias / out_bias: biases of the input / output projections.
        dropout: attention-probability dropout.

    ``forward(q [B, Lq, D], k [B, Lk, Dkv], v [B, Lk, Dkv], key_mask [B, Lk] | None) -> [B, Lq, D]``.
    For a sample whose ``key_mask`` is all False (absent modality) the attention
    output is exactly zero, so residual connections pass the query through unchanged.

    When ``kv_dim == dim`` the three input projections are one ``qkv`` Linear(dim, 3 inner) (rows:
    q, k, v): one GEMM when ``q``, ``k`` and ``v`` are the same tensor (self-attention), two when
    only ``k is v`` (cross-attention). Checkpoints with the former separate ``to_q`` / ``to_k`` /
    ``to_v`` weights load unchanged (fused in :meth:`_load_from_state_dict`). With another
    ``kv_dim`` the projections stay separate (``to_q``, ``to_k``, ``to_v``).
    """

    def __init__(self, dim: int, heads: int, dim_head: int | None = None, kv_dim: int | None = None,
                 qkv_bias: bool = True, out_bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if dim_head is None:
            if dim % heads:
                raise ValueError(f"dim {dim} is not divisible by heads {heads}")
            dim_head = dim // heads
        kv_dim = kv_dim or dim
        inner = heads * dim_head
        self.heads, self.dim_head, self.dropout, self.inner = heads, dim_head, dropout, inner
        if kv_dim == dim:
            # allocated without drawing, then initialised in the order three separate Linears drew
            self.qkv = torch.nn.utils.skip_init(Linear, dim, 3 * inner, bias=qkv_bias)
            self._init_like_separate(dim)
        else:
            self.to_q = Linear(dim, inner, bias=qkv_bias)
            self.to_k = Linear(kv_dim, inner, bias=qkv_bias)
            self.to_v = Linear(kv_dim, inner, bias=qkv_bias)
        self.to_out = Linear(inner, dim, bias=out_bias)

    @torch.no_grad()
    def _init_like_separate(self, fan_in: int) -> None:
        """Initialise ``qkv`` exactly as the former ``to_q``, ``to_k``, ``to_v`` Linears were (same bounds and draws)."""
        bound = 1.0 / math.sqrt(fan_in)
        for i in range(3):
            rows = slice(i * self.inner, (i + 1) * self.inner)
            nn.init.kaiming_uniform_(self.qkv.weight[rows], a=math.sqrt(5))
            if self.qkv.bias is not None:
                nn.init.uniform_(self.qkv.bias[rows], -bound, bound)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        """Fuse the separate ``to_q`` / ``to_k`` / ``to_v`` tensors of older checkpoints into ``qkv``."""
        if hasattr(self, "qkv"):
            for part in ("weight", "bias"):
                names = [f"{prefix}{n}.{part}" for n in LEGACY_QKV_NAMES]
                if all(n in state_dict for n in names):
                    state_dict[f"{prefix}qkv.{part}"] = torch.cat([state_dict.pop(n) for n in names], dim=0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def project(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projected queries, keys and values (one GEMM for self-attention, two for ``k is v``)."""
        if not hasattr(self, "qkv"):
            return self.to_q(q), self.to_k(k), self.to_v(v)
        w, b, n = self.qkv.weight, self.qkv.bias, self.inner
        if q is k and k is v:
            return self.qkv(q).chunk(3, dim=-1)
        piece = lambda x, lo, hi: linear(x, w[lo:hi], None if b is None else b[lo:hi])  # noqa: E731
        if k is v:
            return (piece(q, 0, n), *piece(k, n, 3 * n).chunk(2, dim=-1))
        return piece(q, 0, n), piece(k, n, 2 * n), piece(v, 2 * n, 3 * n)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               key_mask: torch.Tensor | None) -> torch.Tensor:
        """Attention on already projected q/k/v: [B, L, inner] -> [B, Lq, inner] (not yet out-projected)."""
        return attend(q, k, v, self.heads, key_mask, self.dropout if self.training else 0.0)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.to_out(self.attend(*self.project(q, k, v), key_mask))
        if key_mask is not None:  # keep out_bias from leaking into rows that attended over nothing
            out = out * key_mask.any(dim=1)[:, None, None].to(out.dtype)
        return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused input projection (the fairseq / PyTorch layout).

    ``qkv`` = Linear(dim, 3 dim) gives queries, keys and values, ``out`` = Linear(dim, dim);
    the attention itself is :func:`attend`. ``forward(x [B, L, D], mask [B, L] | None) -> [B, L, D]``;
    rows of a sample with no valid step attend to nothing (their pre-``out`` update is zero).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                query: torch.Tensor | None = None, qkv: torch.Tensor | None = None) -> torch.Tensor:
        """``query`` [B, Lq, D]: only these rows ask (keys and values still come from all of ``x``; for few
        queries without projecting them, :func:`attend_folded`). ``qkv`` [B, L, 3 D]: ``self.qkv(x)`` computed
        by the caller (who may share part of it between calls, as MMCL's critic does); ``x`` is then unused."""
        p = self.dropout if self.training else 0.0
        if qkv is not None:
            if query is not None:
                raise ValueError("pass either query or a precomputed qkv, not both")
            q, k, v = qkv.chunk(3, dim=-1)
        elif query is None:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        elif folding_pays(query.shape[1], x.shape[1], x.shape[2], self.heads):
            return self.out(attend_folded(query, x, self.qkv.weight, self.qkv.bias, self.heads, mask, p))
        else:
            w, b, n = self.qkv.weight, self.qkv.bias, self.qkv.weight.shape[1]
            q = linear(query, w[:n], None if b is None else b[:n])
            k, v = linear(x, w[n:], None if b is None else b[n:]).chunk(2, dim=-1)
        return self.out(attend(q, k, v, self.heads, mask, p))


#: the transformer blocks, defined in :mod:`.transformer` (which builds on this module), served from here on
#: first use so ``layers.CrossModalTransformer`` and ``from .layers import EncoderLayer`` keep working
_FROM_TRANSFORMER = frozenset({"CrossModalTransformer", "EncoderLayer", "FeedForward", "TransformerBlock"})


def __getattr__(name: str):
    if name in _FROM_TRANSFORMER:
        from . import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
