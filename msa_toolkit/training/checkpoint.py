"""Self-describing checkpoints (one safetensors file) and resumable run state.

A checkpoint is a single ``.safetensors`` file: the model's weights (its
objective's auxiliary learners included) plus, in the safetensors metadata
header under the key ``"msa_toolkit"``, one JSON document::

    {"format_version": 1, "toolkit_version": "0.1.0",
     "model_name": "almt", "model_config": {...}, "feature_spec": {...},
     "train_config": {...}, "metrics": {...}, "extra": {...}}

``extra`` is free JSON for what inference needs besides the weights — notably
the data normalisation statistics. Arrays inside ``extra`` (numpy or torch) are
stored as tensors named ``__extra__/<path>`` and restored as numpy arrays, so a
768-d mean/std does not bloat the JSON header. ``load_checkpoint`` rebuilds the
model with ``create_model(name, **model_config)`` and needs nothing else.

The resume state of an interrupted run (optimiser, scheduler, grad scaler,
epoch, RNG states, early-stopping counters) is a separate ``torch.save`` file,
``last.pt`` in the run directory — see :func:`save_resume_state`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .. import __version__
from .._io import atomic_write, finite_or_none, json_default
from ..errors import CheckpointError
from ..spec import FeatureSpec

#: layout version of the metadata document; bumped on incompatible changes
FORMAT_VERSION = 1
#: safetensors metadata key holding the JSON document
META_KEY = "msa_toolkit"
#: tensor-name prefix of arrays lifted out of ``extra``
EXTRA_PREFIX = "__extra__/"
#: file name of the resume state inside a run directory
RESUME_FILE = "last.pt"


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns."""

    # the rebuilt model, weights loaded, in eval mode
    model: Any
    # the FeatureSpec the model was trained on (None if the checkpoint has none)
    spec: FeatureSpec | None
    # registry name of the model
    model_name: str
    # the resolved model config as a dict (create_model(model_name, **model_config) rebuilds it)
    model_config: dict[str, Any]
    # the training configuration of the run, as a dict
    train_config: dict[str, Any] = field(default_factory=dict)
    # metrics recorded with the checkpoint (e.g. {"valid": {...}, "test": {...}})
    metrics: dict[str, Any] = field(default_factory=dict)
    # everything else (normalisation statistics, seed, epoch, ...); arrays as numpy
    extra: dict[str, Any] = field(default_factory=dict)
    # toolkit version that wrote the file
    toolkit_version: str = ""
    # the file it came from
    path: str = ""


