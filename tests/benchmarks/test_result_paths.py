"""Where the benchmark scripts write: ``benchmarks/results/<bench>.md`` with its raw JSON under
``benchmarks/results/<bench>/`` (issue 30: one current record per benchmark, history in git)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def test_raw_results_live_in_a_folder_named_after_their_markdown():
    loose = [p.name for p in RESULTS.iterdir() if p.is_file() and p.suffix != ".md"]
    assert loose == []
    for folder in (p for p in RESULTS.iterdir() if p.is_dir()):
        assert (RESULTS / f"{folder.name}.md").is_file(), f"{folder.name}/ has no {folder.name}.md beside it"
    assert not (BENCH / "parity" / "results").exists()


def test_extract_speed_writes_its_json_into_its_folder():
    es = _load(BENCH / "extract_speed.py", "extract_speed")
    assert es.json_path(es.RESULTS) == RESULTS / "extract_speed" / "extract_speed.json"
    assert es.json_path(es.RESULTS).is_file()


def test_parity_json_goes_to_results_parity_unless_told_otherwise(tmp_path, monkeypatch):
    pc = _load(BENCH / "parity" / "parity_common.py", "parity_common")
    assert pc.RESULTS == RESULTS / "parity"
    assert pc.default_json("mmcl", "float64") == RESULTS / "parity" / "parity_mmcl_float64.json"
    monkeypatch.setattr(pc, "RESULTS", tmp_path / "parity")
    report = pc.ParityReport("almt", "o/r", "abc")
    assert pc.finish(report, None) == 0
    assert json.loads((tmp_path / "parity" / "parity_almt.json").read_text())["model"] == "almt"
    pc.finish(report, None, "float64")
    assert (tmp_path / "parity" / "parity_almt_float64.json").is_file()
    pc.finish(report, "")  # '' writes none
    pc.finish(report, str(tmp_path / "elsewhere.json"))
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == ["elsewhere.json", "parity_almt.json",
                                                                "parity_almt_float64.json"]


def test_real_text_writes_markdown_beside_a_folder_with_the_json_and_chart(tmp_path):
    rt = _load(BENCH / "real_text.py", "real_text")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.md").write_text("| model |\n")
    (bench / "results.json").write_text('{"table": {}}')
    (bench / "results.png").write_bytes(b"png")
    args = SimpleNamespace(max_rows=None, recipe="toolkit", epochs=1, patience=1)
    rt.write_report("mosi", args, ["--dataset", "mosi"], bench, tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "real_text_mosi.md", "real_text_mosi/real_text_mosi.json", "real_text_mosi/real_text_mosi.png"]
