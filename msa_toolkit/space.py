"""Hyper-parameter search spaces: what `msa tune` may vary, declared next to each model's config.

A model file declares its space as a mapping from config field to a range, and registers it with the model::

    SEARCH_SPACE = {"lr": Float(5e-4, 5e-3, log=True), "post_fusion_dim": Choice(16, 32, 64, 128)}

    @register_model("tfn", TFNConfig, presets=..., search_space=SEARCH_SPACE)

Three kinds of range: :class:`Float` (uniform, or log-uniform with ``log=True``), :class:`Int` (inclusive bounds,
``step``) and :class:`Choice` (a list of values). A study's space is the model's with its keys written
``model.<field>``, changed by a ``--space`` YAML file (:func:`read_space_file`)::

    model.lr: {low: 1.0e-4, high: 1.0e-3, log: true}   # a Float (a bound written with a point or exponent)
    model.ahl_depth: {low: 2, high: 4}                  # an Int (both bounds integers)
    model.batch_size: [32, 64]                          # a Choice
    model.dropout: null                                 # not searched: keeps its configured value
    trainer.patience: [5, 10]                           # trainer settings may be searched too

Keys the file names replace the model's (a narrower range narrows it); the others stay. This module is plain
data (no optuna import): :func:`suggest` calls the ``suggest_*`` methods of whatever trial it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

from .errors import MSAError

__all__ = ["Float", "Int", "Choice", "Param", "SECTIONS", "suggest", "param_from_yaml", "param_to_yaml",
           "read_space_file", "space_to_yaml"]

#: the sections a study's space keys may name (as the override keys of `msa train --set`)
SECTIONS = ("model", "trainer")


@dataclass(frozen=True)
class Float:
    """A real value in [low, high]; ``log``: sampled uniformly in log space (low must be > 0)."""

    # lower bound
    low: float
    # upper bound
    high: float
    # sample log-uniformly (learning rates, weight decays)
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError(f"Float range needs finite low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


@dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both included), every ``step``; ``log``: log-uniform (step 1 only)."""

    # lower bound
    low: int
    # upper bound (included)
    high: int
    # spacing of the allowed values from low
    step: int = 1
    # sample log-uniformly
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high or self.step < 1:
            raise ValueError(f"Int range needs low <= high and step >= 1, got [{self.low}, {self.high}] "
                             f"step {self.step}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log Int range needs low >= 1 and step 1")

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
                and (value - self.low) % self.step == 0)


class Choice:
    """One of a list of values (numbers, strings, booleans)."""

    __slots__ = ("choices",)

    def __init__(self, *choices: Any):
        if not choices:
            raise ValueError("a Choice needs at least one value")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ValueError(f"Choice values must be numbers, strings or booleans, got {bad}")
        # the values, in order
        self.choices: tuple[Any, ...] = tuple(choices)

    def contains(self, value: Any) -> bool:
        return value in self.choices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and other.choices == self.choices

    def __hash__(self) -> int:
        return hash(self.choices)

    def __repr__(self) -> str:
        return f"Choice{self.choices!r}"


Param = Union[Float, Int, Choice]


def suggest(trial: Any, name: str, param: Param) -> Any:
    """The value of ``param`` an Optuna trial suggests for ``name``."""
    if isinstance(param, Float):
        return trial.suggest_float(name, param.low, param.high, log=param.log)
    if isinstance(param, Int):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(name, list(param.choices))


def param_from_yaml(key: str, value: Any) -> Param:
    """A range from its YAML form (module docstring): a list is a Choice; a mapping with low/high (and log, step)
    is an Int when both bounds are integers, else a Float. ValueError naming ``key`` otherwise."""
    try:
        if isinstance(value, (list, tuple)):
            return Choice(*value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"low", "high", "log", "step"})
            if unknown or "low" not in value or "high" not in value:
                raise ValueError(f"expected {{low, high}} with optional log and step, got keys {sorted(value)}")
            low, high = (_number(value[k]) for k in ("low", "high"))
            if isinstance(low, int) and isinstance(high, int):
                return Int(low, high, step=int(value.get("step", 1)), log=bool(value.get("log", False)))
            if "step" in value:
                raise ValueError("step applies to integer ranges only")
            return Float(float(low), float(high), log=bool(value.get("log", False)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"search space {key!r}: {e}") from None
    raise ValueError(f"search space {key!r}: expected a list of choices or {{low, high}}, got {value!r}")


def _number(v: Any) -> int | float:
    if isinstance(v, bool):
        raise ValueError(f"a bound must be a number, got {v!r}")
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, str):  # YAML 1.1 reads 1e-4 (no point) as a string
        return float(v)
    raise ValueError(f"a bound must be a number, got {v!r}")


def param_to_yaml(param: Param) -> Any:
    """The YAML form of a range (the inverse of :func:`param_from_yaml`)."""
    if isinstance(param, Choice):
        return list(param.choices)
    out: dict[str, Any] = {"low": param.low, "high": param.high}
    if param.log:
        out["log"] = True
    if isinstance(param, Int) and param.step != 1:
        out["step"] = param.step
    return out


def space_to_yaml(space: Mapping[str, Param]) -> dict[str, Any]:
    """A whole space in the YAML form of a ``--space`` file."""
    return {k: param_to_yaml(p) for k, p in space.items()}


def read_space_file(path: str | Path) -> dict[str, Param | None]:
    """The entries of a ``--space`` YAML file: dotted key (``model.<field>`` / ``trainer.<field>``) -> range, or
    None for "not searched". MSAError naming the file for anything malformed (before any study starts)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MSAError(f"--space: {p} not found")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise MSAError(f"--space {p}: invalid YAML ({e})") from None
    if not isinstance(doc, Mapping):
        raise MSAError(f"--space {p}: expected a mapping of model.<field> / trainer.<field> to ranges")
    out: dict[str, Param | None] = {}
    for key, value in doc.items():
        section, _, name = str(key).partition(".")
        if section not in SECTIONS or not name or "." in name:
            raise MSAError(f"--space {p}: key {key!r} must be model.<field> or trainer.<field>")
        try:
            out[str(key)] = None if value is None else param_from_yaml(str(key), value)
        except ValueError as e:
            raise MSAError(f"--space {p}: {e}") from None
    return out
