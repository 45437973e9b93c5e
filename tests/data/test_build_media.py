"""Datasets built from the committed clips + label files: MMSA-FET and flat layouts, error reports, shards."""

from __future__ import annotations

import json
import shutil

import pytest

from msa_toolkit.data.build import MediaIndex, build_dataset
from msa_toolkit.data.labels import read_labels
from msa_toolkit.data.module import DataModule
from msa_toolkit.errors import DatasetError


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media_cache")


def _config(**kw):
    from msa_toolkit.extraction import ExtractConfig

    return ExtractConfig(**{"asr": None, "vision": None, **kw})


def _mmsa_fet(root, assets):
    raw = root / "Raw"
    (raw / "vidA").mkdir(parents=True)
    (raw / "vidB").mkdir()
    shutil.copy(assets / "speech_positive.mp4", raw / "vidA" / "1.mp4")
    shutil.copy(assets / "speech_negative.mp4", raw / "vidA" / "2.mp4")
    shutil.copy(assets / "corrupt.mp4", raw / "vidB" / "1.mp4")
    (root / "label.csv").write_text(
        "video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
        "vidA,1,i really love this movie,2.2,2,1,1,Positive,train\n"
        "vidA,2,this was a terrible film,-2.4,-2,-2,-1,Negative,test\n"
        "vidB,1,broken file,0,0,0,0,Neutral,train\n"
        "vidC,1,no such video,1,1,1,1,Positive,valid\n")
    return root / "label.csv"


def test_mmsa_fet_layout_with_failures(tmp_path, assets_dir, cache_dir):
    labels = _mmsa_fet(tmp_path / "MOSI", assets_dir)
    rep = build_dataset(labels, videos=tmp_path / "MOSI", out_dir=tmp_path / "ds", transcripts="label",
                        config=_config(), cache_dir=cache_dir, progress=False, allow_missing=True)
    assert rep.sizes == {"train": 1, "test": 1}  # valid: its only clip is missing, so the split is left out
    errs = {e["id"]: e for e in json.loads((tmp_path / "ds" / "errors.json").read_text())}
    assert set(errs) == {"vidB_1", "vidC_1"}
    assert errs["vidB_1"]["stage"] == "decode" and errs["vidB_1"]["path"].endswith("vidB/1.mp4")
    assert errs["vidC_1"]["stage"] == "input" and "vidC/1.*" in errs["vidC_1"]["message"]
    ds = rep.dataset
    assert ds.spec.modalities == ("text", "audio") and ds.spec.origin == {}
    s = ds.split("train")[0]
    assert s.id == "vidA_1" and s.text == "i really love this movie" and s.label_A == 1.0
    assert s.annotation == "Positive" and s.video_id == "vidA" and s.clip_id == "1"
    assert s.features["audio"].shape[1] == ds.spec.dims["audio"] and s.features["audio"].shape[0] > 100
    b = next(iter(DataModule(ds, batch_size=2).loader("train")))
    assert b.audio_mask.any() and not b.vision_mask.any() and b.vision.shape == (1, 1, 1)
    assert ds.provenance["n_failed"] == 2 and ds.provenance["transcripts"] == "label"


def test_flat_layout_any_extension_and_shards(tmp_path, assets_dir, cache_dir):
    vids = tmp_path / "clips"
    vids.mkdir()
    shutil.copy(assets_dir / "speech_positive.mp4", vids / "a_1.mp4")   # <id>.<ext>
    shutil.copy(assets_dir / "speech.wav", vids / "a_2.wav")
    shutil.copy(assets_dir / "speech.flac", vids / "c_7.flac")
    shutil.copy(assets_dir / "noaudio.mp4", vids / "b_1.mp4")
    labels = tmp_path / "label.csv"
    labels.write_text("id,text,label,mode\na_1,i really love this movie,2,train\na_2,hello there,1,train\n"
                      "b_1,silent,0,dev\nc_7,some speech,-1,test\n")
    # a shard only fills the cache
    rep = build_dataset(labels, videos=vids, out_dir=tmp_path / "ds", transcripts="label", config=_config(),
                        cache_dir=cache_dir, shard="0/2", progress=False)
    assert rep.dataset is None and rep.shard == (0, 2) and not (tmp_path / "ds" / "manifest.json").exists()
    rep = build_dataset(labels, videos=vids, out_dir=tmp_path / "ds", transcripts="label", config=_config(),
                        cache_dir=cache_dir, progress=False)
    assert rep.n_cached >= 1  # a_1 (extracted by shard 0) came from the cache
    # b_1 has no audio track: with its label transcript it still gets text, audio absent (issue 14)
    assert rep.sizes == {"train": 2, "valid": 1, "test": 1}
    assert rep.failures == []
    b1 = rep.dataset.split("valid")[0]
    assert b1.id == "b_1" and "text" in b1.features and "audio" not in b1.features
    with pytest.raises(DatasetError, match="already holds a dataset"):
        build_dataset(labels, videos=vids, out_dir=tmp_path / "ds", transcripts="label", config=_config(),
                      cache_dir=cache_dir, progress=False)


