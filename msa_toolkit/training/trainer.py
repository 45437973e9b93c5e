"""The one generic Trainer, used by every model.

Per optimiser step::

    out = model(batch); loss = model.objective(out, batch)      # LossOutput(total, components)
    (loss.total / grad_accum).backward()                         # accumulated over grad_accum batches
    clip (value, norm); optimizer.step(); scheduler.step()
    model.objective.after_step(model)                            # e.g. soft target-network updates

Per epoch: mean of every named loss component (train), metrics and loss on the
validation split, early stopping on ``monitor``, ``best.safetensors`` written
when the validation metric improves, ``last.pt`` (resume state) and a line of
``log.jsonl``. After the last epoch the best weights are restored and the test
split is evaluated once.

No per-model code paths: optimiser, schedule and clipping come from the
model's config (``ModelConfig.optimizer/lr/weight_decay/scheduler/...``) unless
the :class:`TrainConfig` overrides them. A model may define
``param_groups(lr, weight_decay) -> list[dict]`` (e.g. a smaller learning rate
for a fine-tuned text encoder); otherwise all trainable parameters form one group.

Devices: CPU; CUDA with autocast (bf16, or fp16 with a GradScaler); several
processes with DistributedDataParallel when launched by ``torchrun`` (see
:mod:`.distributed`): the train loader uses a DistributedSampler, evaluation
batches are split across ranks and predictions gathered, so every rank computes
the same metrics and takes the same early-stopping decisions; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import MSAError
from . import distributed as D
from .checkpoint import (RESUME_FILE, full_model_state, load_resume_state, model_state_tensors, rng_state, save_checkpoint,
                         save_resume_state, set_rng_state)
from .metrics import compute_metrics, format_metrics, infer_metric_set, is_better

BEST_FILE = "best.safetensors"
LOG_FILE = "log.jsonl"
RESULT_FILE = "metrics.json"


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``None`` means "take it from the model's config"."""

    # number of passes over the training split
    epochs: int = 30
    # batch size; None = the model config's batch_size
    batch_size: int | None = None
    # learning rate; None = the model config's lr
    lr: float | None = None
    # "adam" | "adamw" | "sgd"; None = the model config's optimizer
    optimizer: str | None = None
    # weight decay; None = the model config's weight_decay
    weight_decay: float | None = None
    # "none" | "cosine" | "plateau"; None = the model config's scheduler
    scheduler: str | None = None
    # fraction of optimiser steps of linear warm-up before the cosine decay; None = model config's
    warmup_ratio: float | None = None
    # plateau scheduler: LR multiplier on a plateau of the monitored metric
    plateau_factor: float = 0.5
    # plateau scheduler: epochs without improvement before the LR is reduced
    plateau_patience: int = 3
    # clip each gradient value to [-v, v] (0 = off); None = model config's grad_clip_value
    grad_clip_value: float | None = None
    # clip the global gradient norm (0 = off); None = model config's grad_clip_norm
    grad_clip_norm: float | None = None
    # batches whose gradients are accumulated into one optimiser step
    grad_accum: int = 1
    # stop after this many epochs without improvement of `monitor` on valid (0 = never)
    patience: int = 10
    # validation metric for early stopping and best-checkpoint choice: a metric name
    # ("mae", "acc2_non0", "corr", ...) or "loss" (the objective's total loss on valid)
    monitor: str = "mae"
    # smallest change of `monitor` that counts as an improvement
    min_delta: float = 0.0
    # "auto" (from the training labels' range) | "standard" ([-3, 3]) | "sims" ([-1, 1])
    metric_set: str = "auto"
    # seed of model initialisation, shuffling and dropout
    seed: int = 1
    # "auto" (cuda when available) | "cpu" | "cuda"
    device: str = "auto"
    # "auto" (bf16 autocast on CUDA when supported, else fp16; fp32 on CPU) | "fp32" | "bf16" | "fp16"
    precision: str = "auto"
    # DataLoader worker processes
    num_workers: int = 0
    # truncation lengths per modality, e.g. {"text": 50, "audio": 375, "vision": 500}; None = dataset's
    max_lengths: Mapping[str, int] | None = None
    # standardise features with the training split's statistics
    normalize: bool = True
    # also print/log the running training loss every N optimiser steps (0 = per epoch only)
    log_every: int = 0
    # stop each training epoch after this many batches (None = full epoch; for smoke tests)
    limit_train_batches: int | None = None
    # DDP: let DistributedDataParallel find parameters unused in a step (safe for every model)
    find_unused_parameters: bool = True
    # write loss-curve, scatter and confusion-matrix PNGs with the run
    plots: bool = True
    # show rich progress bars and per-epoch lines
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["max_lengths"] is not None:
            d["max_lengths"] = dict(d["max_lengths"])
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise MSAError(f"unknown trainer setting(s) {unknown}; valid: {sorted(names)}")
        return cls(**{k: coerce_field(cls, k, v) for k, v in values.items()})


