"""The native on-disk dataset: a manifest plus one memory-mapped tensor file per split.

Layout of a dataset directory::

    DS/
      manifest.json        format version, FeatureSpec, splits (ids, labels, texts, ...),
                           normalisation statistics (train split), provenance
      train.safetensors    ragged features of the split, concatenated (see below)
      valid.safetensors
      test.safetensors
      errors.json          (datasets built from media) files that could not be used

Each split file is a standard safetensors file. For every modality ``m`` of the
FeatureSpec it holds ``m.values`` float32 ``[sumT, D]`` (all samples' rows one
after another), ``m.mask`` uint8 ``[sumT]`` (1 on valid steps, e.g. 0 on frames
with no face) and ``m.offsets`` int64 ``[N + 1]`` (sample ``i`` owns rows
``offsets[i]:offsets[i+1]``; an empty range means the modality is missing for
that sample). Extra 1-D integer arrays such as ``text.input_ids`` and
``text.attention_mask`` are stored the same way (``name`` + ``name.offsets``).

Split files are streamed to disk while samples are produced (one temporary file
per tensor, concatenated at the end), and read back through ``numpy.memmap``
views of the safetensors payload, so neither writing nor reading a MOSEI-sized
dataset needs the features in memory: a sample reads only its own rows. The
manifest is written last; a directory is a dataset only once it exists.

This module holds the format itself (:class:`Sample`, writing, reading). Split names live
in :mod:`.splits`, the safetensors streaming I/O in :mod:`.safetensors_io` and
``validate_dataset``/``dataset_info`` in :mod:`.inspect`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .._io import atomic_dir, atomic_write_json
from ..errors import DatasetError, OutputError
from ..features import FeatureBundle
from ..spec import MODALITIES, FeatureSpec
from .safetensors_io import StreamingSafetensorsWriter, read_safetensors_mmap
from .splits import SPLIT_ALIASES, SPLIT_ORDER, canonical_split
from .stats import StatsAccumulator, usable_stats

#: Version of the dataset directory layout.
DATASET_FORMAT_VERSION = 1
#: Name of the manifest file inside a dataset directory.
MANIFEST = "manifest.json"
#: Marker in the manifest identifying the format.
FORMAT_NAME = "msa_toolkit.dataset"
#: Optional per-sample label fields stored in the manifest next to ``label``.
_OPTIONAL_FIELDS = ("label_T", "label_A", "label_V", "class_label", "annotation", "text", "video_id", "clip_id")


# ---------------------------------------------------------------------------------------
# Sample
# ---------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One labelled clip with its (possibly partial) features, as written and read."""

    # unique sample id, e.g. "03bSnISJMiM_1"
    id: str
    # regression label (e.g. sentiment in [-3, 3]); NaN when unknown
    label: float
    # per present modality float32 [T, D] features; a missing key = modality absent for this sample
    features: dict[str, np.ndarray] = field(default_factory=dict)
    # per modality bool [T] valid-step masks; a missing key = all steps valid
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    # extra 1-D integer arrays, e.g. "text.input_ids", "text.attention_mask", "text.token_type_ids"
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # unimodal labels (CH-SIMS style), None when absent
    label_T: float | None = None
    label_A: float | None = None
    label_V: float | None = None
    # classification label (MMSA "classification_labels"), None when absent
    class_label: float | None = None
    # free-text annotation, e.g. "Positive"
    annotation: str | None = None
    # raw transcript text, None when unknown
    text: str | None = None
    # source video id (groups clips of one video for splitting), None when unknown
    video_id: str | None = None
    # clip id inside the video, None when unknown
    clip_id: str | None = None

    @classmethod
    def from_bundle(cls, sample_id: str, bundle: FeatureBundle, label: float, **fields: Any) -> "Sample":
        """A sample from an extracted FeatureBundle; ``fields`` fill the optional label fields.

        The modalities are the bundle's :meth:`~msa_toolkit.features.FeatureBundle.model_sequences` (no text
        for a clip without speech, as ``msa predict`` reads it); an absent modality's arrays are left out.
        """
        seqs = bundle.model_sequences()
        feats = {m: s.values for m, s in seqs.items() if m in MODALITIES}
        masks = {m: s.mask for m, s in seqs.items() if m in MODALITIES}
        arrays = {k: np.asarray(v).reshape(-1) for k, v in bundle.arrays.items()
                  if np.asarray(v).ndim <= 1 and np.issubdtype(np.asarray(v).dtype, np.integer)
                  and _array_modality(k) in (None, *feats)}
        if fields.get("text") is None and bundle.transcript is not None:
            fields["text"] = bundle.transcript.text
        return cls(id=sample_id, label=float(label), features=feats, masks=masks, arrays=arrays, **fields)

    def length(self, modality: str) -> int:
        f = self.features.get(modality)
        return 0 if f is None else int(f.shape[0])


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------
def _json_num(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _array_modality(name: str) -> str | None:
    """The modality an extra array belongs to (``text.input_ids`` -> ``text``), None for others."""
    head = name.split(".", 1)[0]
    return head if head in MODALITIES and "." in name else None


def _append_arrays(w: StreamingSafetensorsWriter, s: Sample, split: str, n: int, offsets: Mapping[str, list[int]],
                   array_offsets: dict[str, list[int]]) -> None:
    """Append sample ``s`` (the ``n``-th of ``split``) to the extra arrays; its features are already written.

    Every sample carries the same arrays, except that a sample without a modality (no rows, e.g. no text
    for a video without sound) may lack that modality's arrays: it gets an empty range in them.
    """
    for k in s.arrays:
        if k not in array_offsets:
            m = _array_modality(k)
            if n > 0 and (m is None or offsets[m][n] > 0):
                raise DatasetError(f"sample {s.id!r} has array {k!r} that earlier samples of split "
                                   f"{split!r} lack; every sample must carry the same arrays")
            a = np.asarray(s.arrays[k])
            w.declare(k, np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32)
            array_offsets[k] = [0] * (n + 1)  # earlier samples (all without modality m): empty ranges
    for k, off in array_offsets.items():
        if k not in s.arrays:
            m = _array_modality(k)
            if m is None or s.length(m) > 0:
                raise DatasetError(f"sample {s.id!r} lacks array {k!r} that other samples of split {split!r} have")
            off.append(off[-1])
            continue
        a = np.asarray(s.arrays[k]).reshape(-1)
        w.append(k, a)
        off.append(off[-1] + a.shape[0])


def _write_split(out_dir: Path, split: str, spec: FeatureSpec, samples: Iterable[Sample],
                 stats: dict[str, StatsAccumulator] | None, seen_ids: dict[str, str]) -> dict[str, Any]:
    dims = {m: spec.get(m).dim for m in spec.modalities}
    fname = f"{split}.safetensors"
    w = StreamingSafetensorsWriter(out_dir / fname)
    offsets: dict[str, list[int]] = {}
    for m, d in dims.items():
        w.declare(f"{m}.values", np.float32, (d,))
        w.declare(f"{m}.mask", np.uint8)
        offsets[f"{m}"] = [0]
    array_offsets: dict[str, list[int]] = {}
    entry: dict[str, Any] = {"file": fname, "ids": [], "label": [], **{k: [] for k in _OPTIONAL_FIELDS}}
    n = 0
    try:
        for s in samples:
            if s.id in seen_ids:
                where = (f"twice in split {split!r}" if seen_ids[s.id] == split
                         else f"in splits {seen_ids[s.id]!r} and {split!r}")
                raise DatasetError(f"duplicate sample id {s.id!r} ({where})")
            seen_ids[s.id] = split
            extra = sorted(set(s.features) - set(dims))
            if extra:
                raise DatasetError(f"sample {s.id!r} has features for {extra}, which the FeatureSpec does not "
                                   f"describe (spec modalities: {list(dims)})")
            for m, d in dims.items():
                v = s.features.get(m)
                if v is None:
                    v = np.zeros((0, d), np.float32)
                v = np.asarray(v, dtype=np.float32)
                if v.ndim != 2 or v.shape[1] != d:
                    raise DatasetError(f"sample {s.id!r}: {m} features have shape {tuple(v.shape)}, "
                                       f"the FeatureSpec says [T, {d}]")
                mk = s.masks.get(m)
                mk = np.ones(v.shape[0], bool) if mk is None else np.asarray(mk, bool).reshape(-1)
                if mk.shape[0] != v.shape[0]:
                    raise DatasetError(f"sample {s.id!r}: {m} mask has {mk.shape[0]} steps for {v.shape[0]} rows")
                w.append(f"{m}.values", v)
                w.append(f"{m}.mask", mk.astype(np.uint8))
                offsets[m].append(offsets[m][-1] + v.shape[0])
                if stats is not None:
                    stats[m].add(v, mk)
            _append_arrays(w, s, split, n, offsets, array_offsets)
            entry["ids"].append(str(s.id))
            entry["label"].append(_json_num(s.label))
            for k in _OPTIONAL_FIELDS:
                v = getattr(s, k)
                entry[k].append(_json_num(v) if k.startswith(("label_", "class_")) else (None if v is None else str(v)))
            n += 1
        for m in dims:
            w.declare(f"{m}.offsets", np.int64)
            w.append(f"{m}.offsets", np.asarray(offsets[m], np.int64))
        for k, off in array_offsets.items():
            w.declare(f"{k}.offsets", np.int64)
            w.append(f"{k}.offsets", np.asarray(off, np.int64))
        w.close({"format": FORMAT_NAME, "split": split})
    except BaseException:
        w.abort()
        raise
    # drop optional fields nobody filled
    for k in _OPTIONAL_FIELDS:
        if all(v is None for v in entry[k]):
            del entry[k]
    entry["num_samples"] = n
    entry["arrays"] = sorted(array_offsets)
    return entry


def write_dataset(out_dir: str | os.PathLike, spec: FeatureSpec, samples_by_split: Mapping[str, Iterable[Sample]],
                  provenance: Mapping[str, Any] | None = None, overwrite: bool = False,
                  stats_split: str = "train", extra: Mapping[str, Any] | None = None,
                  finish: Callable[["MSADataset"], Any] | None = None) -> "MSADataset":
    """Write a native dataset directory and return it loaded.

    ``samples_by_split`` maps split names (aliases such as ``dev`` become ``valid``)
    to iterables of :class:`Sample` (generators are fine: samples are streamed to
    disk). Normalisation statistics are computed on ``stats_split`` (train) while
    writing; when that split is absent the first split is used. ``provenance`` is
    stored verbatim next to the creation time and toolkit version. An existing
    dataset in ``out_dir`` is replaced only with ``overwrite=True``.

    The dataset is written into a temporary folder beside ``out_dir`` and put in place only when
    complete (``_io.atomic_dir``: the old dataset's files go, other files in the folder stay); any
    failure leaves ``out_dir`` as it was and no temporary folder (an ``OSError``, e.g. a full disk,
    becomes an :class:`OutputError`). ``finish`` is called with the written dataset while it is still
    in the temporary folder: it may add files or raise to abandon it.
    """
    from .. import __version__

    out = Path(out_dir)
    if (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset (manifest.json); "
                           "choose another directory or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a directory")
    try:
        with atomic_dir(out, replaces=["errors.json", *(p.name for p in out.glob("*.safetensors"))],
                        marker=MANIFEST) as tmp:
            _write_all(tmp, spec, samples_by_split, provenance, stats_split, extra, __version__)
            if finish is not None:
                finish(load_dataset(tmp))
    except OSError as e:
        raise OutputError(f"{out}: dataset not written ({e.strerror or e}); any dataset already there is "
                          "unchanged") from None
    return load_dataset(out)


def _write_all(out: Path, spec: FeatureSpec, samples_by_split: Mapping[str, Iterable[Sample]],
               provenance: Mapping[str, Any] | None, stats_split: str, extra: Mapping[str, Any] | None,
               version: str) -> None:
    """The splits and the manifest of :func:`write_dataset`, written into ``out``."""

    by_split: dict[str, Iterable[Sample]] = {}
    for name, samples in samples_by_split.items():
        c = canonical_split(name)
        if c in by_split:
            raise DatasetError(f"split {name!r} given twice (as {c!r})")
        by_split[c] = samples
    order = [s for s in SPLIT_ORDER if s in by_split] + [s for s in by_split if s not in SPLIT_ORDER]
    stats_on = canonical_split(stats_split)
    if stats_on not in by_split:
        stats_on = order[0] if order else None

    seen: dict[str, str] = {}
    splits: dict[str, Any] = {}
    stats_acc: dict[str, StatsAccumulator] = {}
    for name in order:
        acc = {m: StatsAccumulator(spec.get(m).dim) for m in spec.modalities} if name == stats_on else None
        splits[name] = _write_split(out, name, spec, by_split[name], acc, seen)
        if acc is not None:
            stats_acc = acc
    manifest = {
        "format": FORMAT_NAME,
        "format_version": DATASET_FORMAT_VERSION,
        "spec": spec.to_dict(),
        "split_order": order,
        "splits": splits,
        "stats": {"split": stats_on, **{m: a.result() for m, a in stats_acc.items()}},
        "provenance": {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "toolkit_version": version,
            **dict(provenance or {}),
        },
    }
    if extra:
        manifest.update(dict(extra))
    atomic_write_json(out / MANIFEST, manifest)


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------
def _torch_dataset_base() -> type:
    try:
        from torch.utils.data import Dataset
        return Dataset
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return object


class SplitDataset(_torch_dataset_base()):  # type: ignore[misc]
    """One split as a torch ``Dataset`` of :class:`Sample` (features read lazily from a memmap)."""

    def __init__(self, path: Path, name: str, entry: Mapping[str, Any], spec: FeatureSpec):
        self.path = Path(path)
        self.name = name
        self.spec = spec
        self._entry = entry
        self.ids: list[str] = list(entry["ids"])
        self.labels = np.array([np.nan if v is None else v for v in entry["label"]], np.float32)
        self._fields = {k: entry.get(k) for k in _OPTIONAL_FIELDS}
        self._arrays_names: list[str] = list(entry.get("arrays", []))
        self._tensors: dict[str, np.ndarray] | None = None

    # memmaps are reopened in each process (DataLoader workers) instead of pickled
    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_tensors"] = None
        return d

    @property
    def tensors(self) -> dict[str, np.ndarray]:
        if self._tensors is None:
            f = self.path / self._entry["file"]
            if not f.is_file():
                raise DatasetError(f"{f}: split file of {self.name!r} is missing")
            self._tensors = read_safetensors_mmap(f)
        return self._tensors

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self, modality: str) -> np.ndarray:
        """int64 [N] number of stored steps per sample (0 for absent modalities)."""
        key = f"{modality}.offsets"
        if key not in self.tensors:
            return np.zeros(len(self), np.int64)
        return np.diff(np.asarray(self.tensors[key]))

    def field(self, name: str) -> list[Any] | None:
        """An optional per-sample field (``text``, ``label_T``, ``annotation``, ...) or None when absent."""
        return self._fields.get(name)

    def __getitem__(self, i: int) -> Sample:
        n = len(self.ids)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for split {self.name!r} with {n} samples")
        t = self.tensors
        feats: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for m in self.spec.modalities:
            off = t[f"{m}.offsets"]
            a, b = int(off[i]), int(off[i + 1])
            if b > a:
                feats[m] = np.array(t[f"{m}.values"][a:b])
                masks[m] = np.array(t[f"{m}.mask"][a:b]).astype(bool)
        arrays = {}
        for k in self._arrays_names:
            off = t[f"{k}.offsets"]
            arrays[k] = np.array(t[k][int(off[i]):int(off[i + 1])])
        kw = {}
        for k, vals in self._fields.items():
            if vals is not None:
                kw[k] = vals[i]
        return Sample(id=self.ids[i], label=float(self.labels[i]), features=feats, masks=masks, arrays=arrays, **kw)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"SplitDataset({self.name!r}, n={len(self)}, path={str(self.path)!r})"


