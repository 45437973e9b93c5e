"""Grouped execution: G modules of one architecture, different weights, same-shaped inputs, one op per layer.

DLF runs about fifteen small :class:`~.transformer.CrossModalTransformer` calls per step and MMCL six
:class:`~.transformer.EncoderLayer` calls, many on inputs of one shape; at their widths (d = 50, 5-dim
heads) the per-op overhead looked like the cost to cut (on the CPU it measured small: see
:data:`GROUPED_DEVICES`). :func:`run_grouped` stacks the inputs along a new leading group axis and
runs each layer once for the whole group:

- Linear layers: the G weights (and biases) stacked on every call, ``torch.baddbmm`` / ``torch.bmm`` over
  ``[G, B*L, in]``. The parameters stay where they are, so state dicts, checkpoints and the parity
  scripts see the same modules; gradients flow back through the stack.
- LayerNorm: ``F.layer_norm`` without affine, then the stacked weight and bias (``torch.addcmul``).
- attention: the group folded into the batch (``[G*B, L, inner]``) and one :func:`~.layers.attend`
  call, keeping its fast paths; members with different attention dropout (DLF's per-modality rates)
  take one call per run of equal rates.
- dropout (embedding, residual, feed-forward, attention): drawn as usual, with the same distribution
  per element; the draws follow another order than G separate calls (like ``DLF._shared``), so a seeded
  run gives other (equally distributed) masks than the per-module path. At dropout 0 the outputs and
  gradients equal the per-module calls (fp64 within 1e-12; fp32 within 1e-6 of each tensor's scale, the
  LayerNorm and bias gradients summing in another order; ``tests/models/test_grouped.py``).

Off unless the inputs' device type is in :data:`GROUPED_DEVICES` (empty by default: it measured no
faster on the CPU). Calls that cannot share a group (another input or source shape, dtype or device,
another structure: depth, widths, heads, dropout rates other than attention's, training flag) run in
their own group; a group of one is the module's own ``forward``. A missing mask in a group where
another member has one is a mask of ones (the same result).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import groupby

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MultiHeadAttention, SelfAttention, attend
from .transformer import CrossModalTransformer, EncoderLayer

__all__ = ["run_grouped", "grouping_on", "structure", "GROUPED_DEVICES"]

#: the environment variable that turns grouping on for the device types it lists
GROUPED_ENV = "MSA_GROUPED_DEVICES"
#: device types (``torch.device.type``) on whose inputs :func:`run_grouped` groups calls; on others it calls
#: each module. Empty: off. On the 2-core CPU grouping was no faster (``benchmarks/results/reference_speed.md``,
#: 2026-11-30 "grouped execution"; grouped ÷ per-module, two alternating pairs: DLF aligned B = 16 train
#: 1.00 / 0.98, inference 0.94 / 1.06, B = 64 train 0.86 / 0.99; MMCL B = 128 train 0.97 / 1.01, inference
#: 0.93 / 0.84): the GEMM time is the same batched or not, and the ~8 k fewer ops per step save little.
#: Not measured on CUDA, where per-kernel launch cost could make it pay off.
#: The environment variable ``MSA_GROUPED_DEVICES`` (comma-separated device types, e.g. ``cuda``) sets it at
#: import, so a GPU session can measure grouping without editing code (``scripts/gpu_checks.sh`` does).
GROUPED_DEVICES: frozenset[str] = frozenset(
    d.strip() for d in os.environ.get(GROUPED_ENV, "").split(",") if d.strip())

#: attributes that may differ between grouped members: attention dropout (one ``attend`` call per run of equal rates)
PER_MEMBER_ATTRIBUTES = frozenset({"dropout"})
#: attribute values compared by :func:`structure` (scalars and tuples of them)
_PLAIN = (bool, int, float, str, tuple, type(None))


def grouping_on(x: torch.Tensor) -> bool:
    """Whether :func:`run_grouped` groups calls on inputs like ``x`` (its device type is in :data:`GROUPED_DEVICES`)."""
    return x.device.type in GROUPED_DEVICES


def structure(module: nn.Module) -> tuple:
    """What must agree for modules to run as one group: every submodule's type, plain attributes
    (training flag, dropout ``p``, ``eps``, heads, widths, ...) and parameter shapes, except the
    attention dropout of :data:`PER_MEMBER_ATTRIBUTES` on attention modules."""
    out = []
    for name, sub in module.named_modules():
        skip = PER_MEMBER_ATTRIBUTES if isinstance(sub, (MultiHeadAttention, SelfAttention)) else frozenset()
        attrs = tuple(sorted((k, v) for k, v in vars(sub).items()
                             if not k.startswith("_") and k not in skip and isinstance(v, _PLAIN)))
        params = tuple((n, tuple(p.shape)) for n, p in sub.named_parameters(recurse=False))
        out.append((name, type(sub), attrs, params))
    return tuple(out)


def _shape(x: torch.Tensor | None) -> tuple | None:
    return None if x is None else (tuple(x.shape), x.dtype, x.device)


def run_grouped(modules: Sequence[nn.Module], inputs: Sequence[torch.Tensor],
                masks: Sequence[torch.Tensor | None], sources: Sequence[torch.Tensor | None] | None = None,
                source_masks: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """``[modules[i](inputs[i], masks[i], sources[i], source_masks[i]) for i]``, grouped where possible.

    ``modules``: :class:`~.transformer.CrossModalTransformer` s (``sources`` / ``source_masks`` for cross-modal
    ones) or :class:`~.transformer.EncoderLayer` s; other modules (e.g. the parity scripts' stand-ins) are called
    one by one, as ``module(input, mask)`` when they have no source. Calls whose module
    structure (:func:`structure`) and input / source shapes agree run as one group (module docstring);
    the results come back in the order of ``modules``.
    """
    n = len(modules)
    sources = list(sources) if sources is not None else [None] * n
    source_masks = list(source_masks) if source_masks is not None else [None] * n
    if n and not grouping_on(inputs[0]):
        return [_call(*args) for args in zip(modules, inputs, masks, sources, source_masks)]
    if not (len(inputs) == len(masks) == len(sources) == len(source_masks) == n):
        raise ValueError("run_grouped needs one input, mask, source and source mask per module")
    keys = [(structure(m), _shape(x), _shape(s)) if isinstance(m, (CrossModalTransformer, EncoderLayer))
            else ("single", i) for i, (m, x, s) in enumerate(zip(modules, inputs, sources))]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    out: list[torch.Tensor | None] = [None] * n
    for idx in groups.values():
        if len(idx) == 1:
            i = idx[0]
            out[i] = _call(modules[i], inputs[i], masks[i], sources[i], source_masks[i])
            continue
        group = [modules[i] for i in idx]
        x = torch.stack([inputs[i] for i in idx])
        mask = _stack_masks([masks[i] for i in idx], x)
        if isinstance(group[0], EncoderLayer):
            y = _encoder_layer(group, x, mask)
        else:
            src = None if sources[idx[0]] is None else torch.stack([sources[i] for i in idx])
            y = _cross_modal(group, x, mask, src,
                             None if src is None else _stack_masks([source_masks[i] for i in idx], src))
        for i, yi in zip(idx, y.unbind(0)):
            out[i] = yi
    return out  # type: ignore[return-value]


def _call(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, source: torch.Tensor | None,
          source_mask: torch.Tensor | None) -> torch.Tensor:
    """One module's own forward: ``module(x, mask)``, with the source and its mask when there is one."""
    if source is None and source_mask is None:
        return module(x, mask)
    return module(x, mask, source, source_mask)


def _stack_masks(masks: list[torch.Tensor | None], x: torch.Tensor) -> torch.Tensor | None:
    """The members' masks as one [G*B, L] mask (a missing one is all True), or None when none has one."""
    if all(m is None for m in masks):
        return None
    ones = torch.ones(x.shape[1:3], dtype=torch.bool, device=x.device)
    return torch.cat([ones if m is None else m for m in masks])


# --------------------------------------------------------------------------- grouped layers


def _linear(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """``x`` [G, ..., in] through G Linear weights [out, in] (biases [out] or None) -> [G, ..., out]."""
    w = torch.stack(list(weights)).transpose(1, 2)  # [G, in, out]
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if biases[0] is None:
        y = torch.bmm(flat, w)
    else:
        y = torch.baddbmm(torch.stack(list(biases)).unsqueeze(1), flat, w)
    return y.view(*x.shape[:-1], w.shape[-1])


def _linears(x: torch.Tensor, layers: Sequence[nn.Linear]) -> torch.Tensor:
    return _linear(x, [m.weight for m in layers], [m.bias for m in layers])


def _layer_norm(x: torch.Tensor, norms: Sequence[nn.LayerNorm]) -> torch.Tensor:
    """G LayerNorms on ``x`` [G, B, L, D]: normalised without affine, then each member's weight and bias."""
    n0 = norms[0]
    h = F.layer_norm(x, n0.normalized_shape, eps=n0.eps)
    if n0.weight is None:
        return h
    shape = (len(norms),) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    w = torch.stack([n.weight for n in norms]).view(shape)
    if n0.bias is None:
        return h * w
    return torch.addcmul(torch.stack([n.bias for n in norms]).view(shape), h, w)


def _feed_forward(ffs: Sequence[nn.Sequential], x: torch.Tensor) -> torch.Tensor:
    """G :class:`~.transformer.FeedForward` s (Linear, activation, Dropout, Linear) on ``x`` [G, B, L, D]."""
    f0 = ffs[0]
    h = f0[2](f0[1](_linears(x, [f[0] for f in ffs])))
    return _linears(h, [f[3] for f in ffs])


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
            key_mask: torch.Tensor | None, rates: tuple[float, ...]) -> torch.Tensor:
    """Attention for the group folded into the batch: q [G, B, Lq, n], k/v [G, B, Lk, n] -> [G, B, Lq, n].

    One :func:`~.layers.attend` call per run of consecutive members with the same dropout rate (one for
    the whole group at equal rates, e.g. in eval mode; callers order members so equal rates are adjacent).
    """
    B = q.shape[1]
    parts, start = [], 0
    for rate, run in groupby(rates):
        g = len(list(run))
        sl = slice(start, start + g)
        km = None if key_mask is None else key_mask[start * B:(start + g) * B]
        parts.append(attend(q[sl].flatten(0, 1), k[sl].flatten(0, 1), v[sl].flatten(0, 1), heads, km, rate))
        start += g
    out = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out.view(q.shape[0], B, *out.shape[1:])


def _multi_head(attns: Sequence[MultiHeadAttention], h: torch.Tensor, kv: torch.Tensor,
                key_mask: torch.Tensor | None) -> torch.Tensor:
    """G :class:`~.layers.MultiHeadAttention` s (fused ``qkv``): queries ``h`` [G, B, Lq, D], keys and values
    ``kv`` (``h`` itself for self-attention), ``key_mask`` [G*B, Lk] -> [G, B, Lq, D]."""
    a0, n = attns[0], attns[0].inner
    ws = [a.qkv.weight for a in attns]
    bs = [a.qkv.bias for a in attns]
    if h is kv:
        q, k, v = _linear(h, ws, bs).chunk(3, dim=-1)
    else:
        q = _linear(h, [w[:n] for w in ws], [None if b is None else b[:n] for b in bs])
        k, v = _linear(kv, [w[n:] for w in ws], [None if b is None else b[n:] for b in bs]).chunk(2, dim=-1)
    rates = tuple(a.dropout if a.training else 0.0 for a in attns)
    out = _linears(_attend(q, k, v, a0.heads, key_mask, rates), [a.to_out for a in attns])
    if key_mask is not None:  # as MultiHeadAttention.forward: no out_bias on rows that attended over nothing
        out = out * key_mask.any(dim=1).view(*out.shape[:2], 1, 1).to(out.dtype)
    return out


def _cross_modal(group: Sequence[CrossModalTransformer], x: torch.Tensor, mask: torch.Tensor | None,
                 source: torch.Tensor | None, source_mask: torch.Tensor | None) -> torch.Tensor:
    """G :class:`~.transformer.CrossModalTransformer` s on ``x`` [G, B, Lt, D] (``source`` [G, B, Ls, D])."""
    m0 = group[0]
    embed = lambda t: m0.embed_drop(m0.scale * t + m0.pos(t[0]))  # noqa: E731 -- pos reads t's [B, L, D]
    x = embed(x)
    src = embed(source) if (m0.cross and source is not None) else None
    for depth, b0 in enumerate(m0.blocks):
        blocks = [m.blocks[depth] for m in group]
        h = _layer_norm(x, [b.norm_q for b in blocks])
        if b0.cross:
            if src is None:
                raise ValueError("a cross-attention block needs a context")
            kv = _layer_norm(src, [b.norm_q if b.norm_kv is None else b.norm_kv for b in blocks])
            kv_mask = source_mask
        else:
            kv, kv_mask = h, mask
        x = x + b0.drop(_multi_head([b.attn for b in blocks], h, kv, kv_mask))
        x = x + b0.drop(_feed_forward([b.ff for b in blocks], _layer_norm(x, [b.norm_ff for b in blocks])))
    return _layer_norm(x, [m.norm for m in group])


def _self_attention(attns: Sequence[SelfAttention], x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """G :class:`~.layers.SelfAttention` s on ``x`` [G, B, L, D], ``mask`` [G*B, L]."""
    q, k, v = _linears(x, [a.qkv for a in attns]).chunk(3, dim=-1)
    rates = tuple(a.dropout if a.training else 0.0 for a in attns)
    return _linears(_attend(q, k, v, attns[0].heads, mask, rates), [a.out for a in attns])


def _encoder_layer(group: Sequence[EncoderLayer], x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """G :class:`~.transformer.EncoderLayer` s on ``x`` [G, B, L, D], ``mask`` [G*B, L]."""
    e0 = group[0]
    attn = lambda t: _self_attention([e.attn for e in group], t, mask)  # noqa: E731
    ff = lambda t: _feed_forward([e.ff for e in group], t)  # noqa: E731
    norm1 = lambda t: _layer_norm(t, [e.norm1 for e in group])  # noqa: E731
    norm2 = lambda t: _layer_norm(t, [e.norm2 for e in group])  # noqa: E731
    if e0.norm_first:
        x = x + e0.drop(attn(norm1(x)))
        x = x + e0.drop(ff(norm2(x)))
    else:
        x = norm1(x + e0.drop(attn(x)))
        x = norm2(x + e0.drop(ff(x)))
    if mask is None:
        return x
    return x * mask.view(*x.shape[:3], 1).to(x.dtype)
