"""issue 31: stored normalisation statistics that cannot normalise (zero, negative, null, non-finite or
float32-overflowing std; non-finite mean; wrong length) are named by `msa dataset validate` and refused with
one clear error where they would be used, never turned into numpy RuntimeWarnings and inf features."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.data.native import MANIFEST, load_dataset
from msa_toolkit.data import stats as stats_mod
from msa_toolkit.data.synthetic import make_synthetic_dataset
from msa_toolkit.errors import DatasetError


def _broken(tmp_path, **edits):
    """A synthetic dataset whose manifest stats get ``edits``: {modality: (key, column, value)}."""
    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2), lengths=(5, 5, 5))
    mf = json.loads((ds / MANIFEST).read_text())
    for m, (key, col, value) in edits.items():
        mf["stats"][m][key][col] = value
    (ds / MANIFEST).write_text(json.dumps(mf))
    return ds


def test_validate_names_each_bad_statistic(tmp_path, capsys):
    ds = _broken(tmp_path, text=("std", 1, 0.0), audio=("std", 0, -2.0), vision=("std", 1, None))
    assert main(["dataset", "validate", str(ds)]) == 1
    out = capsys.readouterr().out
    assert "text: std is zero or below 1e-06 in column 1" in out
    assert "audio: std is negative in column 0" in out
    assert "vision: std is null or not finite in column 1" in out


def test_huge_std_and_wrong_length():
    stats = {"split": "train", "text": {"count": 3, "mean": [0.0, 1e39], "std": [1e300, 1.0]},
             "audio": {"count": 3, "mean": [0.0], "std": [1.0]}}
    problems = stats_mod.stats_problems(stats, {"text": 2, "audio": 2})
    assert problems == ["text: mean is null or not finite in column 1 (1e+39 overflows float32)",
                        "text: std is null or not finite in column 0 (1e+300 overflows float32)",
                        "audio: mean has 1 values for 2 feature columns",
                        "audio: std has 1 values for 2 feature columns"]
    assert stats_mod.stats_problems({"split": "train", "text": {"count": 0, "mean": [0.0], "std": [1.0]}}, {"text": 1}) == []


def test_bad_statistics_are_one_error_where_they_are_used_not_runtime_warnings(tmp_path):
    ds = load_dataset(_broken(tmp_path, text=("std", 1, 0.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match=r"manifest.json: normalisation statistics cannot be used: text: std "
                                               r"is zero or below 1e-06 in column 1.*msa dataset validate"):
            ds.stats
    good = stats_mod.usable_stats({"text": {"mean": [0.0, 1.0], "std": [1.0, 2.0]}}, {"text": 2}, "x")
    assert good["text"][1].dtype == np.float32 and good["text"][1].tolist() == [1.0, 2.0]


def test_training_on_bad_statistics_exits_2_in_one_line(tmp_path, capsys):
    ds = _broken(tmp_path, audio=("std", 0, 0.0))
    rc = main(["train", "--model", "late_fusion", "--preset", "tiny", "--data", str(ds), "--out",
               str(tmp_path / "run"), "--epochs", "1", "--device", "cpu", "-q", "--set", "trainer.plots=false"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "audio: std is zero" in err


def test_evaluate_refuses_a_checkpoint_with_a_zero_std(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    ds = tmp_path / "ds"
    make_synthetic_dataset(ds, n_train=8, n_valid=4, n_test=4, dims=(4, 3, 2), lengths=(5, 5, 5))
    assert main(["train", "--model", "late_fusion", "--preset", "tiny", "--data", str(ds), "--out",
                 str(tmp_path / "run"), "--epochs", "1", "--device", "cpu", "-q", "--set", "trainer.plots=false"]) == 0
    ck = tmp_path / "run" / "seed_1" / "best.safetensors"
    with safe_open(str(ck), "np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    doc = json.loads(meta["msa_toolkit"])
    names = [k for k in tensors if k.startswith("__extra__/normalization/text/std")]
    if names:  # the statistics travel as tensors
        tensors[names[0]][0] = 0.0
    else:
        doc["extra"]["normalization"]["text"]["std"][0] = 0.0
    save_file(tensors, str(ck), metadata={**meta, "msa_toolkit": json.dumps(doc)})
    capsys.readouterr()
    assert main(["evaluate", str(ck), "--data", str(ds), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "text: std is zero" in err and "train again" in err
