"""benchmarks/real_text.py finds the label files through --data-root (a git worktree is not next to shared/)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_text.py"


def _load():
    spec = importlib.util.spec_from_file_location("real_text", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_data_root_is_where_the_label_file_is_looked_up(tmp_path):
    rt = _load()
    root = tmp_path / "elsewhere"
    with pytest.raises(SystemExit, match=re.escape(str(root / "mosi" / "label.csv"))):
        rt.main(["--dataset", "mosi", "--data-root", str(root), "--work", str(tmp_path / "w"), "--max-rows", "2"])


def test_an_existing_build_is_reused_without_reading_labels(tmp_path):
    rt = _load()
    ds = tmp_path / "mosi_text"
    ds.mkdir()
    (ds / "manifest.json").write_text("{}")
    # no label file under data root, yet the cached build is found first
    assert rt.build("mosi", tmp_path, None, tmp_path / "nothing_here") == ds