def _jsonable(obj: Any) -> Any:
    """Plain JSON/YAML data: dataclasses as dicts, string keys, paths as str, NaN/inf as None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (Path, np.floating, np.integer, np.bool_)):
        obj = json_default(obj)
    return finite_or_none(obj)


def _lift_arrays(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace arrays in ``obj`` by {"__tensor__": name}, collecting them into ``tensors``."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, np.ndarray):
        name = EXTRA_PREFIX + path
        t = obj.detach().cpu() if isinstance(obj, torch.Tensor) else torch.from_numpy(np.asarray(obj))
        tensors[name] = t.contiguous().clone()
        return {"__tensor__": name}
    if isinstance(obj, Mapping):
        return {str(k): _lift_arrays(v, f"{path}/{k}" if path else str(k), tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lift_arrays(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    return _jsonable(obj)


def _restore_arrays(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            name = obj["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"checkpoint metadata refers to missing tensor {name!r}")
            return tensors[name].numpy()
        return {k: _restore_arrays(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore_arrays(v, tensors) for v in obj]
    return obj


def nonfinite_tensors(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``tensors`` holding a NaN or inf, in order."""
    return [k for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


def describe_nonfinite(tensors: Mapping[str, Any]) -> str | None:
    """"N of M tensors hold NaN/inf (first: <name>)", or None when every tensor is finite."""
    bad = nonfinite_tensors(tensors)
    if not bad:
        return None
    total = sum(1 for v in tensors.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    return f"{len(bad)} of {total} weight tensors hold NaN/inf (first: {bad[0]!r})"


def model_state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies of the state dict's tensors (safetensors rejects shared storage).

    Non-tensor entries (``get_extra_state`` of a module, e.g. a replay buffer) are left out here;
    the resume state keeps them (:func:`full_model_state`).
    """
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if isinstance(v, torch.Tensor)}


def full_model_state(model: torch.nn.Module) -> dict[str, Any]:
    """The whole state dict on CPU, extra (non-tensor) state included, for ``last.pt``."""
    import copy

    return {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
            for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, spec: FeatureSpec | Mapping | None,
                    train_config: Any = None, metrics: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None,
                    state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write one self-describing ``.safetensors`` checkpoint (atomically).

    ``model`` must be a registered MSAModel (``model.name`` and ``model.config``);
    ``state`` overrides the weights written (default: the model's current state dict).
    Weights holding NaN/inf are refused (CheckpointError naming the first bad tensor).
    """
    from safetensors.torch import save_file

    path = Path(path)
    name = getattr(model, "name", "")
    config = getattr(model, "config", None)
    if not name or config is None:
        raise CheckpointError("save_checkpoint needs a registered model (with .name and .config)")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()} if state is not None \
        else model_state_tensors(model)
    if any(k.startswith(EXTRA_PREFIX) for k in tensors):
        raise CheckpointError(f"model parameter names must not start with {EXTRA_PREFIX!r}")
    bad = describe_nonfinite(tensors)
    if bad:
        raise CheckpointError(f"{path}: not written: {bad}")
    extra_doc = _lift_arrays(dict(extra or {}), "", tensors)
    spec_doc = spec.to_dict() if isinstance(spec, FeatureSpec) else (dict(spec) if spec is not None else None)
    doc = {
        "format_version": FORMAT_VERSION,
        "toolkit_version": __version__,
        "model_name": name,
        "model_config": _jsonable(config.to_dict() if hasattr(config, "to_dict") else config),
        "feature_spec": spec_doc,
        "train_config": _jsonable(train_config if train_config is not None else {}),
        "metrics": _jsonable(dict(metrics or {})),
        "extra": extra_doc,
    }
    meta = {META_KEY: json.dumps(doc, sort_keys=True), "format": "pt"}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a checkpoint, without loading weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        hint = (f"; {path.name} is a run's resumable training state (msa train --resume), the model is "
                f"{path.with_name('best.safetensors')}" if path.suffix == ".pt" else "")
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e}){hint}") from e
    if META_KEY not in meta:
        raise CheckpointError(f"{path}: safetensors file has no {META_KEY!r} metadata (not an msa_toolkit checkpoint)")
    try:
        doc = json.loads(meta[META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: malformed checkpoint metadata ({e})") from e
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is not supported by msa_toolkit {__version__} "
            f"(supports <= {FORMAT_VERSION}); upgrade the toolkit")
    for key in ("model_name", "model_config"):
        if key not in doc:
            raise CheckpointError(f"{path}: checkpoint metadata lacks {key!r}")
    return doc


def _config_values(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to tuples where the config field's default is a tuple; fields a stored config
    predates get the config class's ``LEGACY_VALUES`` (the behaviour it was trained with)."""
    from ..models import get_entry

    cls = get_entry(name).config_cls
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values = {**getattr(cls, "LEGACY_VALUES", {}), **values}
    return {k: (tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v)
            for k, v in values.items()}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint with its weights (eval mode) and its metadata."""
    from safetensors.torch import load_file

    from ..models import create_model

    path = Path(path)
    doc = read_checkpoint_metadata(path)
    name = doc["model_name"]
    try:
        model = create_model(name, **_config_values(name, doc["model_config"]))
    except KeyError as e:
        raise CheckpointError(f"{path}: {e.args[0] if e.args else e}") from e
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r} from its stored config ({e})") from e
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from e
    weights = {k: v for k, v in tensors.items() if not k.startswith(EXTRA_PREFIX)}
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{path}: weights do not match model {name!r} built from the stored config "
                              f"({str(e).splitlines()[-1].strip()})") from e
    missing = [k for k in missing if not k.endswith("_extra_state")]  # non-tensor state is not stored
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match model {name!r} (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})")
    model.to(map_location).eval()
    spec_doc = doc.get("feature_spec")
    return LoadedCheckpoint(
        model=model,
        spec=FeatureSpec.from_dict(spec_doc) if spec_doc else None,
        model_name=name,
        model_config=dict(doc["model_config"]),
        train_config=dict(doc.get("train_config") or {}),
        metrics=dict(doc.get("metrics") or {}),
        extra=_restore_arrays(doc.get("extra") or {}, tensors),
        toolkit_version=str(doc.get("toolkit_version", "")),
        path=str(path),
    )


# -- resume state ------------------------------------------------------------------------------

def save_resume_state(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Atomically ``torch.save`` a resume state dict (model/optimizer/scheduler/epoch/RNG ...); every value must
    be of a type :func:`load_resume_state` reads back with ``weights_only=True``."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))
    return path


def load_resume_state(path: str | os.PathLike) -> dict[str, Any]:
    """The dict written by :func:`save_resume_state` (CheckpointError when missing or unreadable).

    Read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, so a crafted
    file in a run folder cannot run code on ``--resume`` (a pickled object of any other type is refused)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: resume state not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused to load the resume state: it holds something other than tensors, "
                              f"numbers and strings ({first}); a resume state the toolkit wrote never does") from None
    except Exception as e:
        raise CheckpointError(f"{path}: corrupt resume state ({e})") from e
