"""What a run writes to ``out_dir``: bundle copies, subtitles, the manifest and the failure reports.

``out_dir`` receives a copy of every bundle (``<name>.safetensors`` + ``<name>.json``, with the
input path in its meta; an independent copy checked against the cache entry's sha256, so editing
an output never changes the cache), ``manifest.json`` and, when something failed or was skipped,
``errors.json`` / ``errors.csv``. A shard ``i`` of ``n`` writes ``manifest.shard-<i>-of-<n>.json``
(and errors) instead.
Every file is written atomically with the usual user file mode.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Sequence

from .. import __version__
from .._io import atomic_write, atomic_write_json, atomic_write_text, csv_safe_row
from ..cache import FeatureCache
from ..features import FILE_RECORD_KEY, BundleReadError, Transcript, check_bundle, sealed_header
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
#: bytes per read when copying a bundle out of the cache
COPY_CHUNK = 1 << 20


def _copy_checked(src: Path, record: dict | None, tmp: str) -> None:
    """Copy ``src`` into the temp file ``tmp`` (an independent copy, never a link into the cache),
    hashing on the way; raises BundleReadError when the bytes differ from the json's ``record``."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        for chunk in iter(lambda: fi.read(COPY_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
            fo.write(chunk)
    if record is not None and (size != record.get("size") or h.hexdigest() != record.get("sha256")):
        raise BundleReadError(f"{src}: content differs from the size/sha256 its json records")


def export_bundle(cache: FeatureCache, key: str, out_dir: Path, name: str, source: Path,
                  header: dict | None = None) -> Path:
    """Copy a cache entry to ``out_dir/<name>`` (atomic), with this file's path in its meta.

    The copy is checked against the sha256 the entry's json records (free: the bytes are read
    anyway); a mismatch raises BundleReadError and leaves ``out_dir`` unchanged. ``header`` is the
    entry's already parsed json, if the caller has it.
    """
    src = cache.stem(key)
    dst = out_dir / name
    if header is None:
        header = json.loads(src.with_suffix(".json").read_text())
    atomic_write(dst.with_suffix(".safetensors"),
                 partial(_copy_checked, src.with_suffix(".safetensors"), header.get(FILE_RECORD_KEY)))
    header = {**header, "meta": {**header.get("meta", {}), "source": str(source), "name": name, "cache_key": key}}
    atomic_write_json(dst.with_suffix(".json"), sealed_header(header))
    return dst


def out_is_current(out_dir: Path, name: str, key: str) -> bool:
    """True when ``out_dir/<name>`` already holds a whole copy of cache entry ``key`` (json names the
    key and matches its own sha256; safetensors header and size match the json's record)."""
    try:
        header = check_bundle(out_dir / name, sealed=True)
    except BundleReadError:
        return False
    return header.get("meta", {}).get("cache_key") == key


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
            w.writerow(csv_safe_row([f.path, f.stage, f.message]))


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
    entry["decoded_duration"] = i.decoded_duration
    if i.incomplete:
        entry["incomplete"] = i.incomplete
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
        result.misplaced[str(out / _shard_name(MANIFEST_NAME, suffix))] = str(mpath)
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
        result.misplaced.update({str(ej): str(mpath), str(ec): str(mpath)})
    return mpath
