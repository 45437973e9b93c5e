"""Linear layers whose large fp32 CPU products run in oneDNN with the bias fused.

PyTorch's fp32 ``F.linear`` on the CPU is ``addmm``: the bias is first copied, broadcast, into the whole
``[N, out]`` output, then MKL's sgemm accumulates the product onto it. oneDNN's inner-product primitive
(``torch.ops.mkldnn._linear_pointwise``, the kernel inductor emits for CPU linears) adds the bias inside the
GEMM. On this project's 2-core AMD EPYC (AVX-512, ``OMP_WAIT_POLICY=PASSIVE``, medians of 10 calls, ms,
F.linear vs oneDNN): [1600, 512] -> 1536 16.97 vs 11.89, [6400, 2048] -> 256 38.4 vs 30.9, [6400, 260] -> 780
23.4 vs 14.5, [96, 1536] -> 768 1.36 vs 1.14; below about 2^22 multiply-adds it is not reliably faster
([80, 50] -> 150: 0.055 vs 0.085), hence :data:`ONEDNN_MIN_MACS` and :data:`ONEDNN_MIN_WIDTH`. Whole
models with this path on and off, alternating in one process (two runs of 3-4 rounds; the machine's noise is
about +-5 %): eval forward MInD B = 32 1.06-1.17x, MMCL B = 128 1.12-1.20x (1.09-1.10x with the reference's
common block), ALMT B = 64 1.10-1.17x; training steps (forward in oneDNN, backward as autograd computes it)
MMCL 1.06-1.11x (1.13-1.18x), MInD 1.01-1.12x, ALMT 1.00x; DLF's 50-wide layers stay with ``F.linear``
(``benchmarks/results/reference_speed.md``).

``linear_relu`` is ``relu(linear(...))`` with the ReLU as the primitive's post-op (no second pass over the
[N, out] activations; the backward is ReLU's ``threshold_backward`` on the saved output, then the linear's):
the first half of a ReLU :class:`~.transformer.FeedForward`. Per block at the seed models' shapes, alternating
(``benchmarks/feed_forward_relu.py``, three runs of 20-40 rounds): no-grad forward 1.02-1.06x, forward +
backward 0.99-1.04x (the medians; single rounds vary by +-30 % on this shared machine).

The same function either way (float rounding differs in the last bits, like any other GEMM blocking).
Only the forward product moves: the backward products are the ones autograd's ``addmm`` backward computes
(``g @ W``, ``g^T x``, ``g.sum(0)``). Taken for float32 CPU tensors of at least two dims, outside autocast
(which casts ``F.linear`` to bf16) and ``torch.compile`` (inductor picks its own kernels); everything else is
``F.linear``. ``MSA_ONEDNN_LINEAR=0`` in the environment turns the path off (for A/B measurements, and for
what its autograd function does not support: double backward (``create_graph=True``) raises, and forward-mode
AD and ``torch.func`` transforms (``grad``, ``vmap``, ``jvp``) over a model are not supported on this path;
``torch.func.functional_call`` is); torch builds without the oneDNN op never take it.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Linear", "linear", "linear_relu", "onednn_linear_available", "ONEDNN_MIN_MACS", "ONEDNN_MIN_WIDTH",
           "ONEDNN_ENV"]

#: products smaller than this many multiply-adds (rows x in x out) stay with ``F.linear`` (see the module doc)
ONEDNN_MIN_MACS = 1 << 22
#: weights narrower than this (input or output width) stay with ``F.linear``: DLF's 50-wide layers were no
#: faster in oneDNN ([2944, 50] -> 200: 0.93x inference, 0.90x forward + backward) and the whole DLF step was
#: 0.94-0.97x with them in it
ONEDNN_MIN_WIDTH = 128
#: environment variable: "0" turns the oneDNN path off at import
ONEDNN_ENV = "MSA_ONEDNN_LINEAR"


def _find_op():
    """``torch.ops.mkldnn._linear_pointwise`` where this torch build has it, else None."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_LINEAR_POINTWISE = _find_op()
#: whether :func:`linear` may take the oneDNN path (the op exists and ``MSA_ONEDNN_LINEAR`` is not "0")
ENABLED = _LINEAR_POINTWISE is not None and os.environ.get(ONEDNN_ENV, "1") != "0"


def onednn_linear_available() -> bool:
    """Whether large fp32 CPU linears run in oneDNN in this process."""
    return ENABLED


def _takes_onednn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> bool:
    # compile and autocast first: under torch.compile no size guard is added for the other checks
    return (ENABLED and not torch.compiler.is_compiling() and not torch.is_autocast_enabled("cpu")
            and x.device.type == "cpu" and x.dtype == torch.float32 and w.dtype == torch.float32
            and (b is None or b.dtype == torch.float32) and x.dim() >= 2
            and min(w.shape) >= ONEDNN_MIN_WIDTH and math.prod(x.shape[:-1]) * w.numel() >= ONEDNN_MIN_MACS)


class _OneDNNLinear(torch.autograd.Function):
    """``x W^T + b`` by oneDNN, with ``relu`` its ReLU applied inside the primitive (the post-op: no second pass
    over the [N, out] activations). Backward: ReLU's (``threshold_backward`` on the saved output, as autograd's
    ReLU does), then the products autograd's ``addmm`` backward computes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,  # type: ignore[override]
                relu: bool) -> torch.Tensor:
        y = _LINEAR_POINTWISE(x, w, b, "relu" if relu else "none", [], "")
        if relu:
            ctx.save_for_backward(x, w, y)
        else:
            ctx.save_for_backward(x, w)
        ctx.has_bias, ctx.relu = b is not None, relu
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        x, w, *y = ctx.saved_tensors
        if ctx.relu:
            g = torch.ops.aten.threshold_backward(g, y[0], 0)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = g @ w  # [..., out] x [out, in]
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            g2 = g.reshape(-1, g.shape[-1])
            if ctx.needs_input_grad[1]:
                gw = g2.t() @ x.reshape(-1, x.shape[-1])  # [out, N] x [N, in]
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = g2.sum(0)
        return gx, gw, gb, None


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    if not _takes_onednn(x, weight, bias):
        y = F.linear(x, weight, bias)
        return F.relu(y) if relu else y
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _OneDNNLinear.apply(x, weight, bias, relu)
    return _LINEAR_POINTWISE(x, weight, bias, "relu" if relu else "none", [], "")


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, in oneDNN for large float32 CPU products (see the module doc)."""
    return _linear(x, weight, bias, False)


def linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.relu(F.linear(x, weight, bias))``; where :func:`linear` takes oneDNN, the ReLU is fused into the GEMM
    (same values: the ReLU of the same product; same gradients: ReLU's backward on the saved output)."""
    return _linear(x, weight, bias, True)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
