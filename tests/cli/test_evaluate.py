import pytest
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

    m = evaluate(trained / "run" / "best.safetensors", trained / "ds", split="test", device="cpu")
    stored = json.loads((trained / "run" / "metrics.json").read_text())["test"]
    assert m["mae"] == pytest.approx(stored["mae"], abs=1e-6) and m["acc7"] == stored["acc7"]
    v = evaluate(trained / "run" / "best.safetensors", trained / "ds", split="dev", device="cpu")
    assert v["mae"] == pytest.approx(stored and json.loads((trained / "run" / "metrics.json").read_text())
                                     ["valid"]["mae"], abs=1e-6)
    dropped = evaluate(trained / "run" / "best.safetensors", trained / "ds", drop=("text", "audio", "vision"))
    assert dropped["mae"] != m["mae"]


def test_evaluate_errors(trained):
    ck = str(trained / "run" / "best.safetensors")
    # a dataset extracted with another FeatureSpec: a clear mismatch error, exit code 2
    assert main(["evaluate", ck, "--data", str(trained / "other")]) == 2
    assert main(["evaluate", ck, "--data", str(trained / "ds"), "--drop", "smell"]) == 2
    assert main(["evaluate", str(trained / "nope.safetensors"), "--data", str(trained / "ds")]) == 2
    r = runner.invoke(app, ["evaluate", ck, "--data", str(trained / "ds"), "--split", "valid"])
    assert r.exit_code == 0 and "valid:" in r.output and "mae=" in r.output
