"""scripts/gpu_checks.sh without a GPU: its step selection (STEPS) and order, through DRY_RUN (nothing runs)."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_checks.sh"


def _dry_run(tmp_path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60)


def _run(tmp_path, **env):
    res = _dry_run(tmp_path, **env)
    return res.returncode, re.findall(r"^== (\w+): ", res.stdout, flags=re.M), res.stderr


def _refs(tmp_path):
    for name in ("ALMT", "DLF", "MInD", "MMCL"):
        (tmp_path / "refs" / name).mkdir(parents=True)
    return str(tmp_path / "refs")


def test_all_steps_issue_17_first(tmp_path):
    rc, steps, _ = _run(tmp_path, REFS=_refs(tmp_path))
    assert rc == 0
    assert steps[:4] == ["reference_speed", "reference_speed_bf16", "throughput_fp32", "throughput_bf16"]
    assert {"gpu_tests", "torchrun_bf16", "torchrun_fp16", "compile", "extract_cuda", "extract_gpu_test"} <= set(steps)
    assert not any("grouped" in s for s in steps)  # grouped execution is gone (issue 30)
    assert not (tmp_path / "out" / "env.log").exists()  # a dry run runs nothing


def test_steps_pick_and_refs_needed(tmp_path):
    rc, steps, _ = _run(tmp_path, REFS=_refs(tmp_path), STEPS="throughput_fp32,reference_speed")
    assert rc == 0 and steps == ["reference_speed", "throughput_fp32"]  # the script's order, not the list's
    rc, steps, err = _run(tmp_path, STEPS="reference_speed,throughput_bf16")  # no REFS: said, not silent
    assert rc == 0 and steps == ["throughput_bf16"] and "reference_speed: skipped, REFS is not a folder" in err


def test_unknown_step_is_refused(tmp_path):
    rc, steps, err = _run(tmp_path, STEPS="reference_speed,bogus")
    assert rc == 2 and steps == [] and "unknown step 'bogus'" in err


def test_the_gpu_extraction_test_is_a_step(tmp_path):
    """tests/test_device.py::test_extract_on_a_gpu skips without CUDA, so a lent GPU must run it."""
    res = _dry_run(tmp_path, STEPS="extract_gpu_test", PY="python3")
    assert res.returncode == 0
    assert res.stdout.splitlines() == ["== extract_gpu_test: python3 -m pytest -q -m gpu -p no:cacheprovider "
                                       "tests/test_device.py::test_extract_on_a_gpu"]
    # the node id exists: the test is still there under that name
    assert "def test_extract_on_a_gpu(" in (ROOT / "tests" / "test_device.py").read_text()
