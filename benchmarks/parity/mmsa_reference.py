"""An MMSA checkout (thuiar/MMSA) for the parity scripts: checking it, importing single modules, building ``args``.

MMSA's package ``__init__`` files import every model and the whole training stack (GPU probing, the data loaders,
``pytorch_transformers`` and downloads of pretrained BERTs). :func:`import_mmsa` imports one module with its
packages registered as bare namespaces (their ``__init__`` files are not run), so only the module's own imports
execute: ``packages`` adds bare packages to :data:`MMSA_PACKAGES` (e.g. :data:`TRAINER_PACKAGES`), ``attributes``
puts names on them (e.g. a ``BertTextEncoder`` stand-in on ``MMSA.models.subNets``) and ``stubs`` registers whole
modules for the import (e.g. ``pytorch_transformers``). :func:`mmsa_args` builds a model's ``args`` from
``config_regression.json`` as MMSA's ``get_config_regression`` merges it. Nothing of MMSA is copied here: the
checkout (the repository root, holding ``src/MMSA``) is given on the command line with ``--reference-dir``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any, Mapping, Sequence

from parity_common import Namespace, check_reference_dir, import_reference

__all__ = ["CONFIG", "MMSA_PACKAGES", "REPO", "SUBNETS", "TRAINER_PACKAGES", "aligned_batch", "gpu_probe_stub",
           "import_mmsa", "mmsa_args", "mmsa_checkout", "zero_dropout"]

REPO = "thuiar/MMSA"
#: MMSA's configuration (relative to the checkout root)
CONFIG = "src/MMSA/config/config_regression.json"
#: the sub-network package (where model files import ``BertTextEncoder``, ``SubNet``, ... from)
SUBNETS = "MMSA.models.subNets"
#: the packages whose ``__init__`` files are always skipped
MMSA_PACKAGES = ("MMSA", "MMSA.models", "MMSA.models.singleTask", "MMSA.models.multiTask", SUBNETS,
                 f"{SUBNETS}.transformers_encoder")
#: the trainer packages (their ``__init__`` files import every trainer)
TRAINER_PACKAGES = ("MMSA.trains", "MMSA.trains.singleTask", "MMSA.trains.multiTask")


def mmsa_checkout(path: str | None, *files: str) -> Path:
    """The checkout root, or exit with a clear message; :data:`CONFIG` and ``src/MMSA/<file>`` for each of
    ``files`` (e.g. ``models/singleTask/MISA.py``) must exist."""
    return check_reference_dir(path, (CONFIG, *(f"src/MMSA/{f}" for f in files)), REPO)


def import_mmsa(root: Path, module: str, packages: Sequence[str] = (),
                attributes: Mapping[str, Mapping[str, Any]] | None = None,
                stubs: Mapping[str, Any] | None = None) -> Any:
    """Import ``module`` (e.g. ``MMSA.models.singleTask.MFM``) from the checkout ``root`` without running the
    ``__init__`` files of :data:`MMSA_PACKAGES` and ``packages``; ``attributes[package]`` are set on those bare
    packages first, ``stubs`` (module name -> stand-in) are in ``sys.modules`` for the import only."""
    src = root / "src"
    clash = [name for name in (stubs or {}) if name in sys.modules]
    if clash:
        raise RuntimeError(f"modules to stub are already imported: {clash}")

    def before() -> None:
        for name in (*MMSA_PACKAGES, *packages):
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(src.joinpath(*name.split(".")))]
            for k, v in (attributes or {}).get(name, {}).items():
                setattr(pkg, k, v)
            sys.modules[name] = pkg
        sys.modules.update(stubs or {})

    try:
        return import_reference(src, module, before)
    finally:
        for name in stubs or {}:
            sys.modules.pop(name, None)


def gpu_probe_stub() -> dict[str, types.ModuleType]:
    """``stubs`` for a trainer module: MMSA.utils imports ``pynvml`` (GPU probing, never called here); an empty
    stand-in when it is not installed."""
    return {} if importlib.util.find_spec("pynvml") is not None else {"pynvml": types.ModuleType("pynvml")}


def mmsa_args(root: Path, model: str, dataset: str = "mosi", aligned: bool = False, **overrides: Any) -> Namespace:
    """MMSA's ``args`` of ``model`` on ``dataset`` (regression, CPU): the dataset's common parameters (its aligned
    or unaligned inputs), the model's commonParams and datasetParams, merged in that order as MMSA's
    ``get_config_regression`` does, then ``overrides``."""
    import torch

    cfg = json.loads((root / CONFIG).read_text())
    data = cfg["datasetCommonParams"][dataset]
    values = {**data["aligned" if aligned and "aligned" in data else "unaligned"], **cfg[model]["commonParams"],
              **cfg[model]["datasetParams"][dataset], "model_name": model, "dataset_name": dataset,
              "train_mode": "regression", "device": torch.device("cpu")}
    return Namespace({**values, **overrides})


def zero_dropout(args: Namespace, names: Sequence[str]) -> None:
    """Set the named dropout ``args`` to 0 (tuples and MFN's ``{"drop": p}`` dicts included)."""
    for n in names:
        v = getattr(args, n)
        if isinstance(v, dict):
            setattr(args, n, {**v, "drop": 0.0})
        elif isinstance(v, (list, tuple)):
            setattr(args, n, [0.0] * len(v))
        else:
            setattr(args, n, 0.0)


def aligned_batch(batch_size: int, length: int, dims: tuple[int, int, int], seed: int):
    """(features by modality [B, L, D], labels [B], the toolkit Batch of them): random word-aligned inputs
    without padding, labels uniform in [-3, 3]."""
    import torch

    from msa_toolkit.data.batch import Batch

    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch_size, length, d, generator=g) for m, d in zip(("text", "audio", "vision"), dims)}
    label = torch.empty(batch_size).uniform_(-3, 3, generator=g)
    ones = torch.ones(batch_size, length, dtype=torch.bool)
    return x, label, Batch(label=label, **x, text_mask=ones, audio_mask=ones, vision_mask=ones)
