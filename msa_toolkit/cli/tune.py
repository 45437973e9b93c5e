"""`msa tune`: hyper-parameter search on the validation split (thin wrapper over msa_toolkit.training.tune.tune)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._options import (INTERRUPTED_EXIT, config_option, data_option, model_option, parse_seeds, preset_option,
                       recipe_option, set_option, trainer_overrides)


def tune_command(
    model: Optional[str] = model_option(),
    data: Path = data_option(required=True),
    out: Path = typer.Option(..., "--out", "-o", help="Study directory: study.db, trials/, trials.csv, plots, "
                                                      "best_config.yaml, result.json."),
    trials: int = typer.Option(..., "--trials", min=1,
                               help="Trials of the study in total (a resumed study runs only the missing ones)."),
    preset: Optional[str] = preset_option(),
    recipe: Optional[str] = recipe_option(),
    config: Optional[Path] = config_option(),
    set_: List[str] = set_option(),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Shortcut for --set trainer.epochs=N (each trial)."),
    metric: Optional[str] = typer.Option(None, "--metric",
                                         help="Validation metric to optimise (default: the trainer's monitor, the "
                                              "model's selection metric): mae, corr, acc2_non0, f1_non0, acc7, loss, "
                                              "..."),
    space: Optional[Path] = typer.Option(None, "--space", exists=True, dir_okay=False,
                                         help="YAML of ranges that replace or narrow the model's search space "
                                              "(model.lr: {low: 1.0e-4, high: 1.0e-3, log: true}, "
                                              "model.batch_size: [32, 64], model.dropout: null); see docs/cli.md."),
    space_only: bool = typer.Option(False, "--space-only", help="Search the --space file's keys alone."),
    pruner: str = typer.Option("median", "--pruner", metavar="median|none",
                               help="Stop poor trials early from their per-epoch valid values (median), or not."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="<url>",
                                          help="Optuna database URL shared by every process of the study, e.g. "
                                               "postgresql://user:pass@host/db (default: sqlite in --out)."),
    study_name: Optional[str] = typer.Option(None, "--study-name",
                                             help="Study name in the storage (default: the --out folder's name)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes on this machine, on one study."),
    final_seeds: Optional[str] = typer.Option(None, "--final-seeds", metavar="<s1,s2,...>",
                                              help="Re-train the best configuration with these seeds and score the "
                                                   "test split once per seed (mean ± std)."),
    seed: int = typer.Option(0, "--seed", help="Base seed of the sampler (trials train with trainer.seed)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (shortcut for trainer.device)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0,
                                          help="torch CPU threads per worker (default with --jobs N: cores / N)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per trial."),
) -> None:
    """Tune a model's hyper-parameters on the validation split with Optuna; trials never read the test split.

    Each trial is a normal run folder (OUT/trials/trial_<n>/, with its fingerprint); poor trials are pruned from
    their per-epoch validation values. The study lives in a database (default OUT/study.db): run the same
    command again to resume a killed study (finished trials are kept), start it on several machines with one
    --storage URL to share it (docs/scaling.md). At the end: OUT/best_config.yaml (`msa train -c` takes it),
    trials.csv, optimization_history.png, param_importances.png, result.json; with --final-seeds, the best
    configuration re-trained with those seeds and the test split scored once per seed (mean ± std).
    """
    from ..allocator import keep_freed_memory
    from ..training.tune import tune

    overrides = trainer_overrides(set_, epochs=epochs, device=device, threads=threads)
    keep_freed_memory()
    try:
        result = tune(model, data, out, trials, preset=preset, config=config, overrides=overrides, recipe=recipe,
                      metric=metric, space=space, space_only=space_only, pruner=pruner, storage=storage,
                      study_name=study_name, jobs=jobs,
                      final_seeds=parse_seeds(final_seeds, "--final-seeds") if final_seeds else None, seed=seed,
                      progress=not quiet)
    except KeyboardInterrupt:
        typer.secho("interrupted: finished trials are kept in the study; run the same command to continue it",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items()))
    typer.echo(f"study {result.study_name}: {counts or 'no trial'}")
    if result.best_trial is not None:
        typer.echo(f"best trial {result.best_trial}: valid {result.metric} {result.best_value:.4f} -> "
                   f"{result.best_config}")
    if result.final is not None:
        from ..training.api import result_line

        typer.echo(f"final runs: {result_line(result.final)}")


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)