def coerce_field(cls: type, name: str, value: Any) -> Any:
    """Coerce a parsed YAML/CLI value to the type annotated on dataclass field ``name``."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.lower() in ("none", "null") and "None" in ann:
        return None
    try:
        if ann.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if ann.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if ann.startswith("float"):
            return float(value)
    except (TypeError, ValueError):
        raise MSAError(f"{cls.__name__}.{name}: cannot use {value!r} as {ann}") from None
    if ann.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    return value


@dataclass
class FitResult:
    """Outcome of one training run."""

    # the run directory (None when the trainer wrote nothing)
    run_dir: Path | None
    # epoch (1-based) whose weights were kept
    best_epoch: int
    # validation metrics (and "loss") of the best epoch
    valid: dict[str, float]
    # test metrics of the best weights (empty when the data has no test split)
    test: dict[str, float]
    # one record per epoch: {"epoch", "train": {component: mean}, "valid": {...}, "lr", "seconds"}
    history: list[dict[str, Any]] = field(default_factory=list)
    # path of best.safetensors (None when nothing was written)
    checkpoint: Path | None = None
    # whether early stopping ended the run
    stopped_early: bool = False


@dataclass
class Predictions:
    """Predictions of a model over one split (gathered across ranks, in loader order)."""

    ids: list[str]
    prediction: np.ndarray
    label: np.ndarray
    # mean of each loss component (and "total") over the split
    loss: dict[str, float]


class _Step(nn.Module):
    """model + objective in one forward, so DistributedDataParallel sees every parameter used."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):  # type: ignore[override]
        out = self.model(batch)
        loss = self.model.objective(out, batch)
        return out.prediction, loss.total, dict(loss.components)


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


def _setting(tc: TrainConfig, mc: Any, name: str, default: Any) -> Any:
    v = getattr(tc, name)
    return v if v is not None else getattr(mc, name, default)


def build_optimizer(model: nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    mc = getattr(model, "config", None)
    name = str(_setting(tc, mc, "optimizer", "adam")).lower()
    lr = float(_setting(tc, mc, "lr", 1e-4))
    wd = float(_setting(tc, mc, "weight_decay", 0.0))
    groups = model.param_groups(lr, wd) if hasattr(model, "param_groups") else \
        [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, weight_decay=wd, momentum=0.9)
    raise MSAError(f"unknown optimizer {name!r}; expected adam, adamw or sgd")


def build_scheduler(opt: torch.optim.Optimizer, model: nn.Module, tc: TrainConfig, total_steps: int,
                    monitor_mode: str) -> tuple[Any, str]:
    """(scheduler or None, "step" | "epoch" | "none"): when the trainer calls step()."""
    mc = getattr(model, "config", None)
    kind = str(_setting(tc, mc, "scheduler", "none")).lower()
    if kind == "none":
        return None, "none"
    if kind == "cosine":
        warm = int(round(float(_setting(tc, mc, "warmup_ratio", 0.0)) * total_steps))
        total = max(1, total_steps)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor), "step"
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=monitor_mode, factor=tc.plateau_factor, patience=tc.plateau_patience), "epoch"
    raise MSAError(f"unknown scheduler {kind!r}; expected none, cosine or plateau")


def _loader_generators(loader: Any) -> list[torch.Generator]:
    gens = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


def _split_name(data: Any, *candidates: str) -> str | None:
    names = list(getattr(data, "split_names", ()) or ())
    for c in candidates:
        if c in names:
            return c
    return None


