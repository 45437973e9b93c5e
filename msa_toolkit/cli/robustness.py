"""`msa robustness`: a checkpoint's metrics under missing and noisy modalities (msa_toolkit.training.robustness)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._options import data_option


def _csv(text: str) -> list[str]:
    return [s for s in text.replace(" ", "").split(",") if s]


def robustness_command(
    checkpoint: Path = typer.Argument(..., exists=True,
                                      help="A checkpoint, a run folder (its best.safetensors) or a multi-seed run "
                                           "folder (every seed_*/best.safetensors; mean ± std over them)."),
    data: Path = data_option(required=True),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Write robustness.json, robustness.csv and robustness.png here."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON to this file."),
    split: str = typer.Option("test", "--split", help="Split to perturb and score (test or valid)."),
    protocols: str = typer.Option("A,B,noise", "--protocols",
                                  help="A (frame/token dropping), B (whole modalities missing), noise (Gaussian "
                                       "noise on standardised audio/vision); comma-separated."),
    rates: Optional[str] = typer.Option(None, "--rates",
                                        help="Comma-separated rates for every protocol chosen (default: A and "
                                             "noise 0,0.1,...,0.9; B 0,0.1,...,0.7)."),
    mask_seed: List[int] = typer.Option([1111], "--mask-seed",
                                        help="Seed of the masks and noise (MMSA's default 1111); repeat it to "
                                             "average the metrics over several."),
    modalities: Optional[str] = typer.Option(None, "--modalities",
                                             help="Perturb only these modalities (comma-separated; default: "
                                                  "all the checkpoint uses)."),
    unk_id: Optional[int] = typer.Option(None, "--unk-id",
                                         help="Token id dropped text tokens become (default: the unknown token of "
                                              "the model's text encoder tokenizer)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Evaluation batch size."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score a checkpoint with modalities dropped frame by frame (A), missing whole (B) and noisy, per rate.

    Prints one table per protocol (non-0 Acc-2 and MAE per rate) and the area under each metric's curve
    (AUILC: trapezoid over the rates, not normalised). Rate 0 equals `msa evaluate`. The masks come from the
    sample ids and --mask-seed only, so every model sees the same ones. Definitions: docs/robustness.md.
    """
    from ..training.metrics import format_value
    from ..training.robustness import robustness

    try:
        rate_list = [float(r) for r in _csv(rates)] if rates else None
    except ValueError:
        raise typer.BadParameter(f"--rates expects comma-separated numbers, got {rates!r}") from None
    result = robustness(checkpoint, data, split=split, protocols=_csv(protocols), rates=rate_list,
                        mask_seeds=mask_seed, modalities=_csv(modalities) if modalities else None, device=device,
                        batch_size=batch_size, out_dir=out, json_path=json_out, unk_id=unk_id, progress=not quiet)
    for p, v in result.protocols.items():
        rows = v["per_rate"]
        acc = "acc2_non0" if "acc2_non0" in rows[0]["metrics"] else "acc2"
        typer.echo(f"protocol {p} ({v['about']}); {split}, {len(result.checkpoints)} checkpoint(s), mask seeds "
                   f"{','.join(map(str, result.settings['mask_seeds']))}")
        typer.echo(f"  {'rate':>5}  {acc:>9}  {'mae':>7}")
        for r in rows:
            typer.echo(f"  {r['rate']:>5.2f}  {format_value(r['metrics'][acc]):>9}  "
                       f"{format_value(r['metrics']['mae']):>7}")
        typer.echo(f"  AUILC  {format_value(v['auilc'][acc]):>9}  {format_value(v['auilc']['mae']):>7}")
    if out is not None:
        typer.echo(f"wrote {out}/robustness.json, robustness.csv, robustness.png")


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness_command)
