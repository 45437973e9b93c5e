"""`msa tune` (issue 35): search spaces of every model, the test split withheld, a killed study resumed, two
processes on one SQLite study, pruning on a per-epoch curve, best_config.yaml through `msa train -c`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

optuna = pytest.importorskip("optuna")

from msa_toolkit.cli.main import app  # noqa: E402
from msa_toolkit.errors import MSAError  # noqa: E402
from msa_toolkit.models import get_entry, list_models  # noqa: E402
from msa_toolkit.space import Choice, Float, Int, param_from_yaml, read_space_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
#: a small space for tiny TFN trials (the registered one has widths up to 256: slow for a test)
SPACE = "model.lr: {low: 1.0e-3, high: 1.0e-2, log: true}\nmodel.post_fusion_dropout: {low: 0.0, high: 0.3}\n"
#: settings every test trial shares
COMMON = ["-m", "tfn", "-p", "tiny", "--device", "cpu", "--threads", "1", "--space-only", "--set",
          "trainer.batch_size=16"]


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("tune") / "ds"
    make_synthetic_dataset(path, n_train=32, n_valid=16, n_test=16, dims=(8, 4, 4), lengths=(4, 4, 4), seed=0)
    return path


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE)
    return path


def _study(out: Path, name: str | None = None):
    return optuna.load_study(study_name=name or out.resolve().name, storage=f"sqlite:///{(out / 'study.db').resolve()}")


def _states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# -- search spaces ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_search_space_whose_samples_build(name):
    """Each registered model declares its space; every key is a field of its config, and random samples build
    the model (sizes and constraints, on the meta device) with its tiny and mosi presets."""
    import dataclasses

    from msa_toolkit.models import resolve_config
    from msa_toolkit.models._registry import check_size
    from msa_toolkit.space import suggest

    entry = get_entry(name)
    assert entry.search_space, f"{name} has no search space"
    fields = {f.name for f in dataclasses.fields(entry.config_cls)}
    assert set(entry.search_space) <= fields
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        values = {k: suggest(trial, k, p) for k, p in entry.search_space.items()}
        assert all(entry.search_space[k].contains(v) for k, v in values.items())
        for preset in ("tiny", "mosi" if "mosi" in entry.presets else "sims"):  # multi-task models: SIMS only
            check_size(entry, resolve_config(name, preset, **values))
        study.tell(trial, 0.0)


def test_space_yaml_forms_and_errors(tmp_path):
    assert param_from_yaml("k", [32, 64]) == Choice(32, 64)
    assert param_from_yaml("k", {"low": 2, "high": 4}) == Int(2, 4)
    assert param_from_yaml("k", {"low": "1e-4", "high": 1.0e-2, "log": True}) == Float(1e-4, 1e-2, log=True)
    with pytest.raises(ValueError, match="'k'"):
        param_from_yaml("k", {"low": 0.0, "high": 1.0, "log": True})  # log needs low > 0
    f = tmp_path / "s.yaml"
    f.write_text("model.lr: {low: 1.0e-4, high: 1.0e-3, log: true}\nmodel.dropout: null\n")
    assert read_space_file(f) == {"model.lr": Float(1e-4, 1e-3, log=True), "model.dropout": None}
    f.write_text("lr: [1, 2]\n")
    with pytest.raises(MSAError, match="model.<field> or trainer.<field>"):
        read_space_file(f)


def test_study_space_file_narrows_set_fixes_and_trainer_settings_move():
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.tune import study_space

    tc = TrainConfig()
    base = study_space("tfn", tc, [])
    assert base["model.lr"] == Float(5e-4, 5e-3, log=True) and "model.text_out" in base
    narrowed = study_space("tfn", tc, [], {"model.lr": Float(1e-3, 2e-3), "model.text_out": None})
    assert narrowed["model.lr"] == Float(1e-3, 2e-3) and "model.text_out" not in narrowed
    # --set keys stay fixed; trainer.lr fixes the model's lr too (it overrides it)
    fixed = study_space("tfn", tc, ["model.batch_size", "trainer.lr"])
    assert "model.batch_size" not in fixed and "model.lr" not in fixed and "trainer.lr" not in fixed
    # a trainer lr set by a recipe or config is searched in the trainer, where it takes effect
    moved = study_space("tfn", tc.replace(lr=1e-3), [])
    assert "trainer.lr" in moved and "model.lr" not in moved
    assert set(study_space("tfn", tc, [], {"model.lr": Float(1e-3, 2e-3)}, space_only=True)) == {"model.lr"}
    with pytest.raises(MSAError, match="no field"):
        study_space("tfn", tc, [], {"model.nope": Choice(1, 2)})


# -- the test split -----------------------------------------------------------------------------------------------

def test_a_study_never_reads_the_test_split(tmp_path, space_file):
    """The test split's file is deleted: any read raises. The study still tunes; the trials' runs have no test
    figures; asking the study's dataset for test raises; --final-seeds (which scores test) then fails."""
    import shutil

    from msa_toolkit.data.native import load_dataset
    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.data.withheld import WithheldSplitError, without_test
    from msa_toolkit.errors import DatasetError

    path = tmp_path / "ds"
    make_synthetic_dataset(path, n_train=32, n_valid=16, n_test=16, dims=(8, 4, 4), lengths=(4, 4, 4), seed=0)
    full = load_dataset(path)
    (path / full.manifest["splits"]["test"]["file"]).unlink()
    with pytest.raises(DatasetError):
        _ = load_dataset(path).split("test")[0]
    view = without_test(path)
    assert "test" not in view.splits and "test" not in view
    with pytest.raises(WithheldSplitError):
        view.split("test")
    out = tmp_path / "study"
    _ok(runner.invoke(app, ["tune", *COMMON, "-d", str(path), "-o", str(out), "--trials", "2", "--epochs", "1",
                            "--space", str(space_file), "-q"]))
    study = _study(out)
    assert _states(study) == {"COMPLETE": 2}
    for t in study.trials:
        metrics = json.loads((Path(t.user_attrs["run_dir"]) / "seed_1" / "metrics.json").read_text())
        assert metrics["test"] == {} and metrics["valid"]
    assert (out / "best_config.yaml").is_file() and (out / "trials.csv").is_file()
    shutil.rmtree(out)
    r = runner.invoke(app, ["tune", *COMMON, "-d", str(path), "-o", str(out), "--trials", "1", "--epochs", "1",
                            "--space", str(space_file), "-q", "--final-seeds", "1"])
    assert r.exit_code != 0 and isinstance(r.exception, DatasetError)  # only the final runs read test


