"""End to end through the CLI: `msa train` every registered model for a few steps, resume, `msa evaluate`."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from msa_toolkit.cli.main import app
from msa_toolkit.models import list_models

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_ds(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("cli") / "ds"
    make_synthetic_dataset(path, n_train=24, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0,
                           unimodal_labels=True)  # for the multi-task models
    return path


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.parametrize("name", list_models())
def test_train_resume_evaluate_every_model(cli_ds, tmp_path, name):
    run = tmp_path / "run"
    common = ["train", "--model", name, "--preset", "tiny", "--data", str(cli_ds), "-o", str(run),
              "--device", "cpu", "--set", "trainer.batch_size=8", "--set", "trainer.limit_train_batches=2",
              "--set", "trainer.plots=false", "-q"]
    _ok(runner.invoke(app, common + ["--epochs", "1"]))
    assert (run / "seed_1" / "best.safetensors").is_file() and (run / "config.yaml").is_file()
    assert not (run / "best.safetensors").exists() and (run / "summary.json").is_file()
    # without --resume an existing run is refused with a clear message
    r = runner.invoke(app, common + ["--epochs", "2"])
    assert r.exit_code != 0 and "already holds a run" in str(r.exception)
    # resume continues from the saved state to epoch 2
    _ok(runner.invoke(app, common + ["--epochs", "2", "--resume"]))
    log = [json.loads(x) for x in (run / "seed_1" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and log[1]["step"] == 4
    out = tmp_path / "eval.json"
    r = _ok(runner.invoke(app, ["evaluate", str(run / "seed_1" / "best.safetensors"), "--data", str(cli_ds), "--split", "test",
                                "--drop", "audio", "--drop", "vision", "--device", "cpu", "--json", str(out)]))
    assert "acc2_non0" in r.output and "dropped: audio, vision" in r.output
    doc = json.loads(out.read_text())
    assert doc["drop"] == ["audio", "vision"] and 0.0 <= doc["metrics"]["acc7"] <= 1.0
    assert doc["metrics"]["mae"] >= 0


def test_multi_seed_and_config_file(cli_ds, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainer:\n  epochs: 1\n  batch_size: 8\n  progress: false\n  plots: false\n  device: cpu\n"
                   "model:\n  name: text_only\n  preset: tiny\n")
    _ok(runner.invoke(app, ["train", "--data", str(cli_ds), "-o", str(tmp_path / "ms"), "--config", str(cfg),
                            "--seeds", "1,2"]))
    assert (tmp_path / "ms" / "seed_1" / "best.safetensors").is_file()
    assert (tmp_path / "ms" / "seed_2" / "best.safetensors").is_file()
    doc = json.loads((tmp_path / "ms" / "summary.json").read_text())
    assert doc["seeds"] == [1, 2] and len(doc["summary"]["test"]["mae"]["values"]) == 2
    # resume needs only the run directory: model, seeds and settings come from its config.yaml
    _ok(runner.invoke(app, ["train", "--data", str(cli_ds), "-o", str(tmp_path / "ms"), "--resume"]))
    assert not (tmp_path / "ms" / "best.safetensors").exists()
    again = json.loads((tmp_path / "ms" / "summary.json").read_text())
    assert again["summary"]["test"] == doc["summary"]["test"]


def test_one_layout_whatever_the_seed_count_and_the_old_one_named(cli_ds, tmp_path, capsys):
    """Issue 32: one seed wrote OUT/best.safetensors, several OUT/seed_<s>/...; now always OUT/seed_<s>/ with
    config.yaml and summary.json/csv in OUT. A run of the old layout (last.pt in OUT) is named, not trained over."""
    import shutil

    from msa_toolkit.cli.main import main

    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_train_args(cli_ds, one, "--epochs", "1", "--seeds", "3")) == 0
    assert f"checkpoint: {one / 'seed_3' / 'best.safetensors'}" in capsys.readouterr().out
    assert sorted(p.name for p in one.iterdir()) == ["config.yaml", "seed_3", "summary.csv", "summary.json"]
    assert json.loads((one / "summary.json").read_text())["seeds"] == [3]
    assert main(_train_args(cli_ds, two, "--epochs", "1", "--seeds", "3,4")) == 0
    assert sorted(p.name for p in two.iterdir()) == ["config.yaml", "seed_3", "seed_4", "summary.csv", "summary.json"]
    assert sorted(p.name for p in (one / "seed_3").iterdir()) == sorted(p.name for p in (two / "seed_3").iterdir())
    # --resume of OUT finds the seed folder from OUT/config.yaml
    assert main(["train", "-d", str(cli_ds), "-o", str(one), "--epochs", "2", "--resume", "-q"]) == 0
    log = [json.loads(x) for x in (one / "seed_3" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    # a run written with the old layout: one line that says so and how to continue, with or without --resume
    old = tmp_path / "old"
    shutil.copytree(one / "seed_3", old)
    capsys.readouterr()
    for extra in (["--resume"], []):
        assert main(["train", "-d", str(cli_ds), "-o", str(old), "--epochs", "3", "-q", *extra]) == 2
        err = capsys.readouterr().err
        assert "old layout" in err and str(old / "seed_3") in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in (one / "seed_3").iterdir())  # untouched
    (old / "seed_3").mkdir()  # what the message says: every file but config.yaml into OUT/seed_<s>/
    for f in list(old.iterdir()):
        if f.name not in ("config.yaml", "seed_3"):
            f.rename(old / "seed_3" / f.name)
    assert main(["train", "-d", str(cli_ds), "-o", str(old), "--epochs", "3", "--resume", "-q"]) == 0
    log = [json.loads(x) for x in (old / "seed_3" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3] and (old / "summary.json").is_file()


def test_bad_arguments(cli_ds, tmp_path):
    from msa_toolkit.cli.main import main

    assert main(["train", "--model", "nope", "--data", str(cli_ds), "-o", str(tmp_path / "x"), "-q"]) != 0
    assert main(["train", "--model", "text_only", "--data", str(cli_ds), "-o", str(tmp_path / "y"),
                 "--set", "trainer.epochz=1", "-q"]) == 2
    assert main(["train", "--model", "text_only", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "z"),
                 "-q"]) == 2


@pytest.mark.slow
def test_torchrun_two_processes_same_command_line(cli_ds, tmp_path):
    """`torchrun --nproc_per_node 2 -m msa_toolkit train ...` (gloo on CPU) writes one run from rank 0."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "msa_toolkit", "train",
           "--model", "late_fusion", "--preset", "tiny", "--data", str(cli_ds), "-o", str(out), "--epochs", "2",
           "--device", "cpu", "--set", "trainer.batch_size=4", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("run written to") == 1
    log = [json.loads(x) for x in (out / "seed_1" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2 * 3  # 24 train samples / 2 ranks / batch 4 = 3 steps per epoch


# -- issue 15: honest runs -----------------------------------------------------------------------

def _train_args(ds, out, *extra):
    return ["train", "--model", "text_only", "--preset", "tiny", "--data", str(ds), "-o", str(out), "--device", "cpu",
            "--set", "trainer.batch_size=8", "--set", "trainer.plots=false", "-q", *extra]


def test_resume_with_another_model_or_preset_is_refused(cli_ds, tmp_path, capsys):
    from msa_toolkit.cli.main import main

    run = tmp_path / "run"
    assert main(_train_args(cli_ds, run, "--epochs", "1")) == 0
    before = (run / "config.yaml").read_text()
    args = [a if a != "text_only" else "late_fusion" for a in _train_args(cli_ds, run, "--epochs", "2", "--resume")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds a run of model 'text_only'" in err and "not 'late_fusion'" in err and "Traceback" not in err
    args = [a if a != "tiny" else "mosi" for a in _train_args(cli_ds, run, "--epochs", "2", "--resume")]
    assert main(args) == 2 and "preset 'tiny'" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before  # the run is left as it was


class _Marker:
    """Pickles to a call that writes a file: what a crafted ``last.pt`` would run on load."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "ran"))


def test_a_crafted_resume_state_runs_no_code(cli_ds, tmp_path, capsys):
    """``last.pt`` is read with ``torch.load(weights_only=True)``: a pickled callable in it is refused with one
    line (exit 2), before it can run; a resume state the toolkit wrote resumes as before."""
    import torch

    from msa_toolkit.cli.main import main

    run, marker = tmp_path / "run", tmp_path / "marker"
    assert main(_train_args(cli_ds, run, "--epochs", "1")) == 0
    state = torch.load(run / "seed_1" / "last.pt", weights_only=True)  # the toolkit's own file loads safely
    torch.save({**state, "evil": _Marker(marker)}, run / "seed_1" / "last.pt")
    capsys.readouterr()
    assert main(_train_args(cli_ds, run, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert "refused to load the resume state" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_refused_train_writes_nothing_and_resume_checks_the_fingerprint(cli_ds, tmp_path, capsys):
    """Issue 31: a refused train had already overwritten config.yaml; resume on another dataset or with other
    settings continued silently; resume of a folder with no run trained from scratch without a word."""
    from msa_toolkit.cli.main import main
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    run = tmp_path / "run"
    assert main(_train_args(cli_ds, run, "--epochs", "1")) == 0
    kept = {f: (run / f).read_bytes() for f in ("config.yaml", "seed_1/config.yaml", "seed_1/fingerprint.json",
                                                 "seed_1/last.pt")}
    capsys.readouterr()
    assert main(_train_args(cli_ds, run, "--epochs", "1", "--set", "trainer.lr=0.5")) == 2  # no --resume
    assert "already holds a run" in capsys.readouterr().err
    other = make_synthetic_dataset(tmp_path / "other", n_train=16, n_valid=8, n_test=8, seed=9)
    assert main(_train_args(other.path, run, "--epochs", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert "holds a run with other data or settings" in err and "dataset (content id)" in err
    assert main(_train_args(cli_ds, run, "--epochs", "2", "--resume", "--set", "trainer.lr=0.5")) == 2
    assert "trainer.lr: None -> 0.5" in capsys.readouterr().err
    assert {f: (run / f).read_bytes() for f in kept} == kept  # the interrupted run is left as it was
    assert main(_train_args(cli_ds, run, "--epochs", "2", "--resume")) == 0  # its own settings: resumes
    assert main(_train_args(cli_ds, tmp_path / "none", "--epochs", "1", "--resume")) == 0
    assert "holds no run to resume" in capsys.readouterr().err


def test_resume_prints_the_epochs_it_runs(cli_ds, tmp_path, capsys):
    from msa_toolkit.cli.main import main

    run = tmp_path / "run"
    assert main(_train_args(cli_ds, run, "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(_train_args(cli_ds, run, "--epochs", "3", "--resume")) == 0
    assert "after epoch 1 of 3: runs epochs 2-3" in capsys.readouterr().err


def test_quiet_is_not_inherited_by_resume_or_config(cli_ds, tmp_path, capsys):
    """-q is for one command: resuming (or -c config.yaml) without it shows the epochs and the table."""
    from msa_toolkit.cli.main import main

    run = tmp_path / "run"
    assert main(_train_args(cli_ds, run, "--epochs", "1")) == 0
    assert "progress: false" in (run / "config.yaml").read_text()
    capsys.readouterr()
    loud = [a for a in _train_args(cli_ds, run, "--epochs", "2", "--resume") if a != "-q"]
    assert main(loud) == 0
    err = capsys.readouterr().err
    assert "epoch   2" in err and "acc2_has0" in err
    assert main(["train", "-d", str(cli_ds), "-o", str(tmp_path / "again"), "-c", str(run / "config.yaml"),
                 "--set", "trainer.progress=false"]) == 0
    assert "epoch   1" not in capsys.readouterr().err  # an explicit --set still wins


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--epochs", "-2"], ["--device", "foo"], ["--device", "gpu"]])
def test_bad_epochs_and_device_are_one_line_errors(cli_ds, tmp_path, capsys, bad):
    from msa_toolkit.cli.main import main

    assert main(_train_args(cli_ds, tmp_path / "r", *bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ("epochs must be >= 1" in err) if bad[0] == "--epochs" else ("unknown device" in err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("bad, says", [("trainer.lr=-1", "lr must be >= 0"), ("model.lr=-0.5", "model.lr"),
                                       ("trainer.batch_size=0", "batch_size must be >= 1"),
                                       ("trainer.weight_decay=-1", "weight_decay must be >= 0")])
def test_bad_optimiser_settings_are_one_line_errors(cli_ds, tmp_path, capsys, bad, says):
    """Not a traceback from torch (negative lr / weight decay), nor a batch size of 0 silently replaced."""
    from msa_toolkit.cli.main import main

    assert main(_train_args(cli_ds, tmp_path / "r", "--set", bad)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and says in err, err
    assert not (tmp_path / "r").exists()


def test_training_without_valid_split_warns_and_keeps_the_last_epoch(tmp_path, capsys):
    from msa_toolkit.cli.main import main
    from msa_toolkit.data.native import load_dataset, write_dataset
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "full", n_train=16, n_valid=4, n_test=4, dims=(8, 4, 4), lengths=(6, 8, 8))
    ds = load_dataset(tmp_path / "full")
    write_dataset(tmp_path / "nv", ds.spec, {s: ds.split(s) for s in ("train", "test")})
    assert main(_train_args(tmp_path / "nv", tmp_path / "run", "--epochs", "3")) == 0
    err = capsys.readouterr().err
    assert "no validation split" in err and "last epoch" in err
    doc = json.loads((tmp_path / "run" / "seed_1" / "metrics.json").read_text())
    assert doc["best_epoch"] == 3 and doc["valid"] == {}


def test_mmsa_names_on_the_console_toolkit_names_in_files(cli_ds, tmp_path, capsys):
    from msa_toolkit.cli.main import main

    args = [a for a in _train_args(cli_ds, tmp_path / "run", "--epochs", "1", "--mmsa-names") if a != "-q"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "Has0_acc_2" in err and "Mult_acc_7" in err and "fractions" in err
    doc = json.loads((tmp_path / "run" / "seed_1" / "metrics.json").read_text())
    assert "acc2_has0" in doc["test"] and "Has0_acc_2" not in doc["test"] and doc["units"] == "fraction"
    assert "acc7" in (tmp_path / "run" / "summary.csv").read_text()


@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_interrupt_says_how_to_continue(tmp_path, monkeypatch, command):
    """Ctrl-C in `msa train` / `msa benchmark` exited without a word; it now says what is kept and how to resume."""
    import msa_toolkit.training.api as api
    import msa_toolkit.training.benchmark as bench

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    monkeypatch.setattr(bench, "run_benchmark", interrupted)
    (tmp_path / "ds").mkdir()
    args = (["train", "--model", "text_only"] if command == "train" else ["benchmark", "--models", "text_only"])
    r = CliRunner().invoke(app, args + ["--data", str(tmp_path / "ds"), "-o", str(tmp_path / "out")])
    assert r.exit_code == 130
    text = " ".join(r.output.split())
    assert "interrupted" in text and ("--resume" in text if command == "train" else "run the same command" in text)


def test_recipe_seeds_are_announced_and_quiet_prints_the_result(cli_ds, tmp_path, capsys):
    """--recipe reference trains the authors' seeds (5 for DLF): one line on stderr says so before training, under
    -q too, and -q still prints the one-line result (issue 32)."""
    from msa_toolkit.cli.main import main

    run = tmp_path / "ref"
    args = ["train", "-m", "dlf", "-p", "tiny", "--recipe", "reference", "-d", str(cli_ds), "-o", str(run),
            "--epochs", "1", "--device", "cpu", "-s", "trainer.limit_train_batches=1", "-s", "trainer.grad_accum=1",
            "-s", "trainer.plots=false", "--allow-frozen-text", "-q"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "recipe reference: seeds 1111,1112,1113,1114,1115 (the authors' protocol)" in err.splitlines()
    result = [line for line in out.splitlines() if line.startswith("run written to")]
    assert len(result) == 1 and f"{run}: test MAE " in result[0] and "non-0 Acc-2" in result[0], out
    assert "(mean over 5 seeds)" in result[0]
    # seeds given on the command line are the caller's: nothing to announce
    assert main(args[:-1] + ["--seeds", "3", "-o", str(tmp_path / "given"), "-q"]) == 0
    out, err = capsys.readouterr()
    assert "recipe reference: seeds" not in err and "(seed 3)" in out


def test_show_config_prints_every_setting_and_trains_nothing(tmp_path, monkeypatch):
    """--show-config needs neither --data nor --out, prints the resolved settings with value, default and help,
    and exits 0 without training (issue 32)."""
    import msa_toolkit.training.api as api

    monkeypatch.setattr(api, "train", lambda *a, **k: pytest.fail("--show-config must not train"))
    r = runner.invoke(app, ["train", "-m", "dlf", "-p", "mosi", "--recipe", "reference", "-s", "trainer.epochs=3",
                            "--seeds", "4,5", "--show-config"], env={"COLUMNS": "300"})
    _ok(r)
    out = r.stdout
    assert "model dlf, preset mosi, recipe reference" in out and "seeds: 4,5" in out
    row = next(line for line in out.splitlines() if "trainer.epochs " in line)
    assert [c.strip() for c in row.split("│")[1:5]] == ["trainer.epochs", "3", "30",
                                                         "number of passes over the training split"]
    assert "trainer.grad_accum" in out and "model.dim" in out and "trainer.mmsa_names" in out
    assert list(tmp_path.iterdir()) == []
    # without --show-config, --data and --out stay required
    r = runner.invoke(app, ["train", "-m", "dlf", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--data" in r.output and not (tmp_path / "x").exists()


def test_the_library_prints_nothing_and_warns_while_the_cli_prints_notices(cli_ds, tmp_path, capsys):
    """Issue 32: train() prints nothing unless asked; what a run has to say without progress output (here: a
    resume with no run) is a RunNotice warning for a library caller and one plain line from `msa -q`."""
    import warnings

    from msa_toolkit.cli.main import main
    from msa_toolkit.errors import RunNotice
    from msa_toolkit.training.api import train

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train("text_only", cli_ds, tmp_path / "lib", preset="tiny", resume=True,
              overrides=["trainer.epochs=1", "trainer.batch_size=8", "trainer.plots=false"])
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert [str(w.message) for w in caught if issubclass(w.category, RunNotice)] == [
        f"--resume: {tmp_path / 'lib' / 'seed_1'} holds no run to resume (no last.pt); training from scratch"]
    assert main(_train_args(cli_ds, tmp_path / "cli", "--epochs", "1", "--resume")) == 0
    assert "holds no run to resume (no last.pt); training from scratch\n" in capsys.readouterr().err
