"""Small I/O helpers shared by every module that writes files or scans folders.

One home for: atomic writes (temp file in the same folder + ``os.replace``), user-readable file
modes, NaN-safe JSON, the progress bar, the media-extension lists and the working sample rate.
Imports nothing heavy (no torch, no PyAV), so any module may use it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: The toolkit's working audio sample rate (Hz): what Whisper and the acoustic extractors expect.
SAMPLE_RATE = 16_000

#: Container extensions accepted as video (lower case, with the dot).
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ts"}
)
#: Extensions accepted as audio-only files.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".wma"}
)
#: Every extension the toolkit treats as media when it scans folders.
MEDIA_EXTENSIONS: frozenset[str] = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS
#: Sidecar transcript extensions looked up next to a media file (``clip.txt`` / ``clip.json``).
TRANSCRIPT_EXTENSIONS: tuple[str, ...] = (".txt", ".json")


def is_media_file(path: str | os.PathLike) -> bool:
    """True if ``path`` has an extension the toolkit accepts (:data:`MEDIA_EXTENSIONS`); no I/O."""
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


# ---------------------------------------------------------------------------------------------
# file modes and atomic writes
# ---------------------------------------------------------------------------------------------
def user_mode(path: str | os.PathLike) -> None:
    """Give a file made through ``mkstemp`` (mode 0600) the usual permissions: ``0666 & ~umask``.

    Files the toolkit writes for users (bundles, manifests, checkpoints, reports) must be readable
    by the group/others exactly as a plain ``open(..., "w")`` would make them.
    """
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~mask)


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)``, then rename the temp file onto ``path`` (atomic on POSIX).

    The temp file lives in the destination folder (created if missing), so the rename never
    crosses file systems; on any error it is removed and the old ``path`` (if any) is untouched.
    The result has the usual user file mode (:func:`user_mode`), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        user_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, replaces: Collection[str] = (), marker: str | None = None) -> Iterator[Path]:
    """Build a folder's content beside it and put it in place only when the ``with`` block ends without error.

    Yields a new, empty, hidden temp folder: in an existing ``path`` itself, else beside it (the renames
    never cross file systems). On success a ``path`` that does not exist becomes that folder (one
    rename). Into an existing folder the content moves entry by entry, so the folder itself (a working
    directory, a mount point, one in a parent the user cannot write) stays: the
    old entries named in ``replaces`` (what the new content replaces as a whole, e.g. a dataset's split
    files) and any the new content has go aside first, ``marker`` (the file that makes the folder
    complete, e.g. ``manifest.json``) first; the new entries move in, ``marker`` last; the old ones are
    removed. Other entries (a user's own files) stay. On an error in the block the temp folder is
    removed and ``path`` is untouched; an error while moving puts the old entries back. A new folder
    gets the usual mode (``0777 & ~umask``).
    """
    path = Path(os.path.realpath(path))
    if os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder")
    home = path if path.is_dir() else path.parent
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=home))
    try:
        yield tmp
        if not os.path.lexists(path):
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o777 & ~mask)
            os.replace(tmp, path)
            return
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    new = sorted(os.listdir(tmp), key=lambda n: n == marker)  # the marker last
    aside = [n for n in dict.fromkeys([marker or "", *replaces, *new]) if n and os.path.lexists(path / n)]
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=home))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for n in aside:
            os.replace(path / n, old / n)
            moved_out.append(n)
        for n in new:
            os.replace(tmp / n, path / n)
            moved_in.append(n)
    except BaseException:
        for n in reversed(moved_in):
            with contextlib.suppress(OSError):
                os.replace(path / n, tmp / n)
        for n in reversed(moved_out):
            with contextlib.suppress(OSError):
                os.replace(old / n, path / n)
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            old.rmdir()  # only when every old entry is back
        raise
    tmp.rmdir()
    shutil.rmtree(old)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> None:
    """Atomically write ``obj`` as NaN-safe JSON (see :func:`dumps_json`)."""
    atomic_write_text(path, dumps_json(obj, indent=indent))


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------
def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars/arrays, paths and dataclass-likes."""
    # numpy is imported lazily: it is only needed when such an object is actually met
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def finite_or_none(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float (NaN, +-inf) replaced by ``None``.

    ``json.dumps`` writes NaN/Infinity, which is not JSON: other tools (``jq``, browsers, strict
    parsers) reject it. Mappings, lists and tuples are walked; numpy values are converted first.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    if type(obj).__module__ == "numpy":
        return finite_or_none(json_default(obj))
    return obj


def text_safe(text: str) -> str:
    """``text`` as any UTF-8 writer accepts it: bytes of a file name that are not UTF-8 (which
    ``os.fsdecode`` turns into lone surrogates, b"\\xff" -> "\\udcff") written as ``\\xff``; every other
    character unchanged. For CSV rows and the terminal (JSON escapes them itself, losslessly)."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def csv_safe_row(row: Iterable[Any]) -> list[Any]:
    """A CSV row with every text cell :func:`text_safe` (a non-UTF-8 file name never stops the write)."""
    return [text_safe(v) if isinstance(v, str) else v for v in row]


def dumps_json(obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> str:
    """Standard JSON text: numpy values converted, non-finite floats written as ``null``."""
    return json.dumps(finite_or_none(obj), indent=indent, sort_keys=sort_keys, default=json_default,
                      allow_nan=False)


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
def progress_bar(enabled: bool = True, *, eta: bool = True, current: bool = False, transient: bool = False):
    """The toolkit's rich progress bar on stderr (so stdout stays clean for JSON/CSV output).

    ``eta`` adds a time-remaining column; ``current`` adds a ``{task.fields[current]}`` column
    (the file being processed), so tasks must then be added with ``current=...``. A disabled bar
    is still a valid context manager whose ``add_task``/``advance``/``update`` do nothing visible.
    ``transient`` clears the bar when it stops (per-epoch bars that a summary line replaces).
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if eta:
        columns.append(TimeRemainingColumn())
    if current:
        columns.append(TextColumn("{task.fields[current]}"))
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=transient)
