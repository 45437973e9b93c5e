"""Tests of the OpenFace extractors: a fake ``FeatureExtraction`` (made here) for the binary path end
to end, the CSV parser on OpenFace 2.0's documented layout, and CSV ingestion (``openface_csv``)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.errors import ExtractionError, ModelLoadError, MSAError
from msa_toolkit.extractors import openface as of
from msa_toolkit.extractors.base import create_extractor, get_extractor_class

ASSETS = Path(__file__).resolve().parents[1] / "assets"

# ---- OpenFace 2.0's documented CSV layout, written out independently of the module ------------------
AUS_R = ["AU01_r", "AU02_r", "AU04_r", "AU05_r", "AU06_r", "AU07_r", "AU09_r", "AU10_r", "AU12_r",
         "AU14_r", "AU15_r", "AU17_r", "AU20_r", "AU23_r", "AU25_r", "AU26_r", "AU45_r"]
AUS_C = ["AU01_c", "AU02_c", "AU04_c", "AU05_c", "AU06_c", "AU07_c", "AU09_c", "AU10_c", "AU12_c",
         "AU14_c", "AU15_c", "AU17_c", "AU20_c", "AU23_c", "AU25_c", "AU26_c", "AU28_c", "AU45_c"]
GAZE = ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
POSE = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]

#: the fake binary: writes ``<out_dir>/<input stem>.csv`` with the columns of the flags it gets,
#: ", "-separated like OpenFace 2.0; 10 frames at 30 fps, no face in frames 3-4, confidence 0.5 in 7
FAKE_BINARY = r'''#!{python}
import os, sys
from pathlib import Path

args = sys.argv[1:]
log = os.environ.get("FAKE_OPENFACE_LOG")
if log:
    Path(log).write_text(" ".join(args))
if os.environ.get("FAKE_OPENFACE_FAIL"):
    print("Could not open the video file", file=sys.stderr)
    sys.exit(3)
inp = Path(args[args.index("-f") + 1])
out = Path(args[args.index("-out_dir") + 1])
aus_r = [f"AU{{a}}_r" for a in "01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 45".split()]
aus_c = [f"AU{{a}}_c" for a in "01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 28 45".split()]
cols = ["frame", "face_id", "timestamp", "confidence", "success"]
if "-gaze" in args:
    cols += ["gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z", "gaze_angle_x", "gaze_angle_y"]
    cols += [f"eye_lmk_{{a}}_{{i}}" for a in "xy" for i in range(56)]
    cols += [f"eye_lmk_{{a}}_{{i}}" for a in "XYZ" for i in range(56)]
if "-pose" in args:
    cols += ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
if "-2Dfp" in args:
    cols += [f"{{a}}_{{i}}" for a in "xy" for i in range(68)]
if "-3Dfp" in args:
    cols += [f"{{a}}_{{i}}" for a in "XYZ" for i in range(68)]
if "-pdmparams" in args:
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{{i}}" for i in range(34)]
if "-aus" in args:
    cols += aus_r + aus_c
lines = [", ".join(cols)]
for k in range(10):
    ok = k not in (3, 4)
    conf = 0.5 if k == 7 else (0.98 if ok else 0.0)
    vals = [str(k + 1), "0", f"{{k / 30:.3f}}", f"{{conf:.2f}}", "1" if ok else "0"]
    vals += [f"{{(j + 1) * 0.01 + k:.3f}}" for j in range(len(cols) - 5)]
    lines.append(", ".join(vals))
out.mkdir(parents=True, exist_ok=True)
(out / (inp.stem + ".csv")).write_text("\n".join(lines) + "\n")
'''


@pytest.fixture
def fake_openface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``FeatureExtraction`` on PATH (first); returns the file its argv is logged to."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "FeatureExtraction"
    exe.write_text(FAKE_BINARY.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv(of.BINARY_ENV, raising=False)
    log = tmp_path / "argv.txt"
    monkeypatch.setenv("FAKE_OPENFACE_LOG", str(log))
    return log


def write_csv(path: Path, columns: list[str], rows: list[list[float]], sep: str = ", ") -> Path:
    """A sequence CSV: frame, face_id, timestamp, confidence, success, then ``columns``."""
    head = ["frame", "face_id", "timestamp", "confidence", "success", *columns]
    lines = [sep.join(head)] + [sep.join(f"{v:g}" for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def documented_csv(path: Path) -> Path:
    """4 frames with gaze, pose and the 35 AU columns; frame 2 has success 0 (OpenFace still writes values)."""
    cols = GAZE + POSE + AUS_R + AUS_C
    rows = []
    for k in range(4):
        ok = k != 2
        rows.append([k + 1, 0, k * 0.04, 0.97 if ok else 0.0, 1 if ok else 0]
                    + [float(k * 100 + j) for j in range(len(cols))])
    return write_csv(path, cols, rows)


# ---- columns ---------------------------------------------------------------------------------------
def test_presets_and_layout():
    assert len(of.resolve_columns("aus")) == 35
    assert of.resolve_columns("aus") == tuple(AUS_R + AUS_C)
    assert of.resolve_columns("aus+pose+gaze") == tuple(GAZE + POSE + AUS_R + AUS_C)
    assert len(of.resolve_columns("mmsa_fet")) == 6 + 136 + 35
    full = of.resolve_columns("full")
    assert len(full) == 709 == len(of.ALL_COLUMNS)
    assert full[:8] == tuple(GAZE) and full[-35:] == tuple(AUS_R + AUS_C)
    assert full.index("pose_Tx") == 8 + 56 * 5 and full.index("x_0") == 8 + 56 * 5 + 6
    # groups in any order come out in OpenFace's order; explicit lists keep theirs
    assert of.resolve_columns("aus+gaze+pose") == of.resolve_columns("aus+pose+gaze")
    assert of.resolve_columns("AU12_r, AU06_r,pose_Rx") == ("AU12_r", "AU06_r", "pose_Rx")
    assert of.resolve_columns(["AU45_c"]) == ("AU45_c",)


def test_bad_columns_are_named():
    with pytest.raises(ValueError, match="AU99_r"):
        of.resolve_columns("AU12_r,AU99_r")
    with pytest.raises(ValueError, match=r"unknown OpenFace group\(s\) \['smiles'\]"):
        of.resolve_columns("aus+smiles")  # the group is named, not 'aus+smiles' as one column
    with pytest.raises(ValueError, match="twice"):
        of.resolve_columns("AU12_r,AU12_r")


def test_output_flags():
    assert of.output_flags(of.resolve_columns("full")) == ["-gaze", "-pose", "-2Dfp", "-3Dfp", "-pdmparams", "-aus"]
    assert of.output_flags(of.resolve_columns("mmsa_fet")) == ["-pose", "-2Dfp", "-aus"]
    assert of.output_flags(["AU12_r"]) == ["-aus"]


# ---- the CSV parser --------------------------------------------------------------------------------
def test_parser_on_documented_layout(tmp_path: Path):
    path = documented_csv(tmp_path / "clip.csv")
    assert path.read_text().startswith("frame, face_id, timestamp, confidence, success, gaze_0_x")
    names = list(of.resolve_columns("aus+pose+gaze"))
    seq = of.read_openface_csv(path, names)
    assert seq.values.shape == (4, 49) and seq.names == names
    np.testing.assert_allclose(seq.times, [0.0, 0.04, 0.08, 0.12], atol=1e-6)
    assert seq.mask.tolist() == [True, True, False, True]
    assert np.all(seq.values[2] == 0.0)  # success 0: zeros
    assert seq.values[3, names.index("AU12_r")] == 300 + 14 + 8  # gaze 8 + pose 6 + AU12_r at 8
    assert seq.values[1, names.index("gaze_0_x")] == 100.0


def test_parser_selects_and_reorders(tmp_path: Path):
    seq = of.read_openface_csv(documented_csv(tmp_path / "c.csv"), ["AU45_c", "pose_Rz"])
    np.testing.assert_array_equal(seq.values[0], [8 + 6 + 35 - 1, 8 + 5])


def test_parser_min_confidence(tmp_path: Path):
    cols = ["AU12_r"]
    path = write_csv(tmp_path / "c.csv", cols, [[1, 0, 0.0, 0.95, 1, 1.5], [2, 0, 0.1, 0.6, 1, 2.5]])
    assert of.read_openface_csv(path, cols).mask.tolist() == [True, True]
    seq = of.read_openface_csv(path, cols, min_confidence=0.8)
    assert seq.mask.tolist() == [True, False] and seq.values[:, 0].tolist() == [1.5, 0.0]


def test_parser_plain_commas_and_unsorted_rows(tmp_path: Path):
    # OpenFace 2.2 writes "," without spaces; rows are sorted by timestamp
    path = write_csv(tmp_path / "c.csv", ["AU12_r"], [[2, 0, 0.1, 0.9, 1, 2.0], [1, 0, 0.0, 0.9, 1, 1.0]], sep=",")
    seq = of.read_openface_csv(path, ["AU12_r"])
    assert seq.values[:, 0].tolist() == [1.0, 2.0]


def test_parser_empty_csv(tmp_path: Path):
    header_only = write_csv(tmp_path / "h.csv", AUS_R + AUS_C, [])
    seq = of.read_openface_csv(header_only, AUS_R + AUS_C)
    assert seq.length == 0 and seq.dim == 35 and seq.names == AUS_R + AUS_C
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty file"):
        of.read_openface_csv(empty, ["AU12_r"])


def test_parser_missing_columns_named(tmp_path: Path):
    path = write_csv(tmp_path / "c.csv", ["AU12_r"], [[1, 0, 0.0, 0.9, 1, 1.0]])
    with pytest.raises(ValueError) as e:
        of.read_openface_csv(path, ["AU12_r", "AU06_r", "gaze_0_x"])
    assert "AU06_r" in str(e.value) and "gaze_0_x" in str(e.value) and "c.csv" in str(e.value)
    assert "-gaze" in str(e.value) and "-aus" in str(e.value)
    only_aus_missing = write_csv(tmp_path / "g.csv", GAZE, [[1, 0, 0.0, 0.9, 1] + [0.0] * len(GAZE)])
    with pytest.raises(ValueError) as e:  # the hint names the flags of the missing columns only
        of.read_openface_csv(only_aus_missing, GAZE + ["AU12_r"])
    assert "(-aus)?" in str(e.value) and "-gaze" not in str(e.value)
    image_csv = tmp_path / "img.csv"  # FaceLandmarkImg's layout: no timestamp / success
    image_csv.write_text("face, confidence, AU12_r\n0, 0.9, 1.0\n")
    with pytest.raises(ValueError, match="timestamp"):
        of.read_openface_csv(image_csv, ["AU12_r"])


def test_parser_ragged_and_non_numeric(tmp_path: Path):
    path = write_csv(tmp_path / "c.csv", ["AU12_r"], [[1, 0, 0.0, 0.9, 1, 1.0]])
    path.write_text(path.read_text() + "2, 0, 0.04\n")
    with pytest.raises(ValueError, match="line 3"):
        of.read_openface_csv(path, ["AU12_r"])
    path.write_text("frame, face_id, timestamp, confidence, success, AU12_r\n1, 0, 0.0, 0.9, 1, abc\n")
    with pytest.raises(ValueError, match="non-numeric"):
        of.read_openface_csv(path, ["AU12_r"])
    path.write_bytes(b"\x00\xff\xfe not text\n")
    with pytest.raises(ValueError, match=r"c\.csv: not a text file"):
        of.read_openface_csv(path, ["AU12_r"])


def test_parser_keeps_main_face(tmp_path: Path):
    # FaceLandmarkVidMulti-style CSV: face 1 is found in more frames than face 0
    rows = [[1, 0, 0.0, 0.9, 1, 10.0], [1, 1, 0.0, 0.9, 1, 20.0], [2, 0, 0.1, 0.0, 0, 11.0],
            [2, 1, 0.1, 0.9, 1, 21.0]]
    seq = of.read_openface_csv(write_csv(tmp_path / "m.csv", ["AU12_r"], rows), ["AU12_r"])
    assert seq.values[:, 0].tolist() == [20.0, 21.0] and seq.mask.all()


def test_thin_to_rate(tmp_path: Path):
    rows = [[k + 1, 0, k / 30, 0.9, 1, float(k)] for k in range(30)]
    seq = of.read_openface_csv(write_csv(tmp_path / "c.csv", ["AU12_r"], rows), ["AU12_r"])
    thin = of.thin_to_rate(seq, 5.0)
    np.testing.assert_allclose(thin.times, [0.0, 0.2, 0.4, 0.6, 0.8, 29 / 30], atol=1e-6)
    assert thin.values[:, 0].tolist() == [0.0, 6.0, 12.0, 18.0, 24.0, 29.0]
    assert of.thin_to_rate(seq, 0.0) is seq


# ---- "openface": the binary, end to end with the fake ------------------------------------------------
def test_openface_registered():
    assert get_extractor_class("openface") is of.OpenFaceExtractor
    assert get_extractor_class("openface_csv") is of.OpenFaceCSVExtractor
    assert of.OpenFaceExtractor.needs_path and of.OpenFaceCSVExtractor.needs_path


def test_openface_binary_end_to_end(fake_openface: Path):
    ex = create_extractor("openface", columns="aus+pose+gaze")
    seq = ex.extract_file(ASSETS / "speech_positive.mp4")
    argv = fake_openface.read_text().split()
    assert argv[argv.index("-f") + 1] == str(ASSETS / "speech_positive.mp4")
    assert [a for a in argv if a in ("-gaze", "-pose", "-aus", "-2Dfp", "-3Dfp", "-pdmparams")] == \
        ["-gaze", "-pose", "-aus"]
    names = GAZE + POSE + AUS_R + AUS_C
    assert seq.values.shape == (10, 49) and seq.names == names and ex.dim == 49
    np.testing.assert_allclose(seq.times, np.arange(10) / 30, atol=1e-3)
    assert seq.mask.tolist() == [True] * 3 + [False] * 2 + [True] * 5
    assert np.all(seq.values[3:5] == 0)
    # the fake writes (column position after the 5 meta columns + 1) * 0.01 + frame index
    gaze_eye = 8 + 280
    np.testing.assert_allclose(seq.values[1, names.index("pose_Tx")], (gaze_eye + 1) * 0.01 + 1, atol=1e-6)


def test_openface_full_preset_and_fps(fake_openface: Path):
    ex = create_extractor("openface", columns="full", fps=10.0, min_confidence=0.8)
    seq = ex.extract_file(ASSETS / "speech_positive.mp4")
    assert seq.dim == 709 and seq.names == list(of.ALL_COLUMNS)
    np.testing.assert_allclose(seq.times, [0.0, 0.1, 0.2, 0.3], atol=1e-3)  # frames 0, 3, 6, 9
    assert seq.mask.tolist() == [True, False, True, True]
    assert ex.frame_rate == 10.0


def test_openface_binary_param(fake_openface: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    exe = Path(of.find_binary())
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert of.find_binary(exe) == str(exe.resolve())
    ex = create_extractor("openface", binary=str(exe), columns="aus")
    assert ex.extract_file(ASSETS / "speech_positive.mp4").dim == 35
    monkeypatch.setenv(of.BINARY_ENV, str(exe))
    assert of.find_binary() == str(exe.resolve())


def test_openface_binary_failure(fake_openface: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_OPENFACE_FAIL", "1")
    ex = create_extractor("openface")
    with pytest.raises(ExtractionError) as e:
        ex.extract_file(ASSETS / "speech_positive.mp4")
    assert e.value.stage == "vision" and "exit status 3" in e.value.cause
    assert "Could not open the video file" in e.value.cause


def test_openface_bad_csv_names_no_deleted_file(fake_openface: Path, monkeypatch: pytest.MonkeyPatch):
    """A malformed CSV from the binary: the error must not name its (deleted) temporary path."""
    real = of.read_openface_csv

    def truncated(path, columns, min_confidence=0.0):
        Path(path).write_text(Path(path).read_text()[:-40])
        return real(path, columns, min_confidence)

    monkeypatch.setattr(of, "read_openface_csv", truncated)
    with pytest.raises(ExtractionError) as e:
        create_extractor("openface").extract_file(ASSETS / "speech_positive.mp4")
    assert "the CSV FeatureExtraction wrote for speech_positive.mp4: line 11" in e.value.cause
    assert "msa_openface_" not in e.value.cause


def test_openface_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(of.BINARY_ENV, raising=False)
    ex = create_extractor("openface")
    with pytest.raises(of.OpenFaceNotFoundError) as e:
        ex.load()
    assert isinstance(e.value, ModelLoadError) and isinstance(e.value, MSAError)
    msg = str(e.value)
    assert "FeatureExtraction" in msg and "OpenFace 2.0" in msg and "--vision mediapipe_face" in msg
    assert "--openface-bin" in msg
    with pytest.raises(of.OpenFaceNotFoundError, match="not an executable file"):
        create_extractor("openface", binary=str(tmp_path / "FeatureExtraction")).load()


def test_spec_records_columns_not_runtime_params(tmp_path: Path):
    spec = create_extractor("openface", columns="aus", binary="/opt/openface/FeatureExtraction").spec
    assert spec.name == "openface" and spec.modality == "vision" and spec.dim == 35
    assert dict(spec.params) == {"columns": "aus", "min_confidence": 0.0, "fps": 0.0}
    assert spec.feature_names == tuple(AUS_R + AUS_C) and spec.frame_rate is None
    csv_spec = create_extractor("openface_csv", columns="aus", csv_dir=str(tmp_path)).spec
    assert csv_spec == spec  # ingested CSVs are reproduced by the binary
    listed = create_extractor("openface", columns=["AU12_r", "AU06_r"]).spec
    assert listed.params["columns"] == "AU12_r,AU06_r" and json.dumps(listed.to_dict())


def test_bad_params():
    with pytest.raises(ValueError, match="min_confidence"):
        create_extractor("openface", min_confidence=1.5)
    with pytest.raises(ValueError, match="fps"):
        create_extractor("openface", fps=-1)
    with pytest.raises(ValueError, match="csv_dir"):
        create_extractor("openface_csv", csv_dir="/no/such/folder")
    with pytest.raises(NotImplementedError, match="extract_file"):
        create_extractor("openface").extract([])


# ---- "openface_csv": CSVs a user already has --------------------------------------------------------
def test_openface_csv_next_to_clip(tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # only its name matters
    documented_csv(tmp_path / "clip.csv")
    seq = create_extractor("openface_csv").extract_file(clip)
    assert seq.values.shape == (4, 49) and seq.mask.tolist() == [True, True, False, True]


def test_openface_csv_in_processed_folder(tmp_path: Path):
    (tmp_path / "processed").mkdir()
    documented_csv(tmp_path / "processed" / "clip.csv")
    seq = create_extractor("openface_csv", columns="aus").extract_file(tmp_path / "clip.mp4")
    assert seq.dim == 35 and seq.length == 4


def test_openface_csv_in_csv_dir(tmp_path: Path):
    clips, csvs = tmp_path / "raw" / "video1", tmp_path / "openface"
    clips.mkdir(parents=True)
    (csvs / "video1").mkdir(parents=True)
    documented_csv(csvs / "a.csv")
    documented_csv(csvs / "video1" / "b.csv")
    ex = create_extractor("openface_csv", csv_dir=str(csvs))
    assert ex.find_csv(clips / "a.mp4") == csvs / "a.csv"
    assert ex.find_csv(clips / "b.mp4") == csvs / "video1" / "b.csv"
    assert ex.extract_file(clips / "b.mp4").length == 4


def test_openface_csv_missing_and_bad(tmp_path: Path):
    ex = create_extractor("openface_csv", csv_dir=str(tmp_path))
    with pytest.raises(ExtractionError) as e:
        ex.extract_file(tmp_path / "clips" / "x.mp4")
    assert e.value.stage == "vision" and str(tmp_path / "x.csv") in e.value.cause
    write_csv(tmp_path / "y.csv", ["AU12_r"], [[1, 0, 0.0, 0.9, 1, 1.0]])
    with pytest.raises(ExtractionError, match="AU06_r"):
        create_extractor("openface_csv", csv_dir=str(tmp_path), columns="aus").extract_file(tmp_path / "y.mp4")


def test_openface_csv_input_token_follows_csv(tmp_path: Path):
    path = documented_csv(tmp_path / "clip.csv")
    ex = create_extractor("openface_csv")
    before = ex.input_token(tmp_path / "clip.mp4")
    path.write_text(path.read_text().replace("0.97", "0.96", 1))
    assert ex.input_token(tmp_path / "clip.mp4") != before


# ---- end to end through `msa extract` ----------------------------------------------------------------
def test_msa_extract_vision_openface_runs_the_binary(fake_openface, assets_dir, tmp_path):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app
    from msa_toolkit.features import FeatureBundle

    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    shutil.copy(assets_dir / "speech_positive.mp4", clip)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["extract", str(clip), "-o", str(out), "--cache-dir", str(tmp_path / "cache"),
                                   "--asr", "none", "--text", "none", "--audio", "none", "--vision", "openface",
                                   "--openface-columns", "aus"])
    assert res.exit_code == 0, res.output
    assert "-aus" in fake_openface.read_text()
    bundle = FeatureBundle.load(out / "clip")
    vis = bundle.sequences["vision"]
    assert vis.values.shape == (10, 35) and list(vis.names) == AUS_R + AUS_C
    assert not vis.mask[3] and not vis.mask[4] and vis.mask[0]
    assert bundle.spec.get("vision").name == "openface"


def test_msa_extract_openface_csv_cache_follows_the_csv(assets_dir, tmp_path):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app
    from msa_toolkit.features import FeatureBundle

    clip = tmp_path / "in" / "clip.mp4"
    clip.parent.mkdir()
    shutil.copy(assets_dir / "speech_positive.mp4", clip)
    csv_dir = tmp_path / "csvs"
    csv_dir.mkdir()
    documented_csv(csv_dir / "clip.csv")
    args = ["extract", str(clip), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--asr", "none", "--text", "none", "--audio", "none", "--vision", "openface_csv",
            "--openface-csv-dir", str(csv_dir), "--openface-columns", "pose"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    first = FeatureBundle.load(tmp_path / "out" / "clip").sequences["vision"].values.copy()
    # an edited CSV is a different cache entry: the new values are read, not the stale bundle
    rows = [[k + 1, 0, k * 0.04, 0.9, 1] + [float(7 + j) for j in range(len(POSE))] for k in range(3)]
    write_csv(csv_dir / "clip.csv", POSE, rows)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    second = FeatureBundle.load(tmp_path / "out" / "clip").sequences["vision"].values
    assert first.shape == (4, 6) and second.shape == (3, 6) and second[0, 0] == 7.0


def test_openface_flags_need_an_openface_vision(tmp_path, assets_dir):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app

    res = CliRunner().invoke(app, ["extract", str(assets_dir / "speech.wav"), "-o", str(tmp_path / "o"),
                                   "--vision", "mediapipe_face", "--openface-columns", "aus"])
    assert res.exit_code == 2 and "--openface-columns" in res.output
