"""The `msa` Typer app.

Each command lives in its own module ``msa_toolkit.cli.<name>`` exposing
``register(app)``; the module imports only Typer at import time and does its
heavy imports (torch, transformers, mediapipe) inside the command body, so
``msa --help`` and ``msa --version`` never import torch.
"""

from __future__ import annotations

import importlib
import os
import sys
import typer

from .. import __version__
from ..errors import MSAError

#: command modules, in the order `msa --help` lists them
COMMAND_MODULES = ("extract", "dataset", "train", "evaluate", "predict", "models")

app = typer.Typer(
    name="msa",
    help="Multimodal sentiment analysis: raw video -> features -> datasets -> models -> sentiment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"msa_toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Multimodal sentiment analysis toolkit."""


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"msa_toolkit.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"msa_toolkit.cli.{name}":
                continue  # command not built yet
            raise
        mod.register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app; MSAError becomes a one-line message and exit code 2."""
    # Weights must come from installed packages or local paths: never reach for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app(args=argv, prog_name="msa", standalone_mode=True)
    except MSAError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        return 2
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