class Trainer:
    """Trains any registered model on a data module (see module docstring).

    ``data`` provides ``train_loader(distributed=False)``, ``loader(split)`` and
    ``split_names`` (``msa_toolkit.data.module.DataModule``). ``out_dir`` None
    writes nothing. ``callbacks`` are called as ``cb(trainer, record)`` after each
    epoch's record is logged (tests use one to simulate an interruption).
    """

    def __init__(self, model: nn.Module, data: Any, config: TrainConfig | None = None,
                 out_dir: str | Path | None = None, spec: Any = None, extra: Mapping[str, Any] | None = None,
                 ctx: D.DistContext | None = None, callbacks: Sequence[Callable] = ()):
        self.config = config or TrainConfig()
        self.data = data
        self.ctx = ctx or D.current(D.resolve_device(self.config.device, int(os.environ.get("LOCAL_RANK", 0))))
        self.device = self.ctx.device
        self.model = model.to(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.spec = spec if spec is not None else getattr(data, "spec", None)
        self.extra = dict(extra or {})
        self.callbacks = list(callbacks)
        self.amp_dtype = resolve_precision(self.config.precision, self.device)
        self.valid_split = _split_name(data, "valid", "dev", "val")
        self.test_split = _split_name(data, "test")
        if self.config.grad_accum < 1:
            raise MSAError("grad_accum must be >= 1")
        self.metric_set = self.config.metric_set
        monitor = self.config.monitor.removeprefix("valid_")
        self.monitor = monitor
        self.console = None

    # -- helpers -----------------------------------------------------------------------------
    @property
    def writes(self) -> bool:
        return self.out_dir is not None and self.ctx.is_main

    def _print(self, *args: Any) -> None:
        if self.config.progress and self.ctx.is_main:
            if self.console is None:
                from rich.console import Console

                self.console = Console(stderr=True)
            self.console.print(*args)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _resolve_metric_set(self) -> str:
        if self.metric_set != "auto":
            return self.metric_set
        names = tuple(getattr(self.data, "split_names", ()))
        labels = None
        if hasattr(self.data, "split") and names:  # the labels of every split, without reading features
            parts = [getattr(self.data.split(s), "labels", None) for s in names]
            if all(p is not None for p in parts):
                labels = np.concatenate([np.asarray(p, np.float64) for p in parts])
        if labels is None:
            if "train" not in names:
                return "standard"
            labels = np.concatenate([b.label.numpy() for b in self.data.loader("train")])
        labels = labels[np.isfinite(labels)]
        self.metric_set = infer_metric_set(labels)  # resolved once
        return self.metric_set

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, split: str | Iterable, drop: Sequence[str] = ()) -> Predictions:
        """Predictions + mean loss over a split (or any iterable of Batches), all ranks gathered."""
        loader = self.data.loader(split) if isinstance(split, str) else split
        model = self.model
        was_training = model.training
        model.eval()
        part: list[tuple[int, list[str], np.ndarray, np.ndarray, dict[str, float], int]] = []
        for bi, batch in enumerate(loader):
            if self.ctx.distributed and bi % self.ctx.world_size != self.ctx.rank:
                continue
            batch = batch.to(self.device, non_blocking=True)
            if drop:
                batch = batch.drop(*drop)
            with self._autocast():
                out = model(batch)
                loss = model.objective(out, batch)
            n = batch.size
            comps = {k: float(v.detach().float()) * n for k, v in loss.components.items()}
            comps["total"] = float(loss.total.detach().float()) * n
            part.append((bi, list(batch.ids), out.prediction.detach().float().cpu().numpy().reshape(-1),
                         batch.label.detach().float().cpu().numpy().reshape(-1), comps, n))
        model.train(was_training)
        parts = sorted((p for rank_parts in D.all_gather_objects(self.ctx, part) for p in rank_parts),
                       key=lambda p: p[0])
        total_n = sum(p[5] for p in parts)
        loss_sum: dict[str, float] = {}
        for p in parts:
            for k, v in p[4].items():
                loss_sum[k] = loss_sum.get(k, 0.0) + v
        return Predictions(
            ids=[i for p in parts for i in p[1]],
            prediction=np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32),
            label=np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.float32),
            loss={k: v / max(1, total_n) for k, v in loss_sum.items()},
        )

    def evaluate(self, split: str | Iterable, drop: Sequence[str] = ()) -> dict[str, float]:
        """Metrics (+ "loss") of the current weights on a split."""
        p = self.predict(split, drop)
        m = compute_metrics(p.prediction, p.label, self._resolve_metric_set())
        m["loss"] = p.loss.get("total", float("nan"))
        return m

    # -- training ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        tc, ctx = self.config, self.ctx
        if self.out_dir is not None and ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        resume_path = self.out_dir / RESUME_FILE if self.out_dir is not None else None
        state = None
        if resume and resume_path is not None and resume_path.is_file():
            state = load_resume_state(resume_path)
            if state.get("finished"):
                if state["epoch"] >= tc.epochs or state["result"].get("stopped_early"):
                    self._print(f"[green]run in {self.out_dir} already finished; nothing to resume")
                    return self._finished_result(state)
                self._print(f"[cyan]extending finished run {self.out_dir} to {tc.epochs} epochs")
        elif resume_path is not None and resume_path.is_file() and not resume:
            raise MSAError(f"{self.out_dir} already holds a run ({RESUME_FILE}); pass resume=True (--resume) "
                           f"to continue it or choose another output directory")

        self.metric_set = self._resolve_metric_set()
        monitor_mode = "min" if self.monitor == "loss" or not is_better(self.monitor, 1.0, 0.0) else "max"

        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed % 2**32)
        import random

        random.seed(tc.seed)
        step_module = _Step(self.model)
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            step_module = DDP(step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                              find_unused_parameters=tc.find_unused_parameters)
        train_loader = self.data.train_loader(distributed=ctx.distributed)
        n_batches = len(train_loader)
        if tc.limit_train_batches is not None:
            n_batches = min(n_batches, tc.limit_train_batches)
        if n_batches == 0:
            raise MSAError("the training split is empty")
        steps_per_epoch = math.ceil(n_batches / tc.grad_accum)
        opt = build_optimizer(self.model, tc)
        sched, sched_when = build_scheduler(opt, self.model, tc, tc.epochs * steps_per_epoch, monitor_mode)
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        mc = getattr(self.model, "config", None)
        clip_value = float(_setting(tc, mc, "grad_clip_value", 0.0) or 0.0)
        clip_norm = float(_setting(tc, mc, "grad_clip_norm", 0.0) or 0.0)

        start_epoch, global_step = 0, 0
        best_value: float | None = None
        best_epoch, bad_epochs = 0, 0
        best_valid: dict[str, float] = {}
        best_state: dict[str, torch.Tensor] | None = None
        history: list[dict[str, Any]] = []
        if state is not None:
            self.model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state.get("scheduler") is not None:
                sched.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler") is not None:
                scaler.load_state_dict(state["scaler"])
            start_epoch, global_step = state["epoch"], state["global_step"]
            best_value, best_epoch, bad_epochs = state["best_value"], state["best_epoch"], state["bad_epochs"]
            best_valid, history = state["best_valid"], state["history"]
            rngs = state["rng"]
            set_rng_state(rngs[ctx.rank] if len(rngs) == ctx.world_size else rngs[0])
            for g, s in zip(_loader_generators(train_loader), state.get("loader_generators", [])):
                g.set_state(s)
            best_path = self.out_dir / BEST_FILE
            if best_epoch and best_path.is_file():
                from safetensors.torch import load_file

                best_state = {k: v for k, v in load_file(str(best_path)).items() if not k.startswith("__extra__/")}
            self._print(f"[cyan]resuming {self.out_dir} after epoch {start_epoch}")

        log_path = self.out_dir / LOG_FILE if self.out_dir is not None else None
        if self.writes:  # a fresh log, or the resumed run's history (drops lines of a half-finished epoch)
            log_path.write_text("".join(json.dumps(r, default=float) + "\n" for r in history))
        stopped_early = False
        for epoch in range(start_epoch, tc.epochs):
            if tc.patience and bad_epochs >= tc.patience:
                stopped_early = True
                break
            t0 = time.time()
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            train_stats, global_step = self._train_epoch(step_module, train_loader, n_batches, opt, sched,
                                                         sched_when, scaler, clip_value, clip_norm, global_step,
                                                         epoch)
            record: dict[str, Any] = {"epoch": epoch + 1, "step": global_step, "train": train_stats,
                                      "lr": opt.param_groups[0]["lr"]}
            if self.valid_split is not None:
                valid = self.evaluate(self.valid_split)
                record["valid"] = valid
                value = valid.get(self.monitor)
                if value is None:
                    raise MSAError(f"monitor {self.monitor!r} is not a validation metric; "
                                   f"choose from {sorted(valid)}")
            else:  # no validation split: monitor the training loss
                value = train_stats["total"]
            if is_better(self.monitor if self.valid_split is not None else "loss", value, best_value,
                         tc.min_delta):
                best_value, best_epoch, bad_epochs = value, epoch + 1, 0
                best_valid = dict(record.get("valid", {}))
                best_state = model_state_tensors(self.model)
                if self.writes:
                    self._save_best(best_state, {"valid": best_valid}, best_epoch)
            else:
                bad_epochs += 1
            if sched_when == "epoch":
                sched.step(value)
            record["seconds"] = round(time.time() - t0, 3)
            record["best_epoch"] = best_epoch
            history.append(record)
            if self.writes:
                self._save_resume(resume_path, opt, sched, scaler, train_loader, epoch + 1, global_step,
                                  best_value, best_epoch, bad_epochs, best_valid, history)
                with open(log_path, "a") as f:
                    f.write(json.dumps(record, default=float) + "\n")
            elif ctx.distributed and self.out_dir is not None:
                # every rank contributes its RNG state to rank 0's resume file
                D.all_gather_objects(ctx, rng_state())
            self._print_epoch(record)
            for cb in self.callbacks:
                cb(self, record)

        # restore the best weights, evaluate the test split once
        if best_state is not None:
            # tensors only: non-tensor extra state (e.g. a replay buffer) stays as it is
            self.model.load_state_dict({k: v.to(self.device) for k, v in best_state.items()}, strict=False)
        test: dict[str, float] = {}
        preds = None
        if self.test_split is not None:
            preds = self.predict(self.test_split)
            test = compute_metrics(preds.prediction, preds.label, self.metric_set)
            test["loss"] = preds.loss.get("total", float("nan"))
        result = FitResult(self.out_dir, best_epoch, best_valid, test, history,
                           self.out_dir / BEST_FILE if self.out_dir is not None else None, stopped_early)
        if self.writes:
            self._save_best(model_state_tensors(self.model), {"valid": best_valid, "test": test}, best_epoch)
            summary = {"best_epoch": best_epoch, "stopped_early": stopped_early, "epochs_run": len(history),
                       "metric_set": self.metric_set, "monitor": self.monitor, "valid": best_valid, "test": test}
            (self.out_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2, default=float))
            if preds is not None:
                self._write_predictions(preds, self.out_dir / "predictions_test.csv")
            if tc.plots:
                from .plots import write_run_plots

                write_run_plots(self.out_dir, history, preds.prediction if preds is not None else None,
                                preds.label if preds is not None else None)
            st = load_resume_state(resume_path) if resume_path.is_file() else {"history": history}
            st.update(finished=True, result=summary)
            save_resume_state(resume_path, st)
        D.barrier(ctx)
        self._print_summary(history, test)
        return result

    def _train_epoch(self, step_module, loader, n_batches, opt, sched, sched_when, scaler, clip_value, clip_norm,
                     global_step, epoch) -> tuple[dict[str, float], int]:
        tc, ctx = self.config, self.ctx
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        opt.zero_grad(set_to_none=True)
        progress = None
        if tc.progress and ctx.is_main:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress = Progress(TextColumn(f"epoch {epoch + 1}/{tc.epochs}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), TextColumn("{task.fields[loss]}"), transient=True)
            progress.start()
            task = progress.add_task("train", total=n_batches, loss="")
        try:
            for i, batch in enumerate(loader):
                if i >= n_batches:
                    break
                batch = batch.to(self.device, non_blocking=True)
                sync = (i + 1) % tc.grad_accum == 0 or i == n_batches - 1
                no_sync = step_module.no_sync() if ctx.distributed and not sync else contextlib.nullcontext()
                with no_sync:
                    with self._autocast():
                        _, total, comps = step_module(batch)
                    loss = total.float() / tc.grad_accum
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                n = batch.size
                for k, v in comps.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() * n
                sums["total"] = sums.get("total", 0.0) + total.detach().float() * n
                count += n
                if sync:
                    if scaler is not None:
                        scaler.unscale_(opt)
                    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                    if clip_value > 0:
                        torch.nn.utils.clip_grad_value_(params, clip_value)
                    if clip_norm > 0:
                        torch.nn.utils.clip_grad_norm_(params, clip_norm)
                    if scaler is not None:
                        scaler.step(opt)
                        scaler.update()
                    else:
                        opt.step()
                    opt.zero_grad(set_to_none=True)
                    self.model.objective.after_step(self.model)
                    if sched_when == "step":
                        sched.step()
                    global_step += 1
                    if tc.log_every and global_step % tc.log_every == 0 and ctx.is_main:
                        self._print(f"step {global_step}: loss {float(total):.4f}")
                if progress is not None:
                    progress.update(task, advance=1, loss=f"loss {float(total.detach()):.4f}")
        finally:
            if progress is not None:
                progress.stop()
        stats = {k: float(v) / max(1, count) for k, v in sums.items()}
        stats = D.all_reduce_mean(ctx, stats)
        if not math.isfinite(stats.get("total", 0.0)):
            raise MSAError(f"training loss became non-finite in epoch {epoch + 1}: "
                           + ", ".join(f"{k}={v}" for k, v in stats.items()))
        return stats, global_step

    # -- files -------------------------------------------------------------------------------
    def _save_best(self, state: Mapping[str, torch.Tensor], metrics: Mapping[str, Any], epoch: int) -> None:
        extra = dict(self.extra)
        extra.update(epoch=epoch, seed=self.config.seed, metric_set=self.metric_set)
        save_checkpoint(self.out_dir / BEST_FILE, self.model, self.spec, self.config.to_dict(), metrics, extra,
                        state=state)

    def _save_resume(self, path, opt, sched, scaler, loader, epoch, global_step, best_value, best_epoch,
                     bad_epochs, best_valid, history) -> None:
        rngs = D.all_gather_objects(self.ctx, rng_state())
        save_resume_state(path, {
            "model": full_model_state(self.model),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch, "global_step": global_step,
            "best_value": best_value, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
            "best_valid": best_valid, "history": history,
            "rng": rngs,
            "loader_generators": [g.get_state() for g in _loader_generators(loader)],
            "train_config": self.config.to_dict(),
            "finished": False,
        })

    @staticmethod
    def _write_predictions(p: Predictions, path: Path) -> None:
        lines = ["id,label,prediction"]
        lines += [f"{i},{l:.6g},{q:.6g}" for i, l, q in zip(p.ids, p.label.tolist(), p.prediction.tolist())]
        path.write_text("\n".join(lines) + "\n")

    def _finished_result(self, state: Mapping[str, Any]) -> FitResult:
        r = state["result"]
        return FitResult(self.out_dir, r["best_epoch"], r["valid"], r["test"], state["history"],
                         self.out_dir / BEST_FILE, r["stopped_early"])

    # -- console -----------------------------------------------------------------------------
    def _print_epoch(self, record: Mapping[str, Any]) -> None:
        if not (self.config.progress and self.ctx.is_main):
            return
        train = " ".join(f"{k}={v:.4f}" for k, v in record["train"].items())
        valid = format_metrics({k: v for k, v in record.get("valid", {}).items()
                                if k in (self.monitor, "loss", "acc2_non0", "acc2", "corr", "mae")})
        star = " *" if record["best_epoch"] == record["epoch"] else ""
        self._print(f"epoch {record['epoch']:>3}  train {train}  |  valid {valid}{star}")

    def _print_summary(self, history: list[dict[str, Any]], test: Mapping[str, float]) -> None:
        if not (self.config.progress and self.ctx.is_main) or not history:
            return
        from rich.table import Table

        comps = list(history[-1]["train"])
        table = Table(title="training (mean loss components per epoch)")
        table.add_column("epoch", justify="right")
        for c in comps:
            table.add_column(f"train {c}", justify="right")
        table.add_column(f"valid {self.monitor}", justify="right")
        for r in history:
            table.add_row(str(r["epoch"]) + (" *" if r["epoch"] == r["best_epoch"] else ""),
                          *[f"{r['train'].get(c, float('nan')):.4f}" for c in comps],
                          f"{r.get('valid', {}).get(self.monitor, float('nan')):.4f}")
        self._print(table)
        if test:
            self._print(f"[bold]test[/bold] {format_metrics(test)}")
