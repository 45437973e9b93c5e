"""Reference recipes and the generic trainer features they need: epoch-level warm-up + cosine,
roll-back to the best weights on a plateau, selection direction / tie rule, labelled best-test figures."""

import json
import math

import pytest
import torch
import yaml
from typer.testing import CliRunner

from msa_toolkit.cli.main import app, main
from msa_toolkit.data.module import BucketBatchSampler, DataModule
from msa_toolkit.models import create_model
from msa_toolkit.training.recipes import RECIPES, TOOLKIT_RECIPE, get_recipe
from msa_toolkit.training import selection as S
from msa_toolkit.training.config import TrainConfig
from msa_toolkit.training.optim import build_scheduler, resolve_precision
from msa_toolkit.training.trainer import Trainer

runner = CliRunner()


def _trainer(ds, tmp_path=None, callbacks=(), **tc):
    cfg = TrainConfig(progress=False, plots=False, device="cpu", seed=1, **tc)
    torch.manual_seed(1)
    dm = DataModule(ds, batch_size=16, seed=1)
    net = create_model("late_fusion", "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6, audio_len=8,
                       vision_len=8)
    return Trainer(net, dm, cfg, tmp_path, callbacks=callbacks)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_epoch_cosine_factor_and_scheduler():
    assert [S.epoch_cosine_factor(e, 4, 6) for e in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert S.epoch_cosine_factor(4, 4, 6) == 1.0
    assert S.epoch_cosine_factor(7, 4, 6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert S.epoch_cosine_factor(99, 4, 6) == pytest.approx(0.0)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    tc = TrainConfig(scheduler="epoch_cosine", warmup_epochs=2, cosine_epochs=3, epochs=5)
    sched, when = build_scheduler(opt, torch.nn.Linear(1, 1), tc, 1000, "min")
    assert when == "epoch"
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(0.123)  # the trainer passes the monitored value; an epoch schedule ignores it
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.25])


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_epoch_cosine_peak_hold_follows_almts_warmup_wrapper():
    """ALMT's GradualWarmupScheduler (n_epochs 20: warm-up 2, cosine T_max 18) trains epochs 1-6 at
    0, 1/2, 1, 1, (1 + cos(pi/18))/2, (1 + cos(2 pi/18))/2 of the LR: the peak is held one epoch."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    tc = TrainConfig(scheduler="epoch_cosine", warmup_epochs=2, cosine_epochs=18, peak_hold_epochs=1, epochs=20)
    sched, _ = build_scheduler(opt, torch.nn.Linear(1, 1), tc, 1000, "min")
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(0.0)
    cos = [0.5 * (1 + math.cos(math.pi * k / 18)) for k in (1, 2)]
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 1.0, *cos], abs=1e-15)
    assert S.epoch_cosine_factor(6, 4, 6, hold_epochs=2) == 1.0
    assert S.epoch_cosine_factor(7, 4, 6, hold_epochs=2) == S.epoch_cosine_factor(5, 4, 6)
    assert get_recipe("almt", "reference").trainer["peak_hold_epochs"] == 1


def test_trainer_steps_the_epoch_schedule_once_per_epoch(tiny_ds):
    res = _trainer(tiny_ds, epochs=5, lr=0.01, scheduler="epoch_cosine", warmup_epochs=2, cosine_epochs=3,
                   patience=0).fit()
    assert [r["lr"] for r in res.history] == pytest.approx([0.0, 0.005, 0.01, 0.0075, 0.0025])


def test_improved_direction_and_ties():
    assert S.resolve_mode("acc2_non0") == "max" and S.resolve_mode("mae") == "min"
    assert S.resolve_mode("loss") == "min" and S.resolve_mode("mae", "max") == "max"
    assert S.improved(0.5, None, "max") and not S.improved(float("nan"), None, "max")
    assert not S.improved(0.5, 0.5, "max") and S.improved(0.5, 0.5, "max", ties=True)
    assert S.improved(0.4, 0.5, "min") and not S.improved(0.6, 0.5, "min", ties=True)
    assert not S.improved(0.5 - 1e-7, 0.5, "min", min_delta=1e-6)


def test_roll_back_restores_weights_and_optimizer_state_then_scales_lr():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def step():
        net(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    step()
    best = {k: v.detach().clone() for k, v in net.state_dict().items()}
    snap = S.snapshot_optimizer(opt)
    exp_avg = opt.state[net.weight]["exp_avg"].clone()
    for _ in range(3):
        step()
    opt.param_groups[0]["lr"] = 7e-3  # e.g. a schedule moved it; the roll-back halves the best epoch's LR
    lrs = S.roll_back(net, opt, best, snap, 0.5)
    assert lrs == [pytest.approx(5e-3)]
    for k, v in net.state_dict().items():
        assert torch.equal(v, best[k])
    assert torch.equal(opt.state[net.weight]["exp_avg"], exp_avg)
    assert S.should_roll_back(3, 3) and not S.should_roll_back(2, 3) and not S.should_roll_back(9, 0)


def test_trainer_rolls_back_on_plateau_then_stops(tiny_ds):
    seen = {}

    def perturb(trainer, record):
        params = dict(trainer.model.named_parameters())
        if record["epoch"] == 1:
            seen["best"] = {k: v.detach().clone() for k, v in params.items()}
        if "rollback" in record:  # the weights are the best epoch's again
            seen.setdefault("rolled_back_at", []).append(record["epoch"])
            assert all(torch.equal(params[k].detach(), v) for k, v in seen["best"].items())
        elif record["epoch"] <= 2:  # make epochs 2 and 3 worse than epoch 1
            with torch.no_grad():
                for p in params.values():
                    p.add_(torch.randn_like(p) * 5)

    # lr 0: only the perturbations change the weights
    res = _trainer(tiny_ds, epochs=20, lr=0.0, patience=0, rollback_patience=2, rollback_factor=0.5,
                   rollback_limit=1, callbacks=[perturb]).fit()
    assert seen["rolled_back_at"] == [3, 5] and res.best_epoch == 1
    # after the roll-back (epoch 3) epochs 4 and 5 equal epoch 1 (no improvement): the second plateau stops
    assert res.stopped_early and len(res.history) == 5
    assert res.history[2]["rollback"] == {"to_epoch": 1, "lr": 0.0, "last": False}
    # the plateau after the last roll-back also returns to the best weights (as MInD's code), then stops
    assert res.history[4]["rollback"] == {"to_epoch": 1, "lr": 0.0, "last": True}
    # with the >= tie rule equal epochs count as improvements: no plateau, no roll-back
    res = _trainer(tiny_ds, epochs=4, lr=0.0, patience=0, rollback_patience=1, monitor_ties=True).fit()
    assert not res.stopped_early and res.best_epoch == 4 and not any("rollback" in r for r in res.history)


def test_best_test_figures_are_labelled():
    hist = [{"epoch": e, "test": {"mae": m, "acc2_non0": a}}
            for e, m, a in [(1, 0.9, 0.70), (2, 0.8, 0.75), (3, 0.85, 0.75), (4, 0.95, 0.72)]]
    out = S.best_test_figures(hist, "acc2_non0", ties=True)
    best = out[S.BEST_TEST_KEY]
    assert best["epoch"] == 3 and best["metrics"]["mae"] == 0.85 and "TEST split" in best["protocol"]
    assert S.best_test_figures(hist, "acc2_non0")[S.BEST_TEST_KEY]["epoch"] == 2
    assert S.best_test_figures(hist, "mae")[S.BEST_TEST_KEY]["epoch"] == 2
    per = out[S.BEST_PER_METRIC_KEY]
    assert per["metrics"] == {"mae": 0.8, "acc2_non0": 0.75} and per["epochs"]["mae"] == 2
    assert S.best_test_figures([{"epoch": 1, "valid": {}}], "mae") == {}


def test_recipe_data():
    assert set(RECIPES) >= {"dlf", "almt", "mmcl", "mind", "lmf", "lf_dnn", "mfn", "ef_lstm", "mctn", "mfm", "cenet",
                            "tetfn", "graph_mfn", "mtfn", "mlmf", "mlf_dnn", "tfr_net", "self_mm", "misa", "mmim", "mag_bert"}
    for model, recipes in RECIPES.items():
        rec = recipes["reference"]
        TrainConfig.from_dict(rec.trainer)  # every setting is a valid TrainConfig field
        assert rec.source and rec.notes and rec.seeds
    assert get_recipe("text_only") is TOOLKIT_RECIPE
    assert get_recipe("text_only", "reference", strict=False) is TOOLKIT_RECIPE
    with pytest.raises(KeyError, match="exists for almt"):
        get_recipe("text_only", "reference")
    assert RECIPES["almt"]["reference"].trainer["warmup_epochs"] == 20


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_reference_recipes_shuffle_uniformly_without_length_buckets(tiny_ds, name):
    cfg = TrainConfig.from_dict(dict(RECIPES[name]["reference"].trainer))
    assert cfg.bucket_by_length is False
    tr = _trainer(tiny_ds, bucket_by_length=cfg.bucket_by_length)
    loader = tr.data.train_loader(**tr._loader_options())
    assert not isinstance(loader.batch_sampler, BucketBatchSampler)
    # the toolkit recipe keeps bucketing (the default) on
    tr = _trainer(tiny_ds)
    assert isinstance(tr.data.train_loader(**tr._loader_options()).batch_sampler, BucketBatchSampler)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_reference_recipes_train_in_fp32(name):
    cfg = TrainConfig.from_dict(dict(RECIPES[name]["reference"].trainer))
    assert cfg.precision == "fp32"
    assert resolve_precision(cfg.precision, torch.device("cuda")) is None  # no autocast, even on CUDA
    assert TrainConfig().precision == "auto"  # the toolkit recipe keeps bf16 autocast on CUDA


def rec_drops_partial(name: str) -> bool:
    return bool(RECIPES[name]["reference"].trainer.get("drop_partial_accum"))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_cli_train_reference_recipe(request, tmp_path, name):
    from msa_toolkit.models import get_entry

    multitask = getattr(get_entry(name).builder, "needs_unimodal_labels", False)
    tiny_ds = request.getfixturevalue("tiny_mt_ds" if multitask else "tiny_ds")
    run = tmp_path / name
    r = runner.invoke(app, ["train", "--model", name, "--preset", "tiny", "--recipe", "reference", "--data",
                            str(tiny_ds), "-o", str(run), "--device", "cpu", "--epochs", "2", "--seeds", "1",
                            "--set", "trainer.batch_size=8", "--set", "trainer.limit_train_batches=2",
                            "--set", "trainer.plots=false", "-q", "--allow-frozen-text"]
                      # one step of the 2 batches where a reference drops a partial accumulation
                      + (["--set", "trainer.grad_accum=2"] if rec_drops_partial(name) else []))
    assert r.exit_code == 0, (r.output, r.exception)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    rec = RECIPES[name]["reference"]
    frozen = json.loads((run / "seed_1" / "metrics.json").read_text()).get("frozen_text")
    assert cfg["recipe"].get("frozen_text") is frozen is (True if rec.fine_tunes_text else None)
    assert cfg["recipe"]["name"] == "reference" and cfg["recipe"]["source"] == rec.source
    for k, v in rec.trainer.items():
        if k not in ("epochs", "batch_size", "grad_accum"):  # the command line overrides these
            assert cfg["trainer"][k] == v, k
    for k, v in rec.model.items():  # model settings of the recipe reach the built model
        assert cfg["model"]["resolved"][k] == v, k
    metrics = json.loads((run / "seed_1" / "metrics.json").read_text())
    if rec.trainer.get("test_every_epoch"):
        assert "TEST split" in metrics[S.BEST_TEST_KEY]["protocol"]
        assert metrics[S.BEST_TEST_KEY]["metric"] == rec.trainer["test_select"]
    else:
        assert S.BEST_TEST_KEY not in metrics


def test_cli_unknown_recipe_is_one_line_error(tiny_ds, tmp_path):
    r = runner.invoke(app, ["train", "--model", "text_only", "--recipe", "reference", "--data", str(tiny_ds),
                            "-o", str(tmp_path / "x"), "--device", "cpu", "-q"])
    assert r.exit_code != 0 and "has no recipe 'reference'" in (r.output + str(r.exception))


def test_scheduler_none_on_the_command_line_means_no_schedule():
    """``--set trainer.scheduler=none`` was read as None, i.e. "use the model config's schedule" (e.g.
    DLF's plateau): the user asked for no schedule and silently got one."""
    net = torch.nn.Linear(1, 1)
    net.config = type("Cfg", (), {"scheduler": "plateau"})()  # a model whose own schedule is plateau
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for word in ("none", "None", "NONE"):
        tc = TrainConfig.from_dict({"scheduler": word})
        assert tc.scheduler == word
        assert build_scheduler(opt, net, tc, 100, "min") == (None, "none")
    for unset in ("null", None):  # the YAML word for "unset" still defers to the model config
        tc = TrainConfig.from_dict({"scheduler": unset})
        assert tc.scheduler is None
        sched, when = build_scheduler(opt, net, tc, 100, "min")
        assert isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) and when == "epoch"
    # other optional string fields keep reading "none" as unset
    assert TrainConfig.from_dict({"optimizer": "none"}).optimizer is None


