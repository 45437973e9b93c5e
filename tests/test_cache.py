"""Content-addressed cache: keys, atomic writes, damaged entries, two processes on one cache."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.cache import FeatureCache, cache_key, default_cache_dir, hash_file, hash_text
from msa_toolkit.features import FeatureBundle, FeatureSequence
from msa_toolkit.spec import ExtractorSpec, FeatureSpec

SPEC = FeatureSpec((ExtractorSpec("opensmile", "audio", "1", {"feature_set": "eGeMAPSv02"}, 3, 100.0),))


def _bundle(seed: int, n: int = 50) -> FeatureBundle:
    rng = np.random.default_rng(seed)
    seq = FeatureSequence(rng.standard_normal((n, 3)), np.arange(n) / 100, np.ones(n, bool), ["a", "b", "c"])
    return FeatureBundle(SPEC, {"audio": seq}, None, {}, {"seed": seed})


def test_keys(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    assert hash_file(f) == hash_text("hello")
    k = cache_key(hash_file(f), SPEC.fingerprint())
    assert k != cache_key(hash_file(f), SPEC.fingerprint(), "user transcript")
    other = FeatureSpec((ExtractorSpec("opensmile", "audio", "1", {"feature_set": "ComParE_2016"}, 3, 100.0),))
    assert k != cache_key(hash_file(f), other.fingerprint())
    assert k == cache_key(hash_text("hello"), SPEC.fingerprint())  # content, not path


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "msa_toolkit"


def test_put_get_roundtrip(tmp_path):
    cache = FeatureCache(tmp_path)
    assert cache.get("ab" * 32) is None and cache.misses == 1
    b = _bundle(1)
    cache.put("ab" * 32, b)
    got = cache.get("ab" * 32)
    np.testing.assert_array_equal(got.sequences["audio"].values, b.sequences["audio"].values)
    assert got.spec == SPEC and cache.hits == 1 and cache.writes == 1
    assert cache.read_meta("ab" * 32)["meta"]["seed"] == 1


def test_damaged_entry_is_a_miss_and_removed(tmp_path):
    cache = FeatureCache(tmp_path)
    key = "cd" * 32
    cache.put(key, _bundle(2))
    cache.stem(key).with_suffix(".safetensors").write_bytes(b"garbage")
    assert cache.get(key) is None
    assert not cache.contains(key)


def test_same_size_corruption_is_a_miss(tmp_path):
    """get() reads the bytes anyway: one flipped byte (size and header intact) must not be served."""
    cache = FeatureCache(tmp_path)
    key = "ef" * 32
    cache.put(key, _bundle(3))
    st = cache.stem(key).with_suffix(".safetensors")
    data = bytearray(st.read_bytes())
    data[-5] ^= 0x40  # inside the last tensor's data
    st.write_bytes(bytes(data))
    assert cache.get(key) is None and cache.misses == 1
    assert not cache.contains(key)


def test_interrupted_write_leaves_no_visible_entry(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = "ef" * 32
    import safetensors.numpy as stn

    def boom(tensors, path):
        Path(path).write_bytes(b"partial")
        raise KeyboardInterrupt  # the run is killed mid-write

    monkeypatch.setattr(stn, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.put(key, _bundle(3))
    monkeypatch.undo()
    assert not cache.contains(key) and cache.get(key) is None
    assert not list(cache.stem(key).parent.glob("*.tmp"))  # temp file cleaned up
    cache.put(key, _bundle(3))  # the resumed run writes it
    assert cache.get(key).meta["seed"] == 3


def _writer(root: str, seed: int, n: int) -> None:
    cache = FeatureCache(root)
    for i in range(n):
        # both processes write the same keys with the same content, as two extraction runs would
        cache.put(cache_key(hash_text(str(i)), SPEC.fingerprint()), _bundle(i, n=200))
        cache.get(cache_key(hash_text(str((i + seed) % n)), SPEC.fingerprint()))


def test_two_processes_share_a_cache(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s, 25)) for s in (0, 7)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = FeatureCache(tmp_path)
    for i in range(25):
        b = cache.get(cache_key(hash_text(str(i)), SPEC.fingerprint()))
        assert b is not None and b.meta["seed"] == i
        np.testing.assert_array_equal(b.sequences["audio"].values, _bundle(i, n=200).sequences["audio"].values)
    assert not list(Path(tmp_path).rglob("*.tmp"))
