"""`msa predict`: media files and folders -> sentiment per clip (thin wrapper over msa_toolkit.prediction.predict)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ._options import OUTPUT_FALLBACK_EXIT, ExtractorFlags, extract_config, extractor_options

#: the --json / --csv value that means standard output
STDOUT = "-"

#: shown in --help: what the bundled model is (kept in step with assets/default_model/MODEL_CARD.md)
DEFAULT_MODEL_NOTE = (
    "Without --checkpoint the bundled default model is used: a text-only model (Whisper tiny.en transcript -> "
    "all-MiniLM-L6-v2 token features -> text_only regression head) trained on the human sentiment labels of "
    "the CMU-MOSEI and CMU-MOSI train transcripts (research datasets; see assets/default_model/MODEL_CARD.md "
    "for its MOSI and MOSEI test scores). It hears what is said, not how: multimodal models (DLF, ALMT, MMCL, "
    "MInD) are trained on your own videos with `msa train` and used here with --checkpoint."
)
#: shown in --help: what the extractor flags do here
EXTRACTOR_FLAGS_NOTE = (
    "The extractor flags default to the checkpoint's FeatureSpec. Use them to choose the speech recogniser "
    "(e.g. --asr-model, --language, --no-vad); a flag that changes the features the model was trained on is "
    "an error naming the difference."
)


@extractor_options(from_checkpoint=True)
def predict_command(
    paths: List[Path] = typer.Argument(..., exists=True, readable=True, resolve_path=True,
                                       help="Video or audio files and/or folders (searched recursively)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False,
                                              help="A checkpoint written by `msa train` (default: bundled model)."),
    segments: bool = typer.Option(False, "--segments",
                                  help="Also score each Whisper sentence segment (a sentiment timeline)."),
    json_out: Optional[Path] = typer.Option(None, "--json", dir_okay=False,
                                            help="Write results as JSON ('-': to stdout; the table then goes to "
                                                 "stderr)."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", dir_okay=False,
                                           help="Write results as CSV ('-': to stdout; the table then goes to "
                                                "stderr)."),
    plot_dir: Optional[Path] = typer.Option(None, "--plot-dir", file_okay=False,
                                            help="With --segments: write one timeline PNG per clip here."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", file_okay=False,
                                             help="Feature cache (default $MSA_CACHE_DIR or ~/.cache/msa_toolkit)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Extraction worker processes."),
    extractors: ExtractorFlags = ExtractorFlags(),  # the extractor flags (cli/_options.py)
    threads: Optional[int] = typer.Option(None, "--threads", min=0,
                                          help="torch CPU threads for the model, set once at start-up (0 = MSA_THREADS "
                                               "or torch's default; fewer can be faster for small batches, "
                                               "see docs/cli.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no table."),
) -> None:
    """Predict the sentiment of each clip: score in [-3, 3], polarity, 7-class label, transcript."""
    import time

    from ..allocator import keep_freed_memory
    from ..errors import MSAError
    from ..extraction.safety import check_output_dir, check_output_file
    from ..prediction import Predictor, plot_timeline, predict
    from ..prediction_types import to_csv, to_json

    t0 = time.perf_counter()
    keep_freed_memory()
    # every output is checked before the model loads or anything is extracted (OutputError: exit 2)
    to_stdout = [t for t in (json_out, csv_out) if t is not None and str(t) == STDOUT]
    if len(to_stdout) > 1:
        raise MSAError("--json - and --csv - both ask for stdout: send one of them to a file")
    for target, what in ((json_out, "--json file"), (csv_out, "--csv file")):
        if target is not None and str(target) != STDOUT:
            check_output_file(target, what)
    if plot_dir is not None and not segments:  # a timeline needs the segments: never ignored silently
        raise MSAError("--plot-dir draws the --segments timeline: pass --segments too")
    if plot_dir is not None:
        check_output_dir(plot_dir, "--plot-dir folder")
    predictor = Predictor.load(checkpoint)
    if extractors.given():
        predictor = predictor.with_extract_config(extract_config(extractors, base=predictor.extract_config))
    preds = predict(paths, segments=segments, cache_dir=cache_dir, workers=workers, progress=not quiet,
                    predictor=predictor, threads=threads)
    ck = predictor.checkpoint
    extra = {"checkpoint": getattr(ck, "path", ""), "model": ck.model_name,
             "seconds": round(time.perf_counter() - t0, 3)}
    misplaced = False
    for target, text in ((json_out, lambda: to_json(preds, extra, segments)), (csv_out, lambda: to_csv(preds))):
        if target is not None and str(target) == STDOUT:
            sys.stdout.write(text())
            sys.stdout.flush()
        elif target:
            misplaced |= not _write_result(target, text())
    if plot_dir and segments:
        plot_dir.mkdir(parents=True, exist_ok=True)
        for p, name in zip(preds, _plot_names(preds)):
            if p.segments:
                plot_timeline(p, plot_dir / f"{name}_timeline.png")
    if not quiet:
        _print_table(preds, f"sentiment ({ck.model_name}, {Path(extra['checkpoint']).name})", stderr=bool(to_stdout))
    if misplaced:  # the results exist, but not where asked: a script must notice
        raise typer.Exit(OUTPUT_FALLBACK_EXIT)
    if preds and all(not p.ok for p in preds):
        raise typer.Exit(1)


def _print_table(preds: list, title: str, stderr: bool = False) -> None:
    """The terminal table: one row per scored or failed file (and its segments); non-media files
    in one "skipped" line under it. ``stderr``: print it there (stdout carries --json - / --csv -)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..extraction.inputs import NOT_MEDIA

    console = Console(stderr=stderr)
    table = Table(title=escape(title))
    show_face = any(p.face_ratio is not None for p in preds)
    cols = [("file", {"no_wrap": True}), ("score", {"justify": "right"}), ("polarity", {}), ("7-class", {})]
    if show_face:
        cols.append(("face", {"justify": "right"}))
    cols.append(("transcript / note", {"overflow": "fold", "ratio": 1}))
    for col, kw in cols:
        table.add_column(col, **kw)
    skipped = [p for p in preds if p.skipped]
    for p in preds:
        if p.skipped:  # not media: one line under the table, not a row (the JSON/CSV keep the record)
            continue
        face = [] if not show_face else ["-" if p.face_ratio is None else f"{p.face_ratio:.0%}"]
        if not p.ok:
            table.add_row(Path(p.path).name, "-", "-", "-", *(["-"] if show_face else []),
                          f"[red]error: {escape(p.error or '')}[/red]")
            continue
        note = escape(p.transcript)
        if p.flags:
            note = (note + "  " if note else "") + f"[yellow]({escape('; '.join(p.flags))})[/yellow]"
        table.add_row(Path(p.path).name, f"{p.score:+.2f}", p.polarity, p.label7, *face, note)
        for sg in p.segments:
            table.add_row("", f"{sg.score:+.2f}", sg.polarity, "", *([""] if show_face else []),
                          escape(f"  [{sg.start:.1f}-{sg.end:.1f}s] {sg.text}"))
    console.print(table)
    kinds: dict[str, list[str]] = {}
    for p in skipped:  # "[skipped] not a media file (.xyz)" / "[skipped] dangling symbolic link (to x)"
        why = (p.error or "").removeprefix("[skipped] ").split(" (")[0]
        kinds.setdefault("not media" if why == NOT_MEDIA else why, []).append(Path(p.path).name)
    for why, names in kinds.items():
        console.print(escape(f"skipped ({why}): {', '.join(names)}"))


def _plot_names(preds: list) -> list[str]:
    """One file name per prediction: the clip's stem, ``stem__1``, ``stem__2``, ... when stems repeat
    (``a/clip.mp4`` and ``b/clip.mp4``), so no timeline overwrites another."""
    from ..ids import NAME_SEPARATOR

    seen: dict[str, int] = {}
    out = []
    for p in preds:
        stem = Path(p.path).stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        out.append(stem if n == 0 else f"{stem}{NAME_SEPARATOR}{n}")
    return out


def _write_result(target: Path, text: str) -> bool:
    """Write ``text`` to ``target``; when that fails at the end of a run, to a fallback file (path printed).
    True when written to ``target``."""
    from .._io import atomic_write_text
    from ..extraction.safety import write_or_fallback

    written, err = write_or_fallback(target, lambda p: atomic_write_text(p, text))
    if err is not None:
        typer.secho(f"warning: cannot write {target} ({err}); results written to {written}",
                    fg=typer.colors.YELLOW, err=True)
    return err is None


predict_command.__doc__ = "\n\n".join((predict_command.__doc__ or "", DEFAULT_MODEL_NOTE, EXTRACTOR_FLAGS_NOTE))


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
