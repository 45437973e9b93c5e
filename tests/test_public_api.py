"""The lazy public API of ``msa_toolkit`` (issue 32): a public name is never also a submodule's name, so
importing a submodule cannot replace a public function with a module."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import msa_toolkit


def _submodules() -> list[str]:
    """The names of msa_toolkit's direct submodules and subpackages (those bind as package attributes)."""
    return [m.name for m in pkgutil.iter_modules(msa_toolkit.__path__)]


def test_no_public_name_is_a_submodule():
    submodules = set(_submodules())
    assert "extraction" in submodules and "training" in submodules  # the scan sees the package
    assert sorted(set(msa_toolkit.__all__) & submodules) == []


def test_public_functions_stay_callable_after_every_submodule_is_imported():
    """``from msa_toolkit.predict import Predictor`` used to replace ``msa_toolkit.predict`` (the function)
    with the module. Run in a fresh interpreter: the import order is the point."""
    code = (
        "import importlib, pkgutil, msa_toolkit\n"
        "for m in pkgutil.iter_modules(msa_toolkit.__path__):\n"
        "    if not m.name.startswith('__'):\n"
        "        importlib.import_module('msa_toolkit.' + m.name)\n"
        "bad = [n for n in msa_toolkit.__all__ if n != '__version__' and not callable(getattr(msa_toolkit, n))]\n"
        "print('NOT CALLABLE', bad) if bad else print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok", out.stdout


def test_every_public_name_resolves():
    for name in msa_toolkit.__all__:
        assert getattr(msa_toolkit, name) is not None
    assert callable(importlib.import_module("msa_toolkit.prediction").predict)


def _option_defaults(command) -> dict:
    """A Typer command's parameter name -> default value (the typer.Option's)."""
    import inspect

    return {name: getattr(p.default, "default", p.default) for name, p in inspect.signature(command).parameters.items()}


def test_the_api_has_what_the_cli_has_with_its_defaults():
    """msa benchmark, msa dataset import and msa dataset export have a Python function each, with the CLI's
    defaults (issue 32)."""
    import inspect

    from msa_toolkit.cli.benchmark import benchmark_command
    from msa_toolkit.cli.dataset import export_command, import_command

    for name in ("benchmark", "import_dataset", "export_dataset"):
        assert name in msa_toolkit.__all__ and callable(getattr(msa_toolkit, name))
    cli = _option_defaults(import_command)
    api = {k: p.default for k, p in inspect.signature(msa_toolkit.import_dataset).parameters.items()}
    assert (api["fmt"], api["overwrite"], api["text_model"], api["align"], api["device"]) == \
        (cli["fmt"], cli["overwrite"], cli["text"], cli["align"], cli["device"])
    cli = _option_defaults(export_command)
    api = {k: p.default for k, p in inspect.signature(msa_toolkit.export_dataset).parameters.items()}
    assert api["fmt"] == cli["fmt"] and api["lengths"] is None
    cli = _option_defaults(benchmark_command)
    api = {k: p.default for k, p in inspect.signature(msa_toolkit.benchmark).parameters.items()}
    assert ",".join(map(str, api["seeds"])) == cli["seeds"] and api["recipe"] == cli["recipe"]
    assert api["preset"] is cli["preset"] is None and api["progress"] is (not cli["quiet"])


def test_export_then_import_round_trips_through_the_api(tmp_path):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "ds", n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2), lengths=(5, 6, 6))
    report = msa_toolkit.export_dataset(tmp_path / "ds", tmp_path / "ds.pkl")
    assert report.sizes == ds.num_samples()
    back, _, used = msa_toolkit.import_dataset(tmp_path / "ds.pkl", tmp_path / "back")
    assert used == "mmsa" and back.num_samples() == ds.num_samples()


def test_train_prints_nothing_unless_asked(tmp_path, capsys):
    """msa_toolkit.train() is quiet by default (msa train prints progress and tables unless -q);
    progress=True shows them (issue 32)."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "ds", n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8))
    settings = ["trainer.epochs=1", "trainer.device=cpu", "trainer.plots=false", "trainer.batch_size=8"]
    capsys.readouterr()
    run = msa_toolkit.train("text_only", data=tmp_path / "ds", out_dir=tmp_path / "quiet", preset="tiny",
                            overrides=settings, seeds=[1, 2])
    assert run.test and (tmp_path / "quiet" / "summary.json").is_file()
    assert capsys.readouterr() == ("", "")
    msa_toolkit.train("text_only", data=tmp_path / "ds", out_dir=tmp_path / "loud", preset="tiny",
                      overrides=settings, progress=True)
    assert "epoch   1" in capsys.readouterr().err