def test_whisper_dataset_with_a_video_without_sound_in_the_same_split(tmp_path, assets_dir, cache_dir):
    """The soundless clip has no text (nothing to transcribe), so none of the text token arrays the other
    clip carries: the dataset is still written (it was 'lacks array text.attention_mask')."""
    vids = tmp_path / "clips"
    vids.mkdir()
    shutil.copy(assets_dir / "noaudio.mp4", vids / "b_1.mp4")
    shutil.copy(assets_dir / "speech_positive.mp4", vids / "a_1.mp4")
    labels = tmp_path / "label.csv"
    labels.write_text("id,label,mode\nb_1,-1,train\na_1,2,train\n")
    rep = build_dataset(labels, videos=vids, out_dir=tmp_path / "ds", cache_dir=cache_dir, progress=False,
                        config=_config(asr="whisper", vision="mediapipe_face"), allow_missing=False)
    got = {s.id: s for s in rep.dataset.split("train")}
    assert "text" not in got["b_1"].features and got["b_1"].arrays["text.input_ids"].shape == (0,)
    assert got["a_1"].arrays["text.input_ids"].shape[0] == got["a_1"].features["text"].shape[0] > 2
    b = next(iter(DataModule(rep.dataset, batch_size=2).loader("train")))
    assert b.text_mask.any(dim=1).sum() == 1


