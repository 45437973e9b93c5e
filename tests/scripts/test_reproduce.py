"""scripts/reproduce.sh end to end on tiny pickles in the exact MMSA layout, on CPU, without BERT."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _test_module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "data" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _make_pickle():
    return _test_module("test_mmsa")._make_pickle


def _env(**extra):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "PRESET": "tiny", "EPOCHS": "1",
           "SEEDS": "1", "EXTRA": "--device cpu --set trainer.batch_size=2 --set trainer.grad_accum=2 --set trainer.plots=false",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **extra}
    env.pop("BERT_DIR", None)
    return env


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_reproduce_script_tiny(tmp_path):
    make = _make_pickle()
    data = tmp_path / "MOSI"
    make(data / "aligned_50.pkl", L=(50, 50, 50), dims=(768, 5, 20), aligned=True, seed=1)
    make(data / "unaligned_50.pkl", L=(50, 30, 40), dims=(768, 5, 20), aligned=False, seed=2)
    out = tmp_path / "out"
    env = _env()
    r = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh"), str(data), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["table"]) == {"dlf", "mind", "mmcl", "almt"}
    assert all(e["ok"] == 1 and e["recipe"] == "reference" for e in doc["table"].values()), doc["table"]
    md = (out / "results.md").read_text()
    assert "Published CMU-MOSI numbers" in md and "86.43" in md and "Non0_acc_2 %" in md
    assert "best TEST epoch" in md  # ALMT, MInD and MMCL's reference protocols print test-selected figures
    # the table names the data of each row (no MAG-BERT pickles here: MInD on aligned_50)
    assert "| mind | reference | aligned |" in md and "| almt | reference | unaligned |" in md
    assert not (out / "data" / "magbert").exists()
    assert (out / "results.png").is_file() and (out / "aligned" / "results.json").is_file()
    runs = {r["model"]: r for r in doc["runs"]}
    assert "/aligned/" in runs["dlf"]["run_dir"] and "/unaligned/" in runs["almt"]["run_dir"]
    # the recipe reached the run: DLF reads 50 aligned steps, unstandardised, with the reference's summed,
    # clipped-every-batch accumulation (over 2 batches here: the 5 training samples give 3 batches of 2)
    import yaml

    cfg = yaml.safe_load((Path(runs["dlf"]["run_dir"]) / "config.yaml").read_text())
    assert cfg["trainer"]["grad_accum"] == 2 and cfg["trainer"]["normalize"] is False
    assert cfg["trainer"]["grad_accum_sum"] and cfg["trainer"]["clip_each_backward"]
    assert cfg["trainer"]["drop_partial_accum"]
    # without BERT_DIR the models whose references fine-tune BERT run on frozen text: each row says so
    assert all(runs[m].get("frozen_text") is True for m in ("dlf", "almt", "mind")) and "frozen_text" not in runs["mmcl"]
    # re-running resumes: nothing is trained again
    r = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh"), str(data), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    again = json.loads((out / "results.json").read_text())
    assert all(x.get("resumed") == "skipped (finished)" for x in again["runs"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_reproduce_script_runs_mind_on_magbert_pickle(tmp_path):
    """issue 16: with MInD's MAG-BERT-style mosi.pkl in DATA_DIR, MInD trains on it (imported once into
    OUT/data/magbert), the other models keep MMSA's pickles, and the table says which data each row used."""
    data = tmp_path / "MOSI"
    _make_pickle()(data / "aligned_50.pkl", L=(50, 50, 50), dims=(768, 5, 20), aligned=True, seed=1)
    _test_module("test_magbert").make_mosi(data / "mosi.pkl")
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "reproduce.sh"), str(data), str(out)],
                       env=_env(MODELS="dlf,mind"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert set(doc["table"]) == {"dlf", "mind"}
    assert all(e["ok"] == 1 for e in doc["table"].values()), doc["table"]
    runs = {x["model"]: x for x in doc["runs"]}
    assert "/magbert/" in runs["mind"]["run_dir"] and runs["mind"]["data"] == str(out / "data" / "magbert")
    assert "/aligned/" in runs["dlf"]["run_dir"] and runs["dlf"]["data"] == str(out / "data" / "aligned")
    md = (out / "results.md").read_text()
    assert "| mind | reference | magbert |" in md and "| dlf | reference | aligned |" in md
    manifest = json.loads((out / "data" / "magbert" / "manifest.json").read_text())
    assert manifest["provenance"]["source"] == "magbert_pickle" and manifest["provenance"]["align"] == "tokens"
    import yaml

    cfg = yaml.safe_load((Path(runs["mind"]["run_dir"]) / "config.yaml").read_text())
    # MInD read the MAG-BERT dims: MiniLM text features (no BERT_DIR), COVAREP 74, FACET 47
    assert cfg["data"] == str(out / "data" / "magbert")
    resolved = cfg["model"]["resolved"]
    assert (resolved["text_dim"], resolved["audio_dim"], resolved["vision_dim"]) == (384, 74, 47)