# -- resume, parallel, identity -----------------------------------------------------------------------------------

def _tune_cmd(ds, out, space_file, trials, *extra):
    return [sys.executable, "-m", "msa_toolkit", "tune", *COMMON, "-d", str(ds), "-o", str(out), "--trials", str(trials),
            "--space", str(space_file), "-q", *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _running_after_a_finished_trial(out: Path) -> int | None:
    """The number of a trial training (its log has an epoch) while an earlier one is complete, read straight
    from the SQLite file."""
    import sqlite3

    db = out / "study.db"
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("SELECT number, state FROM trials").fetchall()
    except sqlite3.Error:  # the study's tables are being created
        return None
    complete = [n for n, s in rows if s == "COMPLETE"]
    logs = {n: out / "trials" / f"trial_{n:04d}" / "seed_1" / "log.jsonl" for n, _ in rows}
    running = [n for n, s in rows if s == "RUNNING" and complete and n > min(complete)
               and logs[n].is_file() and logs[n].stat().st_size > 0]
    return running[0] if running else None


def test_a_killed_study_resumes_keeping_its_finished_trials(ds, tmp_path, space_file):
    """SIGKILL while a trial trains after one finished; the same command then finishes the study: the finished
    trial is kept as it was (not re-run), the killed one is marked failed and does not count, 3 trials complete."""
    out = tmp_path / "study"
    cmd = _tune_cmd(ds, out, space_file, 3, "--epochs", "20", "--pruner", "none", "--set", "trainer.patience=0")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and killed is None:
            time.sleep(0.05)
            number = _running_after_a_finished_trial(out)
            if number is None:
                continue
            proc.send_signal(signal.SIGSTOP)  # frozen: is that trial still running (mid-trial)?
            if _running_after_a_finished_trial(out) == number:
                proc.send_signal(signal.SIGKILL)
                killed = number
            else:
                proc.send_signal(signal.SIGCONT)
    finally:
        if proc.poll() is None and killed is None:
            proc.kill()
        proc.wait()
    assert killed is not None, proc.stderr.read().decode()[-2000:]
    first = _study(out)
    done = {t.number: (t.value, t.params) for t in first.trials if t.state.name == "COMPLETE"}
    assert done and _states(first)["RUNNING"] == 1 and first.trials[killed].state.name == "RUNNING"
    logs = {n: (out / "trials" / f"trial_{n:04d}" / "seed_1" / "log.jsonl") for n in done}
    kept = {n: p.stat().st_mtime_ns for n, p in logs.items()}
    _ok(runner.invoke(app, cmd[3:]))  # the same command again (in this process)
    study = _study(out)
    assert _states(study) == {"COMPLETE": 3, "FAIL": 1}
    assert study.trials[killed].state.name == "FAIL"
    assert {n: (study.trials[n].value, study.trials[n].params) for n in done} == done
    assert {n: p.stat().st_mtime_ns for n, p in logs.items()} == kept  # finished trials not trained again
    assert len(list((out / "trials").iterdir())) == 4  # one folder per trial
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 5 and "its process ended" in rows[1 + killed]


def test_two_processes_share_one_sqlite_study(ds, tmp_path, space_file):
    """--jobs 2: two worker processes finish exactly N trials between them, each trial once, both working."""
    from msa_toolkit.training.tune import tune

    out = tmp_path / "study"
    tune("tfn", ds, out, 4, preset="tiny", overrides=["trainer.batch_size=16", "trainer.epochs=6",
                                                      "trainer.device=cpu", "trainer.threads=1"],
         space=space_file, space_only=True, pruner="none", jobs=2)
    study = _study(out)
    assert _states(study) == {"COMPLETE": 4}
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(4))
    runs = [t.user_attrs["run_dir"] for t in study.trials]
    assert len(set(runs)) == 4 and all((Path(p) / "seed_1" / "best.safetensors").is_file() for p in runs)
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 4
    owners = {t.user_attrs["owner"]["pid"] for t in study.trials}
    assert len(owners) == 2


