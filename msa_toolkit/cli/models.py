"""`msa models`: list registered models, presets and summaries; `msa models show NAME` prints config fields."""

from __future__ import annotations

import typer

from ._options import complete_model, complete_preset

models_app = typer.Typer(help="Registered models, their presets and configuration fields.",
                         invoke_without_command=True, no_args_is_help=False)


@models_app.callback(invoke_without_command=True)
def list_command(ctx: typer.Context) -> None:
    """List registered models with their presets and one-line summaries."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from ..models import get_entry, list_models

    table = Table(title="registered models")
    table.add_column("name", style="bold")
    table.add_column("presets")
    table.add_column("summary")
    for name in list_models():
        e = get_entry(name)
        table.add_row(name, ", ".join(sorted(e.presets)) or "-", e.summary)
    Console().print(table)


@models_app.command("show")
def show_command(name: str = typer.Argument(..., help="Model name.", autocompletion=complete_model),
                 preset: str = typer.Option(None, "--preset", "-p", help="Show the values of this preset.",
                                            autocompletion=complete_preset)) -> None:
    """Print a model's config fields (type, default or preset value, help text) and presets."""
    import dataclasses
    import inspect

    from rich.console import Console
    from rich.table import Table

    from .._fields import field_helps
    from ..errors import MSAError
    from ..models import get_entry, resolve_config

    try:
        entry = get_entry(name)
        cfg = resolve_config(name, preset)
    except KeyError as e:
        raise MSAError(str(e.args[0] if e.args else e)) from None
    helps = field_helps(entry.config_cls)
    table = Table(title=f"{name} ({entry.config_cls.__name__})" + (f", preset {preset}" if preset else ""))
    table.add_column("field", style="bold")
    table.add_column("type")
    table.add_column("value")
    table.add_column("description")
    for f in dataclasses.fields(cfg):
        t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        table.add_row(f.name, t, repr(getattr(cfg, f.name)), helps.get(f.name, ""))
    con = Console()
    if entry.summary:
        con.print(entry.summary)
    doc = inspect.getdoc(entry.config_cls)
    if doc:
        con.print(doc.splitlines()[0])
    con.print(table)
    for p, vals in sorted(entry.presets.items()):
        con.print(f"preset [bold]{p}[/bold]: {dict(vals)}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
