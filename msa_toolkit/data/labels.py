"""Label files as they come in the wild.

Accepted (CSV, or TSV by extension ``.tsv``; header names are case-insensitive):

- identity: ``video_id`` + ``clip_id`` (MMSA-FET, CMU-MOSEI) or a single ``id``
  (CMU-MOSI style ``<video>_<segment>``; the video, used to group clips when
  splits are created, is the part before the last underscore);
- ``label`` (also ``label_m``/``sentiment``): the regression target, required;
- ``mode`` (or ``split``): ``train``/``valid``/``dev``/``val``/``test`` in any case;
  when the column is absent or empty everywhere, splits are created (seeded,
  grouped by video so clips of one video never cross splits, 70/10/20 by default);
- optional ``text``, ``label_T``/``label_A``/``label_V``, ``annotation``.

A text containing the separator must be quoted (``"I love it, really"``): a line with more
filled fields than the header is an error, never a text cut at its first comma.

Labels must be finite and inside the range of a metric set (:data:`METRIC_SET_RANGES`:
``standard`` [-3, 3] for CMU-MOSI/MOSEI, ``sims`` [-1, 1] for CH-SIMS), that is inside
:data:`LABEL_BOUNDS` [-3, 3]; anything else is an error naming the file, column and lines.

Every problem raises :class:`~msa_toolkit.errors.DatasetError` naming the file,
the column and the offending rows or ids.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import DatasetError
from ..ids import sample_id, split_sample_id
from .splits import SPLIT_ALIASES, SPLIT_ORDER, canonical_split

#: accepted header names (lower-case) for each role, in order of preference
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "id": ("id", "sample_id", "name"),
    "video_id": ("video_id", "video"),
    "clip_id": ("clip_id", "clip", "segment_id", "segment"),
    "label": ("label", "label_m", "sentiment", "score"),
    "mode": ("mode", "split", "fold"),
    "text": ("text", "transcript", "raw_text", "sentence"),
    "label_T": ("label_t",),
    "label_A": ("label_a",),
    "label_V": ("label_v",),
    "annotation": ("annotation", "annotations"),
}
#: default fractions of clips in train/valid/test when splits are created
DEFAULT_SPLIT_RATIOS = (0.7, 0.1, 0.2)
#: label range of each metric set of :mod:`msa_toolkit.training.metrics`
METRIC_SET_RANGES: Mapping[str, tuple[float, float]] = {"standard": (-3.0, 3.0), "sims": (-1.0, 1.0)}
#: what a label may be: inside the widest metric-set range
LABEL_BOUNDS = (min(lo for lo, _ in METRIC_SET_RANGES.values()), max(hi for _, hi in METRIC_SET_RANGES.values()))
#: how many offending rows/ids an error message lists
_MAX_LISTED = 10


@dataclass(frozen=True)
class LabelRow:
    """One labelled clip of a label file."""

    # sample id: the ``id`` column, or ``<video_id>_<clip_id>``
    id: str
    # video the clip belongs to (groups clips when creating splits)
    video_id: str
    # clip id inside the video ("" when the file has a single id column without underscore)
    clip_id: str
    # regression label
    label: float
    # canonical split name: "train", "valid" or "test"
    split: str
    # transcript from the label file, None when absent or empty
    text: str | None = None
    # unimodal labels (CH-SIMS), None when absent
    label_T: float | None = None
    label_A: float | None = None
    label_V: float | None = None
    # free-text annotation (e.g. "Positive"), None when absent
    annotation: str | None = None
    # 1-based line number in the file (header = line 1)
    line: int = 0


@dataclass(frozen=True)
class LabelTable:
    """A parsed label file."""

    # the file read
    path: Path
    # rows in file order
    rows: tuple[LabelRow, ...]
    # "video_clip" (video_id + clip_id columns) or "id" (single id column)
    id_style: str
    # whether a text column is present
    has_text: bool
    # True when the file had no split column (or it was empty) and splits were created
    splits_created: bool
    # seed used to create splits (None when the file had splits)
    split_seed: int | None = None
    # what created splits keep together: "video" (clips of one video never cross splits), or "clip" when
    # the file has too few videos to give every split one (None when the file had splits)
    split_grouping: str | None = None

    def by_split(self) -> dict[str, list[LabelRow]]:
        """Rows grouped by split, splits in train/valid/test order."""
        out: dict[str, list[LabelRow]] = {s: [] for s in SPLIT_ORDER}
        for r in self.rows:
            out.setdefault(r.split, []).append(r)
        return {k: v for k, v in out.items() if v}

    def split_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.by_split().items()}

    def __len__(self) -> int:
        return len(self.rows)


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def _find_column(header: Mapping[str, str], role: str) -> str | None:
    for alias in COLUMN_ALIASES[role]:
        if alias in header:
            return header[alias]
    return None


def _parse_float(path: Path, col: str, value: str, line: int, required: bool) -> float | None:
    v = (value or "").strip()
    if v == "" or v.lower() in ("nan", "na", "none", "null"):
        if required and v:
            raise DatasetError(f"{path}: column {col!r} on line {line} is {v!r}, not a finite number")
        if required:
            raise DatasetError(f"{path}: column {col!r} is empty on line {line}")
        return None
    try:
        return float(v)
    except ValueError:
        raise DatasetError(f"{path}: column {col!r} on line {line} is not a number: {v!r}") from None


@dataclass(frozen=True)
class _Columns:
    """Where each role's column is in a label file's header."""

    # the file (for error messages)
    path: Path
    # header names as written (stripped)
    names: tuple[str, ...]
    # role -> header name, None when the file has no such column
    by_role: Mapping[str, str | None]
    # header name -> position in a record
    index: Mapping[str, int]

    def get(self, rec: Sequence[str], role: str) -> str:
        """The stripped value of ``role`` in ``rec`` ("" when the column is absent or the record short)."""
        c = self.by_role[role]
        if c is None:
            return ""
        i = self.index[c]
        return rec[i].strip() if i < len(rec) else ""

    def number(self, rec: Sequence[str], role: str, line: int, required: bool = False) -> float | None:
        """``role`` parsed as a float; None when the column is absent or (if not ``required``) empty."""
        c = self.by_role[role]
        if c is None:
            return None
        return _parse_float(self.path, c, self.get(rec, role), line, required)


def _read_records(p: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header names and the non-blank records with their 1-based line numbers."""
    if not p.is_file():
        raise DatasetError(f"{p}: label file not found")
    delim = "\t" if p.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delim)
            try:
                raw_header = next(reader)
            except StopIteration:
                raise DatasetError(f"{p}: label file is empty") from None
            records = [(i + 2, rec) for i, rec in enumerate(reader) if any(c.strip() for c in rec)]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{p}: not a UTF-8 text file ({e})") from None
    except csv.Error as e:
        raise DatasetError(f"{p}: malformed CSV ({e})") from None
    _check_no_extra_fields(p, len(raw_header), records, delim)
    return [h.strip() for h in raw_header], records


