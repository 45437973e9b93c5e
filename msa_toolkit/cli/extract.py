"""`msa extract`: media files and folders -> cached feature bundles (thin wrapper over msa_toolkit.extraction.extract)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ._options import ExtractorFlags, extract_config, extractor_options


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
) -> None:
    """Extract transcripts and text, audio and facial features from videos into OUT.

    Writes <name>.safetensors + <name>.json per file, manifest.json, and errors.json / errors.csv when files fail.

    Results are cached by file content and settings: re-running does no work for unchanged files, and a killed run resumes where it stopped. Exits with status 1 when every file failed.
    """
    config = extract_config(extractors)
    from ..extraction import extract

    res = extract(paths, out_dir=out, config=config, cache_dir=cache_dir, workers=workers, shard=shard,
                  transcripts=transcripts, progress=not quiet, save_srt=srt, backend=backend, ray_address=address)
    _summary(res, out)
    if res.failures and not res.items:
        raise typer.Exit(1)


def _summary(res, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if res.items:
        table = Table(title=f"{len(res.items)} extracted ({res.n_cached} from cache) in {res.seconds:.1f} s")
        for col in ("file", "duration s", "words", "cached", "time s"):
            table.add_column(col, justify="left" if col == "file" else "right")
        for i in res.items:
            table.add_row(i.name, f"{i.duration:.1f}" if i.duration is not None else "-", str(i.n_words),
                          "yes" if i.cached else "no", f"{i.seconds:.2f}")
        console.print(table)
    if res.failures:
        table = Table(title=f"{len(res.failures)} failed", title_style="bold red")
        for col in ("file", "stage", "message"):
            table.add_column(col)
        for f in res.failures:
            table.add_row(Path(f.path).name, f.stage, f.message)
        console.print(table)
    dims = ", ".join(f"{m} {d}" for m, d in res.spec.dims.items() if d)
    console.print(f"features: {dims or 'none'}; bundles and manifest in {out}")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract_command)
