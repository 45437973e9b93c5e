"""Importing single model files of an MMSA checkout (thuiar/MMSA) for the parity scripts.

MMSA's package ``__init__`` files import every model and the whole training stack (and through them
``pytorch_transformers`` and downloads of pretrained BERTs). :func:`import_mmsa` imports one model module
with its packages registered as bare namespaces (their ``__init__`` files are not run), so only the model's
own imports execute. ``attributes`` puts names on those bare packages (e.g. a ``BertTextEncoder`` stand-in on
``MMSA.models.subNets``), ``stubs`` registers whole modules (e.g. ``pytorch_transformers``). Nothing of MMSA is
copied here: the checkout is given on the command line.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Mapping

from parity_common import check_reference_dir, import_reference, reference_commit

__all__ = ["REPO", "aligned_batch", "import_mmsa", "mmsa_checkout", "mmsa_commit", "MMSA_PACKAGES"]

REPO = "thuiar/MMSA"
#: the packages whose __init__ files are skipped
MMSA_PACKAGES = ("MMSA", "MMSA.models", "MMSA.models.singleTask", "MMSA.models.multiTask", "MMSA.models.subNets",
                 "MMSA.models.subNets.transformers_encoder")


def mmsa_checkout(path: str | None, model_file: str) -> Path:
    """The checkout root (``src/MMSA/models/<model_file>`` must exist), or exit with a clear message."""
    return check_reference_dir(path, (f"src/MMSA/models/{model_file}", "src/MMSA/config/config_regression.json"),
                               REPO)


def mmsa_commit(root: Path) -> str:
    return reference_commit(root)


def import_mmsa(root: Path, module: str, attributes: Mapping[str, Mapping[str, Any]] | None = None,
                stubs: Mapping[str, types.ModuleType] | None = None) -> Any:
    """Import ``module`` (e.g. ``MMSA.models.singleTask.MFM``) from the checkout ``root`` without running the
    package ``__init__`` files; ``attributes[package]`` are set on the bare package modules first."""
    src = root / "src"
    clash = [name for name in (stubs or {}) if name in sys.modules]
    if clash:
        raise RuntimeError(f"modules to stub are already imported: {clash}")

    def before() -> None:
        for name in MMSA_PACKAGES:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(src.joinpath(*name.split(".")))]
            for k, v in (attributes or {}).get(name, {}).items():
                setattr(pkg, k, v)
            sys.modules[name] = pkg
        for name, mod in (stubs or {}).items():
            sys.modules[name] = mod

    try:
        return import_reference(src, module, before)
    finally:
        for name in stubs or {}:
            sys.modules.pop(name, None)


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
