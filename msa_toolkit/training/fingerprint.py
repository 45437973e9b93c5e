"""Run fingerprints: what a training run computed from, so runs are never mixed.

A run's fingerprint names the dataset by content (:attr:`MSADataset.content_id`), the model (name, preset,
recipe, every resolved config value), every trainer setting that changes what is computed, the seed and the
toolkit version. It is written as ``fingerprint.json`` beside the run's ``config.yaml``. ``msa train --resume``
refuses a run whose fingerprint differs from the command's (except ``epochs``: a finished run may be extended),
and ``msa benchmark`` reuses a finished run only when the fingerprints are equal (else it trains it again).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from .. import __version__
from .._io import atomic_write_json

__all__ = ["FINGERPRINT_FILE", "DISPLAY_SETTINGS", "LATER_SETTINGS", "run_fingerprint", "fingerprint_id", "differences",
           "read_fingerprint", "write_fingerprint", "dataset_id"]

FINGERPRINT_FILE = "fingerprint.json"
#: trainer settings that change how a run is shown or where it runs, not what it computes
DISPLAY_SETTINGS = frozenset({"progress", "plots", "log_every", "mmsa_names", "num_workers", "threads", "device",
                              "find_unused_parameters"})

#: trainer settings added after runs were first fingerprinted, with their defaults: left out of the fingerprint
#: while at the default, so a run made before they existed keeps its fingerprint (resume, benchmark read-back);
#: :func:`read_fingerprint` drops them at their defaults from a saved one too (runs that recorded them so)
LATER_SETTINGS = {"missing_rate": 0.0, "missing_schedule": "none", "select_missing_rate": 0.0,
                  # the reference-recipe settings (DLF's, ALMT's and MMSA's training loops)
                  "peak_hold_epochs": 0, "grad_accum_sum": False, "clip_each_backward": False,
                  "drop_partial_accum": False}


def dataset_id(data: Any) -> str | None:
    """The content id of a dataset, an opened dataset or a DataModule's dataset (None when it has none)."""
    dataset = getattr(data, "dataset", data)
    return getattr(dataset, "content_id", None)


def run_fingerprint(data: Any, model: str, preset: str | None, recipe: str, model_config: Mapping[str, Any],
                    trainer: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The fingerprint of one run (plain JSON values; see the module docstring)."""
    return json.loads(json.dumps({
        "dataset": dataset_id(data),
        "model": model,
        "preset": preset,
        "recipe": recipe,
        "model_config": dict(model_config),
        "trainer": {k: v for k, v in trainer.items() if k not in DISPLAY_SETTINGS and k != "seed"
                    and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])},
        "seed": int(seed),
        "toolkit_version": __version__,
    }, sort_keys=True, default=str))


def fingerprint_id(fingerprint: Mapping[str, Any]) -> str:
    """A short hash of a fingerprint (16 hex digits), for tables and file names."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def differences(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """``"key: old -> new"`` for every value that differs (dotted keys, e.g. ``trainer.lr``), ignoring ``ignore``."""
    a, b, skip = _flat(old), _flat(new), set(ignore)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in skip or a.get(key) == b.get(key):
            continue
        was, now = a.get(key, "(unset)"), b.get(key, "(unset)")
        if key == "dataset":  # content ids: a short prefix says enough
            was, now = str(was)[:12], str(now)[:12]
            key = "dataset (content id)"
        out.append(f"{key}: {was} -> {now}")
    return out


def read_fingerprint(run_dir: str | Path) -> dict[str, Any] | None:
    """The fingerprint a run directory holds, or None (no run, or a run written before fingerprints)."""
    path = Path(run_dir) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    trainer = saved.get("trainer") if isinstance(saved, dict) else None
    if isinstance(trainer, dict):  # a run written while a later setting was recorded at its default: as today's
        saved["trainer"] = {k: v for k, v in trainer.items() if not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    return saved


def write_fingerprint(run_dir: str | Path, fingerprint: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / FINGERPRINT_FILE
    atomic_write_json(path, dict(fingerprint), indent=1)
    return path
