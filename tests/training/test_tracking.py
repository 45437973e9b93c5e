"""`msa train --log tensorboard`: each epoch's record as TensorBoard scalars, through the Trainer's callbacks
(tested with a fake writer: the tensorboard package is optional and not installed here)."""

import json
import sys

import pytest
from typer.testing import CliRunner

from msa_toolkit.cli.main import app, main


class FakeWriter:
    made = []

    def __init__(self, path):
        self.path, self.scalars, self.texts, self.closed = path, [], [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_text(self, tag, text, step):
        self.texts.append((tag, text, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("tb") / "ds"
    make_synthetic_dataset(path, n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8))
    return path


def test_each_epoch_record_becomes_scalars_per_seed(ds, tmp_path):
    from msa_toolkit.training.api import train
    from msa_toolkit.training.tracking import TensorBoardLogger

    FakeWriter.made.clear()
    logger = TensorBoardLogger(tmp_path / "tb", writer=FakeWriter)
    train("late_fusion", ds, tmp_path / "run", preset="tiny", seeds=(1, 2), callbacks=[logger],
          overrides={"trainer.epochs": 2, "trainer.progress": False, "trainer.plots": False,
                     "trainer.device": "cpu", "trainer.mmsa_names": True})
    logger.close()
    assert [w.path for w in FakeWriter.made] == [tmp_path / "tb" / "seed_1", tmp_path / "tb" / "seed_2"]
    for w, seed in zip(FakeWriter.made, (1, 2)):
        assert w.closed
        log = [json.loads(line) for line in (tmp_path / "run" / f"seed_{seed}" / "log.jsonl").open()]
        got = {(tag, step): value for tag, value, step in w.scalars}
        for rec in log:
            e = rec["epoch"]
            assert got[("train/total", e)] == pytest.approx(rec["train"]["total"])
            assert got[("valid/MAE", e)] == pytest.approx(rec["valid"]["mae"])  # the run's MMSA names
            assert got[("valid/loss", e)] == pytest.approx(rec["valid"]["loss"])
            assert got[("lr", e)] == pytest.approx(rec["lr"])
        assert sorted({s for _, s in got}) == [r["epoch"] for r in log]
        # the resolved configuration, once per run (issue 32: "losses, metrics and the resolved config")
        [(tag, text, step)] = w.texts
        doc = json.loads(text.strip("`\n"))
        assert (tag, step, doc["model"], doc["trainer"]["seed"], doc["trainer"]["epochs"]) == ("config", 0,
                                                                                              "late_fusion", seed, 2)
        assert doc["model_config"]["hidden"] == 8 and doc["model_config"]["text_dim"] == 8
        assert not any(t.startswith("test/") for t, _ in got)  # the toolkit recipe evaluates test once


def test_cli_log_tensorboard(ds, tmp_path, monkeypatch):
    from msa_toolkit.training import tracking

    args = ["train", "--model", "late_fusion", "--preset", "tiny", "--data", str(ds), "--device", "cpu",
            "--epochs", "1", "--set", "trainer.plots=false", "-q", "--log", "tensorboard"]
    # without the tensorboard package: one line, exit 2, nothing trained
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main([*args, "-o", str(tmp_path / "no")]) == 2 and not (tmp_path / "no").exists()
    assert main([*args[:-1], "wandb", "-o", str(tmp_path / "bad")]) == 2
    # with it (a fake writer here): events in OUT/tensorboard/seed_<s>/
    monkeypatch.setattr(tracking, "require_tensorboard", lambda: None)
    monkeypatch.setattr(tracking, "summary_writer", FakeWriter)
    FakeWriter.made.clear()
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "ok")])
    assert r.exit_code == 0, (r.output, r.exception)
    (w,) = FakeWriter.made
    assert w.path.parent == tmp_path / "ok" / "tensorboard" and w.path.name.startswith("seed_") and w.closed
    assert {t for t, _, _ in w.scalars} >= {"train/total", "valid/mae", "valid/loss", "lr"}
