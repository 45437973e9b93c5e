"""benchmarks/feed_forward_relu.py times both sides of every shape and phase and restores the fused path."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_rows_for_every_shape_and_phase_and_the_fused_path_restored(tmp_path, monkeypatch):
    from msa_toolkit.models import linear as lin
    from msa_toolkit.models import transformer

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    bench = importlib.import_module("feed_forward_relu")
    monkeypatch.setattr(bench, "SHAPES", ((2, 8, 128, 256), (4, 8, 128, 256)))
    calls = {"fused": 0}
    real = transformer.linear_relu

    def counted(x, w, b):
        calls["fused"] += 1
        return real(x, w, b)

    monkeypatch.setattr(transformer, "linear_relu", counted)
    assert bench.main(["--rounds", "2", "--out", str(tmp_path / "ff")]) == 0
    assert transformer.linear_relu is counted  # the benchmark put back what it found
    # per shape and phase: 1 warm-up + 2 rounds on the fused side
    assert calls["fused"] == 2 * 2 * 3
    data = json.loads((tmp_path / "ff.json").read_text())
    assert [(r["shape"], r["phase"]) for r in data["rows"]] == [
        (list(s), p) for s in bench.SHAPES for p in ("forward + backward", "no-grad forward")]
    for r in data["rows"]:
        assert len(r["ratios"]) == 2 and r["fused_s"] > 0 and r["unfused_s"] > 0
    md = (tmp_path / "ff.md").read_text()
    assert md.count("| [") == 4 and f"oneDNN linear {'on' if lin.onednn_linear_available() else 'OFF'}" in md
