"""Inputs of an extraction run: which files, under which names, in which shard, with which user transcript."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .._io import AUDIO_EXTENSIONS, TRANSCRIPT_EXTENSIONS, VIDEO_EXTENSIONS, is_media_file
from ..errors import ExtractConfigError, MediaError
from ..features import Transcript
from ..ids import NAME_SEPARATOR, extract_name
from .results import SKIPPED, Failure

#: why a folder scan skipped a file (the start of its Failure message; summaries group skipped files by it)
NOT_MEDIA = "not a media file"
DANGLING_LINK = "dangling symbolic link"

__all__ = ["NAME_SEPARATOR", "collect_files", "collect_inputs", "require_media", "parse_shard", "select_shard",
           "read_user_transcript", "find_user_transcript"]


def collect_files(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list[Failure]]:
    """Expand files and folders (recursively, media extensions only) to ``(path, name)`` pairs.

    Names are file stems; files inside a given folder are named by their path relative
    to it (``sub__clip``, see :func:`msa_toolkit.ids.extract_name`) so same-named clips in
    different folders do not collide. Missing paths become "input" failures. Sorted by path,
    duplicates removed. :func:`collect_inputs` also lists the files a folder scan skipped.
    """
    files, failures, _ = collect_inputs(paths)
    return files, failures


def _is_companion(f: Path) -> bool:
    """A file that belongs to a media file next to it (``clip.txt``/``.json``/``.csv``/``.srt`` of
    ``clip.mp4``): read or written alongside it, so it is neither media nor worth listing as skipped."""
    return any(f.with_suffix(ext).is_file() or f.with_suffix(ext.upper()).is_file()
               for ext in sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS))


def collect_inputs(paths: Iterable[str | os.PathLike]
                   ) -> tuple[list[tuple[Path, str]], list[Failure], list[Failure]]:
    """:func:`collect_files`, plus the files found in folders that are not media, and the symbolic
    links there that point nowhere: ``Failure``s of stage ``"skipped"`` (hidden files and a media
    file's companions - its transcript, OpenFace CSV, subtitles - are not listed)."""
    found: dict[Path, str] = {}
    failures: list[Failure] = []
    skipped: dict[str, Failure] = {}
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if not f.is_file():
                    if f.is_symlink() and not f.exists() and not any(part.startswith(".") for part in rel.parts):
                        why = f"{DANGLING_LINK} (to {os.readlink(f)})"
                        skipped.setdefault(str(f), Failure(str(f), SKIPPED, why))
                    continue
                if is_media_file(f):
                    if not f.name.startswith("."):
                        found.setdefault(f.resolve(), extract_name(rel))
                elif not any(part.startswith(".") for part in rel.parts) and not _is_companion(f):
                    why = f"{NOT_MEDIA} ({f.suffix or 'no extension'})"
                    skipped.setdefault(str(f), Failure(str(f), SKIPPED, why))
        elif p.is_file():
            found.setdefault(p.resolve(), p.stem)
        else:
            failures.append(Failure(str(p), "input", "no such file or directory"))
    items = sorted(found.items(), key=lambda kv: str(kv[0]))
    # disambiguate remaining collisions (same stem passed as separate files)
    seen: dict[str, int] = {}
    out: list[tuple[Path, str]] = []
    for path, name in items:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((path, name if n == 0 else f"{name}{NAME_SEPARATOR}{n}"))
    return out, failures, sorted(skipped.values(), key=lambda f: f.path)


def require_media(paths: Iterable[str | os.PathLike], files: list[tuple[Path, str]], failures: list[Failure],
                  skipped: list[Failure]) -> None:
    """Raise :class:`MediaError` when the inputs hold no media file at all (only skipped files, or
    empty folders): a run with nothing to do is a mistake worth one clear line, not an empty manifest."""
    if files or failures:
        return
    where = ", ".join(str(p) for p in paths) or "(no paths)"
    kinds = ", ".join(sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS))
    extra = f"; {len(skipped)} other file(s) skipped, e.g. {Path(skipped[0].path).name}" if skipped else ""
    raise MediaError(where, f"no media files found (looked for {kinds}){extra}")


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (0-based i) -> (i, n); validates 0 <= i < n."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i_s, n_s = shard.split("/")
            i, n = int(i_s), int(n_s)
        except ValueError:
            raise ExtractConfigError(f"shard must look like 'i/n' (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ExtractConfigError(f"shard index must satisfy 0 <= i < n, got {i}/{n}")
    return i, n


def select_shard(files: Sequence[tuple[Path, str]], shard: tuple[int, int] | None) -> list[tuple[Path, str]]:
    """Files of shard ``i`` of ``n``: every n-th file of the path-sorted list, starting at i."""
    files = sorted(files, key=lambda f: str(f[0]))
    if shard is None:
        return list(files)
    i, n = shard
    return files[i::n]


def read_user_transcript(p: Path) -> Transcript:
    """A user transcript file: plain text, or JSON (a string, ``{"text": ...}`` or a Transcript with words)."""
    if p.suffix.lower() == ".json":
        d = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(d, str):
            return Transcript.from_text(d)
        tr = Transcript.from_dict(d) if "words" in d else Transcript.from_text(str(d.get("text", "")))
        return replace(tr, source="user")
    return Transcript.from_text(p.read_text(encoding="utf-8"))


def find_user_transcript(path: Path, name: str,
                         transcripts: str | os.PathLike | Mapping[str, Any] | None) -> Transcript | None:
    """The transcript the user supplied for ``path``, if any.

    ``transcripts`` may be a folder (``<name>.txt``/``.json`` or ``<stem>.txt``/``.json``
    inside it), a mapping from path, name or stem to text (or Transcript), or None; in
    every case a sidecar ``clip.txt`` next to ``clip.mp4`` is used when nothing else is.
    """
    if isinstance(transcripts, Mapping):
        for k in (str(path), name, path.stem, path.name):
            if k in transcripts:
                v = transcripts[k]
                return v if isinstance(v, Transcript) else Transcript.from_text(str(v))
    elif transcripts is not None:
        folder = Path(transcripts)
        for stem in dict.fromkeys((name, path.stem)):
            for ext in TRANSCRIPT_EXTENSIONS:
                cand = folder / f"{stem}{ext}"
                if cand.is_file():
                    return read_user_transcript(cand)
    side = path.with_suffix(".txt")
    if side.is_file():
        return read_user_transcript(side)
    return None
