"""Multi-task models (MMSA's MTFN, ...) on CH-SIMS-layout data: unimodal labels in the Batch, the up-front
refusal of a dataset without them, and the unimodal metrics (toolkit and MMSA names)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from msa_toolkit.data.collate import collate_samples
from msa_toolkit.data.mmsa import import_mmsa
from msa_toolkit.errors import MSAError
from msa_toolkit.models import get_entry, list_models
from msa_toolkit.training.metrics import higher_is_better, is_better, mmsa_names, score, score_unimodal
from tests.data.test_mmsa import _make_pickle

TINY = ("trainer.epochs=2", "trainer.device=cpu", "trainer.batch_size=4", "trainer.num_workers=0")
#: every registered multi-task model (``needs_unimodal_labels``)
MULTITASK = [m for m in list_models() if get_entry(m).builder.needs_unimodal_labels]


def _imported(tmp_path_factory, sims: bool):
    """A tiny MMSA pickle made here (CH-SIMS layout with regression_labels_T/A/V when ``sims``), imported."""
    d = tmp_path_factory.mktemp("sims" if sims else "plain")
    _make_pickle(d / "data.pkl", L=(6, 8, 5), dims=(16, 5, 7), aligned=False, sims=sims)
    return import_mmsa(d / "data.pkl", d / "ds")[0]


@pytest.fixture(scope="module")
def sims_dataset(tmp_path_factory):
    return _imported(tmp_path_factory, sims=True)


@pytest.fixture(scope="module")
def plain_dataset(tmp_path_factory):
    return _imported(tmp_path_factory, sims=False)


def test_batches_carry_the_unimodal_labels_of_the_dataset(sims_dataset, plain_dataset):
    samples = list(sims_dataset.split("train"))
    b = collate_samples(samples, sims_dataset.spec.dims)
    for t in "TAV":
        want = torch.tensor([getattr(s, f"label_{t}") for s in samples], dtype=torch.float32)
        assert torch.equal(b.unimodal_label(t), want)
        assert want.abs().max() <= 1 and want.std() > 0
    plain = collate_samples(list(plain_dataset.split("train")), plain_dataset.spec.dims)
    assert all(plain.unimodal_label(t) is None for t in "TAV")
    # a batch where one sample lacks the label has none (never a partly filled tensor)
    samples[1].label_A = None
    part = collate_samples(samples, sims_dataset.spec.dims)
    assert part.label_A is None and part.label_T is not None


@pytest.mark.parametrize("name", MULTITASK)
def test_multitask_model_reports_unimodal_metrics_under_both_names(name, sims_dataset, tmp_path, capsys):
    from msa_toolkit import train

    res = train(name, sims_dataset.path, tmp_path / "run", preset="tiny",
                overrides=[*TINY, "trainer.mmsa_names=true"], seeds=[0], progress=True)
    test = res.runs[0].test
    for t in "TAV":
        for m in ("mae", "acc2_has0", "acc7", "corr"):
            assert f"{m}_{t}" in test, sorted(test)
    files = json.loads((tmp_path / "run" / "seed_0" / "metrics.json").read_text())
    assert files["test"]["mae_T"] == pytest.approx(test["mae_T"])  # the files keep the toolkit's names
    # the unimodal MAE is the text head's error against label_T, not against the multimodal label
    from msa_toolkit.data.module import DataModule
    from msa_toolkit.training.checkpoint import load_checkpoint

    model = load_checkpoint(tmp_path / "run" / "seed_0" / "best.safetensors").model
    preds, labels = [], []
    with torch.no_grad():
        for b in DataModule(sims_dataset, batch_size=64).loader("test"):
            preds.append(model(b).aux["prediction_T"])
            labels.append(b.label_T)
    want = float((torch.cat(preds) - torch.cat(labels)).abs().mean())
    assert test["mae_T"] == pytest.approx(want, abs=1e-5)
    err = capsys.readouterr().err
    assert "MAE_T" in err and "Has0_acc_2_V" in err and "mae_T" not in err


def test_the_multitask_models_are_registered():
    assert {"mtfn", "mlmf", "mlf_dnn"} <= set(MULTITASK)


@pytest.mark.parametrize("name", MULTITASK)
def test_a_dataset_without_unimodal_labels_gets_one_clear_error(name, plain_dataset, tmp_path):
    from msa_toolkit import train

    with pytest.raises(MSAError) as e:
        train(name, plain_dataset.path, tmp_path / "run", preset="tiny", overrides=TINY, seeds=[0])
    msg = str(e.value)
    assert name in msg and str(plain_dataset.path) in msg and "label_T, label_A, label_V" in msg
    assert "train: label_T, label_A, label_V" in msg
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_unimodal_metric_names():
    m = score_unimodal(score([0.5, -1, 2], [1, -2, 0]), {"T": ([0.1, 0.2, -0.3], [0.5, -0.5, 0.0])}, "standard")
    assert m["mae_T"] == pytest.approx(np.mean([0.4, 0.7, 0.3]))
    named = mmsa_names(m)
    assert named["MAE_T"] == m["mae_T"] and named["Non0_acc_2_T"] == m["acc2_non0_T"] and named["MAE"] == m["mae"]
    sims = mmsa_names(score_unimodal(score([0.5, -0.1], [0.4, -0.2], "sims"), {"V": ([0.1, 0.2], [0.3, 0.1])},
                                     "sims"))
    assert {"Mult_acc_2_V", "F1_score_V", "MAE_V"} <= set(sims)


def test_unimodal_metrics_keep_their_direction():
    assert higher_is_better("acc2_has0_T") and higher_is_better("corr_V") and not higher_is_better("mae_A")
    assert is_better("acc7_T", 0.5, 0.4) and is_better("mae_T", 0.4, 0.5) and not is_better("mae_T", 0.5, 0.4)
