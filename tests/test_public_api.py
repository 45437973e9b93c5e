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