def test_run_shorter_than_the_warm_up_warns(tiny_ds, tmp_path, capsys):
    """ALMT's reference recipe (20 warm-up epochs) run for 2 epochs says the LR stays far below its peak."""
    from msa_toolkit.training.api import train
    from msa_toolkit.training.optim import short_schedule_warning

    import warnings

    from msa_toolkit.errors import RunNotice

    over = {"trainer.epochs": 2, "trainer.progress": False, "trainer.plots": False, "trainer.device": "cpu"}
    with warnings.catch_warnings(record=True) as caught:  # without progress output a notice is a RunNotice
        warnings.simplefilter("always", RunNotice)
        train("almt", tiny_ds, tmp_path / "almt", preset="tiny", recipe="reference", overrides=over,
              allow_frozen_text=True)
    err = " ".join(" ".join(str(w.message) for w in caught if issubclass(w.category, RunNotice)).split())
    assert "trainer.epochs=2 ends inside the 20-epoch LR warm-up" in err and "at most 5% of trainer.lr" in err
    assert short_schedule_warning(TrainConfig(epochs=30, scheduler="epoch_cosine", warmup_epochs=20), None) is None
    assert short_schedule_warning(TrainConfig(epochs=2, scheduler="plateau", warmup_epochs=20), None) is None


