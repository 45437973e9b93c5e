"""Real-world folders (issue 14): audio-only files, videos without sound, silent, corrupt and non-media files
go through `msa extract` and `msa predict` with default flags; a missing stream is absence, not failure."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.extraction import ExtractConfig, collect_inputs, extract
from msa_toolkit.errors import MediaError

#: the done-when folder: file in tests/assets -> name in the folder
FOLDER = {"speech.wav": "talk.wav", "speech.mp3": "talk_mp3.mp3", "noaudio.mp4": "noaudio.mp4",
          "silence.mp4": "silence.mp4", "corrupt.mp4": "corrupt.mp4"}
#: traceback-shaped text
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \".*\", line \d+", re.M)
#: the cheapest configuration with an audio and a vision-free stage (decodes audio only)
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)


def _has_vision() -> bool:
    from msa_toolkit.extractors.base import list_extractors

    return "mediapipe_face" in list_extractors("vision")


@pytest.fixture(scope="module")
def folder(assets_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("realworld")
    inp = root / "in"
    inp.mkdir()
    for src, dst in FOLDER.items():
        shutil.copy(assets_dir / src, inp / dst)
    (inp / "notes.xyz").write_text("not media")
    return root


@pytest.fixture(scope="module")
def extracted(folder):
    """`msa extract FOLDER -o OUT` with default flags (in-process through main(), stderr captured by the test)."""
    if not _has_vision():
        pytest.skip("mediapipe_face not installed")
    return folder


def test_default_extract_gives_every_readable_file_its_modalities(extracted, capfd, monkeypatch):
    root = extracted
    monkeypatch.setenv("COLUMNS", "200")  # the summary table on one line per file, not wrapped
    rc = main(["extract", str(root / "in"), "-o", str(root / "out"), "--cache-dir", str(root / "cache"), "-q"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert not TRACEBACK.search(err), err
    m = json.loads((root / "out" / "manifest.json").read_text())
    files = {Path(f["path"]).name: f for f in m["files"]}
    assert set(files) == {"talk.wav", "talk_mp3.mp3", "noaudio.mp4", "silence.mp4"}
    for audio_only in ("talk.wav", "talk_mp3.mp3"):
        assert files[audio_only]["modalities"] == ["text", "audio"]
        assert files[audio_only]["absent"] == {"vision": "no video stream"}
        assert files[audio_only]["n_words"] >= 10
    assert files["noaudio.mp4"]["modalities"] == ["vision"]
    assert set(files["noaudio.mp4"]["absent"]) == {"asr", "text", "audio"}
    # one rule of presence (features.unusable_modalities): a clip without speech has no text
    assert files["silence.mp4"]["modalities"] == ["audio", "vision"]
    assert files["silence.mp4"]["absent"] == {"text": "no speech found"}
    assert files["silence.mp4"]["max_faces"] >= 0 and "multi_face" in files["silence.mp4"]
    assert [Path(f["path"]).name for f in m["failures"]] == ["corrupt.mp4"]
    assert [(Path(f["path"]).name, f["stage"]) for f in m["skipped"]] == [("notes.xyz", "skipped")]
    errs = json.loads((root / "out" / "errors.json").read_text())
    assert {(Path(e["path"]).name, e["stage"]) for e in errs} == {("corrupt.mp4", "decode"), ("notes.xyz", "skipped")}
    # the bundle meta records absence, so a cached re-run reproduces it
    hdr = json.loads((root / "out" / "noaudio.json").read_text())
    assert hdr["meta"]["absent"]["audio"] == "no audio track" and hdr["names"].keys() == {"vision"}
    # the summary table says which modalities each file has, and names the skipped file in one line
    rows = {}  # the summary table's file cell -> its modalities cell
    for line in out.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)[1:-1]]
        if len(cells) == 6 and cells[0] != "file":
            rows[cells[0]] = cells[1]
    assert rows == {"noaudio": "vision (no text/audio: no audio track)",
                    "silence": "audio+vision (no text: no speech found)",
                    "talk": "text+audio (no vision: no video stream)",
                    "talk_mp3": "text+audio (no vision: no video stream)"}
    assert "skipped 1 file(s) that are not media: notes.xyz" in out
    rc = main(["extract", str(root / "in"), "-o", str(root / "out"), "--cache-dir", str(root / "cache"), "-q"])
    again = json.loads((root / "out" / "manifest.json").read_text())
    assert rc == 0 and all(f["cached"] for f in again["files"])
    assert [f["absent"] for f in again["files"]] == [f["absent"] for f in m["files"]]


def test_require_turns_absence_into_failure(extracted, capfd):
    root = extracted
    rc = main(["extract", str(root / "in"), "-o", str(root / "req"), "--cache-dir", str(root / "cache"), "-q",
               "--require", "vision"])
    capfd.readouterr()
    assert rc == 0
    m = json.loads((root / "req" / "manifest.json").read_text())
    failed = {Path(f["path"]).name: f for f in m["failures"]}
    # served from the cache made without --require: the recorded absence still fails them
    assert failed["talk.wav"]["stage"] == "vision" and "required" in failed["talk.wav"]["message"]
    assert {Path(f["path"]).name for f in m["files"]} == {"noaudio.mp4", "silence.mp4"}
    assert main(["extract", str(root / "in"), "-o", str(root / "req2"), "--require", "nosuch", "-q"]) == 2
    assert main(["extract", str(root / "in"), "-o", str(root / "req2"), "--require", "vision",
                 "--vision", "none", "-q"]) == 2


def test_predict_default_flags_on_the_folder(extracted, capfd, tmp_path):
    root = extracted
    rc = main(["predict", str(root / "in"), "--cache-dir", str(root / "cache"), "--json", str(tmp_path / "p.json"),
               "-q"])
    _, err = capfd.readouterr()
    assert rc == 0, err
    assert not TRACEBACK.search(err), err
    by = {Path(p["path"]).name: p for p in json.loads((tmp_path / "p.json").read_text())["predictions"]}
    assert set(by) == set(FOLDER.values()) | {"notes.xyz"}
    for name in ("talk.wav", "talk_mp3.mp3"):
        assert by[name]["score"] is not None and by[name]["modalities_present"] == ["text"]
    assert by["silence.mp4"]["score"] is not None
    assert by["corrupt.mp4"]["error"] and by["notes.xyz"]["error"].startswith("[skipped]")
    # the bundled model reads only text: a video without sound has nothing it can use; the row says why
    assert "no audio track" in by["noaudio.mp4"]["error"] and "--" not in by["noaudio.mp4"]["error"]


def test_predict_table_lists_non_media_files_in_one_line(extracted, capfd):
    """The terminal table scores media files; a non-media file is one "skipped" line, not an error row."""
    root = extracted
    rc = main(["predict", str(root / "in"), "--cache-dir", str(root / "cache")])
    out, _ = capfd.readouterr()
    assert rc == 0
    assert "skipped (not media): notes.xyz" in out
    assert "[skipped]" not in out


def test_multimodal_checkpoint_scores_what_each_file_has(extracted, tmp_path):
    """A text + audio + vision checkpoint scores an audio-only file on text+audio and a silent video on vision."""
    from msa_toolkit.models import create_model
    from msa_toolkit.prediction import Predictor, predict
    from msa_toolkit.training.checkpoint import save_checkpoint

    root = extracted
    spec = ExtractConfig().build_spec()
    net = create_model("late_fusion", preset="tiny", **{f"{m}_dim": spec.dims[m] for m in ("text", "audio", "vision")})
    pred = Predictor.load(save_checkpoint(tmp_path / "mm.safetensors", net, spec))
    out = {Path(p.path).name: p for p in predict(root / "in", predictor=pred, cache_dir=root / "cache")}
    wav, noaudio = out["talk.wav"], out["noaudio.mp4"]
    assert wav.ok and set(wav.modalities_present) == {"text", "audio"} and wav.absent == {"vision": "no video stream"}
    assert any(f == "vision absent: no video stream" for f in wav.flags)
    assert noaudio.ok and "text" not in noaudio.modalities_present and "audio absent: no audio track" in noaudio.flags
    assert noaudio.max_faces is not None and noaudio.to_dict()["absent"]["audio"] == "no audio track"
    assert not any("--" in f for p in out.values() for f in p.flags)  # hints never name flags
    # a multi-face clip is flagged (meta as the visual extractor records it)
    from msa_toolkit.features import FeatureBundle

    b = FeatureBundle.load(root / "out" / "noaudio")
    assert b.meta["max_faces"] <= 1 and "one face followed" in b.meta["face_choice"]
    b.meta.update(max_faces=3, multi_face=True)
    p = pred.predict_bundle("x.mp4", b)
    assert p.max_faces == 3 and any(f.startswith("multi-face clip: up to 3 faces") for f in p.flags)


def test_non_media_files_are_listed_and_empty_folders_refused(tmp_path, assets_dir, capfd):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.pdf").write_text("x")
    (d / ".hidden").write_text("x")
    with pytest.raises(MediaError, match="no media files found.*a.pdf"):
        extract(d, config=CHEAP, cache_dir=tmp_path / "c", progress=False)
    assert main(["extract", str(d), "-o", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "-q"]) == 2
    err = capfd.readouterr().err
    assert "no media files found" in err and len(err.strip().splitlines()) == 1
    # a transcript next to its clip is a companion, not a skipped file
    shutil.copy(assets_dir / "speech.wav", d / "clip.wav")
    (d / "clip.txt").write_text("hello")
    files, failures, skipped = collect_inputs([d])
    assert [n for _, n in files] == ["clip"] and not failures
    assert [Path(s.path).name for s in skipped] == ["a.pdf"]


def test_video_without_sound_fails_only_when_nothing_is_left(assets_dir, tmp_path):
    res = extract(assets_dir / "noaudio.mp4", config=CHEAP, cache_dir=tmp_path / "c", progress=False)
    assert not res.items and res.failures[0].stage == "audio"
    assert "nothing to extract" in res.failures[0].message


@pytest.mark.skipif(not _has_vision(), reason="needs the mediapipe_face extractor")
def test_video_without_sound_under_align_words_fails_with_a_clear_message(assets_dir, tmp_path):
    """No audio track: no words to align the video to; the failure says so (no raw exception name)."""
    cfg = ExtractConfig(text=None, audio=None, align="words")
    res = extract(assets_dir / "noaudio.mp4", out_dir=tmp_path / "out", config=cfg, progress=False)
    assert not res.items and len(res.failures) == 1
    f = res.failures[0]
    assert f.stage == "align" and "no audio track: no words to align to" in f.message
    assert "ValueError" not in f.message


def test_silent_clip_under_align_words_holds_no_modality(assets_dir, tmp_path, capfd):
    """A clip without words has empty word-aligned sequences: the manifest and the summary said
    text+audio(+vision) for it; they now list no modality, extracted and derived from the cache alike."""
    cfg = ExtractConfig(text=None, vision=None, align="words")
    res = extract(assets_dir / "silence.mp4", config=cfg, cache_dir=tmp_path / "c", progress=False)
    item = res.items[0]
    assert not res.failures and item.n_words == 0 and item.modalities == ()
    assert item.load().sequences["audio"].length == 0
    unaligned = ExtractConfig(text=None, vision=None)
    extract(assets_dir / "silence.mp4", config=unaligned, cache_dir=tmp_path / "c2", progress=False)
    derived = extract(assets_dir / "silence.mp4", config=cfg, cache_dir=tmp_path / "c2", progress=False)
    assert derived.items[0].modalities == ()  # aligned from the cached unaligned bundle
    assert main(["extract", str(assets_dir / "silence.mp4"), "-o", str(tmp_path / "out"), "--text", "none",
                 "--vision", "none", "--align", "words", "--cache-dir", str(tmp_path / "c")]) == 0
    out = " ".join(capfd.readouterr().out.split())
    assert "none: no words to align to" in out
