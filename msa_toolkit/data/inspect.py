"""Inspection of a native dataset: :func:`validate_dataset` (defects) and :func:`dataset_info` (summary).

Both read features chunk by chunk or only the per-sample lengths, so they run on MOSEI-sized
datasets in bounded memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DatasetError
from .labels import METRIC_SET_RANGES
from .native import MSADataset, as_dataset
from .stats import stats_problems

#: how many sample ids an issue message lists before "... (N in all)"
LISTED_IDS = 8
#: how many affected ids an issue keeps in :attr:`DatasetIssue.ids`
KEPT_IDS = 50
#: issue kinds that describe the data, not a defect: samples lacking a modality (a silent clip has no text, a
#: faceless or audio-only one no vision). Reported; they fail `msa dataset validate` only with --strict
NOTICE_KINDS = ("absent",)


@dataclass(frozen=True)
class DatasetIssue:
    """A defect :func:`validate_dataset` found in a written dataset (NaN features, empty sequences,
    bad labels, duplicate ids, inconsistent split files).

    Not to be confused with the failure records of building: an extraction ``Failure`` is a media
    file that could not be processed, a :class:`~msa_toolkit.data.build.RowFailure` a label-file
    row left out of the dataset; an issue is found afterwards, in data that was written.
    """

    # split name ("" for dataset-wide issues)
    split: str
    # kind: "file", "nan", "empty", "label", "duplicate", "shape", "stats" (normalisation statistics), "absent"
    # (samples without one modality: a notice, see NOTICE_KINDS)
    kind: str
    # readable description naming ids, modality, values
    message: str
    # affected sample ids (possibly truncated to the first few)
    ids: tuple[str, ...] = ()

    @property
    def notice(self) -> bool:
        """True for a property of the data (a modality absent from some samples), not a defect."""
        return self.kind in NOTICE_KINDS


def _ids_listing(ids: list[str], limit: int = LISTED_IDS) -> str:
    return ", ".join(ids[:limit]) + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def label_range(ds: "MSADataset") -> tuple[float, float]:
    """Expected label range: the ``sims`` metric set's [-1, 1] when every label lies in it (CH-SIMS style),
    else the ``standard`` set's [-3, 3] (:data:`~msa_toolkit.data.labels.METRIC_SET_RANGES`)."""
    vals = np.concatenate([ds.split(s).labels for s in ds.splits]) if ds.splits else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    lo, hi = METRIC_SET_RANGES["sims"]
    return METRIC_SET_RANGES["sims"] if vals.size and lo <= vals.min() and vals.max() <= hi \
        else METRIC_SET_RANGES["standard"]


def _issue(split: str, kind: str, message: str, ids: list[str] | tuple[str, ...] = ()) -> DatasetIssue:
    return DatasetIssue(split, kind, message, tuple(ids[:KEPT_IDS]))


def _modality_issues(ds: MSADataset, split: str, m: str, chunk_rows: int,
                     absent: list[set[str]]) -> list[DatasetIssue]:
    """Missing/inconsistent tensors, NaN/inf rows and samples without a valid step of one modality (their ids
    are added to ``absent`` as one set)."""
    sp = ds.split(split)
    t = sp.tensors
    n = len(sp)
    if any(k not in t for k in (f"{m}.values", f"{m}.mask", f"{m}.offsets")):
        return [_issue(split, "file", f"{sp.path / sp._entry['file']}: missing tensors for {m}")]
    off = np.asarray(t[f"{m}.offsets"])
    vals = t[f"{m}.values"]
    if off.shape[0] != n + 1 or int(off[-1]) != vals.shape[0] or np.any(np.diff(off) < 0):
        return [_issue(split, "shape", f"{m}: offsets do not match {n} samples / {vals.shape[0]} rows")]
    issues = []
    if vals.ndim != 2 or vals.shape[1] != ds.spec.dims[m]:
        issues.append(_issue(split, "shape", f"{m}: values have shape {vals.shape}, spec dim {ds.spec.dims[m]}"))
    bad_rows = []
    for a in range(0, vals.shape[0], chunk_rows):
        fin = np.isfinite(np.asarray(vals[a:a + chunk_rows])).all(axis=1)
        bad_rows.extend((np.nonzero(~fin)[0] + a).tolist())
    if bad_rows:
        owners = sorted(set(np.searchsorted(off, bad_rows, side="right") - 1))
        ids = [sp.ids[i] for i in owners]
        issues.append(_issue(split, "nan", f"{m}: NaN/inf values in {len(bad_rows)} rows of {len(ids)} samples: "
                                           f"{_ids_listing(ids)}", ids))
    mask = np.asarray(t[f"{m}.mask"]).astype(bool)
    cs = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    valid = cs[off[1:]] - cs[off[:-1]]
    empty = [sp.ids[i] for i in np.nonzero(valid == 0)[0]]
    absent.append(set(empty))
    if empty:
        issues.append(_issue(split, "absent", f"{m}: {len(empty)} of {n} samples without {m} (no valid step): "
                                              f"{_ids_listing(empty)}", empty))
    return issues


