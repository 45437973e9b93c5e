"""benchmarks/train_throughput.py runs on the CPU and writes its table (the GPU checks run it on CUDA)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


def _module():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_table_with_first_step_time(tmp_path, monkeypatch):
    mod = _module()
    compiled = []
    monkeypatch.setattr(mod.torch, "compile", lambda m: compiled.append(m) or m)  # the flag's code path, no compiler
    out = tmp_path / "t.md"
    assert mod.main(["--models", "text_only", "--batch-size", "2", "--steps", "1", "--warmup", "1", "--threads", "1",
                     "--compile", "--malloc", "default", "--out", str(out)]) == 0  # this process keeps glibc's malloc
    text = out.read_text()
    assert "first step s" in text and "training step compiled" in text and "| text_only |" in text
    assert "glibc malloc default" in text
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "TrainStep"
    # a re-run replaces the file: one current result, history in git
    assert mod.main(["--models", "text_only", "--batch-size", "2", "--steps", "1", "--warmup", "1", "--threads", "1",
                     "--malloc", "default", "--out", str(out)]) == 0
    assert out.read_text().count("| text_only |") == 1
