import pytest
import torch
from typer.testing import CliRunner

from msa_toolkit.cli.main import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.training.api import train

    root = tmp_path_factory.mktemp("ev")
    make_synthetic_dataset(root / "ds", n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8))
    make_synthetic_dataset(root / "other", n_train=16, n_valid=8, n_test=8, dims=(6, 4, 4), lengths=(6, 8, 8))
    train("late_fusion", root / "ds", root / "run", preset="tiny",
          overrides={"trainer.epochs": 1, "trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu"})
    return root


def test_evaluate_matches_training_metrics(trained):
    import json

    from msa_toolkit.training.api import evaluate

    import numpy as np

    from msa_toolkit.data.batch import synthetic_batch
    from msa_toolkit.data.native import load_dataset
    from msa_toolkit.training.checkpoint import load_checkpoint

    ck_path = trained / "run" / "seed_1" / "best.safetensors"
    stored = json.loads((trained / "run" / "seed_1" / "metrics.json").read_text())
    m = evaluate(ck_path, trained / "ds", split="test", device="cpu")
    v = evaluate(ck_path, trained / "ds", split="dev", device="cpu")
    for got, want in ((m, stored["test"]), (v, stored["valid"])):  # every metric, not only MAE
        assert set(want) <= set(got)
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-6), k
    # with every modality dropped the model sees the same all-masked zeros for every sample: one constant
    # prediction c, so MAE = mean |c - label| over the test labels and the correlation is undefined (NaN, said why)
    dropped = evaluate(ck_path, trained / "ds", drop=("text", "audio", "vision"))
    model = load_checkpoint(ck_path).model.eval()
    with torch.no_grad():
        c = float(model.predict(synthetic_batch(1, (6, 8, 8), (8, 4, 4)).drop("text", "audio", "vision"))[0])
    labels = np.array([s.label for s in load_dataset(trained / "ds").split("test")], dtype=np.float64)
    assert dropped["mae"] == pytest.approx(float(np.mean(np.abs(c - labels))), abs=1e-5)
    assert np.isnan(dropped["corr"]) and dropped.undefined["corr"] == "constant predictions"


def test_evaluate_errors(trained):
    ck = str(trained / "run" / "seed_1" / "best.safetensors")
    # a dataset extracted with another FeatureSpec: a clear mismatch error, exit code 2
    assert main(["evaluate", ck, "--data", str(trained / "other")]) == 2
    from msa_toolkit.errors import SpecMismatchError
    from msa_toolkit.training.api import evaluate

    with pytest.raises(SpecMismatchError, match=r"(?s)checkpoint != dataset\).*text.dim: 8 != 6"):
        evaluate(ck, trained / "other", device="cpu")
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--drop", "smell"]) == 2
    # a batch size below 1 is refused, not a traceback (-2) nor silently replaced by the checkpoint's (0)
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--batch-size", "-2"]) == 2
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--batch-size", "0"]) == 2
    assert main(["evaluate", str(trained / "nope.safetensors"), "--data", str(trained / "ds")]) == 2
    r = runner.invoke(app, ["evaluate", ck, "--data", str(trained / "ds"), "--split", "valid"])
    assert r.exit_code == 0 and "valid:" in r.output and "mae=" in r.output


# -- issue 15 ------------------------------------------------------------------------------------

