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

from .._fields import LITERAL_NONE_KEY, doc
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

    epochs: int = doc(30, "number of passes over the training split")
    batch_size: int | None = doc(None, "batch size; None = the model config's batch_size")
    lr: float | None = doc(None, "learning rate; None = the model config's lr")
    optimizer: str | None = doc(None, "adam | adamw | sgd; None = the model config's optimizer")
    weight_decay: float | None = doc(None, "weight decay; None = the model config's weight_decay")
    # "none" is a value here (no schedule, as "constant"), not the word for None: unset = the model config's
    scheduler: str | None = doc(None, "none or constant (no schedule) | cosine (per step) | epoch_cosine (per "
                                      "epoch) | plateau; unset = the model config's", literal_none=True)
    warmup_ratio: float | None = doc(None, "fraction of the optimiser steps of linear warm-up before the cosine "
                                           "decay; None = the model config's")
    warmup_epochs: int = doc(0, "epoch_cosine: epochs of linear warm-up from LR 0 (epoch e trains at "
                                "e / warmup_epochs of the LR)")
    cosine_epochs: int | None = doc(None, "epoch_cosine: epochs of cosine decay after the warm-up "
                                          "(None = epochs - warmup_epochs)")
    peak_hold_epochs: int = doc(0, "epoch_cosine: epochs the peak LR is held after the warm-up before the cosine "
                                   "starts (ALMT's reference scheduler holds it 1)")
    plateau_factor: float = doc(0.5, "plateau scheduler: LR multiplier on a plateau of the monitored metric")
    plateau_patience: int = doc(3, "plateau scheduler: epochs without improvement before the LR is reduced")
    grad_clip_value: float | None = doc(None, "clip each gradient value to [-v, v] (0 = off); None = the model "
                                              "config's grad_clip_value")
    grad_clip_norm: float | None = doc(None, "clip the global gradient norm (0 = off); None = the model config's "
                                             "grad_clip_norm")
    grad_accum: int = doc(1, "batches whose gradients are accumulated into one optimiser step")
    # DLF's reference accumulation (trains/singleTask/DLF.py, update_epochs): the next three together
    grad_accum_sum: bool = doc(False, "accumulated batches add their losses (gradient of the sum) instead of "
                                      "averaging them (the mean)")
    clip_each_backward: bool = doc(False, "apply grad_clip_value to the running gradient sum after every "
                                          "backward instead of once before each optimiser step")
    drop_partial_accum: bool = doc(False, "discard an epoch's trailing accumulation of fewer than grad_accum "
                                          "batches (no optimiser step) instead of stepping on it")
    patience: int = doc(10, "stop after this many epochs without improvement of monitor on valid (0 = never)")
    monitor: str = doc("mae", "validation metric for early stopping and the best checkpoint: a metric name "
                              "(mae, acc2_non0, corr, ...) or loss (the objective's total loss on valid)")
    min_delta: float = doc(0.0, "smallest change of monitor that counts as an improvement")
    monitor_mode: str = doc("auto", "direction of monitor: auto (from the metric: accuracies/F1/corr max, "
                                    "MAE/loss min) | max | min")
    monitor_ties: bool = doc(False, "an epoch equal to the best value also counts as an improvement (>=, as "
                                    "MInD/MMCL's code)")
    # MInD's reference protocol
    rollback_patience: int = doc(0, "roll back to the best weights and optimiser state after this many epochs "
                                    "in a row without improvement, then multiply the LR by rollback_factor "
                                    "(0 = never)")
    rollback_factor: float = doc(0.5, "LR multiplier applied after each roll-back")
    rollback_limit: int = doc(1, "roll-backs allowed; the next plateau after the last one ends the run")
    test_every_epoch: bool = doc(False, "also evaluate the test split every epoch, to report the 'best test "
                                        "epoch' figures the authors' code prints (labelled as such; the "
                                        "valid-selected figures stay the main ones)")
    test_select: str | None = doc(None, "metric that picks the 'best test epoch' (None = monitor); direction "
                                        "by the monitor_mode rules (auto from the metric) and monitor_ties")
    metric_set: str = doc("auto", "label scale of the metrics: auto (from the training labels' range) | "
                                  "standard ([-3, 3]) | sims ([-1, 1])")
    seed: int = doc(1, "seed of model initialisation, shuffling and dropout")
    device: str = doc("auto", "auto (cuda when available) | cpu | cuda | cuda:N")
    precision: str = doc("auto", "auto (bf16 autocast on CUDA when supported, else fp16; fp32 on CPU) | fp32 | "
                                 "bf16 | fp16; bf16 on a CPU with AVX512-BF16/AMX can speed GEMM-heavy models "
                                 "up and slow small ones (benchmarks/results/reference_speed.md)")
    num_workers: int = doc(0, "DataLoader worker processes")
    threads: int = doc(0, "torch CPU threads of the run, set once at start-up (msa train --threads; 0 = "
                          "MSA_THREADS or torch's default, one per core)")
    # every registered model passes the padding-invariance test, so bucketing is on for all of them
    bucket_by_length: bool | None = doc(None, "train on batches of similar lengths (shuffled across length "
                                              "buckets each epoch); None = on unless the model sets "
                                              "padding_invariant = False")
    compile: bool = doc(False, "torch.compile the model + objective step (msa train --compile; CUDA mainly, "
                               "falls back loudly)")
    max_lengths: Mapping[str, int] | None = doc(None, "truncation length per modality, e.g. {text: 50, "
                                                      "audio: 375, vision: 500}; None = the dataset's")
    normalize: bool = doc(True, "standardise features with the training split's statistics")
    allow_frozen_text: bool = doc(False, "train a recipe whose reference fine-tunes BERT (DLF, ALMT, MInD "
                                         "reference) without model.text_encoder, on frozen text features; the run "
                                         "records frozen_text: true (msa train --allow-frozen-text)")
    missing_rate: float = doc(0.0, "robustness training: protocol-A drops on every training batch at this rate "
                                   "(each valid frame/token kept iff a uniform draw > r; docs/robustness.md); 0 = off")
    missing_schedule: str = doc("none", "robustness training: none | lnln (per epoch, half the samples clean, the "
                                        "others one protocol-A rate per modality drawn from U(0, 1))")
    select_missing_rate: float = doc(0.0, "score the validation split with protocol-A drops at this rate (mask "
                                          "seed 1111) for early stopping and the best checkpoint; 0 = clean")
    drop_last: bool = doc(False, "drop the last incomplete training batch (the MInD and MMCL reference loaders do)")
    log_every: int = doc(0, "also print/log the running training loss every N optimiser steps (0 = per epoch "
                            "only)")
    limit_train_batches: int | None = doc(None, "stop each training epoch after this many batches (None = full "
                                                "epoch; for smoke tests)")
    find_unused_parameters: bool = doc(True, "DDP: let DistributedDataParallel find parameters unused in a step "
                                             "(safe for every model)")
    plots: bool = doc(True, "write loss-curve, scatter and confusion-matrix PNGs with the run")
    progress: bool = doc(True, "show rich progress bars and per-epoch lines")
    mmsa_names: bool = doc(False, "console tables/lines and the plots use MMSA's metric names (Has0_acc_2, ...); "
                                  "files keep the toolkit's names")

    def __post_init__(self) -> None:
        """Refuse settings no run can use (before any data is read)."""
        if isinstance(self.epochs, int) and self.epochs < 1:
            raise MSAError(f"epochs must be >= 1 (got {self.epochs}; --epochs / trainer.epochs)")
        check_device(self.device)
        if isinstance(self.missing_schedule, str) and self.missing_schedule not in ("none", "lnln"):
            raise MSAError(f"trainer.missing_schedule: unknown schedule {self.missing_schedule!r}; use none | lnln")
        for name in ("missing_rate", "select_missing_rate"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not 0.0 <= value < 1.0:
                raise MSAError(f"trainer.{name} must be in [0, 1) (got {value})")
        if self.missing_schedule == "lnln" and isinstance(self.missing_rate, (int, float)) and self.missing_rate > 0:
            raise MSAError("trainer.missing_rate and trainer.missing_schedule=lnln both set: the LNLN schedule draws "
                           "its own rates; set one of them")

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
        if not (value.lower() == "none" and f.metadata.get(LITERAL_NONE_KEY)):  # "null" still means unset
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


def check_settings(tc: TrainConfig, model_config: Any) -> None:
    """Refuse a batch size below 1 or a negative learning rate / weight decay (MSAError naming the setting).

    Checked on the values a run will use (trainer setting, else the model config's), before any data is
    read, so that a bad ``--set`` is one clear line instead of a traceback from torch.
    """
    for name, lowest, default in (("batch_size", 1, 1), ("lr", 0.0, 0.0), ("weight_decay", 0.0, 0.0)):
        value = setting(tc, model_config, name, default)
        if value is not None and value < lowest:
            where = f"trainer.{name}" if getattr(tc, name) is not None else f"model.{name}"
            raise MSAError(f"{name} must be >= {lowest:g} (got {value:g}; --set {where}=...)")
