"""Content-addressed feature cache.

A cached bundle is found by a key made of *what* was extracted (sha256 of the
file's bytes, or of a text) and *how* (the FeatureSpec fingerprint, plus the
hash of a user-supplied transcript when one replaced ASR). Renaming or moving a
file keeps its cache hit; editing it or changing any extractor parameter misses.

Layout: ``<root>/bundles/<key[:2]>/<key>.safetensors`` + ``.json``. Writes go
through :meth:`FeatureBundle.save` (temp file + ``os.replace``, json last, so a
bundle is visible only once complete) under a per-key ``fcntl`` lock, so two
processes sharing a cache never interleave the two files of one entry, and a
run killed mid-write leaves at most an orphan temp file that is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from .features import FeatureBundle

#: environment variable that overrides the default cache location
CACHE_ENV = "MSA_CACHE_DIR"
#: bytes read per chunk when hashing files
_HASH_CHUNK = 1 << 20
#: bump to invalidate every existing cache entry (layout change)
CACHE_LAYOUT_VERSION = "1"


def default_cache_dir() -> Path:
    """``$MSA_CACHE_DIR`` or ``~/.cache/msa_toolkit`` (XDG_CACHE_HOME respected)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "msa_toolkit"


def hash_file(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_text(text: str) -> str:
    """sha256 hex of a text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(content_hash: str, spec_fingerprint: str, extra: str = "") -> str:
    """Key of one cache entry: content hash + spec fingerprint (+ e.g. a user transcript's hash)."""
    h = hashlib.sha256()
    for part in (CACHE_LAYOUT_VERSION, content_hash, spec_fingerprint, extra):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class FeatureCache:
    """A directory of bundles addressed by :func:`cache_key`; safe to share between processes."""

    def __init__(self, root: str | os.PathLike | None = None):
        # the cache directory (created on first write)
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        # counters for this process: lookups that found an entry / missed / entries written
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def stem(self, key: str) -> Path:
        """Path without suffix of the entry for ``key``."""
        return self.root / "bundles" / key[:2] / key

    def contains(self, key: str) -> bool:
        return FeatureBundle.exists(self.stem(key))

    def get(self, key: str) -> FeatureBundle | None:
        """The cached bundle, or None (a damaged entry counts as a miss and is removed)."""
        stem = self.stem(key)
        if not FeatureBundle.exists(stem):
            self.misses += 1
            return None
        try:
            bundle = FeatureBundle.load(stem)
        except Exception:
            self.misses += 1
            with self._lock(key):
                for suffix in (".json", ".safetensors"):
                    with contextlib.suppress(FileNotFoundError):
                        stem.with_suffix(suffix).unlink()
            return None
        self.hits += 1
        return bundle

    def put(self, key: str, bundle: FeatureBundle) -> Path:
        """Store ``bundle`` under ``key`` atomically; returns the entry's stem."""
        stem = self.stem(key)
        stem.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(key):
            bundle.save(stem)
        self.writes += 1
        return stem

    def read_meta(self, key: str) -> dict | None:
        """The json header of an entry without loading its arrays (None when absent)."""
        try:
            return json.loads(self.stem(key).with_suffix(".json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        """Exclusive advisory lock on one entry (fcntl; a no-op where fcntl does not exist)."""
        lock_path = self.stem(key).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rely on os.replace atomicity alone
            yield
            return
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
