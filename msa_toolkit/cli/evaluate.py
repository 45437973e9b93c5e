"""`msa evaluate`: metrics of a checkpoint on a dataset split, with optional modality ablation."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._options import data_option


def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="A .safetensors checkpoint written by `msa train`."),
    data: Path = data_option(required=True),
    split: str = typer.Option("test", "--split", help="Split to evaluate (train, valid/dev, test)."),
    drop: List[str] = typer.Option([], "--drop", metavar="<modality>",
                                   help="Modality to zero and mask (text|audio|vision); repeatable."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Evaluation batch size."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="Also write one row per sample to this CSV: id, label, prediction and "
                                    "text/audio/vision presence (1/0) as the model saw them."),
    mmsa: bool = typer.Option(False, "--mmsa-names",
                              help="Name the metrics as MMSA does (Has0_acc_2, Non0_F1_score, Mult_acc_7, MAE, "
                                   "Corr, ...), on the console and in --json."),
) -> None:
    """Evaluate a checkpoint; prints the standard metrics (accuracies/F1 as fractions in [0, 1], as in --json)."""
    from .._io import atomic_write_json
    from ..allocator import keep_freed_memory
    from ..training.api import evaluate
    from ..training.metrics import MMSA_NAMES, UNITS, UNITS_NOTE, describe_undefined, format_metrics, mmsa_names

    keep_freed_memory()
    drops = [d for item in drop for d in item.split(",") if d]
    metrics = evaluate(checkpoint, data, split=split, drop=drops, device=device, batch_size=batch_size,
                       predictions=predictions)
    undefined = getattr(metrics, "undefined", {})
    names = {k: v for table in MMSA_NAMES.values() for k, v in table.items()} if mmsa else {}
    if mmsa:
        metrics = mmsa_names(metrics)
    label = f"{split}" + (f" (dropped: {', '.join(drops)})" if drops else "")
    typer.echo(f"{label}: {format_metrics(metrics)}  ({UNITS_NOTE})")
    if undefined:
        typer.secho(f"undefined on {split}: {describe_undefined(undefined, names)}", fg=typer.colors.YELLOW, err=True)
    if json_out is not None:
        doc = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "drop": drops, "units": UNITS,
               "metric_names": "mmsa" if mmsa else "toolkit", "metrics": metrics,
               "undefined": {names.get(k, k): why for k, why in undefined.items()}}
        atomic_write_json(json_out, doc, indent=2)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
