"""Import of the word-aligned CMU-MOSI / CMU-MOSEI pickles of MAG-BERT and MInD.

Two forms, both holding per split a *list* of items (not MMSA's dict of arrays):

======================  ===============================================================
form                    files
======================  ===============================================================
one dict (MOSI)         ``mosi.pkl``: ``{"train": [...], "dev": [...], "test": [...]}``
three lists (MOSEI)     ``train.pkl``, ``dev.pkl``, ``test.pkl`` side by side, each a list
======================  ===============================================================

An item is ``((words, visual, acoustic), label, segment)`` (MAG-BERT's MOSI file, read by
MInD's ``dataloaders/loader_mosi.py``) or ``((word_ids, visual, acoustic, words), label,
segment)`` (MInD's ``dataloaders/create_dataset.py`` for MOSEI, read by ``loader_mosei.py``):

- ``words``: the transcript's words (str; bytes are decoded), one per row of the features;
  ``word_ids`` (the authors' own vocabulary) are not used;
- ``visual`` ``(T, Dv)``: FACET features averaged over each word (47-d on MOSI, 35-d on MOSEI);
- ``acoustic`` ``(T, Da)``: COVAREP features averaged over each word (74-d);
- ``label``: an array whose first value is the sentiment in [-3, 3] (``(1, 1)`` on MOSI; the
  first of CMU_MOSEI_Labels' 7 columns on MOSEI);
- ``segment``: the CMU-MultimodalSDK segment key, ``<video>[<k>]``; it is kept verbatim as the
  sample id, with ``<video>`` as video id and ``<k>`` as clip id (``k`` is the SDK's segment
  index, not necessarily the clip number of MMSA's ids). Items without a segment get
  ``<split>_<index>``.

Import rules:

- splits ``dev`` -> ``valid``; every split must be present and non-empty.
- text: the raw transcript (words joined by spaces) is always kept. With ``text_model`` (default
  the bundled all-MiniLM-L6-v2; a local BERT folder for BERT fine-tuning; None for none) the
  words go through the toolkit's text extractor (msa_toolkit/extractors/text.py): token-level
  features ``[Lt, D]`` plus ``text.input_ids`` / ``text.attention_mask`` / ``text.word_index``,
  so models can fine-tune that encoder from the token ids.
- ``align="tokens"`` repeats each word's audio/vision row for every token of the word and puts
  zero rows at the special tokens, as MInD's ``loader_mosi.py`` does (audio, vision and text then
  have the same length); ``align="words"`` keeps one row per word, as ``loader_mosei.py`` does.
  ``"auto"``: tokens for the one-dict form, words for the three-file form (words when there is
  no text model: there are no tokens).
- NaN/inf feature values become 0 (counted per modality, as in :mod:`.finite`); labels must be
  finite and inside [-3, 3]. Anything else in a wrong layout is a :class:`DatasetError` naming
  the file, the split and the index.

The FeatureSpec records the text extractor's spec and ``ExtractorSpec(name="magbert_precomputed")``
for audio and vision, with origin ``{"source": "magbert_pickle", "file": ..., "form": "dict" |
"files", "align": "tokens" | "words"}``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json
from ..errors import DatasetError
from ..spec import MODALITIES, ExtractorSpec, FeatureSpec
from .finite import clean_sample, describe_counts
from .labels import LABEL_BOUNDS
from .native import MANIFEST, MSADataset, Sample, write_dataset
from .safe_pickle import load_pickle
from .splits import canonical_split

#: the one-dict file of MAG-BERT / MInD's MOSI
DICT_FILE = "mosi.pkl"
#: the three per-split files of MInD's MOSEI, in split order
SPLIT_FILES = {"train": "train.pkl", "dev": "dev.pkl", "test": "test.pkl"}
#: choices of ``align``
ALIGN_CHOICES = ("auto", "tokens", "words")
#: the text model used when none is named: the toolkit's bundled default text extractor
DEFAULT_TEXT_MODEL = "minilm"
#: transcripts encoded per call of the text extractor (memory bound on MOSEI)
ENCODE_CHUNK = 256
#: a CMU-MultimodalSDK segment key: ``<video>[<k>]``
_SEGMENT = re.compile(r"^(?P<video>.+)\[(?P<clip>[^\[\]]*)\]$")
#: position of each modality's array in an item's feature tuple (words, visual, acoustic[, words])
_POSITIONS = {"vision": 1, "audio": 2}


@dataclass(frozen=True)
class MagbertItem:
    """One parsed item of a MAG-BERT / MInD pickle."""

    # sample id (the SDK segment key, or <split>_<index>)
    id: str
    # video id (the part before "[" of the segment key), None when unknown
    video: str | None
    # clip id (the segment index inside "[...]"), None when unknown
    clip: str | None
    # the transcript's words, one per feature row
    words: tuple[str, ...]
    # per modality ("audio", "vision") float32 [T, D] word-level features
    features: Mapping[str, np.ndarray]
    # sentiment label in [-3, 3]
    label: float


@dataclass
class MagbertReport:
    """What an import did."""

    # the file (or first file) read
    path: Path
    # "dict" (mosi.pkl) or "files" (train.pkl + dev.pkl + test.pkl)
    form: str = "dict"
    # samples per split (canonical names)
    sizes: dict[str, int] = field(default_factory=dict)
    # feature dim per modality
    dims: dict[str, int] = field(default_factory=dict)
    # "tokens" or "words": how audio/vision rows were laid out
    align: str = "words"
    # the text model whose features were computed, None for none
    text_model: str | None = None
    # NaN/inf feature values replaced by 0, per modality
    nonfinite: dict[str, int] = field(default_factory=dict)
    # things users should know
    warnings: list[str] = field(default_factory=list)


def split_files(path: str | os.PathLike) -> dict[str, Path] | None:
    """The train/dev/test files when ``path`` is one of them or their folder, else None."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    if not p.is_dir() and p.name not in SPLIT_FILES.values():
        return None
    files = {s: folder / f for s, f in SPLIT_FILES.items()}
    return files if all(f.is_file() for f in files.values()) else None