def test_media_index_lookup(tmp_path):
    for rel in ("Raw/v1/3.mp4", "v2_5.MKV", "x_1.m4a", "Raw/v1/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "l.csv").write_text("video_id,clip_id,label\nv1,3,0\nv2,5,0\nx,1,0\nv1,9,0\n")
    idx = MediaIndex(tmp_path)
    rows = read_labels(tmp_path / "l.csv").rows
    found = [idx.find(r) for r in rows]
    assert found[0].name == "3.mp4" and found[1].name == "v2_5.MKV" and found[2].name == "x_1.m4a"
    assert found[3] is None
    with pytest.raises(DatasetError, match="videos folder not found"):
        MediaIndex(tmp_path / "nope")


def test_full_default_pipeline_whisper(tmp_path, assets_dir, cache_dir):
    labels = _mmsa_fet(tmp_path / "MOSI", assets_dir)
    rep = build_dataset(labels, videos=tmp_path / "MOSI", out_dir=tmp_path / "ds", cache_dir=cache_dir,
                        progress=False, allow_missing=True)
    ds = rep.dataset
    assert ds.spec.modalities == ("text", "audio", "vision") and ds.spec.has("asr")
    s = ds.split("train")[0]
    assert s.text  # Whisper's transcript of the clip
    assert ds.spec.get("asr").name == "whisper" and ds.provenance["transcripts"] == "whisper"
    assert s.features["vision"].shape[0] > 0
    assert {f.id for f in rep.failures} == {"vidB_1", "vidC_1"}


# ---------------------------------------------------------------------------------------
# --transcripts label --align words: human transcripts timed from Whisper's words (issue 15, 1)
# ---------------------------------------------------------------------------------------
def _mmsa_fet_spoken(root, assets):
    """MMSA-FET layout whose label texts differ from what is spoken (sentences.json): a missing
    word, an extra word, a misspelling, plus one unrelated text."""
    raw = root / "Raw"
    (raw / "vidA").mkdir(parents=True)
    (raw / "vidB").mkdir()
    shutil.copy(assets / "speech_positive.mp4", raw / "vidA" / "1.mp4")
    shutil.copy(assets / "speech_negative.mp4", raw / "vidA" / "2.mp4")
    shutil.copy(assets / "speech.wav", raw / "vidB" / "1.wav")
    shutil.copy(assets / "speech_positive.mp4", raw / "vidB" / "2.mp4")
    (root / "label.csv").write_text(
        "video_id,clip_id,text,label,mode\n"
        "vidA,1,I love this movie. It is wonderful and it made me very happy.,2.2,train\n"  # "really" missing
        "vidA,2,This film was truly terrible. I hated every minute of it and it made me angry.,-2.4,train\n"
        "vidB,1,We walked to the staton in the rain. After that we took the train home.,0.2,test\n"  # misspelt
        "vidB,2,The quarterly budget report arrives next Tuesday afternoon.,1.0,test\n")  # not what is said
    return root / "label.csv"


def _word_config():
    from msa_toolkit.extraction import ExtractConfig

    return ExtractConfig(vision=None, align="words")


def test_label_transcripts_are_timed_from_whisper(tmp_path, assets_dir, cache_dir):
    """Every row whose text fits its clip is built; times are monotone and inside the clip."""
    labels = _mmsa_fet_spoken(tmp_path / "MOSI", assets_dir)
    sentences = json.loads((assets_dir / "sentences.json").read_text())
    rep = build_dataset(labels, videos=tmp_path / "MOSI", out_dir=tmp_path / "ds", transcripts="label",
                        config=_word_config(), cache_dir=cache_dir, progress=False, allow_missing=True)
    assert rep.sizes == {"train": 2, "test": 1}
    assert [(f.id, f.stage) for f in rep.failures] == [("vidB_2", "align")]  # reported, not silently dropped
    assert "--min-word-match" in rep.failures[0].message
    assert json.loads((tmp_path / "ds" / "errors.json").read_text())[0]["id"] == "vidB_2"
    assert rep.word_match["vidA_1"] >= 0.9 and rep.word_match["vidA_2"] >= 0.9 and rep.word_match["vidB_1"] >= 0.9
    assert rep.word_match["vidB_2"] < 0.5
    assert rep.dataset.provenance["word_match"]["rows"] == rep.word_match
    s = rep.dataset.split("test")[0]
    assert s.text.startswith("We walked to the staton")  # the label text is kept
    n_words = len(s.text.split())
    assert s.features["text"].shape[0] == n_words and s.features["audio"].shape[0] == n_words
    for clip, row in (("speech_positive.mp4", "vidA_1"), ("speech_negative.mp4", "vidA_2"), ("speech.wav", "vidB_1")):
        res = [i for i in _bundles(cache_dir) if "word_match" in i.meta and i.meta["source"].endswith(
            {"vidA_1": "vidA/1.mp4", "vidA_2": "vidA/2.mp4", "vidB_1": "vidB/1.wav"}[row])]
        assert res, row
        b = res[-1]
        duration = sentences[clip]["duration"]
        starts = [w.start for w in b.transcript.words]
        ends = [w.end for w in b.transcript.words]
        assert all(0.0 <= st <= en <= duration + 1e-3 for st, en in zip(starts, ends)), row
        assert starts == sorted(starts) and ends == sorted(ends), row
        assert b.meta["word_timing"] == "whisper" and b.transcript.source == "user"
        assert abs(starts[0] - sentences[clip]["speech_start"]) < 0.6, row
    # the same words aligned again (any row lost) is refused without allow_missing: only errors.json is left
    with pytest.raises(DatasetError, match=r"allow_missing=True"):
        build_dataset(labels, videos=tmp_path / "MOSI", out_dir=tmp_path / "strict", transcripts="label",
                      config=_word_config(), cache_dir=cache_dir, progress=False, allow_missing=False)
    assert [p.name for p in (tmp_path / "strict").iterdir()] == ["errors.json"]
    # a lower threshold accepts the unrelated row (its words are spread over the speech)
    rep2 = build_dataset(labels, videos=tmp_path / "MOSI", out_dir=tmp_path / "strict", transcripts="label",
                         config=_word_config(), cache_dir=cache_dir, progress=False, allow_missing=False,
                         min_word_match=0.0)
    assert rep2.sizes == {"train": 2, "test": 2} and not rep2.failures
    assert not (tmp_path / "strict" / "errors.json").exists()


def _bundles(cache_dir):
    from msa_toolkit.features import FeatureBundle

    return [FeatureBundle.load(p) for p in sorted(cache_dir.rglob("*.json")) if (p.with_suffix(".safetensors")).exists()]


def test_cli_exits_non_zero_when_rows_are_lost(tmp_path, assets_dir, cache_dir):
    from msa_toolkit.cli.main import main

    labels = _mmsa_fet_spoken(tmp_path / "MOSI", assets_dir)
    args = ["dataset", "create", "--labels", str(labels), "--videos", str(tmp_path / "MOSI"), "--transcripts",
            "label", "--align", "words", "--vision", "none", "--cache-dir", str(cache_dir), "-q"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert not (tmp_path / "a" / "manifest.json").exists() and (tmp_path / "a" / "errors.json").exists()
    assert main([*args, "--out", str(tmp_path / "a"), "--allow-missing"]) == 0
    assert (tmp_path / "a" / "manifest.json").exists()