def _check_no_extra_fields(p: Path, n_header: int, records: list[tuple[int, list[str]]], delim: str) -> None:
    """A record with more filled fields than the header has names would lose data silently: an error.

    The usual cause is an unquoted text containing the separator. Extra empty fields (a trailing
    separator on each line, as some spreadsheets write) are harmless and allowed.
    """
    long = [str(line) for line, rec in records if any(c.strip() for c in rec[n_header:])]
    if long:
        sep = "a tab" if delim == "\t" else "a comma"
        raise DatasetError(f"{p}: lines {_listing(long)} have more fields than the header's {n_header} "
                           f"(a text with {sep} in it must be quoted: \"...\")")


def _find_columns(p: Path, names: list[str]) -> tuple[_Columns, str]:
    """The columns of every role and the id style ("video_clip" or "id"); raises when label or ids lack."""
    header = {h.lower(): h for h in names}
    cols = _Columns(p, tuple(names), {role: _find_column(header, role) for role in COLUMN_ALIASES},
                    {h: i for i, h in enumerate(names)})
    if cols.by_role["label"] is None:
        raise DatasetError(f"{p}: no label column (expected one of {list(COLUMN_ALIASES['label'])}); "
                           f"columns found: {names}")
    if cols.by_role["video_id"] and cols.by_role["clip_id"]:
        return cols, "video_clip"
    if cols.by_role["id"]:
        return cols, "id"
    raise DatasetError(f"{p}: no id columns: expected 'video_id' + 'clip_id' or a single 'id'; "
                       f"columns found: {names}")


