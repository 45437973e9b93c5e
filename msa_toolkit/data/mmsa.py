"""Import and export of the MMSA pickle format (MMSA, ALMT, DLF: ``aligned_50.pkl``, ``unaligned_50.pkl``, ...).

The format: a dict with ``train``/``valid``/``test``; per split numpy arrays

=========================  ==============  =====================================================
key                        shape           meaning
=========================  ==============  =====================================================
``id``                     (N,)            sample ids (MMSA-FET: ``<video>$_$<clip>``; imported as
                                           ``<video>_<clip>``, see msa_toolkit/ids.py)
``raw_text``               (N,)            transcripts
``text``                   (N, L, Dt)      BERT features (768-d in the reference sets)
``text_bert``              (N, 3, L)       token ids, attention mask, segment ids
``audio``                  (N, Ta, Da)     acoustic features (``-inf`` in some files)
``vision``                 (N, Tv, Dv)     visual features
``audio_lengths``          (N,)            valid steps of ``audio`` (unaligned files only)
``vision_lengths``         (N,)            valid steps of ``vision`` (unaligned files only)
``regression_labels``      (N,)            sentiment (``_T``/``_A``/``_V``: CH-SIMS unimodal)
``classification_labels``  (N,)            class index
``annotations``            (N,)            e.g. ``Negative``/``Neutral``/``Positive``
=========================  ==============  =====================================================

Reference shapes: MOSI aligned 50/50/50 with dims 768/5/20 (unaligned audio 375,
vision 500); MOSEI dims 768/74/35; CH-SIMS 39/400/55 with dims 768/33/709.

Import rules (how masks are derived):

- ``audio``/``vision`` with ``<m>_lengths`` (unaligned files): the first
  ``length`` steps are kept (MMSA pads at the end), all valid.
- without lengths (aligned files): all ``L`` steps are kept. The valid-step mask
  is the ``text_bert`` attention mask when it has the same ``L`` (aligned audio
  and vision sit on the text's token positions), else the non-zero rows.
- ``text``: all ``L`` steps kept (BERT outputs at padding positions are kept
  too, so exports reproduce the file); mask from ``text_bert`` when present,
  else the non-zero rows.
- ``-inf`` (and any non-finite value) in every modality becomes 0, as MMSA's loader does
  for audio; the count per modality is in the report (``nonfinite``) and the provenance.
- regression labels (and ``_T``/``_A``/``_V``) must be finite and inside [-3, 3]
  (:data:`~.labels.LABEL_BOUNDS`); anything else is an error naming split and index.
- ``text_bert`` rows become the arrays ``text.input_ids``, ``text.attention_mask``
  and ``text.token_type_ids`` (so ``Batch.text_tokens`` works), unless every
  token id of the split is 0 (no real tokens; only the mask row is used).

The FeatureSpec records that these are precomputed features of unknown
extractors: one ``ExtractorSpec(name="mmsa_precomputed", version="unknown")``
per modality with the dims read from the arrays, and origin
``{"source": "mmsa_pickle", "file": <file name>, "layout": "aligned"|"unaligned"}``
(so they can never be mistaken for features of this toolkit's extractors).

Export writes the same keys, zero-padded (or truncated) to fixed lengths per
modality: ``lengths[m]`` when given, else MMSA-FET's rule, mean + 3 standard
deviations of the stored lengths, rounded (at most the longest; for datasets
imported from a pickle, the original padded length, so import -> export
reproduces the file). How many sequences were truncated is reported per modality. ``text_bert`` comes from the
stored token arrays; a dataset without them gets zero token ids (with the
attention-mask row filled from the text mask) and a warning in the report —
models that fine-tune BERT from ``text_bert`` cannot use such a file. Absent
modalities are written as zeros ``(N, 1, 1)`` with length 1 (also warned).
``audio_lengths``/``vision_lengths`` are written except for datasets imported
from aligned files. Import -> export -> import reproduces the dataset exactly; a native dataset
that lacks a modality comes back from export -> import with that modality 1-d, every step masked out.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .._io import atomic_write, atomic_write_json
from ..errors import DatasetError
from ..ids import MMSA_ID_SEPARATOR, from_mmsa_id, to_mmsa_id
from ..spec import MODALITIES, ExtractorSpec, FeatureSpec
from .finite import describe_counts
from .labels import LABEL_BOUNDS
from .native import MANIFEST, MSADataset, Sample, SplitDataset, as_dataset, write_dataset
from .safe_pickle import load_pickle
from .splits import canonical_split

#: label keys and the Sample fields they map to
_LABEL_KEYS = {"regression_labels_T": "label_T", "regression_labels_A": "label_A", "regression_labels_V": "label_V"}
#: names of the token arrays built from text_bert rows 0, 1, 2
TOKEN_ARRAYS = ("text.input_ids", "text.attention_mask", "text.token_type_ids")
#: the separator MMSA-FET puts between video and clip ids (the id rule: msa_toolkit/ids.py)
MMSA_ID_SEP = MMSA_ID_SEPARATOR


@dataclass
class MMSAReport:
    """What an import or export did."""

    # the pickle file read or written
    path: Path
    # samples per split
    sizes: dict[str, int] = field(default_factory=dict)
    # feature dims per modality
    dims: dict[str, int] = field(default_factory=dict)
    # fixed padded length per modality (export) or stored length (import)
    lengths: dict[str, int] = field(default_factory=dict)
    # "aligned" or "unaligned"
    layout: str = "unaligned"
    # things users should know (replaced -inf values, missing token ids, absent modalities, ...)
    warnings: list[str] = field(default_factory=list)
    # import: NaN/inf feature values replaced by 0, per modality
    nonfinite: dict[str, int] = field(default_factory=dict)
    # export: sequences longer than the padded length (truncated), per modality
    truncated: dict[str, int] = field(default_factory=dict)
    # import: samples whose <m>_lengths entry exceeds the steps the pickle stores (kept at the stored
    # length: the file's producer truncated them), per modality
    overlong: dict[str, int] = field(default_factory=dict)


def _load_pickle(path: Path) -> Mapping[str, Any]:
    data = load_pickle(path)
    if not isinstance(data, Mapping):
        raise DatasetError(f"{path}: not an MMSA pickle (top level is {type(data).__name__}, expected a dict "
                           "with train/valid/test)")
    return data


def _strs(a: Any, n: int) -> list[str | None]:
    if a is None:
        return [None] * n
    out = []
    for v in list(a):
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        out.append(None if v is None else str(v))
    return out


def _floats(a: Any, n: int) -> list[float | None]:
    if a is None:
        return [None] * n
    arr = np.asarray(a, dtype=np.float64).reshape(n, -1)[:, 0]
    return [float(x) for x in arr]


def read_mmsa(path: str | os.PathLike,
              data: Mapping[str, Any] | None = None) -> tuple[FeatureSpec, dict[str, Iterator[Sample]], MMSAReport]:
    """Parse an MMSA pickle into a FeatureSpec and per-split sample iterators (see module docstring);
    ``data``: the file's content when the caller has already unpickled it."""
    p = Path(path)
    data = _load_pickle(p) if data is None else data
    splits = {canonical_split(k): v for k, v in data.items() if canonical_split(k) in ("train", "valid", "test")}
    if not splits:
        raise DatasetError(f"{p}: not an MMSA pickle: no train/valid/test keys (found {sorted(map(str, data))[:10]})")
    report = MMSAReport(p)
    dims: dict[str, int] = {}
    has_lengths: dict[str, bool] = {}
    for name, d in splits.items():
        if not isinstance(d, Mapping):
            hint = " (a MAG-BERT / MInD pickle? import it with --format magbert)" if isinstance(d, list) else ""
            raise DatasetError(f"{p}: split {name!r} is a {type(d).__name__}, expected a dict of arrays{hint}")
        if "regression_labels" not in d:
            raise DatasetError(f"{p}: split {name!r} has no 'regression_labels' (keys: {sorted(d)})")
        n = len(d["regression_labels"])
        for m in MODALITIES:
            if m in d and d[m] is not None:
                a = d[m]
                if getattr(a, "ndim", 0) != 3 or a.shape[0] != n:
                    raise DatasetError(f"{p}: {name}/{m} has shape {getattr(a, 'shape', None)}, expected "
                                       f"({n}, L, D)")
                if dims.setdefault(m, int(a.shape[2])) != a.shape[2]:
                    raise DatasetError(f"{p}: {m} has dim {a.shape[2]} in {name!r} but {dims[m]} elsewhere")
                has_lengths[m] = has_lengths.get(m, False) or f"{m}_lengths" in d
        if "text_bert" in d and d["text_bert"] is not None:
            tb = d["text_bert"]
            if getattr(tb, "ndim", 0) != 3 or tb.shape[0] != n or tb.shape[1] != 3:
                raise DatasetError(f"{p}: {name}/text_bert has shape {getattr(tb, 'shape', None)}, "
                                   f"expected ({n}, 3, L)")
        if "id" in d and len(d["id"]) != n:
            raise DatasetError(f"{p}: {name}/id has {len(d['id'])} entries for {n} labels")
    if not dims:
        raise DatasetError(f"{p}: no text/audio/vision arrays in any split")
    layout = "unaligned" if any(has_lengths.values()) else "aligned"
    report.layout = layout
    report.dims = dict(dims)
    origin = {"source": "mmsa_pickle", "file": p.name, "layout": layout}
    spec = FeatureSpec(
        tuple(ExtractorSpec(name="mmsa_precomputed", modality=m, version="unknown",
                            params={"note": "precomputed features of unknown extractors"}, dim=dims[m])
              for m in MODALITIES if m in dims),
        origin=origin,
    )
    for name, d in splits.items():
        _check_labels(p, name, d)
    report.nonfinite = {m: 0 for m in MODALITIES if m in dims}
    for name, d in splits.items():
        report.sizes[name] = len(d["regression_labels"])
        for m in dims:
            if m in d:
                report.lengths[m] = max(report.lengths.get(m, 0), int(d[m].shape[1]))
    _report_overlong(splits, dims, report)
    return spec, {name: _samples(p, name, d, dims, report.nonfinite) for name, d in splits.items()}, report


