"""The MMSA parity scripts of Self-MM, MISA, MMIM and MAG-BERT: a clear exit without a checkout, and (slow, when
an MMSA checkout is at $MSA_MMSA_DIR or /tmp/refs/MMSA) a passing run against it."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

PARITY = Path(__file__).resolve().parents[2] / "benchmarks" / "parity"
SCRIPTS = ["parity_mmsa_self_mm", "parity_mmsa_misa", "parity_mmsa_mmim", "parity_mmsa_mag_bert"]
MMSA = Path(os.environ.get("MSA_MMSA_DIR", "/tmp/refs/MMSA"))


def _load(name: str):
    sys.path.insert(0, str(PARITY))
    try:
        spec = importlib.util.spec_from_file_location(name, PARITY / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(PARITY))


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_fail_clearly_without_reference_dir(script, tmp_path):
    mod = _load(script)
    with pytest.raises(SystemExit, match="no reference checkout given"):
        mod.main([])
    with pytest.raises(SystemExit, match="does not look like thuiar/MMSA"):
        mod.main(["--reference-dir", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.skipif(not (MMSA / "src" / "MMSA").is_dir(), reason="no MMSA checkout ($MSA_MMSA_DIR or /tmp/refs/MMSA)")
@pytest.mark.parametrize("script", SCRIPTS)
def test_parity_with_mmsa_passes(script, tmp_path):
    out = tmp_path / "report.json"
    assert _load(script).main(["--reference-dir", str(MMSA), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["passed"] and report["reference_repo"] == "thuiar/MMSA"
    assert any(c["name"].startswith("parameter count") and c["status"] == "pass" for c in report["checks"])