def _check_modes(cols: _Columns, records: list[tuple[int, list[str]]], modes: list[str]) -> None:
    """A filled split column must be filled on every line, with known split names."""
    p, col = cols.path, cols.by_role["mode"]
    empty = [str(line) for (line, _), m in zip(records, modes) if m == ""]
    if empty:
        raise DatasetError(f"{p}: column {col!r} is empty on lines {_listing(empty)} "
                           "(fill it everywhere, or leave it empty everywhere to create splits)")
    bad: dict[str, list[str]] = {}
    for (line, _), m in zip(records, modes):
        if m.lower() not in SPLIT_ALIASES or canonical_split(m) not in SPLIT_ORDER:
            bad.setdefault(m, []).append(str(line))
    if bad:
        detail = "; ".join(f"{v!r} on lines {_listing(lines)}" for v, lines in bad.items())
        raise DatasetError(f"{p}: column {col!r} has unknown split names: {detail} "
                           "(expected train, valid/dev/val or test)")


def _sample_ids(cols: _Columns, id_style: str, rec: list[str], line: int) -> tuple[str, str, str]:
    """(sample id, video id, clip id) of one record."""
    if id_style == "video_clip":
        vid, clip = cols.get(rec, "video_id"), cols.get(rec, "clip_id")
        if not vid or not clip:
            raise DatasetError(f"{cols.path}: empty {cols.by_role['video_id']!r} or {cols.by_role['clip_id']!r} "
                               f"on line {line}")
        return sample_id(vid, clip), vid, clip
    sid = cols.get(rec, "id")
    if not sid:
        raise DatasetError(f"{cols.path}: empty {cols.by_role['id']!r} on line {line}")
    return (sid, *split_sample_id(sid))


def _parse_row(cols: _Columns, id_style: str, line: int, rec: list[str], split: str) -> LabelRow:
    """One record as a :class:`LabelRow` (``split`` already canonical, "" when splits are created)."""
    sid, vid, clip = _sample_ids(cols, id_style, rec, line)
    text = cols.get(rec, "text") if cols.by_role["text"] else ""
    return LabelRow(
        id=sid, video_id=vid, clip_id=clip,
        label=float(cols.number(rec, "label", line, required=True)),  # type: ignore[arg-type]
        split=split,
        text=text or None,
        label_T=cols.number(rec, "label_T", line),
        label_A=cols.number(rec, "label_A", line),
        label_V=cols.number(rec, "label_V", line),
        annotation=cols.get(rec, "annotation") or None,
        line=line,
    )


def _check_unique_ids(p: Path, rows: list[LabelRow]) -> None:
    seen: dict[str, int] = {}
    dupes: dict[str, list[str]] = {}
    for r in rows:
        if r.id in seen:
            dupes.setdefault(r.id, [str(seen[r.id])]).append(str(r.line))
        else:
            seen[r.id] = r.line
    if dupes:
        detail = "; ".join(f"{k!r} (lines {', '.join(v)})" for k, v in list(dupes.items())[:_MAX_LISTED])
        more = f" and {len(dupes) - _MAX_LISTED} more" if len(dupes) > _MAX_LISTED else ""
        raise DatasetError(f"{p}: duplicate sample ids: {detail}{more}")


