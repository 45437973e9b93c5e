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
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from .._fields import doc
from .._threads import one_thread, run_split
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

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config

    def forward(self, batch: Any) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, batch: Any) -> torch.Tensor:
        """The prediction [B] alone: ``forward(batch).prediction``, the same values.

        What ``msa predict`` runs, on one intra-op thread where :meth:`prefers_one_thread`, and split into
        :meth:`predict_parts` parts computed concurrently, one intra-op thread each, where that is more than
        one (``_threads.run_split``; per-sample values as the whole batch's, up to float rounding). A model
        skips work that only its objective needs (tensors of ``aux`` that no prediction depends on) by
        overriding :meth:`_predict`; the registry tests check the values are equal.
        """
        parts = self.predict_parts(batch)
        if parts > 1:
            return torch.cat(run_split(self._predict, batch.split(parts)))
        with one_thread(self.prefers_one_thread(batch)):
            return self._predict(batch)

    def _predict(self, batch: Any) -> torch.Tensor:
        """:meth:`predict`'s computation (the threads already chosen): by default the forward's prediction."""
        return self(batch).prediction

    def one_thread_rule(self) -> tuple[int, int] | None:
        """``(width, max_numel)``: :meth:`prefers_one_thread` is True for a CPU batch whose widest
        [B, L, width] activation has at most ``max_numel`` elements. None (the default): never."""
        return None

    def prefers_one_thread(self, batch: Any) -> bool:
        """Whether work on ``batch`` (a training step, an evaluation, ``predict``) runs faster on one intra-op
        thread: a model of many small operations on a small CPU batch, where waking the OpenMP pool for each
        costs more than the second thread saves (``_threads.one_thread``). Decided by the model's
        :meth:`one_thread_rule`, never with a fine-tuned text encoder (its wide layers want every thread);
        the trainer and ``predict`` ask it per batch. ``MSA_ONE_THREAD_RULE=0`` in the environment turns it off
        (:data:`ONE_THREAD_ENV`)."""
        rule = self.one_thread_rule()
        if (rule is None or getattr(self, "text_encoder", None) is not None
                or os.environ.get(ONE_THREAD_ENV, "1") == "0"):
            return False
        n = _cpu_activation_numel(batch, rule[0])
        return n is not None and n <= rule[1]

    def predict_parts(self, batch: Any) -> int:
        """How many parts :meth:`predict` splits ``batch`` into, each computed on its own thread with one intra-op
        thread (1: not split). For a model with a :meth:`one_thread_rule` whose CPU batch is over the rule's
        limit, predicting without gradients (nor autocast) on more than one thread: as many parts as threads,
        fewer where a part would have under half the limit (:data:`PART_MIN_FRACTION`). Such models run many
        small operations, which a second intra-op thread hardly speeds up (``_threads``)."""
        rule = self.one_thread_rule()
        threads = torch.get_num_threads()
        if (rule is None or threads < 2 or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")
                or getattr(self, "text_encoder", None) is not None):
            return 1
        n = _cpu_activation_numel(batch, rule[0])
        if n is None or n <= rule[1]:
            return 1
        return max(1, min(threads, batch.size, int(n // (rule[1] * PART_MIN_FRACTION))))

    @property
    def objective(self) -> Objective:
        return self._modules["objective_"]  # type: ignore[return-value]

    def set_objective(self, objective: Objective) -> None:
        self.add_module("objective_", objective)

    def num_parameters(self, exclude_text_encoder: bool = True) -> int:
        skip = "text_encoder." if exclude_text_encoder else "\0"
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(skip) and p.requires_grad)


#: environment variable: "0" makes :meth:`MSAModel.prefers_one_thread` always False, for a CPU where a second
#: intra-op thread pays even on small batches. Where one thread pays is the machine's: DLF at B = 16 (aligned)
#: trained 1.6x faster on one thread on the 2-core machine of 2026-12-01 and 1.06-1.1x slower on that of
#: 2026-12-02 (``benchmarks/omp_wait.py``, "PASSIVE, 1 thread"; ``benchmarks/results/reference_speed.md``).
#: Read per call, so it may be set after import; ``predict_parts``' splitting of larger batches is unaffected.
ONE_THREAD_ENV = "MSA_ONE_THREAD_RULE"

#: :meth:`MSAModel.predict_parts` gives each part at least this fraction of the one-thread limit: on the 2-core
#: CPU, DLF's batch of 32 aligned samples (32 x 50 steps x 50 = 1.22x its limit of 2^16) ran 1.31x faster as two
#: halves of 0.61x the limit, one thread each, than on two intra-op threads; two halves of a batch of 16 (0.31x)
#: were no faster than the whole on one thread (0.99x), nor MulT's (0.82x)
PART_MIN_FRACTION = 0.5


def _cpu_activation_numel(batch: Any, width: int) -> int | None:
    """``B x longest sequence x width``: the size of a batch's widest [B, L, width] activation, or None when a
    feature tensor is not on the CPU (the measure of :meth:`MSAModel.prefers_one_thread`)."""
    feats = [batch.features(m)[0] for m in ("text", "audio", "vision")]
    if any(x.device.type != "cpu" for x in feats):
        return None
    return batch.size * max(x.shape[1] for x in feats) * width


def config_from_mapping(cls: type[ModelConfig], values: Mapping[str, Any]) -> ModelConfig:
    """Build a config, rejecting unknown keys with a clear message."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; valid: {sorted(names)}")
    return cls(**values)
