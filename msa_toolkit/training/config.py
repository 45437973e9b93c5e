"""How to train: :class:`TrainConfig` and the coercion of YAML/CLI values to dataclass field types.

``TrainConfig`` is what ``msa train --set trainer.<field>=...`` and a config file's ``trainer:``
section fill in; ``None`` fields fall back to the model's own config (:func:`setting`).
:func:`coerce_field` is shared with the model-config overrides of :mod:`.api`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import MSAError

#: strings accepted as true / false for a ``bool`` field
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
#: strings that mean ``None`` for a field annotated ``... | None``
NONE_WORDS = ("none", "null")
#: accepted ``device`` values: auto, cpu, cuda or cuda:<index>
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(device: str) -> str:
    """``device`` when it is auto / cpu / cuda / cuda:N, else MSAError naming the accepted values."""
    text = str(device).strip().lower()
    if not DEVICE_PATTERN.fullmatch(text):
        raise MSAError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N (--device)")
    return text


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
    # "constant" | "cosine" (per step) | "epoch_cosine" (per epoch) | "plateau"; None = the model config's
    # (the word "none" reads as None, i.e. the model config's; "constant" switches scheduling off)
    scheduler: str | None = None
    # fraction of optimiser steps of linear warm-up before the cosine decay; None = model config's
    warmup_ratio: float | None = None
    # epoch_cosine: epochs of linear warm-up from LR 0 (epoch e trains at e / warmup_epochs of the LR)
    warmup_epochs: int = 0
    # epoch_cosine: length in epochs of the cosine decay after the warm-up (None = epochs - warmup_epochs)
    cosine_epochs: int | None = None
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
    # direction of `monitor`: "auto" (from the metric: accuracies/F1/corr max, MAE/loss min) | "max" | "min"
    monitor_mode: str = "auto"
    # an epoch that equals the best value also counts as an improvement (">=", as MInD/MMCL's code)
    monitor_ties: bool = False
    # roll back to the best weights (and their optimiser state) after this many epochs in a row
    # without improvement, then multiply the LR by rollback_factor (0 = never; MInD's reference protocol)
    rollback_patience: int = 0
    # LR multiplier applied after each roll-back
    rollback_factor: float = 0.5
    # roll-backs allowed; the next plateau after the last one ends the run
    rollback_limit: int = 1
    # evaluate the test split after every epoch too, to report the "best test epoch" figures the
    # authors' code prints (labelled as such; the valid-selected figures stay the main ones)
    test_every_epoch: bool = False
    # metric that picks the "best test epoch" (None = `monitor`); its direction follows monitor_mode
    # rules ("auto" from the metric) and monitor_ties
    test_select: str | None = None
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
    # train batches of similar lengths (shuffled across length buckets each epoch); None = on unless the
    # model sets ``padding_invariant = False`` (every registered model passes the padding-invariance test)
    bucket_by_length: bool | None = None
    # torch.compile the model + objective step ("msa train --compile"; CUDA mainly, falls back loudly)
    compile: bool = False
    # truncation lengths per modality, e.g. {"text": 50, "audio": 375, "vision": 500}; None = dataset's
    max_lengths: Mapping[str, int] | None = None
    # standardise features with the training split's statistics
    normalize: bool = True
    # drop the last incomplete training batch (the MInD and MMCL reference loaders do)
    drop_last: bool = False
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
    # console tables/lines use MMSA's metric names (Has0_acc_2, ...); files keep the toolkit's names
    mmsa_names: bool = False

    def __post_init__(self) -> None:
        """Refuse settings no run can use (before any data is read)."""
        if isinstance(self.epochs, int) and self.epochs < 1:
            raise MSAError(f"epochs must be >= 1 (got {self.epochs}; --epochs / trainer.epochs)")
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (``max_lengths`` as a dict), as written to config.yaml and checkpoints."""
        d = dataclasses.asdict(self)
        if d["max_lengths"] is not None:
            d["max_lengths"] = dict(d["max_lengths"])
        return d

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from parsed YAML/CLI values (coerced per field); unknown names raise MSAError."""
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
    if isinstance(value, str) and value.lower() in NONE_WORDS and "None" in ann:
        return None
    try:
        if ann.startswith("bool"):
            if isinstance(value, str):
                if value.lower() in TRUE_WORDS:
                    return True
                if value.lower() in FALSE_WORDS:
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


def setting(tc: TrainConfig, model_config: Any, name: str, default: Any) -> Any:
    """``tc.<name>`` unless it is None, else the model config's ``<name>`` (else ``default``)."""
    value = getattr(tc, name)
    return value if value is not None else getattr(model_config, name, default)
