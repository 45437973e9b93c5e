"""Installed library versions, read from package metadata (never by importing the library).

An extractor's FeatureSpec names the versions of the libraries that shape its output.
Reading them with :mod:`importlib.metadata` keeps building a spec (and so a cache key)
free of the multi-second imports of torch, transformers, openSMILE or faster-whisper,
which a fully cached run never needs.
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import ModelLoadError


@lru_cache(maxsize=None)
def package_version(distribution: str) -> str:
    """The installed version of ``distribution`` (e.g. ``"faster-whisper"``); ModelLoadError when absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        raise ModelLoadError(f"the Python package {distribution!r} is not installed "
                             f"(pip install {distribution})") from None
