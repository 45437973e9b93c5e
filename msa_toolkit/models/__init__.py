"""Models: registry, shared contracts, reusable layers and losses, and the assembled models."""

from .base import (LossOutput, ModelConfig, ModelOutput, MSAModel, MultiTaskObjective, Objective, RegressionObjective,
                   dims_from_spec, unimodal_key)
from ._registry import create_model, get_entry, list_models, register_model, resolve_config

__all__ = [
    "LossOutput", "ModelConfig", "ModelOutput", "MSAModel", "MultiTaskObjective", "Objective",
    "RegressionObjective", "dims_from_spec", "unimodal_key", "create_model", "get_entry", "list_models", "register_model", "resolve_config",
]
