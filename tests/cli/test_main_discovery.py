"""Command and extractor modules are discovered, listed in a fixed order, and broken ones raise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from msa_toolkit.cli.main import COMMAND_ORDER, app, command_modules


def test_every_command_module_is_registered_in_help_order():
    names = command_modules()
    assert names[: len(COMMAND_ORDER)] == list(COMMAND_ORDER)
    registered = {g.name for g in app.registered_groups} | {c.name for c in app.registered_commands}
    assert set(COMMAND_ORDER) <= registered, registered


def test_extra_commands_follow_sorted_and_a_typo_in_the_order_raises():
    assert command_modules([*COMMAND_ORDER, "zeta", "alpha"])[-2:] == ["alpha", "zeta"]
    with pytest.raises(ModuleNotFoundError, match="models"):
        command_modules([n for n in COMMAND_ORDER if n != "models"])


def _import_with_extra_module(package: str, module: str, source: str, tmp_path) -> subprocess.CompletedProcess:
    """Import ``package`` with ``tmp_path`` on its ``__path__`` holding ``module`` (a fresh interpreter)."""
    (tmp_path / f"{module}.py").write_text(source)
    code = (f"import {package} as p\np.__path__.append({str(tmp_path)!r})\n"
            "import msa_toolkit.cli.main\n"
            "from msa_toolkit.extractors.base import list_extractors\nlist_extractors()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("package", ["msa_toolkit.cli", "msa_toolkit.extractors"])
def test_a_broken_import_in_a_discovered_module_raises(package, tmp_path):
    out = _import_with_extra_module(package, "broken", "import msa_toolkit.no_such_module  # typo\n", tmp_path)
    assert out.returncode != 0
    assert "ModuleNotFoundError" in out.stderr and "no_such_module" in out.stderr, out.stderr


def test_a_command_module_without_register_raises(tmp_path):
    out = _import_with_extra_module("msa_toolkit.cli", "helper", "X = 1\n", tmp_path)
    assert out.returncode != 0 and "has no register(app)" in out.stderr, out.stderr
