"""Contracts shared by every model: ModelOutput, LossOutput, Objective, MSAModel.

A model maps a :class:`~msa_toolkit.data.batch.Batch` to a :class:`ModelOutput`.
Its :class:`Objective` (a submodule, so auxiliary learners such as critics or
statistics networks are saved and optimised with the model) maps output + batch
to a :class:`LossOutput`. The one generic trainer calls::

    out = model(batch)
    loss = model.objective(out, batch)      # LossOutput(total, components)
    loss.total.backward(); optimizer.step()
    model.objective.after_step(model)       # e.g. soft target-network updates

Loss weights live in the model's config dataclass, never in the trainer.

Multi-task models (MMSA's MTFN, MLMF, MLF-DNN) also predict one score per unimodal task (``T``, ``A``, ``V``):
they put it in ``aux`` under :func:`unimodal_key` (``prediction_T``, ...), set ``needs_unimodal_labels`` (a
dataset without ``label_T/A/V`` is refused before training) and train with :class:`MultiTaskObjective`; the
trainer scores each unimodal prediction against its label (metrics ``mae_T``, ``acc2_T``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from .._fields import doc
from ..spec import FeatureSpec


@dataclass
class ModelOutput:
    """What every model returns."""

    # float [B] sentiment score (regression, same scale as the labels)
    prediction: torch.Tensor
    # named auxiliary tensors the objective needs (sub-predictions, embeddings, ...)
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LossOutput:
    """The training loss and its named, already weighted components (total == sum(components))."""

    # scalar tensor to call backward() on
    total: torch.Tensor
    # each weighted term of total, by name, for logging
    components: dict[str, torch.Tensor] = field(default_factory=dict)

    def detached(self) -> dict[str, float]:
        d = {k: float(v.detach()) for k, v in self.components.items()}
        d["total"] = float(self.total.detach())
        return d


class Objective(nn.Module):
    """Turns (ModelOutput, Batch) into a LossOutput. Subclass per model."""

    def forward(self, output: ModelOutput, batch: Any) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self, model: "MSAModel") -> None:
        """Hook run after each optimiser step (default: nothing)."""


class RegressionObjective(Objective):
    """Single prediction loss (L1 or MSE) for models with no auxiliary terms."""

    def __init__(self, kind: str = "l1", weight: float = 1.0):
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"loss kind must be 'l1' or 'mse', got {kind!r}")
        self.kind, self.weight = kind, weight

    def forward(self, output: ModelOutput, batch: Any) -> LossOutput:
        fn = nn.functional.l1_loss if self.kind == "l1" else nn.functional.mse_loss
        loss = self.weight * fn(output.prediction, batch.label.to(output.prediction.dtype))
        return LossOutput(loss, {f"prediction_{self.kind}": loss})


def unimodal_key(task: str) -> str:
    """The ``ModelOutput.aux`` key of a multi-task model's prediction [B] for unimodal task ``task`` ("T", "A",
    "V"): ``prediction_<task>``."""
    return f"prediction_{task}"


class MultiTaskObjective(Objective):
    """MMSA's multi-task loss: ``w_M · L(prediction, label) + Σ_t w_t · L(prediction_t, label_t)`` over the
    unimodal tasks t = T, A, V (L: L1 or MSE); components ``prediction_<kind>`` and ``prediction_<t>_<kind>``,
    each already weighted. A batch without a unimodal label raises MSAError (the training plan refuses such a
    dataset before training; this guards direct use)."""

    def __init__(self, weights: Mapping[str, float], kind: str = "l1"):
        super().__init__()
        if kind not in ("l1", "mse"):
            raise ValueError(f"loss kind must be 'l1' or 'mse', got {kind!r}")
        from ..data.batch import UNIMODAL_TASKS

        missing = sorted({"M", *UNIMODAL_TASKS} - set(weights))
        if missing:
            raise ValueError(f"multi-task weights lack {missing}")
        self.kind, self.weights, self.tasks = kind, dict(weights), UNIMODAL_TASKS

    def forward(self, output: ModelOutput, batch: Any) -> LossOutput:
        from ..errors import MSAError

        fn = nn.functional.l1_loss if self.kind == "l1" else nn.functional.mse_loss
        pred = output.prediction
        comps = {f"prediction_{self.kind}": self.weights["M"] * fn(pred, batch.label.to(pred.dtype))}
        for t in self.tasks:
            label = batch.unimodal_label(t)
            if label is None:
                raise MSAError(f"this multi-task model trains on the unimodal labels label_T, label_A, label_V; the "
                               f"batch has no label_{t} (the dataset lacks it)")
            p = output.aux[unimodal_key(t)]
            comps[f"prediction_{t}_{self.kind}"] = self.weights[t] * fn(p, label.to(p.dtype))
        return LossOutput(sum(comps.values()), comps)


@dataclass(frozen=True)
class ModelConfig:
    """Fields every model config has. Model configs subclass this (frozen dataclasses).

    The training fields (``optimizer`` ... ``grad_clip_norm``) hold the model's published recipe;
    the trainer uses them unless :class:`~msa_toolkit.training.config.TrainConfig` overrides them.
    """

    text_dim: int = doc(768, "text feature dim (from the FeatureSpec; 1 when text is absent)")
    audio_dim: int = doc(5, "audio feature dim (from the FeatureSpec; 1 when audio is absent)")
    vision_dim: int = doc(20, "vision feature dim (from the FeatureSpec; 1 when vision is absent)")
    text_len: int = doc(50, "longest text sequence the model is built for (position tables, fixed-length layers)")
    audio_len: int = doc(375, "longest audio sequence the model is built for (position tables, fixed-length layers)")
    vision_len: int = doc(500, "longest vision sequence the model is built for (position tables, fixed-length layers)")
    text_encoder: str | None = doc(None, "text encoder fine-tuned inside the model (transformers model id or local "
                                         "folder); None = precomputed (frozen) text features")
    dropout: float = doc(0.1, "dropout of the model's own layers")
    optimizer: str = doc("adam", "optimiser: adam | adamw | sgd")
    lr: float = doc(1e-4, "learning rate")
    weight_decay: float = doc(0.0, "weight decay of the optimiser")
    batch_size: int = doc(32, "training batch size")
    scheduler: str = doc("none", "learning-rate schedule: none | cosine (per step, warm-up by warmup_ratio) | "
                                 "epoch_cosine | plateau (on the monitored metric)")
    warmup_ratio: float = doc(0.0, "cosine scheduler: fraction of the optimiser steps of linear warm-up")
    grad_clip_value: float = doc(0.0, "clip each gradient value to [-v, v] (0 = off)")
    grad_clip_norm: float = doc(0.0, "clip the global gradient norm (0 = off)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def dims_from_spec(spec: FeatureSpec) -> dict[str, int]:
    """Config overrides for input dims from a FeatureSpec (absent modality -> 1)."""
    d = spec.dims
    return {f"{m}_dim": max(1, d[m]) for m in d}


class MSAModel(nn.Module):
    """Base class: holds ``config`` and ``objective``; subclasses implement forward(batch)."""

    #: registry name, set on the instance by create_model
    name: ClassVar[str] = ""
    #: a multi-task model trains on the unimodal labels label_T/A/V: a dataset without them is refused up front
    needs_unimodal_labels: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def forward(self, batch: Any) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, batch: Any) -> torch.Tensor:
        """The prediction [B] alone, what ``msa predict`` runs: ``forward(batch).prediction`` by default. A model
        whose forward computes tensors only its objective reads may skip them here (DLF does); the registry
        tests check that the values equal the forward's."""
        return self(batch).prediction

    @property
    def objective(self) -> Objective:
        return self._modules["objective_"]  # type: ignore[return-value]

    def set_objective(self, objective: Objective) -> None:
        self.add_module("objective_", objective)

    def num_parameters(self, exclude_text_encoder: bool = True) -> int:
        skip = "text_encoder." if exclude_text_encoder else "\0"
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(skip) and p.requires_grad)


