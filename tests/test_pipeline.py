"""The extraction pipeline on the real fixtures: shapes vs FeatureSpec, failures, cache, resume, shards, workers."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.errors import ExtractionError, SpecMismatchError
from msa_toolkit.extraction import (ExtractConfig, ExtractConfigError, LoadedExtractors, collect_files, extract,
                                    extract_file, extract_texts, parse_shard, select_shard)
from msa_toolkit.features import FeatureBundle
from msa_toolkit.spec import ExtractorSpec, FeatureSpec

GOOD = ["speech_positive.mp4", "silence.mp4", "speech.wav"]
BAD = {"corrupt.mp4": "decode", "empty.mp4": "decode", "noaudio.mp4": "asr"}
#: no vision: the visual extractor has its own tests; one integration test below uses it
AV_TEXT = ExtractConfig(vision=None)
#: the cheapest configuration that still decodes every file
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)


def _copy(assets: Path, dst: Path, names) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(assets / n, dst / n)
    return dst


def _has_vision() -> bool:
    from msa_toolkit.extractors.base import list_extractors

    return "mediapipe_face" in list_extractors("vision")


@pytest.fixture(scope="module")
def run(assets_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    inp = _copy(assets_dir, root / "in", GOOD + list(BAD))
    (inp / "notes.md").write_text("not media")  # skipped: not a media extension
    res = extract(inp, out_dir=root / "out", config=AV_TEXT, cache_dir=root / "cache", progress=False)
    return root, res


def test_good_files_extracted_and_bad_files_reported(run):
    root, res = run
    assert sorted(i.name for i in res.items) == sorted(Path(n).stem for n in GOOD)
    assert {Path(f.path).name: f.stage for f in res.failures} == BAD
    assert all(f.message for f in res.failures)
    errs = json.loads((root / "out" / "errors.json").read_text())
    assert {Path(e["path"]).name for e in errs if e["stage"] != "skipped"} == set(BAD)
    # notes.md is not media: listed as skipped (errors.json, manifest), never extracted
    assert [(Path(e["path"]).name, e["stage"]) for e in errs if e["stage"] == "skipped"] == [("notes.md", "skipped")]
    rows = list(csv.DictReader((root / "out" / "errors.csv").open()))
    assert {r["stage"] for r in rows} == set(BAD.values()) | {"skipped"}
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    assert len(manifest["files"]) == 3 and len(manifest["failures"]) == 3
    assert FeatureSpec.from_dict(manifest["spec"]) == res.spec


def test_shapes_match_feature_spec(run):
    root, res = run
    spec = res.spec
    assert spec.modalities == ("text", "audio") and spec.has("asr")
    for item in res.items:
        b = FeatureBundle.load(root / "out" / item.name)
        assert b.spec == spec
        for m, seq in b.sequences.items():
            es = spec.get(m)
            assert seq.dim == es.dim
            if es.feature_names:
                assert tuple(seq.names) == es.feature_names
        assert len(b.arrays["text.input_ids"]) == b.sequences["text"].length
        dur = b.meta["duration"]
        assert abs(b.sequences["audio"].length - dur * spec.get("audio").frame_rate) <= 5
        assert set(b.meta["timings"]) >= {"decode", "asr", "text", "audio", "total"}


def test_transcripts_and_meta(run):
    root, _ = run
    pos = FeatureBundle.load(root / "out" / "speech_positive")
    assert "love this movie" in pos.transcript.text.lower()
    assert pos.meta["speech_found"] and pos.meta["has_video"] and pos.meta["transcript_source"] == "whisper"
    sil = FeatureBundle.load(root / "out" / "silence")
    assert sil.transcript.is_empty and not sil.meta["speech_found"]
    assert sil.sequences["text"].length == 2  # [CLS] [SEP]
    wav = FeatureBundle.load(root / "out" / "speech")
    assert not wav.meta["has_video"] and wav.meta["n_words"] >= 10


def test_rerun_is_served_from_cache(run, monkeypatch):
    root, first = run
    calls = []
    orig = LoadedExtractors.run

    def counting(self, path, transcript=None):
        calls.append(Path(path).name)
        return orig(self, path, transcript)

    monkeypatch.setattr(LoadedExtractors, "run", counting)
    res = extract(root / "in", out_dir=root / "out", config=AV_TEXT, cache_dir=root / "cache", progress=False)
    assert res.n_cached == 3 and all(i.cached for i in res.items)
    assert sorted(calls) == sorted(BAD)  # only the failed files are tried again
    assert [i.key for i in res.items] == [i.key for i in first.items]
    # renaming a file keeps its cache hit (content-addressed)
    ren = root / "renamed"
    _copy(root / "in", ren, ["speech.wav"])
    (ren / "speech.wav").rename(ren / "other_name.wav")
    calls.clear()
    res2 = extract(ren, out_dir=root / "out2", config=AV_TEXT, cache_dir=root / "cache", progress=False)
    assert calls == [] and res2.items[0].cached and res2.items[0].name == "other_name"
    assert FeatureBundle.load(root / "out2" / "other_name").meta["source"].endswith("other_name.wav")


def test_changed_config_misses_cache(run, monkeypatch):
    root, first = run
    cfg = ExtractConfig(vision=None, audio_params={"feature_set": "ComParE_2016"})
    res = extract(root / "in" / "speech.wav", config=cfg, cache_dir=root / "cache", progress=False)
    assert res.n_cached == 0 and res.spec.dims["audio"] == 65
    assert res.items[0].load().sequences["audio"].dim == 65


def test_resume_after_interrupted_run(assets_dir, tmp_path, monkeypatch):
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3"])
    orig = LoadedExtractors.run
    done = []

    def dies_after_two(self, path, transcript=None):
        if len(done) == 2:
            raise KeyboardInterrupt  # the run is killed
        done.append(Path(path).name)
        return orig(self, path, transcript)

    monkeypatch.setattr(LoadedExtractors, "run", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "cache", progress=False)
    finished = list(done)
    assert len(finished) == 2
    done.clear()
    monkeypatch.setattr(LoadedExtractors, "run", lambda self, p, t=None: (done.append(Path(p).name), orig(self, p, t))[1])
    res = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "cache", progress=False)
    assert len(res.items) == 3 and not res.failures
    assert set(done) == {"speech.flac", "speech.mp3", "speech.wav"} - set(finished)
    assert res.n_cached == 2


def test_shards_partition_the_files(assets_dir, tmp_path):
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3", "silence.mp4", "noface.mp4"])
    files, _ = collect_files([inp])
    parts = [select_shard(files, (i, 3)) for i in range(3)]
    names = [n for p in parts for _, n in p]
    assert sorted(names) == sorted(n for _, n in files) and len(names) == len(set(names))
    assert select_shard(list(reversed(files)), (1, 3)) == parts[1]  # deterministic by sorted path
    r0 = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c", shard="0/2", progress=False)
    r1 = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c", shard="1/2", progress=False)
    assert len(r0) + len(r1) == 5 and not {i.name for i in r0} & {i.name for i in r1}
    assert (tmp_path / "out" / "manifest.shard-0-of-2.json").is_file()
    assert (tmp_path / "out" / "manifest.shard-1-of-2.json").is_file()
    for bad in ("2/2", "x", "1/0", "-1/3"):
        with pytest.raises(ExtractConfigError):
            parse_shard(bad)


def test_workers_match_single_process(assets_dir, tmp_path):
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "corrupt.mp4"])
    one = extract(inp, config=CHEAP, cache_dir=tmp_path / "c1", progress=False)
    two = extract(inp, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c2", workers=2, progress=False)
    assert [i.name for i in two] == [i.name for i in one] and len(two.failures) == 1
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.load().sequences["audio"].values, b.load().sequences["audio"].values)


def test_two_processes_on_one_cache(assets_dir, tmp_path):
    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3"])
    code = ("import sys\nfrom msa_toolkit.extraction import ExtractConfig, extract\n"
            "r = extract(sys.argv[1], out_dir=sys.argv[2], config=ExtractConfig(asr=None, text=None, vision=None),"
            " cache_dir=sys.argv[3], progress=False)\nassert len(r.items) == 3 and not r.failures, r.failures\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(inp), str(tmp_path / f"out{i}"), str(tmp_path / "c")])
             for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    res = extract(inp, config=CHEAP, cache_dir=tmp_path / "c", progress=False)
    assert res.n_cached == 3
    for i in res:
        a = FeatureBundle.load(tmp_path / "out0" / i.name).sequences["audio"].values
        np.testing.assert_array_equal(a, i.load().sequences["audio"].values)


def test_user_transcripts_replace_asr(assets_dir, tmp_path):
    inp = _copy(assets_dir, tmp_path / "in", ["speech_positive.mp4", "speech.wav"])
    (inp / "speech_positive.txt").write_text("what a great film")  # sidecar
    tdir = tmp_path / "tr"
    tdir.mkdir()
    (tdir / "speech.txt").write_text("the weather is fine")
    res = extract(inp, config=AV_TEXT, cache_dir=tmp_path / "c", transcripts=tdir, progress=False)
    got = {i.name: i.load().transcript for i in res}
    assert got["speech_positive"].text == "what a great film" and got["speech_positive"].source == "user"
    assert got["speech"].text == "the weather is fine"
    assert got["speech"].source == "user"
    # text features equal those of extract_texts for the same text (same encoder, same spec part)
    tb = extract_texts({"x": "the weather is fine"}, AV_TEXT, cache_dir=tmp_path / "c", progress=False)["x"]
    np.testing.assert_allclose(res.items[0].load().sequences["text"].values if res.items[0].name == "speech"
                               else res.items[1].load().sequences["text"].values,
                               tb.sequences["text"].values, atol=1e-5)
    # a mapping works too, and a different transcript is a different cache entry
    res2 = extract(inp / "speech.wav", config=AV_TEXT, cache_dir=tmp_path / "c", progress=False,
                   transcripts={"speech": "something else entirely"})
    assert res2.n_cached == 0 and res2.items[0].load().transcript.text == "something else entirely"


def test_text_without_asr_or_transcript_fails_per_file(assets_dir, tmp_path):
    res = extract(assets_dir / "speech.wav", config=ExtractConfig(asr=None, audio=None, vision=None),
                  cache_dir=tmp_path, progress=False)
    assert res.failures[0].stage == "text" and "transcript" in res.failures[0].message


def test_align_words(assets_dir, tmp_path):
    res = extract(assets_dir / "speech.wav", config=ExtractConfig(vision=None, align="words"), cache_dir=tmp_path,
                  progress=False)
    b = res.items[0].load()
    n = len(b.transcript.words)
    assert b.spec.alignment == "words" and n >= 10
    for m in ("text", "audio"):
        assert b.sequences[m].length == n and b.sequences[m].mask.all()
        np.testing.assert_allclose(b.sequences[m].times, [w.start for w in b.transcript.words], atol=1e-4)
    assert len(b.arrays["text.input_ids"]) > n  # token ids kept for fine-tuning


def test_missing_input_and_extract_file(assets_dir, tmp_path):
    res = extract([tmp_path / "nope.mp4"], config=CHEAP, cache_dir=tmp_path, progress=False)
    assert res.failures[0].stage == "input" and not res.items
    b = extract_file(assets_dir / "speech.wav", CHEAP)
    assert b.sequences["audio"].dim == 25 and b.meta["sha256"]
    with pytest.raises(ExtractionError) as e:
        extract_file(assets_dir / "corrupt.mp4", CHEAP)
    assert e.value.stage == "decode"


def test_spec_roundtrip_and_mismatch(tmp_path):
    cfg = ExtractConfig(vision=None, audio_params={"feature_set": "ComParE_2016"}, align="words")
    spec = cfg.build_spec()
    back = ExtractConfig.from_spec(spec)
    assert back.build_spec() == spec and back.audio_params["feature_set"] == "ComParE_2016"
    with pytest.raises(SpecMismatchError, match="origin"):
        ExtractConfig.from_spec(FeatureSpec(spec.extractors, origin={"source": "mmsa_pickle"}))
    with pytest.raises(SpecMismatchError, match="not_an_extractor"):
        ExtractConfig.from_spec(FeatureSpec((ExtractorSpec("not_an_extractor", "audio", "1"),)))
    gone = ExtractorSpec("transformer", "text", spec.get("text").version, {"model": "org/not-downloaded-model"}, 768)
    with pytest.raises(SpecMismatchError, match="not-downloaded"):
        ExtractConfig.from_spec(FeatureSpec((gone,)))
    old = ExtractorSpec("opensmile", "audio", "0+opensmile1.0", {"feature_set": "eGeMAPSv02"}, 25, 100.0)
    with pytest.raises(SpecMismatchError, match="version"):
        ExtractConfig.from_spec(FeatureSpec((old,)))
    with pytest.raises(ExtractConfigError):
        ExtractConfig(align="frames")
    with pytest.raises(ExtractConfigError, match="no parameter"):
        ExtractConfig(audio_params={"bogus": 1}).build_spec()
    # an unknown name lists the extractors of that stage only (not the vision ones for --audio)
    with pytest.raises(ExtractConfigError, match=r"audio: unknown extractor 'foo'; available for audio: ") as e:
        ExtractConfig(audio="foo").build_spec()
    assert "opensmile" in str(e.value) and "mediapipe_face" not in str(e.value) and "minilm" not in str(e.value)


def test_extract_texts_batched_and_cached(tmp_path, monkeypatch):
    texts = {f"r{i}": f"sample sentence number {i % 7}" for i in range(40)}
    first = extract_texts(texts, cache_dir=tmp_path, progress=False)
    assert set(first) == set(texts)
    b = first["r3"]
    assert b.spec.modalities == ("text",) and not b.spec.has("asr") and b.spec.dims["text"] == 384
    assert b.transcript.text == "sample sentence number 3"
    np.testing.assert_array_equal(first["r3"].sequences["text"].values, first["r10"].sequences["text"].values)
    from msa_toolkit.extractors import text as text_mod

    monkeypatch.setattr(text_mod.TransformerTextExtractor, "encode",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("encoded again")))
    again = extract_texts(texts, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again["r5"].sequences["text"].values, first["r5"].sequences["text"].values)


@pytest.mark.skipif(not _has_vision(), reason="visual extractor not available")
def test_full_default_config_with_vision(assets_dir, tmp_path):
    res = extract([assets_dir / "speech_positive.mp4", assets_dir / "noface.mp4", assets_dir / "speech.wav"],
                  out_dir=tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert res.spec.modalities == ("text", "audio", "vision")
    by = {i.name: i.load() for i in res}
    assert by["speech_positive"].meta["face_ratio"] >= 0.95 and by["noface"].meta["face_ratio"] == 0.0
    v = by["speech_positive"].sequences["vision"]
    assert v.dim == res.spec.dims["vision"] and v.length > 0
    # an audio-only file gets text and audio with vision marked absent (issue 14), not a failure ...
    assert res.failures == []
    assert set(by["speech"].sequences) == {"text", "audio"}
    assert by["speech"].meta["absent"] == {"vision": "no video stream"}
    assert by["speech_positive"].meta["max_faces"] == 1 and not by["speech_positive"].meta["multi_face"]
    # ... unless vision is required
    strict = extract(assets_dir / "speech.wav", cache_dir=tmp_path / "c", progress=False,
                     config=ExtractConfig(require=("vision",)))
    assert [(Path(f.path).name, f.stage) for f in strict.failures] == [("speech.wav", "vision")]


def test_resume_after_real_kill(assets_dir, tmp_path):
    """SIGKILL a running `msa extract` after its first bundle lands; the re-run redoes only the rest."""
    import signal
    import time

    inp = _copy(assets_dir, tmp_path / "in", ["speech.wav", "speech.flac", "speech.mp3", "noface.mp4"])
    cache = tmp_path / "c"
    # ASR only: about a second per file, so the kill lands mid-run
    cmd = [sys.executable, "-m", "msa_toolkit", "extract", str(inp), "-o", str(tmp_path / "out"), "--text", "none",
           "--audio", "none", "--vision", "none", "--cache-dir", str(cache), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(cache.rglob("*.json")):
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    before = {p.stem for p in cache.rglob("*.json")}
    # nothing half-written is visible: every json has its safetensors and loads
    for stem in before:
        FeatureBundle.load(next(cache.rglob(f"{stem}.json")))
    cfg = ExtractConfig(text=None, audio=None, vision=None)
    res = extract(inp, out_dir=tmp_path / "out", config=cfg, cache_dir=cache, progress=False)
    assert len(res.items) == 4 and not res.failures
    assert res.n_cached == len(before) >= 1
    if killed:
        assert len(before) < 4
    print(f"killed={killed} finished_before_kill={len(before)}")


def test_formats_doc_names_every_key_extract_writes(run):
    """docs/formats.md lists every key of manifest.json, its file entries and a bundle's json, and
    says errors.csv also lists skipped files (it did not: interrupted, skipped, cache_key, ...)."""
    root, _res = run
    doc = (Path(__file__).resolve().parents[1] / "docs" / "formats.md").read_text()
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    bundle = json.loads((root / "out" / "speech.json").read_text())
    keys = set(manifest) | {k for f in manifest["files"] for k in f} | set(bundle)
    keys |= {"cache_key", "modalities", "absent"} & set(bundle["meta"])
    assert not sorted(k for k in keys if f"`{k}`" not in doc)
    with open(root / "out" / "errors.csv", newline="") as f:
        assert "skipped" in {r["stage"] for r in csv.DictReader(f)}
    assert "only when files failed or were skipped" in doc and "`skipped` for a file that is not media" in doc
