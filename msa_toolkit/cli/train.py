"""`msa train`: train a registered model on a native dataset (thin wrapper over msa_toolkit.training.api.train)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from ._options import (INTERRUPTED_EXIT, config_option, data_option, model_option, parse_seeds, preset_option,
                       recipe_option, set_option, trainer_overrides)


def train_command(
    model: Optional[str] = model_option(),
    data: Optional[Path] = data_option(required=True, show_config=True),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default=False,
                                       help="Run directory to write (required unless --show-config)."),
    preset: Optional[str] = preset_option(),
    recipe: Optional[str] = recipe_option(),
    config: Optional[Path] = config_option(),
    set_: List[str] = set_option(),
    seeds: Optional[str] = typer.Option(None, "--seeds", metavar="<s1,s2,...>",
                                        help="Comma-separated seeds; one sub-run each, mean ± std table "
                                             "(default: the config's seeds, else trainer.seed)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Shortcut for --set trainer.epochs=N."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (shortcut for trainer.device)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto | fp32 | bf16 | fp16."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0,
                                          help="torch CPU threads for the run, set once at start-up (0 = MSA_THREADS "
                                               "or torch's default; fewer can be faster for small batches, "
                                               "see docs/cli.md)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last state."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or tables."),
    mmsa: bool = typer.Option(False, "--mmsa-names",
                              help="Show metrics with MMSA's names (Has0_acc_2, Non0_F1_score, Mult_acc_7, MAE, "
                                   "Corr, ...); summary.csv and metrics.json keep the toolkit's names."),
    compile_: bool = typer.Option(False, "--compile",
                                  help="torch.compile the training step (CUDA mainly; on CPU the inductor needs a C "
                                       "compiler; a failure warns and falls back to eager)."),
    log: str = typer.Option("none", "--log", metavar="none|tensorboard",
                            help="Experiment tracking: tensorboard writes each epoch's losses, metrics and lr to "
                                 "OUT/tensorboard/seed_<s>/ (needs `pip install tensorboard`)."),
    allow_frozen_text: bool = typer.Option(False, "--allow-frozen-text",
                                           help="Run a reference recipe that fine-tunes BERT (DLF, ALMT, MInD) "
                                                "without --set model.text_encoder=PATH, on frozen text features; "
                                                "the run records frozen_text: true."),
    show_config_: bool = typer.Option(False, "--show-config",
                                      help="Print the resolved model config, preset, recipe, seeds and every trainer "
                                           "setting (value, default, help) and exit without training; --data and "
                                           "--out are not needed."),
) -> None:
    """Train a model; writes best.safetensors, logs, metrics, plots and a multi-seed summary.

    Each seed writes OUT/seed_<s>/ (checkpoint OUT/seed_<s>/best.safetensors), one seed or several; OUT holds
    config.yaml and summary.json/csv. The checkpoint path(s) are printed at the end.

    Accuracies and F1 are fractions in [0, 1] on the console and in the files.

    Multi-GPU / multi-node: launch the same command with torchrun, e.g.
    `torchrun --nproc_per_node 4 -m msa_toolkit train ...`.
    """
    from ..allocator import keep_freed_memory
    from ..training.api import result_line, train

    if show_config_:
        _print_config(model, preset, config, set_ + trainer_overrides([], epochs=epochs, device=device,
                                                                     precision=precision, threads=threads),
                      parse_seeds(seeds) if seeds else None, recipe)
        return
    for value, flag in ((data, "'--data' / '-d'"), (out, "'--out' / '-o'")):
        if value is None:
            raise typer.BadParameter("missing (required unless --show-config)", param_hint=flag)
    callbacks = []
    if log == "tensorboard":
        from ..training.tracking import TENSORBOARD_DIR, TensorBoardLogger, require_tensorboard

        require_tensorboard()  # one line before any training, not after the first epoch
        callbacks.append(TensorBoardLogger(out / TENSORBOARD_DIR))
    elif log != "none":
        raise typer.BadParameter(f"--log: expected none or tensorboard, got {log!r}")
    keep_freed_memory()  # large activations reuse freed heap memory: no page faults every step (allocator.py)
    overrides = trainer_overrides(set_, epochs=epochs, device=device, precision=precision, mmsa_names=mmsa,
                                  compile=compile_, threads=threads, allow_frozen_text=allow_frozen_text)
    try:
        # display follows this command line, not the run's config.yaml: a run started with -q and resumed
        # (or re-run with -c config.yaml) without it shows its progress; --set trainer.progress=... still wins
        result = train(model, data, out, preset=preset, config=config, overrides=overrides,
                       seeds=parse_seeds(seeds) if seeds else None, resume=resume, recipe=recipe, progress=not quiet,
                       callbacks=callbacks)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM where the trainer turns it into one
        typer.secho(f"interrupted: finished epochs are kept in {out}/seed_<s>/last.pt; run the same command with "
                    "--resume to continue", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    finally:
        for cb in callbacks:
            cb.close()
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    typer.echo(f"run written to {result_line(result)}")  # under -q too: the one line of the result
    # the checkpoint rule (docs/formats.md): OUT/seed_<s>/best.safetensors for every seed
    checkpoints = [(seed, run.checkpoint) for seed, run in zip(result.seeds, result.runs) if run.checkpoint]
    if len(checkpoints) == 1:
        typer.echo(f"checkpoint: {checkpoints[0][1]}")
    elif checkpoints:
        typer.echo("checkpoints (one per seed):")
        for seed, path in checkpoints:
            typer.echo(f"  seed {seed}: {path}")


def _print_config(model: Optional[str], preset: Optional[str], config: Optional[Path], overrides: List[str],
                  seeds: Optional[list[int]], recipe: Optional[str]) -> None:
    """--show-config: the run's settings as tables on stdout (nothing trained, no data read)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..training.settings import show, show_config

    view = show_config(model, preset, config, overrides, seeds, recipe)
    con = Console()
    con.print(f"model [bold]{view.model}[/bold], preset {view.preset or '(the config class defaults)'}, "
              f"recipe [bold]{view.recipe}[/bold]" + (f" ({view.recipe_source})" if view.recipe_source else ""))
    con.print(f"seeds: {','.join(str(s) for s in view.seeds)}")
    for title, rows, prefix in ((f"model config ({view.model}; input dims from the preset, a dataset's replace "
                                 "them)", view.model_rows, "model."),
                                ("trainer settings", view.trainer_rows, "trainer.")):
        table = Table(title=title, title_justify="left")
        for column in ("setting", "value", "default", "help"):
            table.add_column(column, overflow="fold")
        for row in rows:
            changed = row.value != row.default
            table.add_row(prefix + row.name, ("[bold]" if changed else "") + escape(show(row.value)),
                          escape(show(row.default)), escape(row.help))
        con.print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
