"""Model registry: ``@register_model`` on model classes, ``create_model`` and ``list_models``.

A model class is registered with its config class and named presets (the
published configurations). ``create_model(name, preset=None, **overrides)``
resolves defaults <- preset <- overrides into the config, then builds the
model; a checkpoint stores ``name`` and ``config.to_dict()`` so loading is
``create_model(name, **config_dict)``.

Model modules register themselves on import. Every public module of the
``msa_toolkit.models`` package (not starting with ``_``) is imported on the
first registry access, so adding a model is one file plus one decorator; the
reusable blocks live apart, in :mod:`msa_toolkit.layers`. An import error in a model module
propagates: a broken model is never silently missing.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, TypeVar

import torch

from .base import ModelConfig, MSAModel, config_from_mapping

_ModelT = TypeVar("_ModelT", bound=Callable[..., MSAModel])


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    # registry name, e.g. "almt"
    name: str
    # builds the model from a resolved config (the model class itself)
    builder: Callable[[ModelConfig], MSAModel]
    # the model's config dataclass
    config_cls: type[ModelConfig]
    # named published configurations: preset name -> config overrides
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # one-line description for `msa models`
    summary: str = ""
    # what `msa tune` may vary: config field -> range (msa_toolkit.space), from the paper and MMSA's tuning configs
    search_space: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register_model(name: str, config_cls: type[ModelConfig], presets: Mapping[str, Mapping[str, Any]] | None = None,
                   summary: str = "", search_space: Mapping[str, Any] | None = None) -> Callable[[_ModelT], _ModelT]:
    """Class decorator: register ``cls(config) -> MSAModel`` under ``name``.

    Any callable taking the resolved config works (a class is the usual case). ``search_space``: config field ->
    :mod:`msa_toolkit.space` range, the hyper-parameters `msa tune` searches by default.
    """

    def deco(builder: _ModelT) -> _ModelT:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, config_cls, dict(presets or {}), summary, dict(search_space or {}))
        return builder

    return deco


def model_modules() -> Iterator[str]:
    """Dotted names of the model modules of ``msa_toolkit.models`` (read from its ``__path__`` now)."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            yield f"{__package__}.{info.name}"


def _ensure_loaded() -> None:
    """Import every model module once; errors propagate (a typo or missing dependency must raise)."""
    global _loaded
    if _loaded:
        return
    for module in sorted(model_modules()):
        importlib.import_module(module)
    _loaded = True  # only after every module imported: a failed import raises again on the next access


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (KeyError listing the available names)."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_config(name: str, preset: str | None = None, **overrides: Any) -> ModelConfig:
    """Config of ``name``: defaults <- preset <- overrides."""
    entry = get_entry(name)
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in entry.presets:
            raise KeyError(f"model {name!r} has no preset {preset!r}; presets: {sorted(entry.presets)}")
        values.update(entry.presets[preset])
    values.update(overrides)
    return config_from_mapping(entry.config_cls, values)


#: the most parameters a model may have (4 GB of fp32 weights; the seed models have at most ~41 M). A stored or
#: requested config over it is refused before any memory is allocated (:func:`check_size`)
MAX_PARAMETERS = 10 ** 9


def check_size(entry: ModelEntry, config: ModelConfig) -> None:
    """Build the model on the ``meta`` device (shapes only, no memory) and refuse it (ValueError) when it has more
    than :data:`MAX_PARAMETERS` parameters or cannot be built (e.g. a width not divisible by the heads).
    A model that fine-tunes a text encoder is loaded from its files instead (bounded by what is on disk)."""
    if getattr(config, "text_encoder", None):
        return
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in entry.builder(config).parameters())
    except (ValueError, ZeroDivisionError, RuntimeError) as e:
        raise ValueError(f"cannot build model {entry.name!r} with this config: {e}") from None
    if n > MAX_PARAMETERS:
        raise ValueError(f"model {entry.name!r} with this config would have {n:,} parameters, more than the "
                         f"{MAX_PARAMETERS:,} the toolkit builds (check the sizes in the config)")


def create_model(name: str, preset: str | None = None, **overrides: Any) -> MSAModel:
    """Build a registered model: config defaults <- preset <- overrides (values checked, size checked first)."""
    entry = get_entry(name)
    config = resolve_config(name, preset, **overrides)
    check_size(entry, config)
    model = entry.builder(config)
    model.name = name  # instance attribute: one class may back several registered names
    return model