def config_from_mapping(cls: type[ModelConfig], values: Mapping[str, Any]) -> ModelConfig:
    """Build a config, rejecting unknown keys and impossible values (:func:`check_config`) with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; valid: {sorted(names)}")
    config = cls(**values)
    check_config(config)
    return config


#: float fields that must not be negative wherever a config has them
NON_NEGATIVE_FLOATS = frozenset({"lr", "weight_decay", "grad_clip_value", "grad_clip_norm"})


def check_config(config: ModelConfig) -> None:
    """Refuse values no model can be built or trained with (ValueError naming the field), before any allocation.

    Integers: a field whose default is positive (a size, a count of layers or heads, a length) must be positive,
    and no integer field may be negative (0 means "off" or "automatic" where the default is 0). Floats must be
    finite; every ``*dropout`` field is a probability in [0, 1); ``lr``, ``weight_decay`` and the clipping
    thresholds are not negative, ``warmup_ratio`` is in [0, 1]. Messages name the field as a setting
    (``model.<field>``, as ``--set`` and config files address it). Constraints between fields (e.g. a width
    divisible by the heads) are checked where the model is built.
    """
    for f in dataclasses.fields(config):
        value, default, name = getattr(config, f.name), f.default, f"model.{f.name}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) and not isinstance(default, bool) and isinstance(default, int):
            least = 1 if default > 0 else 0
            if value < least:
                raise ValueError(f"{name} must be {'a positive integer' if least else '>= 0'}, got {value}")
        elif isinstance(value, float) or (isinstance(value, int) and isinstance(default, float)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
            if f.name.endswith("dropout") and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1), got {value}")
            if f.name in NON_NEGATIVE_FLOATS and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            if f.name == "warmup_ratio" and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
