"""The cache is trusted only when whole and heals; outputs are copies; entries are computed once;
a cached re-run loads no extractor and ``align="words"`` derives from the cached unaligned bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.cache import FeatureCache
from msa_toolkit.extraction import ExtractConfig, LoadedExtractors, extract
from msa_toolkit.features import BundleReadError, FeatureBundle, check_bundle

#: decodes every file, no model (fast)
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)
#: word timings from Whisper + openSMILE frames: the cheapest configuration that can align to words
ALIGNABLE = ExtractConfig(text=None, audio="opensmile", vision=None)
#: libraries that a run with nothing to compute must not import
HEAVY = ("torch", "transformers", "faster_whisper", "ctranslate2", "mediapipe", "opensmile", "librosa", "cv2")
ROOT = Path(__file__).resolve().parent.parent


def _copy(assets: Path, dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(assets / n, dst / n)
    return dst


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.fixture()
def cached_run(assets_dir, tmp_path):
    """Two files extracted into out/ with a cache; returns (input folder, out, cache root, first result)."""
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac"])
    res = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c", progress=False)
    assert len(res.items) == 2 and not res.failures
    return inp, tmp_path / "out", tmp_path / "c", res


@pytest.mark.parametrize("damage", [".safetensors", ".json"])
def test_damaged_entry_is_recomputed_and_replaced(cached_run, damage):
    inp, out, root, first = cached_run
    cache = FeatureCache(root)
    victim = next(i for i in first.items if i.name == "speech")
    before = FeatureBundle.load(cache.stem(victim.key)).sequences["audio"].values
    _truncate(cache.stem(victim.key).with_suffix(damage))  # the other file of the pair stays intact
    res = extract(inp, out_dir=out, config=CHEAP, cache_dir=root, progress=False)
    cached = {i.name: i.cached for i in res.items}
    assert cached == {"speech": False, "speech__1": True}  # only the damaged entry is recomputed
    assert not res.failures
    check_bundle(cache.stem(victim.key), full=True)  # the entry is whole again
    np.testing.assert_array_equal(FeatureBundle.load(cache.stem(victim.key)).sequences["audio"].values, before)
    np.testing.assert_array_equal(FeatureBundle.load(out / "speech").sequences["audio"].values, before)


def test_bundle_records_and_checks_its_safetensors(cached_run):
    _, out, root, first = cached_run
    stem = FeatureCache(root).stem(first.items[0].key)
    header = json.loads(stem.with_suffix(".json").read_text())
    st = stem.with_suffix(".safetensors")
    assert header["safetensors"]["size"] == st.stat().st_size and len(header["safetensors"]["sha256"]) == 64
    data = bytearray(st.read_bytes())
    data[-1] ^= 0xFF  # same size, different content: only the full check sees it
    st.write_bytes(bytes(data))
    check_bundle(stem)
    with pytest.raises(BundleReadError, match="sha256"):
        check_bundle(stem, full=True)
    st.write_bytes(bytes(data[:-3]))
    with pytest.raises(BundleReadError):
        FeatureBundle.load(stem)


def test_outputs_are_independent_copies(cached_run):
    inp, out, root, first = cached_run
    cache = FeatureCache(root)
    for item in first.items:
        o, c = (out / item.name).with_suffix(".safetensors"), cache.stem(item.key).with_suffix(".safetensors")
        assert not os.path.samefile(o, c) and o.stat().st_nlink == 1
    # a user edits an output in place: the cache never changes, and the next run repairs the output
    item = first.items[0]
    o = (out / item.name).with_suffix(".safetensors")
    with open(o, "r+b") as fh:
        fh.truncate(100)
    check_bundle(cache.stem(item.key), full=True)
    res = extract(inp, out_dir=out, config=CHEAP, cache_dir=root, progress=False)
    assert res.n_cached == 2
    check_bundle(out / item.name, full=True)


def test_two_processes_compute_each_entry_once(assets_dir, tmp_path):
    """Two overlapping runs on one cache: every file is extracted by exactly one of them."""
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3"])
    code = textwrap.dedent("""
        import sys, time
        from msa_toolkit.extraction import ExtractConfig, LoadedExtractors, extract
        orig = LoadedExtractors.run
        def slow(self, *a, **k):
            time.sleep(1.5)  # long enough for both runs to overlap
            return orig(self, *a, **k)
        LoadedExtractors.run = slow
        r = extract(sys.argv[1], out_dir=sys.argv[2], cache_dir=sys.argv[3], progress=False,
                    config=ExtractConfig(asr=None, text=None, vision=None))
        assert len(r.items) == 3 and not r.failures, r.failures
        print(sum(not i.cached for i in r.items))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(inp), str(tmp_path / f"out{i}"), str(tmp_path / "c")],
                              stdout=subprocess.PIPE, text=True, env=_child_env()) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(int(o.strip().splitlines()[-1]) for o in outs) == 3  # computed once in all
    for name in ("speech", "speech__1", "speech__2"):
        a = FeatureBundle.load(tmp_path / "out0" / name).sequences["audio"].values
        np.testing.assert_array_equal(a, FeatureBundle.load(tmp_path / "out1" / name).sequences["audio"].values)


