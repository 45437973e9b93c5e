"""benchmarks/omp_wait.py runs every waiting configuration in its own process and prints the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "omp_wait.py"


@pytest.mark.slow
def test_table_has_every_configuration():
    out = subprocess.run([sys.executable, str(SCRIPT), "--model", "dlf", "--preset", "tiny", "--batch", "2",
                          "--rounds", "1", "--steps", "1"], capture_output=True, text=True, check=True, timeout=600)
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "configuration" not in line]
    assert len(rows) == 5 and any(r.startswith("| PASSIVE + GOMP_SPINCOUNT=1000 |") for r in rows)
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert all(float(x) > 0 for x in cells[1:]), r
