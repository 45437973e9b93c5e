"""The `msa` Typer app.

Each command lives in its own module ``msa_toolkit.cli.<name>`` exposing
``register(app)``; the module imports only Typer at import time and does its
heavy imports (torch, transformers, mediapipe) inside the command body, so
``msa --help`` and ``msa --version`` never import torch. Command modules are
discovered: every module of this package except ``main`` and private ``_*``
helpers is one. An import error in a command module propagates.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import sys
import warnings
from typing import Iterable

import typer
import typer.core

from .. import __version__
from ..errors import MSAError, RunNotice

#: OpenMP waiting policy set before torch loads unless the user set one (spinning threads steal the
#: cores of other processes on a shared machine and make step times vary by an order of magnitude)
DEFAULT_OMP_WAIT_POLICY = "PASSIVE"
#: environment variable naming the toolkit's CPU thread count (sets OMP_NUM_THREADS and MKL_NUM_THREADS)
THREADS_ENV = "MSA_THREADS"

#: the order `msa --help` lists commands in (pipeline order); commands not named here follow, sorted
COMMAND_ORDER = ("extract", "dataset", "train", "tune", "benchmark", "evaluate", "robustness", "predict", "serve",
                 "models")

app = typer.Typer(
    name="msa",
    help="Multimodal sentiment analysis: raw video -> features -> datasets -> models -> sentiment.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, powershell)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_typer_option_type = typer.core.TyperOption.display_type_rich


def _option_type(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    """The value column of an option in --help; a boolean flag takes no value, so it shows none (not ``<bool>``)."""
    return "" if self.is_bool_flag else _typer_option_type(self, ctx)


# every flag of every command (and the --help of each) is covered, including flags added later
typer.core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]


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


def command_modules(found: Iterable[str] | None = None) -> list[str]:
    """Command module names in help order: :data:`COMMAND_ORDER`, then any other discovered ones, sorted.

    ``found`` defaults to the public modules of this package except ``main``. A name in
    :data:`COMMAND_ORDER` without a module is an error (a typo must not hide a command).
    """
    if found is None:
        package = importlib.import_module(__package__)
        found = [m.name for m in pkgutil.iter_modules(package.__path__)
                 if not m.name.startswith("_") and m.name != "main"]
    names = set(found)
    missing = [n for n in COMMAND_ORDER if n not in names]
    if missing:
        raise ModuleNotFoundError(f"COMMAND_ORDER names command modules that do not exist: {missing}")
    return [*COMMAND_ORDER, *sorted(names - set(COMMAND_ORDER))]


def _register_commands() -> None:
    for name in command_modules():
        mod = importlib.import_module(f"{__package__}.{name}")
        register = getattr(mod, "register", None)
        if register is None:
            raise AttributeError(f"{mod.__name__} has no register(app); command modules define it, "
                                 "helper modules of msa_toolkit.cli start with '_'")
        register(app)


def reflow_help(doc: str) -> str:
    """A command docstring as --help shows it: each prose paragraph's lines joined into one, so the terminal wraps
    it (Typer's rich help keeps a docstring's own line breaks after the first paragraph, which wraps raggedly);
    a paragraph with an indented, bulleted (``- ``, ``* ``) or ``\\b`` line keeps its lines."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    keep = ("\b", " ", "\t", "- ", "* ")
    return "\n\n".join(p if any(line.startswith(keep) for line in p.splitlines()) else " ".join(p.split("\n"))
                       for p in paragraphs)


def _reflow_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow_help(info.callback.__doc__)
    for group in typer_app.registered_groups:
        _reflow_commands(group.typer_instance)


_register_commands()
_reflow_commands(app)


def configure_threads(environ: dict | None = None) -> None:
    """Thread settings for torch, applied before it loads; a user's explicit values are kept.

    ``OMP_WAIT_POLICY`` defaults to :data:`DEFAULT_OMP_WAIT_POLICY`. ``MSA_THREADS=N`` sets
    ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` to N; without it an explicit ``OMP_NUM_THREADS``
    is kept and also given to MKL, so both pools use one count (otherwise torch's default).
    """
    env = os.environ if environ is None else environ
    env.setdefault("OMP_WAIT_POLICY", DEFAULT_OMP_WAIT_POLICY)
    threads = env.get(THREADS_ENV, "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise MSAError(f"{THREADS_ENV} must be a positive integer, got {threads!r}")
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
    elif env.get("OMP_NUM_THREADS"):
        env.setdefault("MKL_NUM_THREADS", env["OMP_NUM_THREADS"])


def tolerant_streams() -> None:
    """stdout/stderr write a file name that is not UTF-8 (lone surrogates from ``os.fsdecode``) as
    ``\\udcff`` instead of raising UnicodeEncodeError at the end of a finished run (a UTF-8
    terminal's streams are strict; a C locale's already escape)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a replaced or closed stream: leave it
                pass


def _print_notices() -> None:
    """Show every :class:`RunNotice` as one plain line on stderr (the library raises them as warnings)."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RunNotice):
            print(message, file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", RunNotice)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app; MSAError becomes a one-line message and exit code 2."""
    tolerant_streams()
    _print_notices()
    if "torch" not in sys.modules:  # torch reads the OpenMP settings once, when it loads
        try:
            configure_threads()
        except MSAError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            return 2
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
