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

An entry is trusted only when whole: :meth:`FeatureCache.lookup` checks the json
parses and matches the sha256 it records of itself (an edited transcript or meta
misses), and the safetensors file's header, size (and, on demand, sha256) match
what the json recorded (:func:`~msa_toolkit.features.check_bundle`); a damaged
entry is removed, counts as a miss and is recomputed. An entry written before
jsons recorded their own sha256 is stale: it is recomputed once (its json could
have been edited unseen, and its meta predates the one rule of presence). The extraction run checks the sha256
of every entry it hands on: a copy to ``out_dir`` as it is written, an entry read in place
(no ``out_dir``: dataset builds, predict) or aligned from (``align="words"``) before use;
:meth:`FeatureCache.get` (text-only datasets) checks it too.

Compute once: :meth:`FeatureCache.claim` holds the entry's lock while one process
extracts it. Another process asking for the same entry either skips it for now
(``wait=False``) or waits and then finds it stored. The lock is a kernel ``flock``,
so a process that dies releases it at once: there is no stale lock to clean up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from .features import BundleReadError, FeatureBundle, check_bundle

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
        # damaged entries found (and removed) by this process
        self.damaged = 0
        # keys whose lock this object holds (claim), so put() inside a claim does not lock again
        self._held: set[str] = set()

    def stem(self, key: str) -> Path:
        """Path without suffix of the entry for ``key``."""
        return self.root / "bundles" / key[:2] / key

    def contains(self, key: str) -> bool:
        """True when both files of the entry exist (not checked; see :meth:`lookup`)."""
        return FeatureBundle.exists(self.stem(key))

    def get(self, key: str) -> FeatureBundle | None:
        """The cached bundle, or None (a damaged entry, sha256 included, counts as a miss and is removed)."""
        stem = self.stem(key)
        if not FeatureBundle.exists(stem):
            self.misses += 1
            return None
        try:
            check_bundle(stem, full=True, sealed=True)
            bundle = FeatureBundle.load(stem)
        except Exception:
            self.misses += 1
            self.discard(key)
            return None
        self.hits += 1
        return bundle

    def lookup(self, key: str, full: bool = False) -> dict | None:
        """The json header of a whole entry (checked, arrays not read), or None.

        A missing entry is None; a damaged one (truncated or unparsable json or safetensors,
        size -- or with ``full`` the sha256 -- differing from the json's record) is removed and
        is None too. Counts neither hit nor miss: the caller decides what it used.
        """
        stem = self.stem(key)
        if not stem.with_suffix(".json").is_file():
            return None
        try:
            return check_bundle(stem, full=full, sealed=True)
        except BundleReadError:
            self.discard(key)
            return None

    def discard(self, key: str) -> None:
        """Remove a damaged entry so it is recomputed; counts it in :attr:`damaged`.

        Re-checked under the lock: another process may have just replaced it with a whole entry.
        """
        stem = self.stem(key)
        self.damaged += 1
        with self._lock(key):
            with contextlib.suppress(BundleReadError):
                check_bundle(stem, full=True, sealed=True)
                return
            for suffix in (".json", ".safetensors"):
                with contextlib.suppress(FileNotFoundError):
                    stem.with_suffix(suffix).unlink()

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
    def claim(self, key: str, wait: bool = True) -> Iterator[bool]:
        """Hold the entry's lock while computing it; yields False (without waiting) when ``wait`` is
        False and another process holds it. Inside the claim, :meth:`put` does not lock again.

        The caller checks :meth:`lookup` after claiming: the other process may have stored it.
        """
        with self._lock(key, wait) as got:
            if got:
                self._held.add(key)
            try:
                yield got
            finally:
                self._held.discard(key)

    @contextlib.contextmanager
    def _lock(self, key: str, wait: bool = True) -> Iterator[bool]:
        """Exclusive advisory lock on one entry (fcntl; a no-op where fcntl does not exist).

        Yields True once held, or False when ``wait`` is False and another process holds it.
        A key this object already holds (inside :meth:`claim`) is not locked again.
        """
        if key in self._held:
            yield True
            return
        lock_path = self.stem(key).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rely on os.replace atomicity alone
            yield True
            return
        with open(lock_path, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
