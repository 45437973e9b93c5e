import json

import numpy as np
import pytest
import torch

from msa_toolkit.data.module import DataModule
from msa_toolkit.errors import MSAError
from msa_toolkit.models import create_model
from msa_toolkit.training.api import train
from msa_toolkit.training.plan import resolve_run_config
from msa_toolkit.training.checkpoint import load_checkpoint
from msa_toolkit.training.trainer import TrainConfig, Trainer, build_scheduler



def _trainer(ds, tmp_path=None, model="late_fusion", seed=1, callbacks=(), model_over=None, **tc):
    cfg = TrainConfig(progress=False, plots=False, device="cpu", seed=seed, **tc)
    torch.manual_seed(seed)
    dm = DataModule(ds, batch_size=cfg.batch_size or 16, seed=seed)
    net = create_model(model, "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6, audio_len=8,
                       vision_len=8, **(model_over or {}))
    return Trainer(net, dm, cfg, tmp_path, callbacks=callbacks)


def test_loss_goes_down_and_files_written(tiny_ds, tmp_path, fast):
    res = train("late_fusion", tiny_ds, tmp_path / "run", preset="tiny",
                overrides={**fast, "trainer.epochs": 12, "trainer.lr": 1e-2, "trainer.plots": True})
    run = res.runs[0]
    first, last = run.history[0]["train"]["total"], run.history[-1]["train"]["total"]
    assert last < 0.85 * first, (first, last)
    assert set(run.history[0]["train"]) == {"prediction_l1", "total"}
    # one layout whatever the seed count (docs/formats.md): the run in OUT/seed_<s>/, the summary in OUT
    top, out = tmp_path / "run", tmp_path / "run" / "seed_1"
    assert run.run_dir == out and res.checkpoint == out / "best.safetensors"
    for f in ("config.yaml", "summary.json", "summary.csv"):
        assert (top / f).is_file(), f
    for f in ("best.safetensors", "last.pt", "log.jsonl", "metrics.json", "config.yaml", "predictions_test.csv",
              "fingerprint.json", "loss_curves.png", "scatter_test.png", "confusion_acc7.png"):
        assert (out / f).is_file(), f
        assert not (top / f).exists() or f == "config.yaml", f
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 13))
    assert "mae" in lines[0]["valid"] and "prediction_l1" in lines[0]["train"]
    ck = load_checkpoint(out / "best.safetensors")
    assert ck.metrics["test"]["mae"] == pytest.approx(run.test["mae"])
    assert ck.extra["epoch"] == run.best_epoch
    assert set(ck.extra["normalization"]) == {"text", "audio", "vision"}
    # the checkpoint holds the best epoch's weights: its valid MAE is the best one logged
    assert run.valid["mae"] == min(r["valid"]["mae"] for r in lines)


def test_early_stopping(tiny_ds):
    # lr = 0: nothing improves after epoch 1, so patience 2 stops after epoch 3
    res = _trainer(tiny_ds, epochs=20, lr=0.0, patience=2).fit()
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1
    res = _trainer(tiny_ds, epochs=3, lr=0.0, patience=0).fit()
    assert not res.stopped_early and len(res.history) == 3


class _Interrupt(Exception):
    pass


def _stop_after(n):
    def cb(trainer, record):
        if record["epoch"] == n:
            raise _Interrupt()
    return cb


