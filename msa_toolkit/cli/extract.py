"""`msa extract`: media files and folders -> cached feature bundles (thin wrapper over msa_toolkit.pipeline.extract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

#: values that switch a stage off
_DISABLED = ("none", "off", "")


def _stage(value: Optional[str]) -> Optional[str]:
    return None if value is None or value.strip().lower() in _DISABLED else value


def _text_choice(value: str) -> tuple[Optional[str], dict[str, Any]]:
    """An extractor name (minilm, transformer) or a transformers model id / local folder."""
    if _stage(value) is None:
        return None, {}
    from ..extractors.base import list_extractors

    if value in list_extractors("text"):
        return value, {}
    return "transformer", {"model": value}


def extract_command(
    paths: List[Path] = typer.Argument(..., exists=True, readable=True, resolve_path=True,
                                       help="Media files and/or folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", file_okay=False, help="Output folder for bundles + manifest."),
    audio: str = typer.Option("opensmile", "--audio",
                              help="Acoustic features: opensmile (eGeMAPSv02 LLDs), librosa, wav2vec2, or none."),
    audio_model: Optional[Path] = typer.Option(None, "--audio-model", exists=True, file_okay=False,
                                               help="Local wav2vec2/HuBERT folder (needed for --audio wav2vec2)."),
    opensmile_set: str = typer.Option("eGeMAPSv02", "--opensmile-set", help="eGeMAPSv02 or ComParE_2016."),
    vision: str = typer.Option("mediapipe_face", "--vision", help="Facial features: mediapipe_face, or none."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.1, help="Video frames analysed per second."),
    text: str = typer.Option("minilm", "--text",
                             help="Text encoder: minilm (bundled all-MiniLM-L6-v2), a transformers model id "
                                  "already in the local cache, a local model folder, or none."),
    asr: str = typer.Option("whisper", "--asr", help="Speech recogniser: whisper, or none (needs --transcripts)."),
    asr_model: Optional[str] = typer.Option(None, "--asr-model",
                                            help="faster-whisper model: local CTranslate2 folder or a name in the "
                                                 "local cache (default: bundled tiny.en)."),
    language: str = typer.Option("en", "--language", help="Spoken language code."),
    vad: bool = typer.Option(True, "--vad/--no-vad", help="Voice-activity filtering before Whisper."),
    align: str = typer.Option("none", "--align", help="none (native frame rates) or words (average per word)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Worker processes (each loads models once)."),
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
    if align not in ("none", "words"):
        raise typer.BadParameter("must be 'none' or 'words'", param_hint="--align")
    from ..pipeline import ExtractConfig, extract

    audio_name = _stage(audio)
    audio_params: dict[str, Any] = {}
    if audio_name == "opensmile":
        audio_params["feature_set"] = opensmile_set
    elif audio_name == "wav2vec2":
        if audio_model is None:
            raise typer.BadParameter("--audio wav2vec2 needs --audio-model FOLDER", param_hint="--audio-model")
        audio_params["model"] = str(audio_model)
    asr_name = _stage(asr)
    asr_params: dict[str, Any] = {"language": language, "vad_filter": vad}
    if asr_model:
        asr_params["model"] = asr_model
    vision_name = _stage(vision)
    vision_params: dict[str, Any] = {"fps": fps} if fps and vision_name else {}
    text_name, text_params = _text_choice(text)
    config = ExtractConfig(asr=asr_name, asr_params=asr_params if asr_name else {}, text=text_name,
                           text_params=text_params, audio=audio_name, audio_params=audio_params,
                           vision=vision_name, vision_params=vision_params, align=align)
    res = extract(paths, out_dir=out, config=config, cache_dir=cache_dir, workers=workers, shard=shard,
                  transcripts=transcripts, progress=not quiet, save_srt=srt)
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
