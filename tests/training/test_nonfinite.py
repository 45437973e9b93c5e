"""Issue 15, item 2: a model with NaN/inf weights is never saved, and NaN/inf predictions are never scored."""

from __future__ import annotations

import numpy as np
import pytest


def _with_inf_text(src, dst, split="train", index=3):
    """A copy of dataset ``src`` with one +inf in one text feature of ``split``."""
    from msa_toolkit.data.native import load_dataset, write_dataset

    ds = load_dataset(src)

    def gen(s):
        for i, x in enumerate(ds.split(s)):
            if s == split and i == index:
                x.features["text"][2, 1] = np.inf
            yield x

    write_dataset(dst, ds.spec, {s: gen(s) for s in ds.splits})
    return dst


def test_almt_with_one_inf_text_value_stops_naming_the_first_bad_tensor(tiny_ds, tmp_path, fast):
    from msa_toolkit.training.api import train
    from msa_toolkit.training.metrics import NonFiniteError

    bad = _with_inf_text(tiny_ds, tmp_path / "bad")
    with pytest.raises(NonFiniteError, match=r"weight tensors hold NaN/inf \(first: '[^']+'\)") as e:
        train("almt", bad, tmp_path / "run", preset="tiny", overrides={**fast, "trainer.epochs": 2})
    assert "epoch 1" in str(e.value)
    assert not (tmp_path / "run" / "seed_1" / "best.safetensors").exists() and not (tmp_path / "run" / "seed_1" / "last.pt").exists()


def test_weights_broken_by_the_last_step_are_never_written(tiny_ds, tmp_path, fast, monkeypatch):
    """The epoch's loss is finite (measured before each step), the weights after the last step are not."""
    import torch

    from msa_toolkit.training import trainer as T
    from msa_toolkit.training.api import train
    from msa_toolkit.training.metrics import NonFiniteError

    step = T.Trainer._optimizer_step

    def breaking_step(self, setup):
        step(self, setup)
        with torch.no_grad():
            dict(self.model.named_parameters())["step.text.0.weight"][0, 0] = float("inf")

    monkeypatch.setattr(T.Trainer, "_optimizer_step", breaking_step)
    over = {**fast, "trainer.epochs": 1, "trainer.limit_train_batches": 1}
    with pytest.raises(NonFiniteError, match=r"1 of \d+ weight tensors hold NaN/inf \(first: 'step.text.0.weight'\)"):
        train("late_fusion", tiny_ds, tmp_path / "run", preset="tiny", overrides=over)
    assert not (tmp_path / "run" / "seed_1" / "best.safetensors").exists() and not (tmp_path / "run" / "seed_1" / "last.pt").exists()


def test_nonfinite_valid_predictions_stop_the_run_before_any_file(tiny_ds, tmp_path, fast):
    """A huge SGD step leaves finite (1e38-sized) weights whose predictions overflow: nothing is scored or saved."""
    from msa_toolkit.training.api import train
    from msa_toolkit.training.metrics import NonFiniteError

    over = {**fast, "trainer.epochs": 1, "trainer.optimizer": "sgd", "trainer.lr": 3.0e38, "trainer.scheduler": "none",
            "trainer.limit_train_batches": 1, "trainer.grad_clip_norm": 0, "trainer.grad_clip_value": 0}
    with pytest.raises(NonFiniteError, match="epoch 1, split 'valid': .* predictions are NaN/inf"):
        train("late_fusion", tiny_ds, tmp_path / "run", preset="tiny", overrides=over)
    assert not (tmp_path / "run" / "seed_1" / "best.safetensors").exists() and not (tmp_path / "run" / "seed_1" / "last.pt").exists()
    assert not (tmp_path / "run" / "seed_1" / "metrics.json").exists()


def test_save_checkpoint_refuses_nonfinite_weights(tmp_path):
    import torch

    from msa_toolkit.data.synthetic import synthetic_spec
    from msa_toolkit.errors import CheckpointError
    from msa_toolkit.models import create_model
    from msa_toolkit.training.checkpoint import save_checkpoint

    model = create_model("late_fusion", "tiny", text_dim=8, audio_dim=4, vision_dim=4)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(CheckpointError, match="hold NaN/inf"):
        save_checkpoint(tmp_path / "m.safetensors", model, synthetic_spec((8, 4, 4)))
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("metric_set", ["standard", "sims"])
def test_metrics_refuse_nonfinite_predictions(metric_set):
    from msa_toolkit.training.metrics import NonFiniteError, compute_metrics

    with pytest.raises(NonFiniteError, match="1 of 3 predictions are NaN/inf"):
        compute_metrics([np.nan, 0.5, -0.5], [0.5, 0.5, -0.5], metric_set)
    with pytest.raises(NonFiniteError, match="labels"):
        compute_metrics([0.1, 0.5, -0.5], [np.inf, 0.5, -0.5], metric_set)


def test_mmsa_names_mapping():
    from msa_toolkit.training.metrics import compute_metrics, mmsa_names

    m = mmsa_names(compute_metrics([0.5, -1, 2], [1, -2, 0], "standard"))
    assert {"Has0_acc_2", "Non0_acc_2", "Has0_F1_score", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE",
            "Corr"} <= set(m)
    s = mmsa_names(compute_metrics([0.5, -0.1, 0.2], [0.4, -0.2, 0.0], "sims"))
    assert {"Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"} == set(s)
