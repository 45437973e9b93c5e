"""`msa dataset`: create, import, export, inspect and validate datasets (thin wrappers over msa_toolkit.data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._options import (ExtractorFlags, data_option, dataset_argument, dataset_path, extract_config,
                       extractor_options)

dataset_app = typer.Typer(
    name="dataset",
    help="Create datasets from label files (+ videos), import MMSA / MAG-BERT pickles, export MMSA ones, inspect "
         "and validate.",
    no_args_is_help=True,
)


def _console():
    from rich.console import Console

    return Console(stderr=False)


@dataset_app.command("create")
@extractor_options()
def create_command(
    labels: Path = typer.Option(..., "--labels", "-l", exists=True, dir_okay=False, readable=True,
                                help="Label file (CSV/TSV): id or video_id+clip_id, label, optional mode, text, label_T/A/V, annotation."),
    videos: Optional[Path] = typer.Option(None, "--videos", "-v", exists=True, file_okay=False,
                                          help="Media folder (MMSA-FET Raw/<video>/<clip>.* or flat). "
                                               "Omit for a text-only dataset from the label text."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to create."),
    transcripts: str = typer.Option("whisper", "--transcripts", "-t",
                                    help="whisper: recognise speech; label: use the label file's text."),
    extractors: ExtractorFlags = ExtractorFlags(),  # the extractor flags (cli/_options.py)
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Extraction processes."),
    shard: Optional[str] = typer.Option(None, "--shard",
                                        help="i/n: only extract shard i of n into the cache (no dataset written)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", file_okay=False,
                                             help="Extraction cache (default $MSA_CACHE_DIR or ~/.cache/msa_toolkit)."),
    seed: int = typer.Option(0, "--seed", help="Seed for creating splits when the label file has none."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    # 0.5 = msa_toolkit.word_timing.MIN_WORD_MATCH, written out so `msa --help` imports nothing heavy
    min_word_match: float = typer.Option(0.5, "--min-word-match", min=0.0, max=1.0,
                                         help="With --transcripts label --align words: lowest fraction of a label "
                                              "transcript's words that must match the words Whisper hears; rows "
                                              "below it fail (listed in errors.json)."),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Write the dataset without the rows that failed (default: any lost "
                                            "row fails the command, exit code 2, and only errors.json is written)."),
) -> None:
    """Build a native dataset from a label file and (optionally) videos."""
    if transcripts not in ("whisper", "label"):
        raise typer.BadParameter("--transcripts must be 'whisper' or 'label'")
    config = extract_config(extractors)
    from ..data.build import ALLOW_MISSING, build_dataset
    from ..errors import RowsLostError

    try:
        rep = build_dataset(labels, videos=videos, out_dir=out, transcripts=transcripts, config=config,
                            cache_dir=cache_dir, workers=workers, shard=shard, progress=not quiet, seed=seed,
                            overwrite=overwrite, min_word_match=min_word_match, allow_missing=allow_missing)
    except RowsLostError as e:  # name this command's flag, not the library's parameter
        raise RowsLostError(str(e).replace(ALLOW_MISSING, "--allow-missing")) from None
    if rep.dataset is None:
        typer.echo(f"shard {rep.shard[0]}/{rep.shard[1]} extracted into the cache "
                   f"({rep.n_cached} already cached, {len(rep.failures)} failed); "
                   "run again without --shard to write the dataset")
        return
    sizes = ", ".join(f"{k} {v}" for k, v in rep.sizes.items())
    typer.echo(f"dataset written to {rep.out_dir}: {sizes} ({rep.seconds:.1f} s)")
    if rep.splits_created:
        asked = "/".join(f"{100 * r / sum(rep.split_ratios):g}" for r in rep.split_ratios)
        got = ", ".join(f"{k} {100 * v:.1f}%" for k, v in rep.split_fractions().items())
        typer.echo(f"splits created (seed {seed}, grouped by {rep.split_grouping}, asked {asked}%): {got}")
        if rep.split_grouping == "clip":
            typer.secho("note: too few videos to split by video: clips of one video are in several splits",
                        fg=typer.colors.YELLOW, err=True)
    typer.echo("non-finite feature values replaced by 0: " + ", ".join(f"{m} {n}" for m, n in rep.nonfinite.items()))
    if rep.word_match:
        fr = list(rep.word_match.values())
        low = sum(f < min_word_match for f in fr)
        typer.echo(f"label transcript words matched to the speech: mean {100 * sum(fr) / len(fr):.0f}%, "
                   f"min {100 * min(fr):.0f}% over {len(fr)} rows; {low} below --min-word-match {min_word_match:g}")
    if rep.failures:
        typer.secho(f"{len(rep.failures)} rows left out (--allow-missing); see {rep.errors_path}",
                    fg=typer.colors.YELLOW, err=True)
        for f in rep.failures[:5]:
            typer.echo(f"  {f.id} [{f.stage}] {f.message}", err=True)


@dataset_app.command("import")
def import_command(
    file: Path = typer.Argument(..., exists=True, readable=True,
                                help="MMSA pickle (aligned_50.pkl, unaligned_50.pkl, ...), or MAG-BERT / MInD's "
                                     "mosi.pkl, train.pkl (dev.pkl and test.pkl beside it) or their folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to create."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in --out."),
    fmt: str = typer.Option("auto", "--format", "-f",
                            help="auto (from the content) | mmsa | magbert (docs/formats.md)."),
    text: str = typer.Option("minilm", "--text",
                             help="magbert: text extractor (minilm) or transformers folder / cached id whose "
                                  "features and token ids are computed from the words (a local BERT folder for "
                                  "BERT fine-tuning); none: transcripts only."),
    align: str = typer.Option("auto", "--align",
                              help="magbert: tokens (audio/vision rows repeated per token, as MInD's MOSI loader) "
                                   "| words (one row per word, as its MOSEI loader) | auto (tokens for mosi.pkl, "
                                   "words for train/dev/test.pkl)."),
    device: str = typer.Option("cpu", "--device", help="magbert: where the text model runs (cpu, cuda)."),
) -> None:
    """Import an MMSA or MAG-BERT / MInD pickle as a native dataset."""
    from ..data.importers import FORMATS, import_dataset

    if fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    text_model = None if text.strip().lower() in ("none", "off", "") else text
    ds, rep, used = import_dataset(file, out, fmt=fmt, overwrite=overwrite, text_model=text_model, align=align,
                                   device=device)
    sizes = ", ".join(f"{k} {v}" for k, v in ds.num_samples().items())
    dims = "/".join(str(rep.dims.get(m, 0)) for m in ("text", "audio", "vision"))
    layout = rep.layout if used == "mmsa" else f"magbert, {rep.form}, {rep.align}-aligned, text {rep.text_model or 'none'}"
    typer.echo(f"imported {file.name} ({layout}, dims {dims}) -> {out}: {sizes}")
    typer.echo("non-finite feature values replaced by 0: " + ", ".join(f"{m} {n}" for m, n in rep.nonfinite.items()))
    for w in rep.warnings:
        typer.secho(f"note: {w}", fg=typer.colors.YELLOW, err=True)


@dataset_app.command("export")
def export_command(
    dataset: Optional[Path] = dataset_argument(),
    data: Optional[Path] = data_option(),
    out: Path = typer.Option(..., "--out", "-o", dir_okay=False, help="File to write."),
    fmt: str = typer.Option("mmsa", "--format", "-f", help="Output format (mmsa: MMSA pickle)."),
    text_len: Optional[int] = typer.Option(None, "--text-len", min=1, help="Pad/truncate text to this length."),
    audio_len: Optional[int] = typer.Option(None, "--audio-len", min=1, help="Pad/truncate audio to this length."),
    vision_len: Optional[int] = typer.Option(None, "--vision-len", min=1, help="Pad/truncate vision to this length."),
    max_len: Optional[str] = typer.Option(None, "--max-len",
                                          help="Padded length per modality, e.g. text=50,audio=375,vision=500 "
                                               "(default: MMSA-FET's mean + 3 std of the lengths, rounded; an "
                                               "imported pickle keeps its own)."),
) -> None:
    """Export a native dataset (MMSA pickle, usable by MMSA, ALMT and DLF reference code)."""
    dataset = dataset_path(dataset, data)
    from ..data.importers import EXPORT_FORMATS, export_dataset

    if fmt not in EXPORT_FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}; supported: {', '.join(EXPORT_FORMATS)}")

    lengths = {k: v for k, v in (("text", text_len), ("audio", audio_len), ("vision", vision_len)) if v}
    lengths.update(_max_len(max_len))
    rep = export_dataset(dataset, out, fmt=fmt, lengths=lengths)
    sizes = ", ".join(f"{k} {v}" for k, v in rep.sizes.items())
    typer.echo(f"wrote {out}: {sizes}; lengths {rep.lengths}")
    for w in rep.warnings:
        typer.secho(f"note: {w}", fg=typer.colors.YELLOW, err=True)


def _max_len(text: Optional[str]) -> dict[str, int]:
    """``text=50,audio=375`` -> {"text": 50, "audio": 375}."""
    out: dict[str, int] = {}
    for item in (text or "").replace(" ", "").split(","):
        if not item:
            continue
        name, _, value = item.partition("=")
        if not value.isdigit() or int(value) < 1:
            raise typer.BadParameter(f"--max-len expects modality=length items like text=50,audio=375; got {item!r}")
        out[name] = int(value)
    return out


@dataset_app.command("info")
def info_command(
    dataset: Optional[Path] = dataset_argument(),
    data: Optional[Path] = data_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Counts per split, label histogram, sequence lengths, feature dims and FeatureSpec."""
    dataset = dataset_path(dataset, data)
    from ..data.inspect import dataset_info

    info = dataset_info(dataset)
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]{info['path']}[/bold]  modalities: {', '.join(info['modalities'])}  dims: "
              + ", ".join(f"{m} {d}" for m, d in info["dims"].items()))
    t = Table(title="splits")
    for c in ("split", "samples", "neg", "neu", "pos", "label mean", "label std"):
        t.add_column(c, justify="right")
    for name, s in info["splits"].items():
        t.add_row(name, str(s["samples"]), str(s["negative"]), str(s["neutral"]), str(s["positive"]),
                  str(s["label_mean"]), str(s["label_std"]))
    con.print(t)
    bins = list(next(iter(info["splits"].values()))["label_histogram"]) if info["splits"] else []
    h = Table(title="label histogram (rounded labels)")
    h.add_column("split")
    for b in bins:
        h.add_column(b, justify="right")
    for name, s in info["splits"].items():
        h.add_row(name, *(str(s["label_histogram"][b]) for b in bins))
    con.print(h)
    lt = Table(title="sequence lengths (steps)")
    for c in ("split", "modality", "min", "mean", "median", "p95", "max", "empty"):
        lt.add_column(c, justify="right")
    for name, s in info["splits"].items():
        for m, st in s["lengths"].items():
            lt.add_row(name, m, *(str(st[k]) for k in ("min", "mean", "median", "p95", "max", "empty")))
    con.print(lt)
    for e in info["spec"]["extractors"]:
        con.print(f"  {e['modality']:6s} {e['name']} v{e['version']} dim={e['dim']} params={e['params']}")
    if info["spec"].get("origin"):
        con.print(f"  origin: {info['spec']['origin']}")
    prov = info["provenance"]
    con.print(f"  created {prov.get('created')} by msa_toolkit {prov.get('toolkit_version')} "
              f"from {prov.get('labels') or prov.get('file') or prov.get('source')}")


