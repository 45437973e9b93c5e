"""docs/tutorial.md, run for real: its ```bash tutorial blocks, then its ```python tutorial blocks, in order,
in an empty folder, on the bundled clips; then the files they write are checked (so the tutorial cannot go
stale)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
MODELS = ["text_only", "late_fusion"]
SEEDS = [1, 2]


def tutorial_blocks(lang: str) -> list[str]:
    """The bodies of the fenced blocks opened by ```<lang> tutorial, in document order."""
    return re.findall(rf"^```{lang} tutorial\n(.*?)^```$", TUTORIAL.read_text(), flags=re.M | re.S)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd[:2]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"


def test_tutorial_blocks_exist():
    bash, python = tutorial_blocks("bash"), tutorial_blocks("python")
    assert len(bash) >= 6 and len(python) >= 1
    text = "\n".join(bash + python)
    # checkpoints are always named by seed (one layout, one seed or many)
    for ckpt in re.findall(r"[\w/]+best\.safetensors", text):
        assert re.search(r"/seed_\d+/best\.safetensors$", ckpt), ckpt
    assert "--baseline text_only" in text and "baseline=\"text_only\"" in text


def test_tutorial_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "msa"                       # `msa` = this interpreter's msa_toolkit, whatever is installed
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m msa_toolkit \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ, REPO=str(ROOT), MSA_CACHE_DIR=str(tmp_path / "cache"),
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    _run(["bash", "-euo", "pipefail", "-c", "\n".join(tutorial_blocks("bash"))], work, env)
    script = work / "tutorial.py"
    script.write_text("\n".join(tutorial_blocks("python")))
    _run([sys.executable, str(script)], work, env)

    test_ids = json.loads((work / "ds" / "manifest.json").read_text())["splits"]["test"]["ids"]
    assert len(test_ids) == 2
    for model in MODELS:
        for s in SEEDS:
            assert (work / "runs" / model / f"seed_{s}" / "best.safetensors").is_file()
    for bench, preds in (("bench", "test_predictions.csv"), ("bench_py", "test_predictions_py.csv")):
        b = work / bench
        for s in SEEDS:
            for model in MODELS:
                assert (b / "runs" / model / f"seed_{s}" / "best.safetensors").is_file()
        wide = _rows(b / "results_wide.csv")
        assert [r["Model"] for r in wide] == MODELS
        assert all("±" in r["mae"] for r in wide)
        sig = _rows(b / "significance.csv")
        assert {(r["model"], r["baseline"], r["metric"]) for r in sig} == {
            ("late_fusion", "text_only", "mae"), ("late_fusion", "text_only", "acc2_non0")}
        assert all(r["n_seeds"] == "2" and r["p"] not in ("", "nan") for r in sig)
        assert "Against the baseline text_only" in (b / "results.md").read_text()
        tex = (b / "results.tex").read_text()
        assert "\\toprule" in tex and "\\dagger" in tex and "late\\_fusion" in tex
        # one row per test sample, with the modalities the model saw
        rows = _rows(work / preds)
        assert [r["id"] for r in rows] == test_ids
        assert list(rows[0]) == ["id", "label", "prediction", "text", "audio", "vision"]
        assert {r["id"]: r["vision"] for r in rows}["noface"] == "0"
    # both halves built the same dataset from the same clips and labels
    ds_py = json.loads((work / "ds_py" / "manifest.json").read_text())["splits"]
    assert {k: v["ids"] for k, v in ds_py.items()} == {
        k: v["ids"] for k, v in json.loads((work / "ds" / "manifest.json").read_text())["splits"].items()}
    pred = _rows(work / "predictions.csv")
    assert sorted(Path(r["path"]).name for r in pred) == ["negative.mp4", "positive.mp4"]
    assert all(r["score"] and -3 <= float(r["score"]) <= 3 for r in pred)