def test_a_study_refuses_another_command(ds, tmp_path, space_file):
    out = tmp_path / "study"
    args = ["tune", *COMMON, "-d", str(ds), "-o", str(out), "--trials", "1", "--epochs", "1", "--space", str(space_file),
            "-q"]
    _ok(runner.invoke(app, args))
    r = runner.invoke(app, args + ["--metric", "corr"])
    assert r.exit_code != 0 and "another command" in str(r.exception) and "metric" in str(r.exception)
    r = runner.invoke(app, args[:-1] + ["--metric", "nope"])
    assert r.exit_code != 0 and "not a validation metric" in str(r.exception)


# -- pruning ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pruner", ["median", "none"])
def test_pruning_stops_a_poor_trial_early(ds, tmp_path, space_file, pruner):
    """Earlier trials with an unbeatable valid curve (MAE 0.01 every epoch): the median pruner stops the real
    trial right after the warm-up epochs; with --pruner none it trains every epoch."""
    from optuna.distributions import FloatDistribution

    from msa_toolkit.training.tune import PRUNER_STARTUP_TRIALS, PRUNER_WARMUP_EPOCHS

    out = tmp_path / "study"
    out.mkdir()
    epochs = 8
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="minimize")
    for i in range(PRUNER_STARTUP_TRIALS):
        study.add_trial(optuna.trial.create_trial(
            params={"model.lr": 2e-3}, distributions={"model.lr": FloatDistribution(1e-3, 1e-2, log=True)},
            value=0.01, intermediate_values={e: 0.01 for e in range(1, epochs + 1)}))
    _ok(runner.invoke(app, ["tune", *COMMON, "-d", str(ds), "-o", str(out), "--trials", str(PRUNER_STARTUP_TRIALS + 1),
                            "--epochs", str(epochs), "--space", str(space_file), "--storage", storage,
                            "--study-name", "s", "--pruner", pruner, "--set", "trainer.patience=0", "-q"]))
    trial = _study(out, "s").trials[-1]
    log = (Path(trial.user_attrs["run_dir"]) / "seed_1" / "log.jsonl").read_text().splitlines()
    if pruner == "median":
        assert trial.state.name == "PRUNED"
        assert trial.user_attrs["pruned_at_epoch"] == PRUNER_WARMUP_EPOCHS + 1 == len(log) < epochs
    else:
        assert trial.state.name == "COMPLETE" and len(log) == epochs
    assert sorted(trial.intermediate_values) == list(range(1, len(log) + 1))
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,value,epochs_run,pruned_at_epoch") and len(rows) == 1 + len(
        _study(out, "s").trials)


# -- best_config.yaml ---------------------------------------------------------------------------------------------

def test_best_config_round_trips_through_msa_train(ds, tmp_path, space_file):
    """`msa train -c best_config.yaml` trains the best trial's configuration again: the same model config and
    settings (the fingerprints differ in the dataset only: the study's has no test split) and, on CPU, the same
    valid value; --final-seeds reports the test mean ± std with its protocol."""
    from msa_toolkit.training.fingerprint import differences, read_fingerprint

    out = tmp_path / "study"
    _ok(runner.invoke(app, ["tune", *COMMON, "-d", str(ds), "-o", str(out), "--trials", "3", "--epochs", "2",
                            "--space", str(space_file), "--final-seeds", "1,2", "-q"]))
    result = json.loads((out / "result.json").read_text())
    best = result["best"]
    assert "test split was withheld" in result["protocol"] and "seeds 1,2" in result["protocol"]
    assert result["final"]["test"]["mae"]["n"] == 2 and result["final"]["test"]["mae"]["std"] is not None
    again = tmp_path / "again"
    _ok(runner.invoke(app, ["train", "-c", str(out / "best_config.yaml"), "-d", str(ds), "-o", str(again), "-q",
                            "--seeds", "1", "--device", "cpu"]))
    trial_fp = read_fingerprint(Path(best["run_dir"]) / "seed_1")
    again_fp = read_fingerprint(again / "seed_1")
    assert differences(trial_fp, again_fp) == [differences(trial_fp, again_fp)[0]]
    assert differences(trial_fp, again_fp)[0].startswith("dataset")
    valid = json.loads((again / "seed_1" / "metrics.json").read_text())["valid"]
    assert valid["mae"] == pytest.approx(best["value"], abs=1e-6)
    for name in ("trials.csv", "optimization_history.png", "param_importances.png", "space.yaml", "study.json"):
        assert (out / name).is_file(), name
