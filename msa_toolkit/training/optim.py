"""Optimiser, learning-rate schedule and mixed precision of a training run.

Every choice comes from the model's config (``optimizer``, ``lr``, ``weight_decay``,
``scheduler``, ``warmup_ratio``) unless the :class:`~.config.TrainConfig` overrides it. A model
may define ``param_groups(lr, weight_decay) -> list[dict]`` (e.g. a smaller learning rate for a
fine-tuned text encoder); otherwise all trainable parameters form one group.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any

import torch
from torch import nn

from .._threads import one_thread
from ..errors import MSAError
from .config import TrainConfig, setting
from .selection import epoch_cosine_factor

#: SGD momentum (the only optimiser setting not taken from the configs)
SGD_MOMENTUM = 0.9


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise MSAError("precision 'fp16' needs a CUDA device (use bf16 or fp32 on CPU)")
        return torch.float16
    raise MSAError(f"precision must be auto|fp32|bf16|fp16, got {precision!r}")


#: devices whose parameters get the fused optimiser kernels (torch has them for CPU and CUDA)
FUSED_DEVICES = ("cpu", "cuda")


def _make(cls: type, groups: list, **kw: Any) -> torch.optim.Optimizer:
    """``cls`` with its fused kernel (one kernel over all parameters) where every parameter is a floating
    tensor on a :data:`FUSED_DEVICES` device and this torch has one, else its ``foreach`` implementation.

    Measured on the 2-core CPU (Adam step): MMCL 13.2 M parameters 33.8 ms per-tensor loop, 36.8 ms
    foreach, 11.9 ms fused; DLF 1.3 M parameters 13.8 / 10.8 / 6.7 ms (on 2026-12-01, 2 threads under
    OMP_WAIT_POLICY=PASSIVE: 26.9 / 20.0 / 21.4 ms, and fused on one thread 2.5 ms).
    """
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    if tensors and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in tensors):
        try:
            return cls(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here: the foreach one
            pass
    return cls(groups, foreach=True, **kw)


#: a CPU optimiser whose parameter tensors average fewer elements than this steps on one intra-op thread
#: (:func:`_step_on_one_thread`). The fused CPU kernels split each tensor across the threads, and waking
#: the pool costs ~50 us per tensor under OMP_WAIT_POLICY=PASSIVE (the CLI's default), more than a thread
#: saves on a small tensor: one Adam element costs ~0.65 ns on one thread, so halving a tensor's time pays
#: ~50 us from ~150 k elements. Fused Adam step, 2-core CPU, 2 threads vs 1 (medians): DLF 386 tensors /
#: 1.3 M parameters 21.4 vs 2.5 ms, ALMT 169 / 2.5 M 11.9 vs 2.4 ms, MMCL 146 / 13.2 M 14.1 vs 9.3 ms,
#: MInD 206 / 40.4 M (mean 196 k: keeps its threads) 26.9 vs 25.9 ms.
ONE_THREAD_STEP_MAX_MEAN_NUMEL = 2 ** 17


def _step_on_one_thread(opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``opt.step`` run with one intra-op thread (the caller's count restored after it, also on error).

    The replacement is a bound method, as learning-rate schedulers expect of ``step`` (they wrap its
    ``__func__``).
    """
    step = opt.step

    @functools.wraps(step)
    def one_thread_step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        with one_thread():
            return step(*args, **kwargs)

    opt.step = types.MethodType(one_thread_step, opt)  # type: ignore[method-assign]
    return opt


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the model's parameter groups (fused kernels where available, see :func:`_make`);
    on the CPU a model of small parameter tensors steps on one thread (:data:`ONE_THREAD_STEP_MAX_MEAN_NUMEL`)."""
    opt = _build(model, tc)
    tensors = [p for g in opt.param_groups for p in g["params"]]
    if tensors and all(p.device.type == "cpu" for p in tensors) and \
            sum(p.numel() for p in tensors) < ONE_THREAD_STEP_MAX_MEAN_NUMEL * len(tensors):
        _step_on_one_thread(opt)
    return opt


def _build(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    mc = getattr(model, "config", None)
    name = str(setting(tc, mc, "optimizer", "adam")).lower()
    lr = float(setting(tc, mc, "lr", 1e-4))
    wd = float(setting(tc, mc, "weight_decay", 0.0))
    groups = model.param_groups(lr, wd) if hasattr(model, "param_groups") else \
        [p for p in model.parameters() if p.requires_grad]
    groups = list(groups)
    if name == "adam":
        return _make(torch.optim.Adam, groups, lr=lr, weight_decay=wd)
    if name == "adamw":
        return _make(torch.optim.AdamW, groups, lr=lr, weight_decay=wd)
    if name == "sgd":
        return _make(torch.optim.SGD, groups, lr=lr, weight_decay=wd, momentum=SGD_MOMENTUM)
    raise MSAError(f"unknown optimizer {name!r}; expected adam, adamw or sgd")


class EpochLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """A LambdaLR stepped once per epoch; ``step(metric)`` ignores the metric the trainer passes."""

    def step(self, metrics: Any = None) -> None:  # type: ignore[override]
        super().step()


def build_scheduler(opt: torch.optim.Optimizer, model: nn.Module, tc: TrainConfig, total_steps: int,
                    monitor_mode: str) -> tuple[Any, str]:
    """(scheduler or None, "step" | "epoch" | "none"): when the trainer calls step()."""
    mc = getattr(model, "config", None)
    kind = str(setting(tc, mc, "scheduler", "none")).lower()
    if kind in ("none", "constant"):  # "constant": a TrainConfig value that the "none" word cannot express
        return None, "none"
    if kind == "cosine":
        warm = int(round(float(setting(tc, mc, "warmup_ratio", 0.0)) * total_steps))
        total = max(1, total_steps)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor), "step"
    if kind == "epoch_cosine":
        warm = max(0, int(tc.warmup_epochs))
        span = int(tc.cosine_epochs) if tc.cosine_epochs is not None else max(1, tc.epochs - warm)
        return EpochLambdaLR(opt, lambda e: epoch_cosine_factor(e, warm, span)), "epoch"
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=monitor_mode, factor=tc.plateau_factor, patience=tc.plateau_patience), "epoch"
    raise MSAError(f"unknown scheduler {kind!r}; expected none/constant, cosine, epoch_cosine or plateau")


def short_schedule_warning(tc: TrainConfig, model_config: Any) -> str | None:
    """A warning when the run ends inside the ``epoch_cosine`` warm-up (e.g. ALMT's reference recipe,
    20 warm-up epochs, run with ``--epochs 2``): the LR never gets near its peak. None otherwise."""
    if setting(tc, model_config, "scheduler", None) != "epoch_cosine" or int(tc.warmup_epochs) < tc.epochs:
        return None
    top = (tc.epochs - 1) / int(tc.warmup_epochs)
    return (f"warning: trainer.epochs={tc.epochs} ends inside the {int(tc.warmup_epochs)}-epoch LR warm-up of "
            f"scheduler epoch_cosine: the LR reaches at most {top:.0%} of trainer.lr (--set "
            f"trainer.warmup_epochs=N / trainer.cosine_epochs=M shorten the schedule)")


def clip_thresholds(model: nn.Module, tc: TrainConfig) -> tuple[float, float]:
    """(gradient value clip, gradient norm clip); 0 means off."""
    mc = getattr(model, "config", None)
    return (float(setting(tc, mc, "grad_clip_value", 0.0) or 0.0),
            float(setting(tc, mc, "grad_clip_norm", 0.0) or 0.0))