def _report_overlong(splits: Mapping[str, Mapping[str, Any]], dims: Mapping[str, int], report: MMSAReport) -> None:
    """Count (and warn about) samples whose ``<m>_lengths`` entry exceeds the steps the pickle stores for them:
    such a sample is imported at the stored length, the steps beyond it were never in the file."""
    worst: dict[str, tuple[int, int]] = {}
    for d in splits.values():
        for m in dims:
            lk = f"{m}_lengths"
            if m not in d or d[m] is None or d.get(lk) is None:
                continue
            stored = int(np.asarray(d[m]).shape[1])
            stated = np.asarray(d[lk]).reshape(len(d[lk]), -1)[:, 0].astype(np.int64)
            over = stated > stored
            if over.any():
                report.overlong[m] = report.overlong.get(m, 0) + int(over.sum())
                worst[m] = max(worst.get(m, (0, stored)), (int(stated.max()), stored))
    for m, n in report.overlong.items():
        most, stored = worst[m]
        report.warnings.append(f"{m}: {n} samples state more valid steps than the file stores (up to {most} > "
                               f"{stored}); imported at the stored {stored} steps (the file's producer truncated "
                               "them)")


def _check_labels(path: Path, split: str, d: Mapping[str, Any]) -> None:
    """DatasetError when a regression label of ``split`` is NaN/inf or outside LABEL_BOUNDS."""
    lo, hi = LABEL_BOUNDS
    for key in ("regression_labels", *_LABEL_KEYS):
        if d.get(key) is None:
            continue
        a = np.asarray(d[key], dtype=np.float64).reshape(len(d[key]), -1)[:, 0]
        bad = np.nonzero(~(np.isfinite(a) & (a >= lo) & (a <= hi)))[0]
        if bad.size:
            shown = ", ".join(f"[{i}]={a[i]:g}" for i in bad[:8])
            shown += f", ... ({bad.size} in all)" if bad.size > 8 else ""
            raise DatasetError(f"{path}: {split}/{key}: labels must be finite and inside [{lo:g}, {hi:g}]: {shown}")