def is_magbert_data(data: Any) -> bool:
    """Whether an unpickled object has the MAG-BERT layout (a list of items, or a dict of such lists)."""
    if isinstance(data, Mapping):
        return any(isinstance(v, (list, tuple)) for v in data.values())
    return isinstance(data, (list, tuple))


def load_magbert(path: str | os.PathLike, data: Any = None) -> tuple[dict[str, Sequence[Any]], str, Path]:
    """The raw item lists per split (canonical names), the form ("dict"/"files") and the file read.

    ``path``: ``mosi.pkl``, a folder holding it or train/dev/test.pkl, or ``train.pkl`` (its
    siblings are read); ``data``: the already unpickled content of ``path`` (one-dict form)."""
    p = Path(path)
    files = split_files(p)
    if files is not None and data is None:
        return {canonical_split(s): _as_list(f, load_pickle(f)) for s, f in files.items()}, "files", files["train"]
    if p.is_dir():
        if not (p / DICT_FILE).is_file():
            raise DatasetError(f"{p}: no {DICT_FILE} and no {', '.join(SPLIT_FILES.values())} in this folder")
        p = p / DICT_FILE
    data = load_pickle(p) if data is None else data
    if isinstance(data, (list, tuple)):
        raise DatasetError(f"{p}: a list of items (one split of the three-file form); "
                           f"{', '.join(SPLIT_FILES.values())} must lie side by side")
    if not isinstance(data, Mapping):
        raise DatasetError(f"{p}: not a MAG-BERT pickle (top level is {type(data).__name__}, expected a dict "
                           "with train/dev/test lists)")
    missing = [s for s in SPLIT_FILES if s not in data and canonical_split(s) not in data]
    if missing:
        raise DatasetError(f"{p}: not a MAG-BERT pickle: no {'/'.join(missing)} key(s) (found {sorted(map(str, data))[:10]})")
    return {canonical_split(s): _as_list(p, data[s] if s in data else data[canonical_split(s)], s)
            for s in SPLIT_FILES}, "dict", p