def test_mind_roll_back_in_training_keeps_the_grl_step_counting(tiny_ds):
    steps = []

    def perturb(trainer, record):
        steps.append(int(trainer.model.objective.step))
        if record["epoch"] <= 2:  # epochs 2 and 3 worse than epoch 1: roll-back after epoch 3
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(torch.randn_like(p) * 5)

    tr = _trainer(tiny_ds, epochs=4, lr=0.0, patience=0, rollback_patience=2, rollback_limit=1,
                  callbacks=[perturb])
    torch.manual_seed(1)
    tr.model = create_model("mind", "tiny", text_dim=8, audio_dim=4, vision_dim=4, grl_warmup_steps=100)
    res = tr.fit()
    assert "rollback" in res.history[2]
    per_epoch = steps[0]
    assert per_epoch > 0 and steps == [per_epoch * (i + 1) for i in range(len(steps))]


@pytest.mark.parametrize("name", ["dlf", "almt", "mind", "cenet", "tetfn"])
def test_reference_recipe_that_fine_tunes_bert_refuses_to_start_without_a_text_encoder(tiny_ds, tmp_path, capsys, name):
    assert RECIPES[name]["reference"].fine_tunes_text
    run = tmp_path / name
    rc = main(["train", "--model", name, "--preset", "tiny", "--recipe", "reference", "--data", str(tiny_ds),
               "-o", str(run), "--device", "cpu", "--epochs", "1", "--seeds", "1", "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--set model.text_encoder=PATH" in lines[0] and "--allow-frozen-text" in lines[0]
    assert not run.exists()
    # the toolkit recipe and MMCL's reference (no BERT in the reference) need no encoder
    assert not RECIPES["mmcl"]["reference"].fine_tunes_text


def test_allow_frozen_text_records_the_deviation(tiny_ds, tmp_path):
    from msa_toolkit.training.api import train

    res = train("almt", tiny_ds, tmp_path / "run", preset="tiny", recipe="reference", seeds=[1],
                overrides=["trainer.epochs=1", "trainer.batch_size=8", "trainer.limit_train_batches=1",
                           "trainer.plots=false", "trainer.device=cpu"], allow_frozen_text=True)
    seed_dir = tmp_path / "run" / "seed_1"
    assert json.loads((seed_dir / "metrics.json").read_text())["frozen_text"] is True
    cfg = yaml.safe_load((seed_dir / "config.yaml").read_text())
    assert cfg["trainer"]["allow_frozen_text"] is True and cfg["recipe"]["frozen_text"] is True
    assert "fine-tunes BERT" in cfg["recipe"]["deviation"]


def test_reference_recipe_fine_tunes_a_tiny_bert_end_to_end(tmp_path):
    from transformers import BertConfig, BertModel

    from msa_toolkit.data.synthetic import make_synthetic_dataset

    bert = tmp_path / "bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=32)).save_pretrained(bert)
    data = tmp_path / "data"
    make_synthetic_dataset(data, n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0,
                           with_tokens=True, vocab_size=100)
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--model", "dlf", "--preset", "tiny", "--recipe", "reference", "--data",
                            str(data), "-o", str(run), "--device", "cpu", "--epochs", "1", "--seeds", "1",
                            "--set", f"model.text_encoder={bert}", "--set", "trainer.batch_size=8",
                            "--set", "trainer.grad_accum=2", "--set", "trainer.plots=false", "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    metrics = json.loads((run / "seed_1" / "metrics.json").read_text())
    assert "frozen_text" not in metrics and metrics["epochs_run"] == 1
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["resolved"]["text_encoder"] == str(bert) and "frozen_text" not in cfg["recipe"]


def test_test_every_epoch_scores_the_rolled_back_weights(tiny_ds):
    """MInD's code validates, rolls back, then tests: a roll-back epoch's test record is the best epoch's weights'."""
    def perturb(trainer, record):
        if record["epoch"] <= 2:  # epochs 2 and 3 train (lr 0) on perturbed weights: worse than epoch 1
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.add_(torch.randn_like(p) * 5)

    res = _trainer(tiny_ds, epochs=3, lr=0.0, patience=0, rollback_patience=2, rollback_limit=1,
                   test_every_epoch=True, callbacks=[perturb]).fit()
    first, rolled = res.history[0], res.history[2]
    assert "rollback" in rolled and rolled["valid"] != first["valid"]  # validated on the perturbed weights
    assert rolled["test"] == first["test"]  # tested on the restored ones
    assert res.history[1]["test"] != first["test"]


def _captured_batches_and_model(tiny_ds, **tc):
    """Train late_fusion (no dropout, SGD) for one epoch; the initial weights, the batches seen and the final model."""
    cfg = TrainConfig(progress=False, plots=False, device="cpu", seed=1, epochs=1, patience=0, optimizer="sgd",
                      lr=0.5, normalize=False, bucket_by_length=False, **tc)
    torch.manual_seed(1)
    net = create_model("late_fusion", "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6, audio_len=8,
                       vision_len=8, dropout=0.0)
    start = {k: v.detach().clone() for k, v in net.state_dict().items()}
    seen = []
    net.register_forward_pre_hook(lambda m, args: seen.append(args[0]) if m.training else None)
    Trainer(net, DataModule(tiny_ds, batch_size=16, seed=1), cfg, None).fit()
    return start, seen, net


def test_dlf_reference_accumulation_sums_clips_every_batch_and_drops_the_partial_step(tiny_ds):
    """DLF's update_epochs loop, written out: zero_grad at an accumulation's start, backward of each batch's loss,
    clip_grad_value_ of the running sum after every batch, step after every grad_accum-th batch; the trailing
    partial accumulation is discarded. 48 samples / batch 16 = 3 batches, grad_accum 2: one step, batch 3 dropped."""
    clip = 0.02
    start, seen, trained = _captured_batches_and_model(
        tiny_ds, grad_accum=2, grad_accum_sum=True, clip_each_backward=True, drop_partial_accum=True,
        grad_clip_value=clip)
    assert len(seen) == 3
    net = create_model("late_fusion", "tiny", text_dim=8, audio_dim=4, vision_dim=4, text_len=6, audio_len=8,
                       vision_len=8, dropout=0.0)
    net.load_state_dict(start)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    left, clipped = 2, False
    for batch in seen:
        if left == 2:
            opt.zero_grad()
        left -= 1
        net.objective(net(batch), batch).total.backward()
        clipped |= any(float(p.grad.abs().max()) > clip for p in net.parameters() if p.grad is not None)
        torch.nn.utils.clip_grad_value_(list(net.parameters()), clip)
        if not left:
            opt.step()
            left = 2
    assert clipped  # the clip acted on the running sum
    expected = net.state_dict()
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=1e-6, msg=k)
    # the default accumulation (mean, clip once before the step, step on the partial batch) trains differently
    _, _, default = _captured_batches_and_model(tiny_ds, grad_accum=2, grad_clip_value=clip)
    assert any(not torch.allclose(v, expected[k]) for k, v in default.state_dict().items())


def test_dlf_reference_recipe_uses_the_reference_accumulation():
    trainer = RECIPES["dlf"]["reference"].trainer
    assert trainer["grad_accum"] == 10 and trainer["grad_clip_value"] == 0.6
    assert trainer["grad_accum_sum"] and trainer["clip_each_backward"] and trainer["drop_partial_accum"]


def test_drop_partial_accum_refuses_a_run_without_a_step(tiny_ds):
    from msa_toolkit.errors import MSAError

    with pytest.raises(MSAError, match="no optimiser step"):
        _trainer(tiny_ds, epochs=1, grad_accum=5, drop_partial_accum=True).fit()