def _check_label_values(p: Path, cols: _Columns, rows: list[LabelRow]) -> None:
    """DatasetError listing every label (and unimodal label) that is NaN/inf or outside :data:`LABEL_BOUNDS`."""
    lo, hi = LABEL_BOUNDS
    bad: dict[str, list[str]] = {}
    for r in rows:
        for role in ("label", "label_T", "label_A", "label_V"):
            v = getattr(r, role)
            if v is not None and not (np.isfinite(v) and lo <= v <= hi):
                bad.setdefault(str(cols.by_role[role]), []).append(f"line {r.line}: {v:g}")
    if bad:
        ranges = ", ".join(f"{k} [{a:g}, {b:g}]" for k, (a, b) in METRIC_SET_RANGES.items())
        detail = "; ".join(f"column {c!r}: {_listing(v)}" for c, v in bad.items())
        raise DatasetError(f"{p}: labels must be finite and inside [{lo:g}, {hi:g}] (metric sets: {ranges}); "
                           f"{detail}")


def read_labels(path: str | os.PathLike, seed: int = 0,
                split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS) -> LabelTable:
    """Parse a label file (see the module docstring); creates splits when it has none."""
    p = Path(path)
    names, records = _read_records(p)
    cols, id_style = _find_columns(p, names)
    modes = [cols.get(rec, "mode") for _, rec in records]
    create = cols.by_role["mode"] is None or all(m == "" for m in modes)
    if not create:
        _check_modes(cols, records, modes)
    rows = [_parse_row(cols, id_style, line, rec, "" if create else canonical_split(mode))
            for (line, rec), mode in zip(records, modes)]
    if not rows:
        raise DatasetError(f"{p}: label file has a header but no rows")
    _check_unique_ids(p, rows)
    _check_label_values(p, cols, rows)
    grouping = None
    if create:
        grouping = "video"
        wanted = sum(1 for r in split_ratios if r > 0)
        if len({r.video_id for r in rows}) < wanted <= len(rows):
            grouping = "clip"  # too few videos for a train/valid/test split by video: split the clips
        key = (lambda r: r.video_id) if grouping == "video" else (lambda r: r.id)
        assign = make_splits([key(r) for r in rows], seed, split_ratios)
        rows = [LabelRow(**{**r.__dict__, "split": assign[key(r)]}) for r in rows]
    return LabelTable(p, tuple(rows), id_style, cols.by_role["text"] is not None, create, seed if create else None,
                      grouping)


def make_splits(video_ids: Iterable[str], seed: int = 0,
                ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS) -> dict[str, str]:
    """Assign whole videos to train/valid/test so that clip counts follow ``ratios``.

    Videos are shuffled with ``seed``; each video goes to the split its cumulative
    clip midpoint falls in. With at least three videos, every split with a
    positive ratio gets at least one video.
    """
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise DatasetError(f"split ratios must be three non-negative numbers (train, valid, test), got {ratios}")
    r = np.asarray(ratios, np.float64) / float(sum(ratios))
    counts: dict[str, int] = {}
    for v in video_ids:
        counts[v] = counts.get(v, 0) + 1
    videos = sorted(counts)
    order = np.random.default_rng(seed).permutation(len(videos))
    total = sum(counts.values())
    bounds = np.cumsum(r)
    assign: dict[str, str] = {}
    cum = 0
    for i in order:
        v = videos[i]
        mid = (cum + counts[v] / 2) / total
        k = int(np.searchsorted(bounds, mid, side="right"))
        assign[v] = SPLIT_ORDER[min(k, 2)]
        cum += counts[v]
    if len(videos) >= 3:
        for k, name in enumerate(SPLIT_ORDER):
            if r[k] > 0 and name not in assign.values():
                sizes = {s: sum(counts[v] for v in assign if assign[v] == s) for s in SPLIT_ORDER}
                donor = max(sizes, key=lambda s: sizes[s] if sum(1 for x in assign.values() if x == s) > 1 else -1)
                moved = min((v for v in assign if assign[v] == donor), key=lambda v: counts[v])
                assign[moved] = name
    return assign


__all__ = ["LabelRow", "LabelTable", "read_labels", "make_splits", "DEFAULT_SPLIT_RATIOS", "COLUMN_ALIASES",
           "METRIC_SET_RANGES", "LABEL_BOUNDS"]
