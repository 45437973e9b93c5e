"""`msa extract` end to end through the Typer app."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from msa_toolkit.cli.main import app, main

runner = CliRunner()


def test_help_lists_options():
    res = runner.invoke(app, ["extract", "--help"])
    assert res.exit_code == 0
    for opt in ("--out", "--audio", "--vision", "--text", "--asr-model", "--language", "--vad", "--align",
                "--workers", "--shard", "--cache-dir", "--srt", "--transcripts"):
        assert opt in res.output


def test_extract_writes_bundles_manifest_srt_and_summary(assets_dir, tmp_path):
    out = tmp_path / "out"
    args = ["extract", str(assets_dir / "speech_positive.mp4"), str(assets_dir / "corrupt.mp4"), "-o", str(out),
            "--vision", "none", "--cache-dir", str(tmp_path / "c"), "--srt", "-q"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "speech_positive.safetensors").is_file() and (out / "speech_positive.json").is_file()
    srt = (out / "speech_positive.srt").read_text()
    assert "love this movie" in srt.lower()
    # the subtitles are the bundle's transcript, cue for cue: numbered from 1, each segment's times in ms
    from msa_toolkit.features import FeatureBundle

    tr = FeatureBundle.load(out / "speech_positive").transcript
    segs = [sg for sg in tr.segments if sg.start == sg.start and sg.end == sg.end]

    def ts(t):
        ms = round(t * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    assert len(segs) >= 1 and srt == "".join(f"{n}\n{ts(sg.start)} --> {ts(sg.end)}\n{sg.text.strip()}\n\n"
                                             for n, sg in enumerate(segs, 1))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]] == ["speech_positive"]
    assert manifest["failures"][0]["stage"] == "decode"
    assert "1 extracted" in res.output and "1 failed" in res.output and "corrupt.mp4" in res.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "(1 from cache)" in again.output


def test_every_file_failing_exits_nonzero(assets_dir, tmp_path):
    res = runner.invoke(app, ["extract", str(assets_dir / "corrupt.mp4"), str(assets_dir / "empty.mp4"), "-o",
                              str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), "-q"])
    assert res.exit_code == 1
    assert len(json.loads((tmp_path / "o" / "errors.json").read_text())) == 2
    # the summary does not claim bundles that were never written
    assert "no bundles written" in " ".join(res.output.split()) and "bundles and manifest in" not in res.output


def test_bad_arguments(assets_dir, tmp_path):
    base = ["extract", str(assets_dir / "speech.wav"), "-o", str(tmp_path / "o"), "-q"]
    assert runner.invoke(app, ["extract", str(tmp_path / "missing.mp4"), "-o", str(tmp_path)]).exit_code == 2
    assert runner.invoke(app, base + ["--align", "frames"]).exit_code == 2
    assert runner.invoke(app, base + ["--audio", "wav2vec2"]).exit_code == 2
    # configuration errors are MSAErrors: one line on stderr, exit code 2 through main()
    assert main(base + ["--shard", "3/2", "--cache-dir", str(tmp_path / "c")]) == 2
    assert main(base + ["--audio", "nosuch", "--cache-dir", str(tmp_path / "c")]) == 2


def test_transcripts_folder_and_options(assets_dir, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(assets_dir / "speech.wav", inp / "clip.wav")
    tr = tmp_path / "tr"
    tr.mkdir()
    (tr / "clip.txt").write_text("a user supplied transcript")
    res = runner.invoke(app, ["extract", str(inp), "-o", str(tmp_path / "o"), "--vision", "none", "--audio",
                              "librosa", "--asr", "none", "--transcripts", str(tr), "--cache-dir",
                              str(tmp_path / "c"), "-q"])
    assert res.exit_code == 0, res.output
    hdr = json.loads((tmp_path / "o" / "clip.json").read_text())
    assert hdr["transcript"]["text"] == "a user supplied transcript" and hdr["transcript"]["source"] == "user"
    assert [e["name"] for e in hdr["spec"]["extractors"]] == ["librosa", "minilm"]