def _samples(path: Path, split: str, d: Mapping[str, Any], dims: Mapping[str, int],
             nonfinite: dict[str, int]) -> Iterator[Sample]:
    """The samples of one split; NaN/inf feature values become 0 (counted per modality in ``nonfinite``)."""
    n = len(d["regression_labels"])
    ids = _strs(d.get("id"), n)
    ids = [i if i is not None else f"{split}_{k}" for k, i in enumerate(ids)]
    # <video>$_$<clip> -> sample id <video>_<clip> (msa_toolkit/ids.py)
    parsed = [from_mmsa_id(i) for i in ids]
    texts = _strs(d.get("raw_text"), n)
    ann = _strs(d.get("annotations"), n)
    labels = _floats(d["regression_labels"], n)
    cls = _floats(d.get("classification_labels"), n)
    uni = {f: _floats(d.get(k), n) for k, f in _LABEL_KEYS.items()}
    tb = d.get("text_bert")
    tb = None if tb is None else np.asarray(tb)
    # all-zero token ids (e.g. written by an export without stored tokens): no token arrays
    has_ids = tb is not None and bool(np.any(np.rint(tb[:, 0]) != 0))
    for k in range(n):
        feats: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        tok_mask = None if tb is None else np.rint(tb[k, 1]).astype(np.int64) > 0
        for m in dims:
            if m not in d or d[m] is None:
                continue
            x = np.asarray(d[m][k], dtype=np.float32)
            bad = ~np.isfinite(x)
            if bad.any():
                nonfinite[m] = nonfinite.get(m, 0) + int(np.count_nonzero(bad))
                x = np.where(bad, np.float32(0.0), x)
            lk = f"{m}_lengths"
            if lk in d and d[lk] is not None:
                L = int(np.clip(int(np.asarray(d[lk][k]).reshape(-1)[0]), 0, x.shape[0]))
                if L > 0:
                    feats[m] = np.ascontiguousarray(x[:L])
                continue
            feats[m] = np.ascontiguousarray(x)
            if tok_mask is not None and tok_mask.shape[0] == x.shape[0]:
                masks[m] = tok_mask.copy()
            else:
                masks[m] = np.abs(x).sum(axis=1) > 0
        arrays = {}
        if has_ids:
            rows = np.rint(tb[k]).astype(np.int64)
            arrays = {name: rows[i] for i, name in enumerate(TOKEN_ARRAYS)}
        sid, video, clip = parsed[k]
        yield Sample(id=sid, label=labels[k] if labels[k] is not None else float("nan"), features=feats,
                     masks=masks, arrays=arrays, text=texts[k], annotation=ann[k], class_label=cls[k],
                     video_id=video, clip_id=clip, **{f: v[k] for f, v in uni.items()})


