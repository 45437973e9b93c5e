"""Split names: the canonical ``train``/``valid``/``test`` and the aliases accepted for them.

Shared by the label-file reader (:mod:`.labels`), the dataset format (:mod:`.native`) and the
MMSA importer, so every entry point accepts ``dev``/``val``/``validation`` for ``valid``.
"""

from __future__ import annotations

#: Canonical split names in their usual order; other names are kept as given.
SPLIT_ORDER = ("train", "valid", "test")
#: Accepted aliases of split names (lower-case) -> canonical name.
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid", "dev": "valid",
                 "validation": "valid", "test": "test", "testing": "test"}


def canonical_split(name: str) -> str:
    """``dev``/``val``/``validation`` -> ``valid`` etc.; unknown names are returned lower-cased."""
    key = str(name).strip().lower()
    return SPLIT_ALIASES.get(key, key)


__all__ = ["SPLIT_ORDER", "SPLIT_ALIASES", "canonical_split"]