def _label_issues(ds: MSADataset, split: str, lo: float, hi: float) -> list[DatasetIssue]:
    """Samples without a label, labels outside [lo, hi]."""
    sp = ds.split(split)
    lab = sp.labels
    issues = []
    nan = [sp.ids[i] for i in np.nonzero(~np.isfinite(lab))[0]]
    if nan:
        issues.append(_issue(split, "label", f"{len(nan)} samples without a label: {_ids_listing(nan)}", nan))
    out = [f"{sp.ids[i]}={lab[i]:g}" for i in np.nonzero(np.isfinite(lab) & ((lab < lo) | (lab > hi)))[0]]
    if out:
        issues.append(_issue(split, "label", f"{len(out)} labels outside [{lo:g}, {hi:g}]: {_ids_listing(out)}",
                             [o.split("=")[0] for o in out]))
    return issues


def validate_dataset(dataset: "MSADataset | str | os.PathLike", label_bounds: tuple[float, float] | None = None,
                     chunk_rows: int = 1 << 16) -> list[DatasetIssue]:
    """Find NaNs/infs in features, samples without any modality, labels out of range or missing, duplicate ids,
    inconsistent split files and stored normalisation statistics that cannot normalise (zero, negative,
    null or non-finite std, ...), and report samples lacking one modality (kind "absent": a notice, not a
    defect; :func:`failing` separates them). Reads features chunk by chunk (bounded memory)."""
    ds = as_dataset(dataset)
    lo, hi = label_bounds or label_range(ds)
    issues: list[DatasetIssue] = [_issue("", "stats", f"normalisation statistics: {p}")
                                  for p in stats_problems(ds.manifest.get("stats", {}), ds.spec.dims)]
    if not ds.splits:
        issues.append(_issue("", "empty", "the dataset has no splits (no samples)"))
    for split in ds.splits:
        if len(ds.split(split)) == 0:
            issues.append(_issue(split, "empty", "the split has no samples"))
    first_split: dict[str, str] = {}
    for split in ds.splits:
        sp = ds.split(split)
        dup = []
        for i in sp.ids:
            if i in first_split:
                dup.append(i)
            else:
                first_split[i] = split
        if dup:
            issues.append(_issue(split, "duplicate", f"{len(dup)} duplicate ids: {_ids_listing(dup)}", dup))
        try:
            sp.tensors  # opens the split file: a missing or unreadable one is an issue of its own
        except DatasetError as e:
            issues.append(_issue(split, "file", str(e)))
            continue
        absent: list[set[str]] = []
        for m in ds.spec.modalities:
            issues.extend(_modality_issues(ds, split, m, chunk_rows, absent))
        if len(absent) == len(ds.spec.modalities) and (nothing := set.intersection(*absent) if absent else set()):
            bare = [i for i in sp.ids if i in nothing]
            issues.append(_issue(split, "empty", f"{len(bare)} samples without any modality: {_ids_listing(bare)}",
                                 bare))
        issues.extend(_label_issues(ds, split, lo, hi))
    return issues


def failing(issues: list[DatasetIssue], strict: bool = False) -> list[DatasetIssue]:
    """The issues that fail validation: every defect, and with ``strict`` the notices (absent modalities) too."""
    return [i for i in issues if strict or not i.notice]


def dataset_info(dataset: "MSADataset | str | os.PathLike") -> dict[str, Any]:
    """Summary of a dataset: counts per split, label histogram (rounded to integers), label mean/std,
    sequence-length statistics per modality, feature dims, FeatureSpec and provenance."""
    ds = as_dataset(dataset)
    lo, hi = label_range(ds)
    splits: dict[str, Any] = {}
    for split in ds.splits:
        sp = ds.split(split)
        lab = sp.labels[np.isfinite(sp.labels)]
        if hi > 1:
            bins = {str(k): int(np.sum(np.clip(np.round(lab), -3, 3) == k)) for k in range(-3, 4)}
        else:
            edges = [-1.0, -0.6, -0.2, 0.2, 0.6, 1.0]
            h, _ = np.histogram(np.clip(lab, -1, 1), bins=edges)
            bins = {f"[{a:g},{b:g})": int(c) for a, b, c in zip(edges[:-1], edges[1:], h)}
        lengths = {}
        for m in ds.spec.modalities:
            ls = sp.lengths(m)
            if ls.size:
                lengths[m] = {"min": int(ls.min()), "mean": round(float(ls.mean()), 2),
                              "median": float(np.median(ls)), "p95": round(float(np.percentile(ls, 95)), 2),
                              "max": int(ls.max()), "empty": int(np.sum(ls == 0))}
        splits[split] = {
            "samples": len(sp),
            "label_mean": round(float(lab.mean()), 4) if lab.size else None,
            "label_std": round(float(lab.std()), 4) if lab.size else None,
            "negative": int(np.sum(lab < 0)), "neutral": int(np.sum(lab == 0)), "positive": int(np.sum(lab > 0)),
            "label_histogram": bins,
            "lengths": lengths,
        }
    return {
        "path": str(ds.path),
        "format_version": ds.manifest.get("format_version"),
        "splits": splits,
        "dims": ds.spec.dims,
        "modalities": list(ds.spec.modalities),
        "label_range": [lo, hi],
        "spec": ds.spec.to_dict(),
        "provenance": ds.provenance,
    }

#: former name of :class:`DatasetIssue` (kept for existing imports)
Problem = DatasetIssue

__all__ = ["validate_dataset", "dataset_info", "label_range", "DatasetIssue", "Problem"]
