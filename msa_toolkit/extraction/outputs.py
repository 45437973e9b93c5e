"""What a run writes to ``out_dir``: bundle copies, subtitles, the manifest and the failure reports.

``out_dir`` receives a copy of every bundle (``<name>.safetensors`` + ``<name>.json``, with the
input path in its meta), ``manifest.json`` and, when something failed or was skipped,
``errors.json`` / ``errors.csv``. A shard ``i`` of ``n`` writes ``manifest.shard-<i>-of-<n>.json`` (and errors) instead.
Every file is written atomically with the usual user file mode.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Sequence

from .. import __version__
from .._io import atomic_write, atomic_write_json, atomic_write_text
from ..cache import FeatureCache
from ..features import Transcript
from .config import ExtractConfig
from .results import ExtractResult, Failure, FileResult
from .safety import write_or_fallback

#: name of the manifest written to out_dir (``manifest.shard-<i>-of-<n>.json`` for a shard)
MANIFEST_NAME = "manifest.json"
#: failure reports written to out_dir when something failed
ERRORS_JSON = "errors.json"
ERRORS_CSV = "errors.csv"
#: columns of the errors.csv report (the fields of a Failure)
ERRORS_CSV_COLUMNS = ("path", "stage", "message")


def _link_or_copy(src: Path, tmp: str) -> None:
    """Replace the temp file ``tmp`` by a hard link to ``src`` (a copy across file systems)."""
    os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)


def export_bundle(cache: FeatureCache, key: str, out_dir: Path, name: str, source: Path) -> Path:
    """Copy a cache entry to ``out_dir/<name>`` (atomic), with this file's path in its meta."""
    src = cache.stem(key)
    dst = out_dir / name
    atomic_write(dst.with_suffix(".safetensors"), partial(_link_or_copy, src.with_suffix(".safetensors")))
    header = json.loads(src.with_suffix(".json").read_text())
    header.setdefault("meta", {})["source"] = str(source)
    header["meta"]["name"] = name
    header["meta"]["cache_key"] = key
    atomic_write_json(dst.with_suffix(".json"), header)
    return dst


def out_is_current(out_dir: Path, name: str, key: str) -> bool:
    """True when ``out_dir/<name>`` already holds the bundle of cache entry ``key``."""
    js = (out_dir / name).with_suffix(".json")
    if not (js.is_file() and js.with_suffix(".safetensors").is_file()):
        return False
    try:
        return json.loads(js.read_text()).get("meta", {}).get("cache_key") == key
    except (OSError, json.JSONDecodeError):
        return False


def write_srt(stem: Path) -> None:
    """``<stem>.srt`` subtitles from the transcript in ``<stem>.json`` (nothing without a transcript)."""
    tr = json.loads(stem.with_suffix(".json").read_text()).get("transcript")
    if tr is not None:
        atomic_write_text(stem.with_suffix(".srt"), Transcript.from_dict(tr).to_srt())


def _write_errors_csv(failures: Sequence[Failure], tmp: str) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(ERRORS_CSV_COLUMNS)
        for f in failures:
            w.writerow([f.path, f.stage, f.message])


def _shard_name(name: str, suffix: str) -> str:
    """``manifest.json`` -> ``manifest<suffix>.json``."""
    stem, ext = os.path.splitext(name)
    return f"{stem}{suffix}{ext}"


def file_entry(i: FileResult) -> dict:
    """One processed file in the manifest: names, cache key, what it holds and what it lacks."""
    entry = {"path": i.path, "name": i.name, "bundle": f"{i.name}.safetensors", "key": i.key, "cached": i.cached,
             "duration": i.duration, "n_words": i.n_words, "modalities": list(i.modalities),
             "absent": dict(i.absent)}
    if i.max_faces is not None:
        entry["max_faces"] = i.max_faces
        entry["multi_face"] = i.max_faces > 1
    return entry


def write_reports(out: Path, result: ExtractResult, config: ExtractConfig, shard: tuple[int, int] | None) -> Path:
    """Write the manifest and (when something failed or was skipped) the failure reports; returns the
    manifest path.

    Skipped files (not media) are listed in the manifest's ``skipped`` and in the failure reports with
    stage ``"skipped"``. Failure reports of an earlier run that no longer apply are removed. A manifest
    that cannot be written goes to a fallback file in the temp folder (its path is returned and named
    in ``result.warnings``), so the results of a long run are never lost at the last step.
    """
    suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    manifest = {
        "toolkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": result.spec.to_dict(),
        "config": config.to_dict(),
        "shard": list(shard) if shard else None,
        "interrupted": result.interrupted,
        "files": [file_entry(i) for i in result.items],
        "failures": [asdict(f) for f in result.failures],
        "skipped": [asdict(f) for f in result.skipped],
    }
    mpath, err = write_or_fallback(out / _shard_name(MANIFEST_NAME, suffix),
                                   lambda p: atomic_write_json(p, manifest))
    if err is not None:
        result.warnings.append(f"cannot write {out / _shard_name(MANIFEST_NAME, suffix)} ({err}); "
                               f"the manifest was written to {mpath}")
        return mpath
    ej, ec = out / _shard_name(ERRORS_JSON, suffix), out / _shard_name(ERRORS_CSV, suffix)
    rows = [*result.failures, *result.skipped]
    try:
        if rows:
            atomic_write_json(ej, [asdict(f) for f in rows])
            atomic_write(ec, partial(_write_errors_csv, rows))
        else:
            for p in (ej, ec):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    except OSError as e:  # the manifest (written) holds the same rows
        result.warnings.append(f"cannot write the failure reports in {out} ({e}); manifest.json lists them")
    return mpath