def _heavy_modules_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=_child_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("heavy:")][-1]
    return [m for m in line[len("heavy:"):].split(",") if m]


def test_building_the_spec_imports_no_model_library():
    assert _heavy_modules_after("from msa_toolkit.extraction import ExtractConfig\n"
                                "ExtractConfig().build_spec()\n"
                                "ExtractConfig(align='words').build_spec()") == []


def test_fully_cached_rerun_loads_no_extractor(assets_dir, tmp_path):
    """Default extractors, a folder with a corrupt file: the re-run imports no model library."""
    inp = _copy(assets_dir, tmp_path / "in", ["speech_positive.mp4", "silence.mp4", "corrupt.mp4"])
    args = f"{str(inp)!r}, out_dir={str(tmp_path / 'out')!r}, cache_dir={str(tmp_path / 'c')!r}, progress=False"
    first = extract(inp, out_dir=tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert len(first.items) == 2 and len(first.failures) == 1
    code = ("from msa_toolkit.extraction import extract\n"
            f"r = extract({args})\n"
            "assert r.n_cached == 2 and len(r.failures) == 1, (r.n_cached, r.failures)")
    assert _heavy_modules_after(code) == []


def test_align_words_derives_from_the_cached_unaligned_bundle(assets_dir, tmp_path, monkeypatch):
    wav = assets_dir / "speech.wav"
    aligned_cfg = ExtractConfig(text=None, audio="opensmile", vision=None, align="words")
    fresh = extract(wav, config=aligned_cfg, cache_dir=tmp_path / "fresh", progress=False).items[0].load()
    # a fresh aligned run stored the unaligned bundle too: the unaligned run computes nothing
    monkeypatch.setattr(LoadedExtractors, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("extracted")))
    unaligned = extract(wav, config=ALIGNABLE, cache_dir=tmp_path / "fresh", progress=False)
    assert unaligned.n_cached == 1
    monkeypatch.undo()
    extract(wav, config=ALIGNABLE, cache_dir=tmp_path / "c", progress=False)
    monkeypatch.setattr(LoadedExtractors, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("extracted")))
    for _ in range(2):  # derived from the unaligned bundle, then a plain cache hit
        res = extract(wav, out_dir=tmp_path / "out", config=aligned_cfg, cache_dir=tmp_path / "c", progress=False)
        assert not res.failures and res.n_cached == 1
        b = res.items[0].load()
        assert b.spec == fresh.spec and b.spec.alignment == "words"
        np.testing.assert_array_equal(b.sequences["audio"].values, fresh.sequences["audio"].values)
        np.testing.assert_array_equal(b.sequences["audio"].mask, fresh.sequences["audio"].mask)
        assert b.sequences["audio"].length == len(b.transcript.words)


def _flip_inside(path: Path, tensor: str) -> None:
    """Change one float of ``tensor`` in a safetensors file in place (same size, header intact)."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    start, end = json.loads(data[8:8 + n])[tensor]["data_offsets"]
    data[8 + n + (start + end) // 2 // 4 * 4 + 3] ^= 0x40  # the exponent byte of a middle float32
    path.write_bytes(bytes(data))


def test_align_words_does_not_derive_from_a_corrupted_unaligned_bundle(assets_dir, tmp_path):
    """A same-size bit flip in the cached unaligned bundle must not flow into the aligned output."""
    wav = assets_dir / "speech.wav"
    aligned_cfg = ExtractConfig(text=None, audio="opensmile", vision=None, align="words")
    fresh = extract(wav, config=aligned_cfg, cache_dir=tmp_path / "fresh", progress=False).items[0].load()
    base = extract(wav, config=ALIGNABLE, cache_dir=tmp_path / "c", progress=False).items[0]
    stem = FeatureCache(tmp_path / "c").stem(base.key)
    _flip_inside(stem.with_suffix(".safetensors"), "audio.values")
    with pytest.raises(BundleReadError):
        check_bundle(stem, full=True)
    res = extract(wav, out_dir=tmp_path / "out", config=aligned_cfg, cache_dir=tmp_path / "c", progress=False)
    assert not res.failures
    np.testing.assert_array_equal(res.items[0].load().sequences["audio"].values, fresh.sequences["audio"].values)
    check_bundle(stem, full=True)  # the damaged base was replaced by a whole one


def test_damaged_aligned_entry_is_derived_again_and_reported_cached(assets_dir, tmp_path, monkeypatch):
    """A corrupted aligned entry is re-derived from the whole unaligned one: nothing is extracted,
    so the file is reported as cached (not as extracted, with the base's old extraction time)."""
    wav = assets_dir / "speech.wav"
    aligned_cfg = ExtractConfig(text=None, audio="opensmile", vision=None, align="words")
    first = extract(wav, config=aligned_cfg, cache_dir=tmp_path / "c", progress=False).items[0]
    want = first.load().sequences["audio"].values
    _flip_inside(FeatureCache(tmp_path / "c").stem(first.key).with_suffix(".safetensors"), "audio.values")
    monkeypatch.setattr(LoadedExtractors, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("extracted")))
    res = extract(wav, out_dir=tmp_path / "out", config=aligned_cfg, cache_dir=tmp_path / "c", progress=False)
    assert not res.failures and res.n_cached == 1 and res.items[0].cached
    np.testing.assert_array_equal(res.items[0].load().sequences["audio"].values, want)
    check_bundle(FeatureCache(tmp_path / "c").stem(first.key), full=True)