class MSADataset:
    """A native dataset directory opened for reading (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, manifest: Mapping[str, Any]):
        # the dataset directory
        self.path = Path(path)
        # the parsed manifest.json
        self.manifest = dict(manifest)
        # the FeatureSpec the features were extracted with
        self.spec = FeatureSpec.from_dict(manifest["spec"])
        self._splits: dict[str, SplitDataset] = {}

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names in order (train, valid, test, then others)."""
        return tuple(self.manifest.get("split_order") or self.manifest["splits"])

    def split(self, name: str) -> SplitDataset:
        """The torch Dataset of one split; ``dev``/``val`` are accepted for ``valid``."""
        c = canonical_split(name)
        if c not in self.manifest["splits"]:
            raise DatasetError(f"{self.path}: no split {name!r}; available: {', '.join(self.splits)}")
        if c not in self._splits:
            self._splits[c] = SplitDataset(self.path, c, self.manifest["splits"][c], self.spec)
        return self._splits[c]

    def __contains__(self, name: str) -> bool:
        return canonical_split(name) in self.manifest["splits"]

    @property
    def stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per modality (mean [D], std [D]) of valid steps of the statistics split (train); a
        DatasetError when they cannot normalise (:func:`.stats.usable_stats`)."""
        return usable_stats(self.manifest.get("stats", {}), self.spec.dims, self.path / MANIFEST)

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.manifest.get("provenance", {}))

    @property
    def content_id(self) -> str:
        """A content id of the dataset: sha256 over its manifest (spec, splits with ids, labels and texts, the
        normalisation statistics; not the provenance, which records when it was written) and the byte sizes of
        its split files. Two builds of the same data have the same id; any other data, another id."""
        body = {k: v for k, v in self.manifest.items() if k != "provenance"}
        sizes = {s: (self.path / e["file"]).stat().st_size if (self.path / e.get("file", "")).is_file() else None
                 for s, e in self.manifest["splits"].items()}
        blob = json.dumps({"manifest": body, "file_sizes": sizes}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def num_samples(self) -> dict[str, int]:
        return {s: int(self.manifest["splits"][s]["num_samples"]) for s in self.splits}

    def samples(self, split: str | None = None) -> Iterator[Sample]:
        """Every sample of one split (or of all splits in order)."""
        for s in ([split] if split else self.splits):
            yield from self.split(s)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.num_samples().items())
        return f"MSADataset({str(self.path)!r}, {sizes}, modalities={self.spec.modalities})"


def load_dataset(path: str | os.PathLike) -> MSADataset:
    """Open a native dataset directory (or its manifest.json). Features stay on disk until read."""
    p = Path(path)
    if p.name == MANIFEST and p.is_file():
        p = p.parent
    mf = p / MANIFEST
    if not p.exists():
        raise DatasetError(f"{p}: dataset directory does not exist")
    if not mf.is_file():
        hint = " (an MMSA pickle? import it with `msa dataset import`)" if p.suffix == ".pkl" else ""
        raise DatasetError(f"{p}: not a dataset directory, {MANIFEST} is missing{hint}")
    try:
        manifest = json.loads(mf.read_text())
    except ValueError as e:
        raise DatasetError(f"{mf}: manifest is not valid JSON ({e})") from e
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{mf}: not an msa_toolkit dataset manifest")
    v = int(manifest.get("format_version", 0))
    if v > DATASET_FORMAT_VERSION:
        raise DatasetError(f"{mf}: dataset format version {v} is newer than this toolkit supports "
                           f"({DATASET_FORMAT_VERSION}); upgrade msa_toolkit")
    return MSADataset(p, manifest)


def as_dataset(dataset_or_path: "MSADataset | str | os.PathLike") -> MSADataset:
    return dataset_or_path if isinstance(dataset_or_path, MSADataset) else load_dataset(dataset_or_path)


__all__ = ["Sample", "MSADataset", "SplitDataset", "write_dataset", "load_dataset", "canonical_split",
           "read_safetensors_mmap", "DATASET_FORMAT_VERSION", "as_dataset", "SPLIT_ORDER", "SPLIT_ALIASES"]