def test_evaluate_refuses_a_checkpoint_with_nan_weights(trained, tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = trained / "run" / "seed_1" / "best.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(src))
    name = sorted(k for k in tensors if not k.startswith("__extra__") and tensors[k].is_floating_point())[0]
    tensors[name][...] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    assert main(["evaluate", str(bad), "--data", str(trained / "ds"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "hold NaN/inf" in err and name in err and "Traceback" not in err


def test_evaluate_console_and_json_same_units_and_mmsa_names(trained, tmp_path, capsys):
    import json
    import re

    ck = str(trained / "run" / "seed_1" / "best.safetensors")
    out = tmp_path / "m.json"
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--device", "cpu", "--json", str(out)]) == 0
    line = capsys.readouterr().out
    doc = json.loads(out.read_text())
    printed = float(re.search(r"acc7=([0-9.]+)", line).group(1))
    assert printed == pytest.approx(doc["metrics"]["acc7"], abs=1e-4) and doc["units"] == "fraction"
    assert "fractions" in line
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--device", "cpu", "--mmsa-names",
                 "--json", str(out)]) == 0
    line = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert "Non0_acc_2=" in line and "Mult_acc_7" in doc["metrics"] and doc["metric_names"] == "mmsa"
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err


def test_evaluate_drop_of_a_modality_the_checkpoint_does_not_use_is_an_error(tmp_path, capsys):
    """``--drop audio`` on a text-only checkpoint reported the undropped scores as an ablation."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.errors import MSAError
    from msa_toolkit.training.api import evaluate, train

    make_synthetic_dataset(tmp_path / "ds", n_train=8, n_valid=4, n_test=4, dims=(8, 4, 4), lengths=(6, 8, 8),
                           modalities=("text",))
    train("text_only", tmp_path / "ds", tmp_path / "run", preset="tiny",
          overrides={"trainer.epochs": 1, "trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu"})
    ck = tmp_path / "run" / "seed_1" / "best.safetensors"
    with pytest.raises(MSAError, match="does not use audio"):
        evaluate(ck, tmp_path / "ds", drop=("audio",), device="cpu")
    assert main(["evaluate", str(ck), "--data", str(tmp_path / "ds"), "--drop", "vision"]) == 2
    assert "does not use vision" in capsys.readouterr().err
    assert "mae" in evaluate(ck, tmp_path / "ds", drop=("text",), device="cpu")


def test_evaluate_reports_undefined_metrics_as_null_and_n_a_with_the_reason(trained, tmp_path, capsys):
    """issue 31: on a split whose labels are all 0, non-0 Acc-2/F1 and Corr are undefined: null in --json,
    n/a on the console, and a line naming metric and reason (not 0.0000)."""
    import dataclasses
    import json

    from msa_toolkit.data.native import load_dataset, write_dataset

    ds = load_dataset(trained / "ds")
    write_dataset(tmp_path / "zeros", ds.spec, {s: [dataclasses.replace(x, label=0.0) for x in ds.split(s)]
                                               for s in ds.splits})
    out = tmp_path / "m.json"
    assert main(["evaluate", str(trained / "run" / "seed_1" / "best.safetensors"), "--data", str(tmp_path / "zeros"),
                 "--device", "cpu", "--json", str(out)]) == 0
    cap = capsys.readouterr()
    doc = json.loads(out.read_text())
    assert doc["metrics"]["acc2_non0"] is None and doc["metrics"]["f1_non0"] is None and doc["metrics"]["corr"] is None
    assert doc["metrics"]["acc2_has0"] is not None and doc["undefined"] == {
        "acc2_non0": "no non-zero labels", "f1_non0": "no non-zero labels", "corr": "constant labels"}
    assert "acc2_non0=n/a" in cap.out and "corr=n/a" in cap.out and "0.0000" not in cap.out.split("acc2_non0=")[1][:6]
    assert "acc2_non0, f1_non0 n/a (no non-zero labels); corr n/a (constant labels)" in cap.err


# -- issue 32: per-sample predictions ------------------------------------------------------------

def _holes(trained):
    """The test dataset with sample 0 without vision and sample 1 without audio nor text (same spec)."""
    import dataclasses

    from msa_toolkit.data.native import load_dataset, write_dataset

    ds = load_dataset(trained / "ds")
    out = trained / "holes"
    if not out.exists():
        def split(name):
            for i, s in enumerate(ds.split(name)):
                gone = {"test": {0: ("vision",), 1: ("audio", "text")}}.get(name, {}).get(i, ())
                yield dataclasses.replace(s, features={m: v for m, v in s.features.items() if m not in gone},
                                          masks={m: v for m, v in s.masks.items() if m not in gone})
        write_dataset(out, ds.spec, {n: split(n) for n in ("train", "valid", "test")})
    return out


def test_evaluate_writes_per_sample_predictions_with_presence(trained, tmp_path):
    import csv

    import numpy as np

    from msa_toolkit.data.native import load_dataset
    from msa_toolkit.training.api import evaluate

    ck = str(trained / "run" / "seed_1" / "best.safetensors")
    holes = _holes(trained)
    out = tmp_path / "preds.csv"
    m = evaluate(ck, holes, split="test", device="cpu", predictions=out)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "label", "prediction", "text", "audio", "vision"]
    samples = list(load_dataset(holes).split("test"))
    assert [r["id"] for r in rows] == [s.id for s in samples]
    assert [float(r["label"]) for r in rows] == pytest.approx([s.label for s in samples], abs=1e-5)
    pred, lab = np.array([float(r["prediction"]) for r in rows]), np.array([float(r["label"]) for r in rows])
    assert float(np.mean(np.abs(pred - lab))) == pytest.approx(m["mae"], abs=1e-4)
    presence = [(r["text"], r["audio"], r["vision"]) for r in rows]
    assert presence[0] == ("1", "1", "0") and presence[1] == ("0", "0", "1")
    assert all(p == ("1", "1", "1") for p in presence[2:])
    # any split, through the CLI; a dropped modality is absent as the model saw it
    out2 = tmp_path / "valid.csv"
    r = runner.invoke(app, ["evaluate", ck, "--data", str(trained / "ds"), "--split", "valid", "--drop", "audio",
                            "--predictions", str(out2)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out2.open()))
    assert [r["id"] for r in rows] == [s.id for s in load_dataset(trained / "ds").split("valid")]
    assert {(r["text"], r["audio"], r["vision"]) for r in rows} == {("1", "0", "1")}