def test_same_size_corruption_is_caught_without_out_dir(cached_run):
    """Without out_dir (dataset build, predict) the caller reads the cache entry itself: a
    same-size corruption must be recomputed, not served."""
    inp, _out, root, first = cached_run
    victim = next(i for i in first.items if i.name == "speech")
    stem = FeatureCache(root).stem(victim.key)
    before = FeatureBundle.load(stem).sequences["audio"].values
    _flip_inside(stem.with_suffix(".safetensors"), "audio.values")
    res = extract(inp, out_dir=None, config=CHEAP, cache_dir=root, progress=False)
    assert not res.failures and {i.name: i.cached for i in res.items} == {"speech": False, "speech__1": True}
    got = next(i for i in res.items if i.name == "speech").load().sequences["audio"].values
    np.testing.assert_array_equal(got, before)


def test_opensmile_name_table_matches_opensmile():
    pytest.importorskip("opensmile")
    from msa_toolkit.extractors.audio import OPENSMILE_NAMES, OpenSmileExtractor

    for fs in OPENSMILE_NAMES:
        ex = OpenSmileExtractor(feature_set=fs)
        table = ex.feature_names
        assert tuple(ex._get_smile().feature_names) == table and len(table) == ex.dim


def test_edited_json_half_is_a_miss_and_recomputed(cached_run):
    """The json half is checked like the safetensors half (issue 31): an edit made in the cache (here the
    transcript and the duration) is not served; the entry is recomputed with what the file really holds."""
    inp, out, root, first = cached_run
    cache = FeatureCache(root)
    victim = next(i for i in first.items if i.name == "speech")
    js = cache.stem(victim.key).with_suffix(".json")
    header = json.loads(js.read_text())
    header["transcript"] = {"text": "edited", "words": [{"text": "edited", "start": 0, "end": 1}]}
    header["meta"]["duration"] = 999.0
    js.write_text(json.dumps(header))
    again = extract(inp, out_dir=out, config=CHEAP, cache_dir=root, progress=False)
    item = next(i for i in again.items if i.name == "speech")
    assert not item.cached and item.duration != 999.0
    assert item.load().transcript is None
    with pytest.raises(BundleReadError, match="differs from the sha256 it records"):
        js.write_text(json.dumps({**json.loads(js.read_text()), "transcript": None, "names": {}}))
        FeatureBundle.load(cache.stem(victim.key))


def test_entry_without_json_sha256_is_stale_and_recomputed(cached_run):
    """An entry written before jsons recorded their own sha256 cannot be checked: it is recomputed once."""
    inp, out, root, first = cached_run
    cache = FeatureCache(root)
    victim = next(i for i in first.items if i.name == "speech")
    js = cache.stem(victim.key).with_suffix(".json")
    header = json.loads(js.read_text())
    del header["json_sha256"]
    js.write_text(json.dumps(header))
    FeatureBundle.load(cache.stem(victim.key))  # still readable where it is read in place
    again = extract(inp, out_dir=out, config=CHEAP, cache_dir=root, progress=False)
    assert [i.cached for i in again.items if i.name == "speech"] == [False]
    assert "json_sha256" in json.loads(js.read_text())
    third = extract(inp, out_dir=out, config=CHEAP, cache_dir=root, progress=False)
    assert all(i.cached for i in third.items)
