"""What a training run carries from epoch to epoch and what it returns.

:class:`TrainingSetup` is what ``Trainer.fit`` builds once, :class:`RunState` is the progress
the epoch loop updates (and ``last.pt`` stores),
:class:`FitResult` the outcome of ``Trainer.fit``, :class:`SplitOutputs` what ``Trainer.predict``
returns for one split (written as ``predictions_test.csv`` by :func:`write_predictions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .._io import atomic_write_text

if TYPE_CHECKING:  # annotations only: importing the results must not need torch or numpy
    import numpy as np
    import torch
    from torch import nn

#: the RunState fields stored in (and restored from) the resume state ``last.pt``, in file order
RESUME_FIELDS = ("epoch", "global_step", "best_value", "best_epoch", "bad_epochs", "best_valid", "history",
                 "rollbacks", "plateau_epochs")


@dataclass
class RunState:
    """Progress of one run: early-stopping bookkeeping, history and counters.

    Not frozen on purpose: the epoch loop updates one instance in place, and ``last.pt`` stores
    its :data:`RESUME_FIELDS` after every epoch so that a resumed run continues from them.
    """

    # epochs completed so far (= the 0-based index of the next epoch)
    epoch: int = 0
    # optimiser steps taken so far
    global_step: int = 0
    # best value of the monitored metric so far (None before the first epoch)
    best_value: float | None = None
    # epoch (1-based) that reached best_value (0 before the first epoch)
    best_epoch: int = 0
    # epochs in a row without improvement (early stopping compares it with ``patience``)
    bad_epochs: int = 0
    # validation metrics of the best epoch
    best_valid: dict[str, float] = field(default_factory=dict)
    # one record per completed epoch, as written to log.jsonl
    history: list[dict[str, Any]] = field(default_factory=list)
    # CPU copy of the best epoch's weights (not in last.pt: a resumed run reads best.safetensors)
    best_weights: dict[str, torch.Tensor] | None = None
    # whether early stopping ended the run
    stopped_early: bool = False
    # roll-backs to the best weights done so far (TrainConfig.rollback_patience)
    rollbacks: int = 0
    # epochs without improvement since the last improvement or roll-back
    plateau_epochs: int = 0
    # CPU copy of the optimiser state of the best epoch (only kept when roll-backs are on; not in last.pt)
    best_optimizer: dict[str, Any] | None = None

    @classmethod
    def from_resume(cls, saved: Mapping[str, Any]) -> "RunState":
        """The state stored in a resume dict (``last.pt``; fields newer than the file keep their defaults)."""
        return cls(**{k: saved[k] for k in RESUME_FIELDS if k in saved})

    def resume_fields(self) -> dict[str, Any]:
        """The fields that go into ``last.pt``."""
        return {k: getattr(self, k) for k in RESUME_FIELDS}

    def new_best(self, value: float, epoch: int, valid: Mapping[str, float],
                 weights: dict[str, torch.Tensor]) -> None:
        """Record an improvement of the monitored metric in 0-based ``epoch``."""
        self.best_value, self.best_epoch, self.bad_epochs, self.plateau_epochs = value, epoch + 1, 0, 0
        self.best_valid = dict(valid)
        self.best_weights = weights


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
    # labelled "best test epoch" figures (selection.BEST_TEST_KEY / BEST_PER_METRIC_KEY); empty unless
    # the test split was evaluated after every epoch (TrainConfig.test_every_epoch)
    best_test: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSetup:
    """What :meth:`Trainer.fit` builds once, before the first epoch."""

    # model + objective as one module (wrapped in DistributedDataParallel when distributed)
    step_module: nn.Module
    # the train split's loader (with a DistributedSampler when distributed)
    loader: Any
    # batches trained per epoch (``limit_train_batches`` applied)
    batches: int
    # the optimiser over the model's parameter groups
    optimizer: torch.optim.Optimizer
    # learning-rate scheduler, or None
    scheduler: Any
    # when ``scheduler.step()`` is called: "step" | "epoch" | "none"
    scheduler_when: str
    # fp16 gradient scaler (None unless fp16 autocast)
    scaler: Any
    # clip each gradient value to [-v, v] (0 = off)
    clip_value: float
    # clip the global gradient norm (0 = off)
    clip_norm: float


@dataclass
class SplitOutputs:
    """A model's outputs over one split (gathered across ranks, in loader order): ``Trainer.predict``."""

    # sample ids
    ids: list[str]
    # predicted scores, one per sample
    prediction: np.ndarray
    # labels, one per sample
    label: np.ndarray
    # mean of each loss component (and "total") over the split
    loss: dict[str, float]
    # bool [N, 3]: whether each sample had text, audio, vision (a valid step in its mask, as fed to the model)
    present: np.ndarray | None = None
    # multi-task models: unimodal task ("T", "A", "V") -> (predictions, unimodal labels), one per sample
    unimodal: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def write_predictions(outputs: SplitOutputs, path: Path, presence: bool = False) -> None:
    """``id,label,prediction`` CSV of a split's outputs; ``presence`` adds ``text,audio,vision`` (1 when the
    sample had that modality as fed to the model, else 0: ``msa evaluate --predictions``)."""
    lines = ["id,label,prediction" + (",text,audio,vision" if presence else "")]
    present = outputs.present if presence and outputs.present is not None else [()] * len(outputs.ids)
    lines += [f"{i},{l:.6g},{q:.6g}" + "".join(f",{int(x)}" for x in p)
              for i, l, q, p in zip(outputs.ids, outputs.label.tolist(), outputs.prediction.tolist(), present)]
    atomic_write_text(path, "\n".join(lines) + "\n")
