"""msa_toolkit: multimodal sentiment analysis from raw video to sentiment.

The public API is imported lazily so that ``import msa_toolkit`` (and ``msa --help``)
stay instant; torch, transformers and mediapipe load only when a function needs them.

    import msa_toolkit as msa
    msa.extract(["clips/"], out_dir="features")
    ds = msa.build_dataset(labels="label.csv", videos="Raw", out_dir="ds")
    run = msa.train("almt", data="ds", out_dir="runs/almt")
    msa.evaluate("runs/almt/seed_1/best.safetensors", data="ds")
    msa.predict("clip.mp4")
    msa.serve()  # the HTTP API and page of `msa serve` (needs the `serve` extra)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> "module:attribute", resolved on first access. No name may also be a submodule's: importing
#: msa_toolkit.<name> would bind the module over the function (tests/test_public_api.py checks it)
_LAZY = {
    "extract": "msa_toolkit.extraction:extract",
    "extract_texts": "msa_toolkit.extraction:extract_texts",
    "ExtractConfig": "msa_toolkit.extraction:ExtractConfig",
    "build_dataset": "msa_toolkit.data.build:build_dataset",
    "load_dataset": "msa_toolkit.data.native:load_dataset",
    "import_dataset": "msa_toolkit.data.importers:import_dataset",
    "export_dataset": "msa_toolkit.data.importers:export_dataset",
    "train": "msa_toolkit.training.api:train",
    "evaluate": "msa_toolkit.training.api:evaluate",
    "benchmark": "msa_toolkit.training.benchmark:benchmark",
    "robustness": "msa_toolkit.training.robustness:robustness",
    "tune": "msa_toolkit.training.tune:tune",
    "predict": "msa_toolkit.prediction:predict",
    "serve": "msa_toolkit.server:serve",
    "create_model": "msa_toolkit.models:create_model",
    "list_models": "msa_toolkit.models:list_models",
    "FeatureSpec": "msa_toolkit.spec:FeatureSpec",
    "FeatureBundle": "msa_toolkit.features:FeatureBundle",
    "Batch": "msa_toolkit.data.batch:Batch",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'msa_toolkit' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