def _as_list(path: Path, items: Any, split: str | None = None) -> Sequence[Any]:
    where = f"{path}" + (f" [{split}]" if split else "")
    if not isinstance(items, (list, tuple)):
        hint = " (an MMSA pickle? import it with --format mmsa)" if isinstance(items, dict) else ""
        raise DatasetError(f"{where}: expected a list of ((words, visual, acoustic), label, segment) items, "
                           f"found {type(items).__name__}{hint}")
    if not items:
        raise DatasetError(f"{where}: the split is empty")
    return items


def _word(w: Any) -> str:
    return w.decode("utf-8", "replace") if isinstance(w, bytes) else str(w)


def _shape_of(item: Any) -> str:
    """What a malformed item is, e.g. ``tuple of length 3 whose first entry is a tuple of length 2``."""
    def one(x: Any) -> str:
        return f"{type(x).__name__}" + (f" of length {len(x)}" if isinstance(x, (tuple, list, str)) else "")
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return f"{one(item)} whose first entry (the features) is a {one(item[0])}"
    return one(item)


def parse_item(path: Path, split: str, k: int, item: Any) -> MagbertItem:
    """One item as :class:`MagbertItem`; DatasetError naming file, split and index when malformed."""
    where = f"{path}: {split}[{k}]"
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3) or not isinstance(item[0], (tuple, list)) \
            or len(item[0]) not in (3, 4):
        raise DatasetError(f"{where}: expected ((words, visual, acoustic[, words]), label, segment), found "
                           f"{_shape_of(item)}")
    feats, label = item[0], item[1]
    words = feats[3] if len(feats) == 4 else feats[0]
    words = words.tolist() if isinstance(words, np.ndarray) else list(words)
    if any(not isinstance(w, (str, bytes)) for w in words):
        raise DatasetError(f"{where}: the words must be strings, found {type(words[0]).__name__} "
                           "(word ids without the words?)")
    words = tuple(_word(w) for w in words)
    arrays = {}
    for m, pos in _POSITIONS.items():
        a = np.asarray(feats[pos], dtype=np.float32)
        if a.ndim != 2 or a.shape[0] != len(words):
            raise DatasetError(f"{where}: {m} has shape {a.shape}, expected ({len(words)}, D): one row per word")
        arrays[m] = a
    y = np.asarray(label, dtype=np.float64).reshape(-1)
    lo, hi = LABEL_BOUNDS
    if y.size == 0 or not np.isfinite(y[0]) or not lo <= y[0] <= hi:
        raise DatasetError(f"{where}: the label must be finite and inside [{lo:g}, {hi:g}], found {label!r}")
    segment = _word(item[2]) if len(item) == 3 and item[2] is not None else f"{split}_{k}"
    m = _SEGMENT.match(segment)
    return MagbertItem(segment, m["video"] if m else None, m["clip"] if m else None, words, arrays, float(y[0]))


def read_magbert(path: str | os.PathLike, data: Any = None) -> tuple[dict[str, list[MagbertItem]], MagbertReport]:
    """Parse and check every item (module docstring); returns items per split and the report."""
    raw, form, first = load_magbert(path, data)
    report = MagbertReport(first, form=form)
    splits: dict[str, list[MagbertItem]] = {}
    seen: dict[str, str] = {}
    for split, items in raw.items():
        parsed = [parse_item(first, split, k, it) for k, it in enumerate(items)]
        for k, it in enumerate(parsed):
            for m, a in it.features.items():
                if report.dims.setdefault(m, int(a.shape[1])) != a.shape[1]:
                    raise DatasetError(f"{first}: {split}[{k}]: {m} is {a.shape[1]}-d, {report.dims[m]}-d elsewhere")
            if it.id in seen:
                raise DatasetError(f"{first}: sample id {it.id!r} appears twice ({seen[it.id]} and {split}[{k}])")
            seen[it.id] = f"{split}[{k}]"
        splits[split] = parsed
        report.sizes[split] = len(parsed)
    return splits, report


def _text_extractor(text_model: str, device: str) -> Any:
    from ..extractors.base import create_extractor, list_extractors

    if text_model in list_extractors("text"):
        return create_extractor(text_model, device=device)
    return create_extractor("transformer", model=text_model, device=device)


