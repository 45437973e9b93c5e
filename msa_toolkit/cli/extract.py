"""`msa extract`: media files and folders -> cached feature bundles (thin wrapper over msa_toolkit.extraction.extract)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._options import (INTERRUPTED_EXIT, OUTPUT_FALLBACK_EXIT, ExtractorFlags, extract_config, extractor_options,
                       parse_require, require_option)


@extractor_options()
def extract_command(
    paths: List[Path] = typer.Argument(..., exists=True, readable=True, resolve_path=True,
                                       help="Media files and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder for bundles + manifest."),
    extractors: ExtractorFlags = ExtractorFlags(),  # the extractor flags (cli/_options.py)
    workers: int = typer.Option(1, "--workers", "-w", min=1,
                                help="Worker processes, or Ray actors with --backend ray (each loads models once)."),
    backend: str = typer.Option("local", "--backend", help="local: this machine; ray: Ray actors on a cluster "
                                                           "(pip install msa_toolkit\\[ray]; see docs/scaling.md)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --backend ray: auto or HOST:PORT of a "
                                                                  "running Ray cluster (default: start a local one)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: only every n-th file starting at i (0-based)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", file_okay=False,
                                             help="Feature cache (default $MSA_CACHE_DIR or ~/.cache/msa_toolkit)."),
    srt: bool = typer.Option(False, "--srt", help="Also write <name>.srt subtitles."),
    transcripts: Optional[Path] = typer.Option(None, "--transcripts", exists=True, file_okay=False,
                                               help="Folder of <name>.txt / .json transcripts that replace ASR "
                                                    "(a clip.txt next to clip.mp4 is always used)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    require: Optional[List[str]] = require_option(),
) -> None:
    """Extract transcripts and text, audio and facial features from videos into OUT.

    Writes <name>.safetensors + <name>.json per file, manifest.json, and errors.json / errors.csv when files fail or are skipped.

    Each file gets the modalities its streams allow: an audio-only file (.wav, .mp3, .flac, .m4a, .ogg, ...) gets transcript, text and audio with vision absent; a video without sound gets vision with asr/text/audio absent; a clip without speech has no text, one without a face in any frame no vision (--require turns an absence into a failure; --require complete fails a file decoded short of its declared duration). Files that are not media, and symbolic links that point nowhere, are listed as skipped.

    Results are cached by file content and settings: re-running does no work for unchanged files, and a killed run resumes where it stopped; Ctrl-C or SIGTERM stops the workers and writes the manifest of the finished files. Exits with status 1 when every file failed, 2 when an output cannot be written (checked before any work), 73 when an output could not be written where asked at the end (it went to a fallback file, named in a warning), 130 when interrupted.
    """
    import dataclasses

    config = extract_config(extractors)
    config = dataclasses.replace(config, require=parse_require(require, config))
    from ..allocator import keep_freed_memory
    from ..extraction import ExtractionInterrupted, extract

    keep_freed_memory()  # workers follow (allocator.follow_parent)
    try:
        res = extract(paths, out_dir=out, config=config, cache_dir=cache_dir, workers=workers, shard=shard,
                      transcripts=transcripts, progress=not quiet, save_srt=srt, backend=backend,
                      ray_address=address)
    except ExtractionInterrupted as stop:
        _summary(stop.result, out)
        typer.secho(f"interrupted: {len(stop.result.items)} finished file(s) kept; "
                    f"manifest in {stop.result.manifest_path}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    _summary(res, out)
    if res.misplaced:  # the run finished, but an output is not where it was asked for: a script must notice
        raise typer.Exit(OUTPUT_FALLBACK_EXIT)
    if res.failures and not res.items:
        raise typer.Exit(1)


#: how many skipped file names the summary line shows
SKIPPED_SHOWN = 5


def _modalities(item) -> str:
    """``text+audio (no vision: no video stream)``, with the face count of multi-face clips."""
    text = "+".join(item.modalities) or ("none: no words to align to" if item.n_words == 0 else "none")
    absent = [m for m in ("text", "audio", "vision") if m in item.absent]
    if absent:
        reasons = dict.fromkeys(item.absent[m].split(" (")[0] for m in absent)
        text += f" (no {'/'.join(absent)}: {'; '.join(reasons)})"
    if item.max_faces is not None and item.max_faces > 1:
        text += f" [{item.max_faces} faces]"
    return text


def _skipped_kinds(skipped) -> dict:
    """Skipped files grouped for the summary: ``"file(s) that are not media"`` / ``"dangling symbolic
    link(s)"`` -> their Failures."""
    from ..extraction.inputs import DANGLING_LINK

    kinds: dict = {}
    for f in skipped:
        what = f"{DANGLING_LINK}(s)" if f.message.startswith(DANGLING_LINK) else "file(s) that are not media"
        kinds.setdefault(what, []).append(f)
    return kinds


def _summary(res, out: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if res.items:
        table = Table(title=f"{len(res.items)} extracted ({res.n_cached} from cache) in {res.seconds:.1f} s")
        for col in ("file", "modalities", "duration s", "words", "cached", "time s"):
            table.add_column(col, justify="left" if col in ("file", "modalities") else "right")
        for i in res.items:
            duration = f"{i.duration:.1f}" if i.duration is not None else "-"
            table.add_row(escape(i.name), escape(_modalities(i)), duration, str(i.n_words),
                          "yes" if i.cached else "no", f"{i.seconds:.2f}")
        console.print(table)
    if res.failures:
        table = Table(title=f"{len(res.failures)} failed", title_style="bold red")
        for col in ("file", "stage", "message"):
            table.add_column(col)
        for f in res.failures:
            table.add_row(escape(Path(f.path).name), f.stage, escape(f.message))
        console.print(table)
    for what, files in _skipped_kinds(res.skipped).items():
        names = ", ".join(Path(f.path).name for f in files[:SKIPPED_SHOWN])
        more = f" and {len(files) - SKIPPED_SHOWN} more" if len(files) > SKIPPED_SHOWN else ""
        console.print(escape(f"skipped {len(files)} {what}: {names}{more} (listed in errors.json)"))
    for i in res.items:
        if i.incomplete:  # a truncated file: kept, but said (--require complete fails it)
            console.print(f"[yellow]warning: {escape(i.name)}: {escape(i.incomplete)}; pass --require complete "
                          "to fail such files[/yellow]")
    for w in res.warnings:
        console.print(f"[yellow]warning: {escape(w)}[/yellow]")
    dims = ", ".join(f"{m} {d}" for m, d in res.spec.dims.items() if d)
    if res.items:
        console.print(f"features: {dims or 'none'}; bundles and manifest in {out}")
    else:
        console.print(f"no bundles written; the manifest and the failure reports are in {out}")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_command)
