"""`msa benchmark`: every model x seed on one dataset, one cross-model table (msa_toolkit.training.benchmark)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from ._options import INTERRUPTED_EXIT, complete_models, complete_preset, complete_recipe, trainer_overrides


def _csv(text: str) -> list[str]:
    return [s for s in text.replace(" ", "").split(",") if s]


def benchmark_command(
    models: str = typer.Option(..., "--models",
                               help="Comma-separated model names (msa models lists them), e.g. dlf,almt,tfn.",
                               autocompletion=complete_models),
    data: Path = typer.Option(..., "--data", "-d", help="Native dataset directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Benchmark directory (runs/ + results.*); re-running resumes."),
    seeds: str = typer.Option("1,2,3", "--seeds",
                              help="Comma-separated seeds, one run per model and seed; 'recipe' = each recipe's."),
    recipe: str = typer.Option("toolkit", "--recipe",
                               help="toolkit | reference (models without that recipe use toolkit; the table says).",
                               autocompletion=complete_recipe),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="Preset for the models that define it (e.g. mosi).",
                                         autocompletion=complete_preset),
    set_: List[str] = typer.Option([], "--set", "-s", metavar="<key=value>",
                                   help="Override for every model (trainer.epochs=3) or one (dlf:model.dim=32)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Shortcut for --set trainer.epochs=N."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0, metavar="N",
                                          help="torch CPU threads for the run, set once at start-up (0 = MSA_THREADS "
                                               "or torch's default; fewer can be faster for small batches, "
                                               "see docs/cli.md)."),
    mmsa_names: bool = typer.Option(False, "--mmsa-names", help="MMSA's metric names (Non0_acc_2, ...) in the tables."),
    percent: bool = typer.Option(False, "--percent/--fractions",
                                 help="Accuracies and F1 in percent in results.md/png, as the papers (default: "
                                      "fractions; the CSV and JSON files always hold fractions)."),
    paper: bool = typer.Option(False, "--paper", help="Add the papers' CMU-MOSI numbers next to the table."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="MODEL",
                                           help="Compare every model with this one: paired t-test over seeds and "
                                                "a bootstrap interval on the test predictions (significance.csv; "
                                                "† in the tables)."),
    allow_frozen_text: bool = typer.Option(False, "--allow-frozen-text",
                                           help="Run the reference recipes that fine-tune BERT (DLF, ALMT, MInD) "
                                                "without model.text_encoder, on frozen text features; the rows "
                                                "record frozen_text: true."),
    robustness: Optional[str] = typer.Option(None, "--robustness", metavar="PROTOCOLS",
                                             help="Also score each run under these robustness protocols (A, B, "
                                                  "noise; comma-separated, as `msa robustness`) and add each "
                                                  "model's AUILC (mean ± std over seeds) to the tables."),
    quiet: bool = typer.Option(True, "--quiet/--verbose", help="Per-run progress output."),
) -> None:
    """Train every model x seed (finished runs are skipped) and write results.{md,csv,json,png}.

    The main figures are test metrics of the checkpoint chosen on valid; with --recipe reference
    the authors' "best test epoch" figures follow in their own, labelled table.
    """
    from ..allocator import keep_freed_memory
    from ..training.benchmark import benchmark
    from ..training.benchmark import PAPER_MOSI

    keep_freed_memory()
    overrides = trainer_overrides(set_, epochs=epochs, device=device, threads=threads,
                                  allow_frozen_text=allow_frozen_text)
    try:
        seed_list = None if seeds == "recipe" else [int(s) for s in _csv(seeds)]
    except ValueError:
        raise typer.BadParameter(f"--seeds expects comma-separated integers, got {seeds!r}") from None
    try:
        result = benchmark(_csv(models), data, out, seeds=seed_list, recipe=recipe, preset=preset,
                           overrides=overrides, progress=not quiet, mmsa_names=mmsa_names, percent=percent,
                           paper=PAPER_MOSI if paper else None, baseline=baseline,
                           robustness=_csv(robustness) if robustness else ())
    except KeyboardInterrupt:
        typer.secho(f"interrupted: finished runs are kept in {out}; run the same command to continue (finished "
                    "runs are skipped, the interrupted one resumes from its last.pt)", fg=typer.colors.YELLOW,
                    err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    if os.environ.get("RANK", "0") != "0":
        return
    typer.echo((out / "results.md").read_text())
    failed = sum(r["status"] != "ok" for r in result.runs)
    reused = sum(str(r.get("resumed", "")).startswith("skipped") for r in result.runs)
    said = f" ({reused} read back: finished before, same fingerprint)" if reused else ""
    typer.echo(f"{len(result.runs) - failed} of {len(result.runs)} runs finished{said}; results in {out}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_command)
