"""The one generic Trainer, used by every model.

Per optimiser step::

    out = model(batch); loss = model.objective(out, batch)      # LossOutput(total, components)
    (loss.total / grad_accum).backward()                         # accumulated over grad_accum batches
                                                                 # (summed: grad_accum_sum)
    clip (value, norm); optimizer.step(); scheduler.step()
    model.objective.after_step(model)                            # e.g. soft target-network updates

Per epoch: mean of every named loss component (train), metrics and loss on the
validation split, early stopping on ``monitor``, ``best.safetensors`` written
when the validation metric improves, ``last.pt`` (resume state) and a line of
``log.jsonl``. After the last epoch the best weights are restored and the test
split is evaluated once. Without a validation split the last epoch is kept (warned).

Nothing non-finite is saved or scored: each epoch's weights, train loss and validation metrics
are checked for NaN/inf *before* anything is written; a :class:`~.metrics.NonFiniteError` names
the first bad tensor (files of earlier, finite epochs stay).

``Trainer.fit`` runs four steps around one :class:`~.state.RunState`: prepare
(:class:`TrainingSetup`: step module, loader, optimiser, schedule, scaler),
restore (resume from ``last.pt``), one epoch at a time, finish (test split, final files). The run folder's
files are written by :mod:`.run_files`.

No per-model code paths: optimiser, schedule and clipping come from the
model's config (``ModelConfig.optimizer/lr/weight_decay/scheduler/...``) unless
the :class:`~.config.TrainConfig` overrides them (see :mod:`.optim`).

Devices: CPU; CUDA with autocast (bf16, or fp16 with a GradScaler); several
processes with DistributedDataParallel when launched by ``torchrun`` (see
:mod:`.distributed`): the train loader uses a DistributedSampler, evaluation
batches are split across ranks and predictions gathered, so every rank computes
the same metrics and takes the same early-stopping decisions; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._io import atomic_write_text
from ..errors import MSAError
from ..threads import set_threads
from . import distributed as D
from .checkpoint import EXTRA_PREFIX, RESUME_FILE, describe_nonfinite, load_resume_state, model_state_tensors
from .config import TrainConfig, coerce_field
from ..data.batch import UNIMODAL_TASKS
from ..models.base import unimodal_key
from .metrics import Metrics, NonFiniteError, metric_set_of, score, score_unimodal
from .optim import build_optimizer, build_scheduler, clip_thresholds, resolve_precision
from .report import Reporter
from .rng import loader_generators, rng_state, seed_everything, set_rng_state
from . import selection as S
from .state import FitResult, RunState, SplitOutputs, TrainingSetup
from .run_files import (BEST_FILE, LOG_FILE, PREDICTIONS_FILE, RESULT_FILE, finished_result, json_line, save_best,
                        save_resume, write_final)
from .step import TrainStep

# TrainConfig, coerce_field and the optimiser builders live in .config / .optim; they stay importable from here
__all__ = ["Trainer", "TrainConfig", "coerce_field", "FitResult", "RunState", "SplitOutputs", "TrainingSetup",
           "build_optimizer", "build_scheduler", "resolve_precision", "BEST_FILE", "LOG_FILE", "RESULT_FILE",
           "PREDICTIONS_FILE"]



def _split_name(data: Any, *candidates: str) -> str | None:
    names = list(getattr(data, "split_names", ()) or ())
    for c in candidates:
        if c in names:
            return c
    return None


def _unimodal_outputs(out: Any, batch: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (prediction, label) of a multi-task model's unimodal predictions (``unimodal_key`` in
    ``out.aux``) where the batch has that unimodal label; empty for other models."""
    found = {}
    for t in UNIMODAL_TASKS:
        pred, label = out.aux.get(unimodal_key(t)), batch.unimodal_label(t)
        if pred is not None and label is not None:
            found[t] = (pred.detach().float().cpu().numpy().reshape(-1),
                        label.detach().float().cpu().numpy().reshape(-1))
    return found