def import_mmsa(path: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False,
                data: Mapping[str, Any] | None = None) -> tuple[MSADataset, MMSAReport]:
    """Convert an MMSA pickle into a native dataset directory; returns (dataset, report).
    ``data``: the file's content when the caller has already unpickled it."""
    spec, samples, report = read_mmsa(path, data)
    ds = write_dataset(out_dir, spec, samples, overwrite=overwrite,
                       provenance={"source": "mmsa_pickle", "file": str(Path(path).resolve()),
                                   "layout": report.layout, "padded_lengths": report.lengths})
    if any(report.nonfinite.values()):
        report.warnings.append("non-finite values (NaN/-inf/+inf) replaced by 0: "
                               + describe_counts(report.nonfinite))
    ds.manifest["provenance"].update(warnings=report.warnings, nonfinite_replaced=dict(report.nonfinite),
                                     overlong_lengths=dict(report.overlong))
    atomic_write_json(Path(out_dir) / MANIFEST, ds.manifest)
    return ds, report


# ---------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------
def _pad(seqs: list[np.ndarray | None], L: int, D: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((len(seqs), L, D), np.float32)
    lengths = np.zeros(len(seqs), np.int64)
    for i, s in enumerate(seqs):
        if s is None or s.shape[0] == 0:
            continue
        s = s[:L]
        out[i, : s.shape[0]] = s
        lengths[i] = s.shape[0]
    return out, lengths


def _annotation(label: float) -> str:
    return "Positive" if label > 0 else ("Negative" if label < 0 else "Neutral")


#: MMSA-FET's default padded length: mean + STD_FACTOR standard deviations of the sequence lengths
STD_FACTOR = 3.0


def _stored_lengths(ds: MSADataset, m: str) -> np.ndarray:
    """Every sample's stored length of modality ``m`` (text: the longer of features and token ids)."""
    parts = []
    for s in ds.splits:
        sp = ds.split(s)
        ls = sp.lengths(m)
        if m == "text" and "text.input_ids.offsets" in sp.tensors:
            ls = np.maximum(ls, np.diff(np.asarray(sp.tensors["text.input_ids.offsets"])))
        parts.append(ls)
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def mmsa_fet_length(lengths: np.ndarray) -> int:
    """MMSA-FET's rule: round(mean + 3 std) of the lengths, at least 1 and at most the longest."""
    if lengths.size == 0:
        return 1
    rule = int(round(float(lengths.mean() + STD_FACTOR * lengths.std())))
    return max(1, min(rule, int(lengths.max())))


def _export_lengths(ds: MSADataset, lengths: Mapping[str, int] | None,
                    report: MMSAReport | None = None) -> dict[str, int]:
    """The padded length of every present modality: ``lengths[m]`` when given, else an imported pickle's
    original padded length, else :func:`mmsa_fet_length`; truncated sequences are counted in ``report``."""
    fixed: dict[str, int] = {}
    for m in MODALITIES:
        if not ds.spec.has(m):
            continue
        ls = _stored_lengths(ds, m)
        original = int(ds.provenance.get("padded_lengths", {}).get(m, 0))
        given = (lengths or {}).get(m)
        if given:
            fixed[m] = int(given)
        elif original:  # an imported pickle is re-exported with its original padded length
            fixed[m] = max(original, int(ls.max(initial=1)))
        else:
            fixed[m] = mmsa_fet_length(ls)
        if report is not None:
            report.truncated[m] = int(np.sum(ls > fixed[m]))
            if report.truncated[m]:
                report.warnings.append(f"{m}: {report.truncated[m]} of {ls.size} sequences truncated to "
                                       f"{fixed[m]} steps (longest {int(ls.max())})")
    return fixed


def _text_bert(samples: list[Sample], Lt: int) -> tuple[np.ndarray, bool]:
    """MMSA's ``text_bert`` [N, 3, Lt] (token ids, attention mask, token types) and whether some
    sample had no stored token ids (its row then holds zero ids and the text mask as attention)."""
    tb = np.zeros((len(samples), 3, Lt), np.float32)
    missing_tokens = False
    for i, s in enumerate(samples):
        if all(k in s.arrays for k in ("text.input_ids", "text.attention_mask")):
            for r, k in enumerate(TOKEN_ARRAYS):
                if k in s.arrays:
                    v = np.asarray(s.arrays[k])[:Lt]
                    tb[i, r, : v.shape[0]] = v
        else:
            missing_tokens = True
            f = s.features.get("text")
            if f is not None:
                mk = s.masks.get("text")
                mk = np.ones(f.shape[0], bool) if mk is None else mk
                mk = mk[:Lt]
                tb[i, 1, : mk.shape[0]] = mk
    return tb, missing_tokens


def _export_labels(sp: SplitDataset, samples: list[Sample], d: dict[str, Any]) -> None:
    """Fill the label keys of one split's dict: regression (+ unimodal), classification, annotations."""
    n = len(samples)
    labels = np.array([s.label for s in samples], np.float32)
    d["regression_labels"] = labels
    for f, key in (("label_T", "regression_labels_T"), ("label_A", "regression_labels_A"),
                   ("label_V", "regression_labels_V")):
        if sp.field(f) is not None:
            d[key] = np.array([np.nan if getattr(s, f) is None else getattr(s, f) for s in samples], np.float32)
    cl = sp.field("class_label")
    if cl is not None and all(v is not None for v in cl):
        d["classification_labels"] = np.array(cl, np.float32)
    else:
        d["classification_labels"] = (np.sign(labels) + 1).astype(np.float32)
    ann = sp.field("annotation")
    d["annotations"] = np.array([a if a is not None else _annotation(float(y)) for a, y in
                                 zip(ann or [None] * n, labels)], dtype=str) if n else np.array([], dtype=str)


def _export_split(ds: MSADataset, sp: SplitDataset, fixed: Mapping[str, int],
                  aligned: bool) -> tuple[dict[str, Any], bool]:
    """One split as MMSA's dict of padded arrays; also whether some sample lacked token ids."""
    samples = list(sp)
    n = len(samples)
    d: dict[str, Any] = {
        "id": (np.array([to_mmsa_id(s.id, s.video_id, s.clip_id) for s in samples], dtype=str) if n
               else np.array([], dtype=str)),
        "raw_text": np.array([s.text or "" for s in samples], dtype=str) if n else np.array([], dtype=str),
    }
    for m in MODALITIES:
        if m in fixed:
            arr, ln = _pad([s.features.get(m) for s in samples], fixed[m], ds.spec.dims[m])
        else:
            arr, ln = np.zeros((n, 1, 1), np.float32), np.ones(n, np.int64)
        d[m] = arr
        if m != "text" and not aligned:
            d[f"{m}_lengths"] = ln
    d["text_bert"], missing_tokens = _text_bert(samples, fixed.get("text", 1))
    _export_labels(sp, samples, d)
    return d, missing_tokens


def export_mmsa(dataset: MSADataset | str | os.PathLike, out_file: str | os.PathLike,
                lengths: Mapping[str, int] | None = None) -> MMSAReport:
    """Write a native dataset as an MMSA pickle (see the module docstring)."""
    ds = as_dataset(dataset)
    out = Path(out_file)
    aligned = ds.spec.origin.get("source") == "mmsa_pickle" and ds.spec.origin.get("layout") == "aligned"
    report = MMSAReport(out, layout="aligned" if aligned else "unaligned")
    unknown = sorted(set(lengths or {}) - set(MODALITIES))
    if unknown:
        raise DatasetError(f"max lengths given for unknown modalities {unknown}; expected {', '.join(MODALITIES)}")
    fixed = _export_lengths(ds, lengths, report)
    report.lengths = dict(fixed)
    report.dims = {m: ds.spec.dims[m] for m in MODALITIES if ds.spec.has(m)}
    absent = [m for m in MODALITIES if not ds.spec.has(m)]
    if absent:
        report.warnings.append(f"{', '.join(absent)} absent: written as zeros (N, 1, 1) with length 1")
    missing_tokens = False
    result: dict[str, dict[str, Any]] = {}
    for split in ds.splits:
        result[split], missing = _export_split(ds, ds.split(split), fixed, aligned)
        missing_tokens = missing_tokens or missing
        report.sizes[split] = len(result[split]["regression_labels"])
    if missing_tokens:
        report.warnings.append("no stored token ids: text_bert holds zero ids (attention mask from the text mask); "
                               "models that fine-tune BERT from text_bert cannot use this file")

    def dump(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=4)

    atomic_write(out, dump)
    return report


__all__ = ["import_mmsa", "export_mmsa", "read_mmsa", "MMSAReport", "TOKEN_ARRAYS", "mmsa_fet_length"]
