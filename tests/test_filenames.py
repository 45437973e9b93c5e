"""Odd entries in input folders (issue 31): file names that are not valid UTF-8 crashed the CSV writers and
the terminal table of `msa extract` and `msa predict` (UnicodeEncodeError: surrogates not allowed) after
the work was done; a dangling symbolic link was ignored without being listed as skipped."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from msa_toolkit.cli.main import main
from msa_toolkit.prediction_types import Prediction, to_csv

ROOT = Path(__file__).resolve().parent.parent
#: a name with a byte that is not UTF-8, as os.listdir gives it (a lone surrogate)
CLIP = os.fsdecode(b"clip_\xff.wav")
NOTES = os.fsdecode(b"notes_\xfe.xyz")


def test_extract_keeps_every_result_and_writes_the_names_escaped(assets_dir, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(assets_dir / "speech.wav", inp / CLIP)
    (inp / NOTES).write_text("not media")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONIOENCODING": "utf-8:strict"}  # a UTF-8 terminal's strict streams
    proc = subprocess.run([sys.executable, "-m", "msa_toolkit", "extract", str(inp), "-o", str(tmp_path / "out"),
                           "--asr", "none", "--text", "none", "--vision", "none", "--cache-dir",
                           str(tmp_path / "c"), "-q"], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    out = tmp_path / "out"
    assert (out / f"{Path(CLIP).stem}.safetensors").is_file()  # the bundle keeps the file's own bytes
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == [str(inp / CLIP)]  # JSON escapes it losslessly
    rows = list(csv.reader(io.StringIO((out / "errors.csv").read_text(encoding="utf-8"))))
    assert rows[1][0].endswith("notes_\\xfe.xyz") and rows[1][1] == "skipped"
    assert b"clip_\\udcff" in proc.stdout


def test_predict_csv_writes_the_names_escaped():
    preds = [Prediction(path=f"/x/{CLIP}", score=0.5, transcript="fine"),
             Prediction(path=f"/x/{NOTES}", score=None, error=f"[skipped] {NOTES}: not a media file")]
    text = to_csv(preds)
    text.encode("utf-8")  # writable as UTF-8
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][0] == "/x/clip_\\xff.wav" and rows[2][0] == "/x/notes_\\xfe.xyz"
    assert rows[2][rows[0].index("error")] == "[skipped] notes_\\xfe.xyz: not a media file"


def test_dangling_link_is_listed_as_skipped_by_extract_and_predict(assets_dir, tmp_path, capfd):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(assets_dir / "corrupt.mp4", inp / "corrupt.mp4")
    (inp / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert main(["extract", str(inp), "-o", str(tmp_path / "out"), "--asr", "none", "--text", "none",
                 "--vision", "none", "--cache-dir", str(tmp_path / "c"), "-q"]) == 1  # the one media file failed
    out = " ".join(capfd.readouterr().out.split())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(Path(f["path"]).name, f["stage"]) for f in manifest["skipped"]] == [("gone.mp4", "skipped")]
    assert manifest["skipped"][0]["message"] == f"dangling symbolic link (to {tmp_path / 'nowhere.mp4'})"
    errors = json.loads((tmp_path / "out" / "errors.json").read_text())
    assert {Path(e["path"]).name for e in errors} == {"corrupt.mp4", "gone.mp4"}
    assert "skipped 1 dangling symbolic link(s): gone.mp4" in out
    assert main(["predict", str(inp), "--json", str(tmp_path / "p.json"), "--cache-dir", str(tmp_path / "c")]) == 1
    out = " ".join(capfd.readouterr().out.split())
    rows = {Path(p["path"]).name: p for p in json.loads((tmp_path / "p.json").read_text())["predictions"]}
    assert rows["gone.mp4"]["error"].startswith("[skipped] dangling symbolic link")
    assert "skipped (dangling symbolic link): gone.mp4" in out