def test_resume_matches_uninterrupted_run(tiny_ds, tmp_path):
    # dropout (global RNG), shuffling (loader generator) and a cosine schedule must all be restored
    kw = dict(epochs=4, scheduler="cosine", warmup_ratio=0.2, model_over={"dropout": 0.3})
    full = _trainer(tiny_ds, tmp_path / "full", **kw).fit()
    with pytest.raises(_Interrupt):
        _trainer(tiny_ds, tmp_path / "cut", callbacks=[_stop_after(2)], **kw).fit()
    with pytest.raises(MSAError, match="already holds a run"):
        _trainer(tiny_ds, tmp_path / "cut", **kw).fit()
    t = _trainer(tiny_ds, tmp_path / "cut", **kw)
    resumed = t.fit(resume=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(full.history, resumed.history):
        assert a["train"] == b["train"] and a["valid"] == b["valid"]
    assert full.test == resumed.test
    a = load_checkpoint(tmp_path / "full" / "best.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "cut" / "best.safetensors").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len((tmp_path / "cut" / "log.jsonl").read_text().splitlines()) == 4
    # resuming a finished run returns its result without training
    again = _trainer(tiny_ds, tmp_path / "cut", **kw).fit(resume=True)
    assert again.test == resumed.test


def test_same_seed_same_metrics_other_seed_differs(tiny_ds, tmp_path, fast):
    over = {**fast, "trainer.epochs": 2}
    a = train("late_fusion", tiny_ds, tmp_path / "a", preset="tiny", overrides=over, seeds=(3,))
    b = train("late_fusion", tiny_ds, tmp_path / "b", preset="tiny", overrides=over, seeds=(3,))
    c = train("late_fusion", tiny_ds, tmp_path / "c", preset="tiny", overrides=over, seeds=(4,))
    assert a.runs[0].test == b.runs[0].test
    assert a.runs[0].test["mae"] != c.runs[0].test["mae"]


def test_multi_seed_summary(tiny_ds, tmp_path, fast):
    res = train("text_only", tiny_ds, tmp_path / "ms", preset="tiny", overrides={**fast, "trainer.epochs": 1},
                seeds=(1, 2))
    assert [r.run_dir.name for r in res.runs] == ["seed_1", "seed_2"]
    s = res.summary["test"]["mae"]
    vals = [r.test["mae"] for r in res.runs]
    assert s["mean"] == pytest.approx(np.mean(vals)) and s["std"] == pytest.approx(np.std(vals, ddof=1))
    doc = json.loads((tmp_path / "ms" / "summary.json").read_text())
    assert doc["summary"]["test"]["mae"]["values"] == pytest.approx(vals)
    csv = (tmp_path / "ms" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("model,split,metric,mean,std") and any(",test,mae," in l for l in csv)


def test_single_seed_summary_states_no_spread(tiny_ds, tmp_path, fast, capsys):
    res = train("text_only", tiny_ds, tmp_path / "one", preset="tiny",
                overrides={**fast, "trainer.epochs": 1, "trainer.progress": True}, seeds=(5,))
    s = res.summary["test"]["mae"]
    assert s["std"] is None and s["n"] == 1 and s["mean"] == pytest.approx(res.runs[0].test["mae"])
    doc = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert doc["summary"]["test"]["mae"]["std"] is None and doc["summary"]["test"]["mae"]["n"] == 1
    import csv as _csv
    rows = list(_csv.DictReader((tmp_path / "one" / "summary.csv").open()))
    assert rows and all(r["std"] == "" and r["n_seeds"] == "1" for r in rows)
    err = " ".join(capsys.readouterr().err.split())  # the table's title wraps
    assert "one seed: no spread" in err and "± 0.0000" not in err


def test_summary_counts_only_finite_values():
    from types import SimpleNamespace

    from msa_toolkit.training.api import summarize

    runs = [SimpleNamespace(valid={"mae": v}, test={"mae": v}, best_test={}) for v in (1.0, float("nan"), 2.0)]
    s = summarize(runs)["test"]["mae"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(1.5) and s["std"] == pytest.approx(np.std([1, 2], ddof=1))
    one = summarize(runs[:2])["test"]["mae"]
    assert one["n"] == 1 and one["std"] is None


def test_grad_accumulation_equals_bigger_batch(tiny_ds):
    # 2 x 8 accumulated == 1 x 16 (same shuffled order, no dropout, mean L1 over equal halves);
    # plain shuffling: length buckets would group the samples differently for the two batch sizes
    over = {"dropout": 0.0}
    a = _trainer(tiny_ds, epochs=2, batch_size=16, model_over=over, bucket_by_length=False).fit()
    b = _trainer(tiny_ds, epochs=2, batch_size=8, grad_accum=2, model_over=over, bucket_by_length=False).fit()
    assert a.history[-1]["step"] == b.history[-1]["step"] == 6
    assert a.test["mae"] == pytest.approx(b.test["mae"], abs=1e-5)


def test_grad_norm_clipping_and_after_step_hook(tiny_ds):
    t = _trainer(tiny_ds, epochs=1, optimizer="sgd", lr=1.0, grad_clip_norm=1e-6, limit_train_batches=1)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    calls = []
    t.model.objective.after_step = lambda model: calls.append(model)
    t.valid_split = None  # isolate the single step
    t.test_split = None
    t.fit()
    delta = torch.sqrt(sum(((t.model.state_dict()[k] - v).float() ** 2).sum() for k, v in before.items()))
    assert 0 < float(delta) <= 1.01e-6
    assert calls == [t.model]


def test_cosine_schedule_shape():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    model = torch.nn.Linear(1, 1)
    sched, when = build_scheduler(opt, model, TrainConfig(scheduler="cosine", warmup_ratio=0.2), 10, "min")
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert when == "step"
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0) and lrs[2] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.1


def test_config_resolution(tmp_path):
    (tmp_path / "c.yaml").write_text("trainer:\n  epochs: 5\n  lr: 1.0e-3\nmodel:\n  name: tfn\n  dropout: 0.3\n")
    tc, model, meta = resolve_run_config(tmp_path / "c.yaml", ["trainer.epochs=7", "model.hidden=4", "patience=2",
                                                                 "trainer.lr=2e-4", "trainer.max_lengths={text: 9}"])
    assert tc.epochs == 7 and tc.patience == 2 and tc.lr == pytest.approx(2e-4)
    assert tc.max_lengths == {"text": 9}
    assert model == {"dropout": 0.3, "hidden": 4} and meta == {"name": "tfn"}
    with pytest.raises(MSAError, match="unknown trainer setting"):
        resolve_run_config({"trainer": {"epoch": 3}})
    with pytest.raises(MSAError, match="cannot use"):
        resolve_run_config(None, ["trainer.epochs=abc"])
    with pytest.raises(MSAError, match="key=value"):
        resolve_run_config(None, ["epochs"])
    with pytest.raises(MSAError, match="no config field"):
        train("late_fusion", tmp_path, tmp_path / "r", overrides=["model.nope=1"])


def test_resolved_config_round_trips(tiny_ds, tmp_path, fast):
    train("text_only", tiny_ds, tmp_path / "r", preset="tiny", overrides={**fast, "trainer.epochs": 1,
                                                                          "model.hidden": 6})
    tc, model, meta = resolve_run_config(tmp_path / "r" / "config.yaml")
    assert tc.epochs == 1 and model == {"hidden": 6} and meta == {"name": "text_only", "preset": "tiny", "seeds": [1],
                                                                    "recipe": "toolkit"}


def test_non_tensor_extra_state_survives_resume_and_is_skipped_in_checkpoints(tiny_ds, tmp_path):
    from msa_toolkit.models import RegressionObjective

    class CountingObjective(RegressionObjective):
        """Objective with Python-side state (like a replay buffer) exposed via get_extra_state."""

        def __init__(self):
            super().__init__("l1")
            self.seen = 0

        def forward(self, output, batch):
            if self.training:
                self.seen += batch.size
            return super().forward(output, batch)

        def get_extra_state(self):
            return {"seen": self.seen}

        def set_extra_state(self, state):
            self.seen = state["seen"]

    def make(out, cbs=()):
        t = _trainer(tiny_ds, out, epochs=3, callbacks=cbs)
        t.model.set_objective(CountingObjective())
        return t

    with pytest.raises(_Interrupt):
        make(tmp_path / "r", [_stop_after(1)]).fit()
    t = make(tmp_path / "r")
    t.fit(resume=True)
    assert t.model.objective.seen == 3 * 48  # 48 from before the interruption + 2 epochs after it
    load_checkpoint(tmp_path / "r" / "best.safetensors")  # weights load despite the missing extra state


def test_run_files_get_the_usual_mode_under_umask_022(tiny_ds, tmp_path, fast):
    import os
    import stat

    old = os.umask(0o022)
    try:
        train("late_fusion", tiny_ds, tmp_path / "run", preset="tiny", overrides={**fast, "trainer.epochs": 2})
    finally:
        os.umask(old)
    top, out = tmp_path / "run", tmp_path / "run" / "seed_1"
    for f in ("config.yaml", "summary.json", "summary.csv"):
        assert stat.S_IMODE((top / f).stat().st_mode) == 0o644, f
    for f in ("best.safetensors", "last.pt", "config.yaml", "metrics.json", "log.jsonl", "predictions_test.csv"):
        assert stat.S_IMODE((out / f).stat().st_mode) == 0o644, f
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}


def test_drop_last_with_a_batch_larger_than_the_train_split_names_the_cause(tiny_ds, tmp_path, fast):
    # MMCL's reference recipe (batch 128, drop_last) on a small train split: not "the training split is empty"
    over = {**fast, "trainer.epochs": 1, "trainer.batch_size": 64, "trainer.drop_last": True}
    with pytest.raises(MSAError, match=r"48 training samples fill no batch of 64.*trainer.batch_size=N with N <= 48"):
        train("text_only", tiny_ds, tmp_path / "dl", preset="tiny", overrides=over)


def test_repeated_seed_is_refused_before_training(tiny_ds, tmp_path, fast):
    with pytest.raises(MSAError, match=r"each seed once, got \[1, 2, 1\]"):
        train("text_only", tiny_ds, tmp_path / "dup", preset="tiny", overrides=fast, seeds=(1, 2, 1))
    assert not (tmp_path / "dup").exists()


def test_the_run_sets_its_threads_once_and_the_model_never_changes_them(tiny_ds, tmp_path):
    """``trainer.threads`` (``msa train --threads``) is applied when the trainer starts; every training step and
    evaluation then runs on that count (no per-model or per-batch thread rule)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tr = _trainer(tiny_ds, tmp_path, model="dlf", epochs=1, threads=2)
        assert torch.get_num_threads() == 2
        seen = []
        tr.model.fusion_head.register_forward_hook(lambda *a: seen.append((tr.model.training, torch.get_num_threads())))
        tr.fit()
        assert {training for training, _ in seen} == {True, False}  # training steps and evaluations
        assert {threads for _, threads in seen} == {2}
    finally:
        torch.set_num_threads(before)


def test_a_monitor_the_labels_leave_undefined_is_refused(tiny_ds, tmp_path, monkeypatch):
    """Issue 31: a metric undefined on a split (no non-zero labels for non-0 Acc-2) was printed as 0.0000 and
    could be monitored; now the run stops at once, saying which metric and why."""
    import msa_toolkit.training.trainer as trainer_mod
    from msa_toolkit.training.metrics import Metrics

    real = trainer_mod.score

    def no_nonzero_labels(pred, true, metric_set="standard"):
        m = real(pred, true, metric_set)
        return Metrics({**m, "acc2_non0": float("nan")}, {**m.undefined, "acc2_non0": "no non-zero labels"})

    monkeypatch.setattr(trainer_mod, "score", no_nonzero_labels)
    tr = _trainer(tiny_ds, tmp_path, epochs=2, monitor="acc2_non0")
    with pytest.raises(MSAError, match=r"monitor 'acc2_non0' is undefined on split 'valid' \(no non-zero labels\)"):
        tr.fit()


def test_an_epoch_with_an_undefined_monitor_is_never_the_best_and_undefined_is_null(tiny_ds, tmp_path, monkeypatch,
                                                                                   capsys):
    import msa_toolkit.training.trainer as trainer_mod
    from msa_toolkit.training.metrics import Metrics

    real, calls = trainer_mod.score, []

    def constant_first(pred, true, metric_set="standard"):
        m = real(pred, true, metric_set)
        calls.append(1)
        if len(calls) == 1:  # epoch 1's validation: constant predictions
            return Metrics({**m, "corr": float("nan")}, {**m.undefined, "corr": "constant predictions"})
        return m

    monkeypatch.setattr(trainer_mod, "score", constant_first)
    import warnings

    from msa_toolkit.errors import RunNotice

    tr = _trainer(tiny_ds, tmp_path, epochs=2, monitor="corr", patience=0)
    tr.reporter.main = True
    with warnings.catch_warnings(record=True) as caught:  # without progress output a notice is a RunNotice
        warnings.simplefilter("always", RunNotice)
        res = tr.fit()
    assert res.best_epoch == 2  # epoch 1 had no corr: it could not be chosen, even with a better loss
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[0]["valid"]["corr"] is None and log[0]["valid_undefined"] == {"corr": "constant predictions"}
    assert any("corr is undefined (constant predictions)" in str(w.message) for w in caught)
