"""Model registry: ``@register_model`` on builders, ``create_model`` and ``list_models``.

A builder is registered with its config class and named presets (the published
configurations). ``create_model(name, preset=None, **overrides)`` resolves
defaults <- preset <- overrides into the config, then builds the model; a
checkpoint stores ``name`` and ``config.to_dict()`` so loading is
``create_model(name, **config_dict)``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .base import ModelConfig, MSAModel, config_from_mapping


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    # registry name, e.g. "almt"
    name: str
    # builds the model from a resolved config
    builder: Callable[[ModelConfig], MSAModel]
    # the model's config dataclass
    config_cls: type[ModelConfig]
    # named published configurations: preset name -> config overrides
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # one-line description for `msa models`
    summary: str = ""


_REGISTRY: dict[str, ModelEntry] = {}

#: modules imported on first registry access, so every model registers itself
_MODEL_MODULES = (
    "msa_toolkit.models.baselines",
    "msa_toolkit.models.dlf",
    "msa_toolkit.models.almt",
    "msa_toolkit.models.mmcl",
    "msa_toolkit.models.mind",
)
_loaded = False


def register_model(name: str, config_cls: type[ModelConfig], presets: Mapping[str, Mapping[str, Any]] | None = None,
                   summary: str = "") -> Callable:
    """Decorator for ``builder(config) -> MSAModel``."""

    def deco(builder: Callable[[ModelConfig], MSAModel]) -> Callable[[ModelConfig], MSAModel]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, config_cls, dict(presets or {}), summary)
        return builder

    return deco


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # a model module not written yet must not hide the others
            if e.name != mod:
                raise


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_config(name: str, preset: str | None = None, **overrides: Any) -> ModelConfig:
    entry = get_entry(name)
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in entry.presets:
            raise KeyError(f"model {name!r} has no preset {preset!r}; presets: {sorted(entry.presets)}")
        values.update(entry.presets[preset])
    values.update(overrides)
    return config_from_mapping(entry.config_cls, values)


def create_model(name: str, preset: str | None = None, **overrides: Any) -> MSAModel:
    """Build a registered model: config defaults <- preset <- overrides."""
    entry = get_entry(name)
    model = entry.builder(resolve_config(name, preset, **overrides))
    model.name = name  # instance attribute: one class may back several registered names
    return model
