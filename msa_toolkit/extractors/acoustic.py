"""Compatibility name of :mod:`msa_toolkit.extractors.audio` (renamed after the modality).

Kept only so existing imports and the extractor module list keep working until the registry
discovers modules by itself; import from :mod:`msa_toolkit.extractors.audio`.
"""

from typing import Any

from . import audio as _new  # importing it registers its extractors


def __getattr__(name: str) -> Any:
    return getattr(_new, name)
