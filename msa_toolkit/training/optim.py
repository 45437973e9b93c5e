"""Optimiser, learning-rate schedule and mixed precision of a training run.

Every choice comes from the model's config (``optimizer``, ``lr``, ``weight_decay``,
``scheduler``, ``warmup_ratio``) unless the :class:`~.config.TrainConfig` overrides it. A model
may define ``param_groups(lr, weight_decay) -> list[dict]`` (e.g. a smaller learning rate for a
fine-tuned text encoder); otherwise all trainable parameters form one group.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

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
    tensor on a :data:`FUSED_DEVICES` device and this torch has one, else its ``foreach`` implementation."""
    tensors = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    if tensors and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in tensors):
        try:
            return cls(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here: the foreach one
            pass
    return cls(groups, foreach=True, **kw)


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD over the model's parameter groups (fused kernels where available, see :func:`_make`)."""
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


class _GroupsOf(torch.optim.Optimizer):
    """Some param groups of an optimiser (the same dicts), for a scheduler that must see only them."""

    def __init__(self, groups: list[dict]):  # noqa: D107 - Optimizer.__init__ would copy the groups
        self.param_groups = groups
        self.defaults, self.state = {}, {}


class GroupPlateau:
    """Reduce-on-plateau with a patience per parameter group: groups that set ``plateau_patience`` (see a model's
    ``param_groups``) get their own :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`, the others share one with
    the trainer's patience; every one is stepped with the same monitored value (MMCL's code: three optimisers,
    plateau 0.95/30, 0.95/5, 0.95/5 on the same validation loss)."""

    def __init__(self, opt: torch.optim.Optimizer, mode: str, factor: float, patience: int):
        by_patience: dict[int, list[dict]] = {}
        for g in opt.param_groups:
            by_patience.setdefault(int(g.get("plateau_patience") or patience), []).append(g)
        self.schedulers = [torch.optim.lr_scheduler.ReduceLROnPlateau(_GroupsOf(gs), mode=mode, factor=factor,
                                                                      patience=p) for p, gs in by_patience.items()]

    def step(self, metrics: float) -> None:
        for s in self.schedulers:
            s.step(metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s, st in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(st)


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
        hold = max(0, int(tc.peak_hold_epochs))
        return EpochLambdaLR(opt, lambda e: epoch_cosine_factor(e, warm, span, hold)), "epoch"
    if kind == "plateau":
        if any(g.get("plateau_patience") for g in opt.param_groups):
            return GroupPlateau(opt, monitor_mode, tc.plateau_factor, tc.plateau_patience), "epoch"
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