def _robustness_transforms(tc: TrainConfig, model: nn.Module) -> tuple[Callable | None, Callable | None]:
    """The training-batch transform of ``missing_rate`` / ``missing_schedule`` and the validation-batch
    transform of ``select_missing_rate`` (None when off); see :mod:`msa_toolkit.data.missing`."""
    if not (tc.missing_rate or tc.missing_schedule != "none" or tc.select_missing_rate):
        return None, None
    from ..data.missing import DEFAULT_MASK_SEED, MissingAugment, drop_steps, model_unk_id

    unk = model_unk_id(model)
    aug = MissingAugment(tc.seed, tc.missing_rate, tc.missing_schedule, unk)
    r = tc.select_missing_rate
    return (aug if aug.active else None,
            (lambda b: drop_steps(b, r, DEFAULT_MASK_SEED, unk_id=unk)) if r else None)


class Trainer:
    """Trains any registered model on a data module (see module docstring).

    ``data`` provides ``train_loader(distributed=False)``, ``loader(split)`` and
    ``split_names`` (``msa_toolkit.data.module.DataModule``). ``out_dir`` None
    writes nothing. ``callbacks`` are called as ``cb(trainer, record)`` after each
    epoch's record is logged (tests use one to simulate an interruption).
    ``reporter`` prints progress (rank 0, ``config.progress``); callers may print through it too.
    """

    def __init__(self, model: nn.Module, data: Any, config: TrainConfig | None = None,
                 out_dir: str | Path | None = None, spec: Any = None, extra: Mapping[str, Any] | None = None,
                 ctx: D.DistContext | None = None, callbacks: Sequence[Callable] = ()):
        self.config = config or TrainConfig()
        set_threads(self.config.threads)
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
        self.monitor = self.config.monitor.removeprefix("valid_")
        self.reporter = Reporter(self.config.progress and self.ctx.is_main, main=self.ctx.is_main,
                                 mmsa=self.config.mmsa_names)
        self.augment, self.select_drop = _robustness_transforms(self.config, self.model)

    # -- helpers -----------------------------------------------------------------------------
    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (an output directory, and rank 0)."""
        return self.out_dir is not None and self.ctx.is_main

    def _autocast(self):
        """Autocast to the run's reduced precision, or a no-op context for fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _resolve_metric_set(self) -> str:
        """The metric set; "auto" is decided once from the labels' range (:func:`~.metrics.metric_set_of`)."""
        if self.metric_set == "auto":
            self.metric_set = metric_set_of(self.data)
        return self.metric_set

    # -- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, split: str | Iterable, drop: Sequence[str] = ()) -> SplitOutputs:
        """Outputs + mean loss over a split (or any iterable of Batches), all ranks gathered."""
        loader = self.data.loader(split) if isinstance(split, str) else split
        model = self.model
        was_training = model.training
        model.eval()
        part: list[tuple[int, list[str], np.ndarray, np.ndarray, dict[str, float], int, np.ndarray]] = []
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
                         batch.label.detach().float().cpu().numpy().reshape(-1), comps, n,
                         torch.stack([batch.present(m) for m in ("text", "audio", "vision")], 1).cpu().numpy(),
                         _unimodal_outputs(out, batch)))
        model.train(was_training)
        parts = sorted((p for rank_parts in D.all_gather_objects(self.ctx, part) for p in rank_parts),
                       key=lambda p: p[0])
        total_n = sum(p[5] for p in parts)
        loss_sum: dict[str, float] = {}
        for p in parts:
            for k, v in p[4].items():
                loss_sum[k] = loss_sum.get(k, 0.0) + v
        return SplitOutputs(
            ids=[i for p in parts for i in p[1]],
            prediction=np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.float32),
            label=np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.float32),
            loss={k: v / max(1, total_n) for k, v in loss_sum.items()},
            present=np.concatenate([p[6] for p in parts]) if parts else np.zeros((0, 3), bool),
            unimodal={t: (np.concatenate([p[7][t][0] for p in parts]), np.concatenate([p[7][t][1] for p in parts]))
                      for t in UNIMODAL_TASKS if parts and all(t in p[7] for p in parts)})

    def evaluate(self, split: str | Iterable, drop: Sequence[str] = ()) -> Metrics:
        """Metrics (+ "loss") of the current weights on a split; a metric the split leaves undefined is NaN,
        with the reason in ``.undefined`` (written as null, shown as n/a)."""
        p = self.predict(split, drop)
        m = score_unimodal(score(p.prediction, p.label, self._resolve_metric_set()), p.unimodal, self.metric_set)
        m["loss"] = p.loss.get("total", float("nan"))
        return m

    # -- training ----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        """Train (module docstring); ``resume`` continues ``out_dir``'s ``last.pt`` run.

        A finished run is returned as it is, unless ``config.epochs`` now asks for more epochs."""
        saved = self._previous_run(resume)
        if saved is not None and saved.get("finished"):
            if saved["epoch"] >= self.config.epochs or saved["result"].get("stopped_early"):
                self.reporter.print(f"[green]run in {self.out_dir} already finished; nothing to resume")
                return finished_result(self.out_dir, saved)
            self.reporter.print(f"[cyan]extending finished run {self.out_dir} to {self.config.epochs} epochs")
        setup = self._prepare()
        run = self._restore(setup, saved) if saved is not None else RunState()
        if self.valid_split is None:
            self.reporter.notice(f"warning: the dataset has no validation split: no early stopping, the last epoch's "
                                 f"weights are kept (best.safetensors = epoch {self.config.epochs})")
        if self.writes:  # a fresh log, or the resumed run's history (drops lines of a half-finished epoch)
            atomic_write_text(self.out_dir / LOG_FILE, "".join(json_line(r) for r in run.history))
        for epoch in range(run.epoch, self.config.epochs):
            if self.config.patience and self.valid_split is not None and run.bad_epochs >= self.config.patience:
                run.stopped_early = True
            if run.stopped_early:  # early stopping, or a plateau after the last roll-back
                break
            record = self._run_epoch(setup, run, epoch)
            for cb in self.callbacks:
                cb(self, record)
        return self._finish(run)

    def _previous_run(self, resume: bool) -> dict[str, Any] | None:
        """The resume state in ``out_dir`` when resuming; refuses to train over a run otherwise."""
        if self.out_dir is None:
            return None
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / RESUME_FILE
        if not path.is_file():
            return None
        if not resume:
            raise MSAError(f"{self.out_dir} already holds a run ({RESUME_FILE}); pass --resume "
                           f"to continue it or choose another output directory")
        return load_resume_state(path)

    def _prepare(self) -> TrainingSetup:
        """Resolve the metric set, seed, and build the step module, loader, optimiser, schedule and scaler."""
        tc, ctx = self.config, self.ctx
        self.metric_set = self._resolve_metric_set()
        monitor_mode = S.resolve_mode(self.monitor if self.valid_split is not None else "loss", tc.monitor_mode)
        self.monitor_direction = monitor_mode
        seed_everything(tc.seed)
        step_module: nn.Module = TrainStep(self.model)
        if tc.compile:
            from .step import CompiledStep

            step_module = CompiledStep(step_module, self.reporter.print)
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            step_module = DDP(step_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                              find_unused_parameters=tc.find_unused_parameters)
        loader = self.data.train_loader(distributed=ctx.distributed, **self._loader_options())
        batches = len(loader)
        if tc.limit_train_batches is not None:
            batches = min(batches, tc.limit_train_batches)
        if batches == 0:
            why = getattr(self.data, "no_train_batch_reason", None)
            raise MSAError(why(ctx.world_size) if tc.limit_train_batches != 0 and why else
                           "no training batch (the training split is empty, or trainer.limit_train_batches=0)")
        if tc.drop_partial_accum and batches < tc.grad_accum:
            raise MSAError(f"{batches} training batch(es) per epoch but trainer.grad_accum={tc.grad_accum} with "
                           "trainer.drop_partial_accum: no optimiser step would ever run")
        steps_per_epoch = batches // tc.grad_accum if tc.drop_partial_accum else math.ceil(batches / tc.grad_accum)
        opt = build_optimizer(self.model, tc)
        sched, sched_when = build_scheduler(opt, self.model, tc, tc.epochs * steps_per_epoch, monitor_mode)
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        clip_value, clip_norm = clip_thresholds(self.model, tc)
        if tc.clip_each_backward and scaler is not None:
            raise MSAError("trainer.clip_each_backward clips unscaled gradients after every backward; fp16 scales "
                           "them: use --set trainer.precision=fp32 or bf16")
        return TrainingSetup(step_module, loader, batches, opt, sched, sched_when, scaler, clip_value, clip_norm)

    def _loader_options(self) -> dict[str, Any]:
        """``bucket_by_length=True`` for a data module that buckets, when configured (default: padding-invariant model)."""
        bucket = self.config.bucket_by_length
        if bucket is None:
            bucket = bool(getattr(self.model, "padding_invariant", True))
        return {"bucket_by_length": True} if bucket and hasattr(self.data, "sample_lengths") else {}

    def _restore(self, setup: TrainingSetup, saved: Mapping[str, Any]) -> RunState:
        """Load an interrupted run's weights, optimiser, schedule, scaler, RNG and loader states; its RunState."""
        self.model.load_state_dict(saved["model"])
        setup.optimizer.load_state_dict(saved["optimizer"])
        if setup.scheduler is not None and saved.get("scheduler") is not None:
            setup.scheduler.load_state_dict(saved["scheduler"])
        if setup.scaler is not None and saved.get("scaler") is not None:
            setup.scaler.load_state_dict(saved["scaler"])
        run = RunState.from_resume(saved)
        rngs = saved["rng"]
        set_rng_state(rngs[self.ctx.rank] if len(rngs) == self.ctx.world_size else rngs[0])
        for g, s in zip(loader_generators(setup.loader), saved.get("loader_generators", [])):
            g.set_state(s)
        best_path = self.out_dir / BEST_FILE
        if run.best_epoch and best_path.is_file():
            from safetensors.torch import load_file

            run.best_weights = {k: v for k, v in load_file(str(best_path)).items() if not k.startswith(EXTRA_PREFIX)}
        todo = (f"runs epochs {run.epoch + 1}-{self.config.epochs}" if run.epoch < self.config.epochs
                else "no epoch left to run")
        self.reporter.notice(f"resuming {self.out_dir} after epoch {run.epoch} of {self.config.epochs}: {todo}",
                             style="cyan")
        return run

    def _run_epoch(self, setup: TrainingSetup, run: RunState, epoch: int) -> dict[str, Any]:
        """Train and validate 0-based ``epoch``, keep the best weights, save state and log; the epoch's record."""
        t0 = time.time()
        for sampler in (getattr(setup.loader, "sampler", None), getattr(setup.loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        train_stats = self._train_epoch(setup, run, epoch)
        self._check_finite(epoch, train_stats)
        record: dict[str, Any] = {"epoch": epoch + 1, "step": run.global_step, "train": train_stats,
                                  "lr": setup.optimizer.param_groups[0]["lr"]}
        value = self._validate(record)
        tc = self.config
        if self.valid_split is None or S.improved(value, run.best_value, self.monitor_direction, tc.min_delta,
                                                  tc.monitor_ties):
            run.new_best(value, epoch, record.get("valid", {}), model_state_tensors(self.model))
            if self.config.rollback_patience:
                run.best_optimizer = S.snapshot_optimizer(setup.optimizer)
            if self.writes:
                save_best(self, run.best_weights, {"valid": run.best_valid}, run.best_epoch)
        else:
            run.bad_epochs += 1
            run.plateau_epochs += 1
            self._maybe_roll_back(setup, run, record)
        if tc.test_every_epoch and self.test_split is not None:  # for the labelled best-test figures
            # after a roll-back: tests the weights training continues from, as MInD's code (valid, roll-back, test)
            record["test"] = dict(self.evaluate(self.test_split))
        if setup.scheduler_when == "epoch":
            setup.scheduler.step(value)
        record["seconds"] = round(time.time() - t0, 3)
        record["best_epoch"] = run.best_epoch
        run.history.append(record)
        run.epoch = epoch + 1
        if self.writes:
            save_resume(self, setup, run)
            with open(self.out_dir / LOG_FILE, "a") as f:
                f.write(json_line(record))
        elif self.ctx.distributed and self.out_dir is not None:
            # every rank contributes its RNG state to rank 0's resume file
            D.all_gather_objects(self.ctx, rng_state())
        self.reporter.epoch(record, self.monitor)
        return record

    def _maybe_roll_back(self, setup: TrainingSetup, run: RunState, record: dict[str, Any]) -> None:
        """After ``rollback_patience`` bad epochs: back to the best weights with a lower LR, or stop (limit spent)."""
        done = S.maybe_roll_back(self.model, setup.optimizer, run, self.config)
        if done:
            record["rollback"] = done
            end = "; roll-backs spent, the run stops" if done["last"] else ""
            self.reporter.print(f"[yellow]plateau: rolled back to epoch {done['to_epoch']}, lr {done['lr']:.3g}{end}")

    def _check_finite(self, epoch: int, train_stats: Mapping[str, float]) -> None:
        """NonFiniteError when a weight or the epoch's train loss is NaN/inf (before anything is saved)."""
        bad = describe_nonfinite(self.model.state_dict())
        if bad:
            raise NonFiniteError(f"epoch {epoch + 1}: the model's {bad}; nothing of this epoch was saved. "
                                 "Check the data for NaN/inf (msa dataset validate) or lower the learning rate")
        if not all(math.isfinite(v) for v in train_stats.values()):
            raise NonFiniteError(f"training loss became non-finite in epoch {epoch + 1}: "
                                 + ", ".join(f"{k}={v}" for k, v in train_stats.items()))

    def _validate(self, record: dict[str, Any]) -> float:
        """Add the validation metrics to ``record``; the monitored value (the train loss without a valid split)."""
        if self.valid_split is None:
            return record["train"]["total"]
        try:
            valid = self.evaluate(self.valid_split if self.select_drop is None else
                                  map(self.select_drop, self.data.loader(self.valid_split)))
        except NonFiniteError as e:
            raise NonFiniteError(f"epoch {record['epoch']}, split {self.valid_split!r}: {e}") from None
        bad = [k for k, v in valid.items() if not math.isfinite(v) and k not in valid.undefined]
        if bad:
            raise NonFiniteError(f"epoch {record['epoch']}: validation {', '.join(bad)} not finite "
                                 f"({', '.join(f'{k}={valid[k]}' for k in bad)}); nothing of this epoch was saved")
        record["valid"] = dict(valid)  # plain values: the history is part of the resume state (weights_only)
        if valid.undefined:
            record["valid_undefined"] = dict(valid.undefined)
        value, notice = S.monitored_value(valid, self.monitor, self.valid_split, record["epoch"])
        if notice:
            self.reporter.notice(notice)
        return value

    def _train_epoch(self, setup: TrainingSetup, run: RunState, epoch: int) -> dict[str, float]:
        """One pass over the train loader; mean loss components (averaged over ranks). Advances the step count."""
        tc, ctx = self.config, self.ctx
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        setup.optimizer.zero_grad(set_to_none=True)
        with self.reporter.epoch_bar(epoch + 1, tc.epochs, setup.batches) as advance:
            for i, batch in enumerate(setup.loader):
                if i >= setup.batches:
                    break
                batch = batch.to(self.device, non_blocking=True)
                if self.augment is not None:  # trainer.missing_rate / missing_schedule (data/missing.py)
                    batch = self.augment(batch, epoch)
                sync = (i + 1) % tc.grad_accum == 0 or (i == setup.batches - 1 and not tc.drop_partial_accum)
                no_sync = setup.step_module.no_sync() if ctx.distributed and not sync else contextlib.nullcontext()
                with no_sync:
                    with self._autocast():
                        _, total, comps = setup.step_module(batch)
                    loss = total.float() if tc.grad_accum_sum else total.float() / tc.grad_accum
                    (setup.scaler.scale(loss) if setup.scaler is not None else loss).backward()
                if tc.clip_each_backward and setup.clip_value > 0:
                    torch.nn.utils.clip_grad_value_(self.model.parameters(), setup.clip_value)
                n = batch.size
                for k, v in comps.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() * n
                sums["total"] = sums.get("total", 0.0) + total.detach().float() * n
                count += n
                if sync:
                    self._optimizer_step(setup)
                    run.global_step += 1
                    if tc.log_every and run.global_step % tc.log_every == 0 and ctx.is_main:
                        self.reporter.print(f"step {run.global_step}: loss {float(total):.4f}")
                advance(total.detach())
        setup.optimizer.zero_grad(set_to_none=True)  # a dropped partial accumulation leaves no gradient behind
        return D.all_reduce_mean(ctx, {k: float(v) / max(1, count) for k, v in sums.items()})

    def _optimizer_step(self, setup: TrainingSetup) -> None:
        """Unscale and clip the gradients, step the optimiser, the objective's after_step and a per-step schedule."""
        opt, scaler = setup.optimizer, setup.scaler
        if scaler is not None:
            scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if setup.clip_value > 0:
            torch.nn.utils.clip_grad_value_(params, setup.clip_value)
        if setup.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, setup.clip_norm)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.model.objective.after_step(self.model)
        if setup.scheduler_when == "step":
            setup.scheduler.step()

    def _finish(self, run: RunState) -> FitResult:
        """Restore the best weights, evaluate the test split once, write the final files, print the summary."""
        if run.best_weights is None and self.valid_split is not None and run.history:
            self.reporter.notice(f"no epoch had a defined {self.monitor} on {self.valid_split!r}: the last "
                                 "epoch's weights are kept")
        if run.best_weights is not None:
            # tensors only: non-tensor extra state (e.g. a replay buffer) stays as it is
            self.model.load_state_dict({k: v.to(self.device) for k, v in run.best_weights.items()}, strict=False)
        test: dict[str, float] = {}
        undefined: dict[str, str] = {}
        outputs = None
        if self.test_split is not None:
            outputs = self.predict(self.test_split)
            try:
                scored = score_unimodal(score(outputs.prediction, outputs.label, self.metric_set),
                                        outputs.unimodal, self.metric_set)
                test, undefined = dict(scored), scored.undefined
            except NonFiniteError as e:
                raise NonFiniteError(f"split {self.test_split!r} with the best weights: {e}") from None
            test["loss"] = outputs.loss.get("total", float("nan"))
        tc = self.config  # "best test epoch" figures: only when the test split was evaluated every epoch
        best_test = S.best_test_figures(run.history, tc.test_select or self.monitor,
                                        tc.monitor_mode if tc.test_select is None else "auto", tc.monitor_ties)
        result = FitResult(self.out_dir, run.best_epoch, run.best_valid, test, run.history,
                           self.out_dir / BEST_FILE if self.out_dir is not None else None, run.stopped_early,
                           best_test)
        if self.writes:
            write_final(self, run, test, outputs, {**best_test, **({"test_undefined": undefined} if undefined else {})})
        D.barrier(self.ctx)
        self.reporter.run_summary(run.history, test, self.monitor)
        return result