@dataset_app.command("validate")
def validate_command(
    dataset: Optional[Path] = dataset_argument(),
    data: Optional[Path] = data_option(),
    label_min: Optional[float] = typer.Option(None, "--label-min", help="Lowest valid label (default: inferred)."),
    label_max: Optional[float] = typer.Option(None, "--label-max", help="Highest valid label (default: inferred)."),
    strict: bool = typer.Option(False, "--strict",
                                help="Samples lacking a modality (a silent clip: no text; no face: no vision) fail "
                                     "too; without it they are reported only."),
) -> None:
    """Check for NaNs, samples without any modality, label range problems and duplicate ids; exit code 1 on
    problems. Samples lacking one modality are reported and fail only with --strict."""
    dataset = dataset_path(dataset, data)
    from ..data.inspect import failing, label_range, validate_dataset
    from ..data.native import load_dataset

    ds = load_dataset(dataset)
    lo, hi = label_range(ds)
    bounds = (lo if label_min is None else label_min, hi if label_max is None else label_max)
    issues = validate_dataset(ds, label_bounds=bounds)
    problems = failing(issues, strict)
    for p in issues:
        typer.secho(f"{p.split or '-'} [{p.kind}] {p.message}",
                    fg=typer.colors.RED if p in problems else typer.colors.YELLOW)
    if not problems:
        notes = f"; {len(issues)} notice(s): samples without a modality (--strict fails them)" if issues else ""
        typer.echo(f"{dataset}: OK ({sum(ds.num_samples().values())} samples, labels in [{bounds[0]:g}, "
                   f"{bounds[1]:g}]){notes}")
        return
    typer.secho(f"{dataset}: {len(problems)} problem(s)", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