def _token_rows(word_rows: np.ndarray, word_index: np.ndarray) -> np.ndarray:
    """One row per token: its word's row, zeros for special tokens (word index -1)."""
    out = np.zeros((len(word_index), word_rows.shape[1]), np.float32)
    ok = (word_index >= 0) & (word_index < len(word_rows))
    out[ok] = word_rows[word_index[ok]]
    return out


def _samples(items: Sequence[MagbertItem], extractor: Any, align: str,
             nonfinite: dict[str, int]) -> Iterator[Sample]:
    """The samples of one split, text encoded ENCODE_CHUNK transcripts at a time."""
    from ..features import Transcript, Word

    for start in range(0, len(items), ENCODE_CHUNK):
        chunk = items[start:start + ENCODE_CHUNK]
        encoded = [None] * len(chunk) if extractor is None else extractor.encode(
            [Transcript(tuple(Word(w, float("nan"), float("nan")) for w in it.words), source="user")
             for it in chunk])
        for it, enc in zip(chunk, encoded):
            sample = Sample(id=it.id, label=it.label, features=dict(it.features), text=" ".join(it.words),
                            video_id=it.video, clip_id=it.clip)
            if enc is not None:
                seq, arrays = enc
                sample.features["text"] = np.asarray(seq.values, np.float32)
                sample.arrays = dict(arrays)
            clean_sample(sample, nonfinite)  # on the word rows: a value is counted once, however many tokens
            if enc is not None and align == "tokens":
                for m in it.features:
                    sample.features[m] = _token_rows(sample.features[m], sample.arrays["text.word_index"])
            yield sample


def import_magbert(path: str | os.PathLike, out_dir: str | os.PathLike, text_model: str | None = DEFAULT_TEXT_MODEL,
                   align: str = "auto", device: str = "cpu", overwrite: bool = False,
                   data: Any = None) -> tuple[MSADataset, MagbertReport]:
    """Convert a MAG-BERT / MInD pickle (either form) into a native dataset; returns (dataset, report)."""
    if align not in ALIGN_CHOICES:
        raise DatasetError(f"align must be one of {', '.join(ALIGN_CHOICES)}, got {align!r}")
    splits, report = read_magbert(path, data)
    if align == "auto":
        align = "tokens" if report.form == "dict" and text_model else "words"
    if text_model is None and align == "tokens":
        raise DatasetError("align='tokens' needs a text model (the tokens come from its tokenizer)")
    report.align, report.text_model = align, text_model
    extractor = _text_extractor(text_model, device) if text_model else None
    note = "CMU-MultimodalSDK features averaged per word (MAG-BERT / MInD pickle)"
    specs = [ExtractorSpec(name="magbert_precomputed", modality=m, version="unknown",
                           params={"note": note, "align": align}, dim=report.dims[m]) for m in ("audio", "vision")]
    if extractor is not None:
        specs.insert(0, extractor.spec)
        report.dims["text"] = extractor.dim
    report.dims = {m: report.dims[m] for m in MODALITIES if m in report.dims}
    origin = {"source": "magbert_pickle", "file": report.path.name, "form": report.form, "align": align}
    spec = FeatureSpec(tuple(specs), origin=origin)
    report.nonfinite = {m: 0 for m in report.dims}
    ds = write_dataset(out_dir, spec, {s: _samples(items, extractor, align, report.nonfinite)
                                       for s, items in splits.items()}, overwrite=overwrite,
                       provenance={**origin, "file": str(report.path.resolve()), "text_model": text_model})
    if any(report.nonfinite.values()):
        report.warnings.append("non-finite values (NaN/-inf/+inf) replaced by 0: " + describe_counts(report.nonfinite))
    if extractor is None:
        report.warnings.append("no text model: the dataset holds the transcripts but no text features or tokens")
    ds.manifest["provenance"].update(warnings=report.warnings, nonfinite_replaced=dict(report.nonfinite))
    atomic_write_json(Path(out_dir) / MANIFEST, ds.manifest)
    return ds, report


__all__ = ["import_magbert", "read_magbert", "load_magbert", "parse_item", "split_files", "is_magbert_data",
           "MagbertItem", "MagbertReport", "ALIGN_CHOICES", "DEFAULT_TEXT_MODEL"]
