"""Feature containers: FeatureSequence, Transcript and FeatureBundle (one per media file).

On disk a bundle is two files side by side: ``<stem>.safetensors`` with every
array and ``<stem>.json`` with the FeatureSpec, transcript, column names and
metadata. Both are written atomically (temp file + rename), the json last: it
records the safetensors file's byte size and sha256 (``"safetensors"`` entry), so a
reader can tell a whole bundle from a truncated or replaced one (:func:`check_bundle`)
without trusting the json's mere existence.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._io import atomic_write, atomic_write_json, dumps_json
from .errors import BundleReadError
from .spec import MODALITIES, FeatureSpec

#: Version of the bundle file layout.
BUNDLE_FORMAT_VERSION = 1
#: json header key recording the safetensors file it belongs to: {"size": bytes, "sha256": hex}
FILE_RECORD_KEY = "safetensors"
#: json header key recording the sha256 of the rest of the json (:func:`json_digest`): an edited json is caught
JSON_RECORD_KEY = "json_sha256"
#: bytes read per chunk when hashing or copying a safetensors file
_CHUNK = 1 << 20
#: size of the little-endian u64 that starts a safetensors file (its JSON header's length)
_ST_PREFIX = 8


def safetensors_data_size(path: str | os.PathLike) -> int:
    """Parse a safetensors file's header only and check the file is exactly as long as it says.

    Returns the file size. Raises BundleReadError on a truncated or malformed file (cheap: reads
    the header, never the arrays).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(_ST_PREFIX)
            if len(prefix) < _ST_PREFIX:
                raise BundleReadError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", prefix)
            if n > size - _ST_PREFIX:
                raise BundleReadError(f"{path}: truncated safetensors header")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as e:
        if isinstance(e, BundleReadError):
            raise
        raise BundleReadError(f"{path}: unreadable safetensors file ({type(e).__name__}: {e})") from None
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    if _ST_PREFIX + n + max(ends, default=0) != size:
        raise BundleReadError(f"{path}: safetensors file is {size} bytes, its header describes "
                              f"{_ST_PREFIX + n + max(ends, default=0)}")
    return size


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size", "sha256"}`` of a file (what a bundle's json records about its safetensors file)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": h.hexdigest()}


def json_digest(header: Mapping[str, Any]) -> str:
    """sha256 of a bundle's json header without its own :data:`JSON_RECORD_KEY`, in a canonical form
    (sorted keys, compact, non-finite floats as null) that a write and a read leave unchanged."""
    body = {k: v for k, v in header.items() if k != JSON_RECORD_KEY}
    return hashlib.sha256(dumps_json(body, indent=None, sort_keys=True).encode("utf-8")).hexdigest()


def sealed_header(header: Mapping[str, Any]) -> dict[str, Any]:
    """``header`` as it reads back once written (NaN-safe JSON), with its :func:`json_digest` recorded."""
    out = json.loads(dumps_json({k: v for k, v in header.items() if k != JSON_RECORD_KEY}))
    out[JSON_RECORD_KEY] = json_digest(out)
    return out


def check_bundle(stem: str | os.PathLike, full: bool = False, sealed: bool = False) -> dict[str, Any]:
    """The parsed json header of the bundle at ``stem`` after checking the pair is whole.

    Checks (cheap, no array is read): the json parses and matches the sha256 it records of itself
    (:func:`json_digest`: an edited transcript or meta is caught); the safetensors file exists, its
    header parses and its size matches both that header and the json's record. ``full=True`` also
    compares the sha256 of the whole file with the record. Bundles written before the records
    existed get the checks they allow, unless ``sealed=True`` (the cache): then a json without its
    own sha256 is refused too. Raises BundleReadError naming what is wrong.
    """
    stem = _stem(stem)
    js = stem.with_suffix(".json")
    try:
        header = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleReadError(f"{js}: unreadable bundle json ({type(e).__name__}: {e})") from None
    if not isinstance(header, dict) or "spec" not in header:
        raise BundleReadError(f"{js}: not a feature bundle json")
    recorded = header.get(JSON_RECORD_KEY)
    if recorded is None and sealed:
        raise BundleReadError(f"{js}: written before bundle jsons recorded their own sha256 (stale)")
    if recorded is not None and recorded != json_digest(header):
        raise BundleReadError(f"{js}: content differs from the sha256 it records (edited after it was written)")
    st = stem.with_suffix(".safetensors")
    size = safetensors_data_size(st)
    record = header.get(FILE_RECORD_KEY)
    if record is not None:
        if int(record.get("size", -1)) != size:
            raise BundleReadError(f"{st}: {size} bytes, its json records {record.get('size')}")
        if full and file_record(st)["sha256"] != record.get("sha256"):
            raise BundleReadError(f"{st}: content differs from the sha256 its json records")
    return header


def _stem(stem: str | os.PathLike) -> Path:
    """A bundle path with or without its .json / .safetensors suffix -> the stem."""
    stem = Path(stem)
    return stem.with_suffix("") if stem.suffix in (".json", ".safetensors") else stem


@dataclass
class FeatureSequence:
    """A time series of feature vectors for one modality."""

    # float32 [T, D] feature values
    values: np.ndarray
    # float32 [T] time of each row in seconds (frame centre, or word/token start)
    times: np.ndarray
    # bool [T] True where the row is valid (e.g. False for frames with no face)
    mask: np.ndarray
    # one name per column (len D), or empty for anonymous embedding columns
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim != 2:
            raise ValueError(f"values must be [T, D], got shape {self.values.shape}")
        self.times = np.asarray(self.times, dtype=np.float32).reshape(-1)
        self.mask = np.asarray(self.mask, dtype=bool).reshape(-1)
        t = self.values.shape[0]
        if self.times.shape[0] != t or self.mask.shape[0] != t:
            raise ValueError(
                f"times ({self.times.shape[0]}) and mask ({self.mask.shape[0]}) must match values ({t})"
            )
        if self.names and len(self.names) != self.values.shape[1]:
            raise ValueError(f"{len(self.names)} names for {self.values.shape[1]} columns")

    @property
    def length(self) -> int:
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def empty(cls, dim: int, names: list[str] | None = None) -> "FeatureSequence":
        return cls(np.zeros((0, dim), np.float32), np.zeros(0, np.float32), np.zeros(0, bool), names or [])


@dataclass(frozen=True)
class Word:
    """One recognised (or supplied) word."""

    # the word as written, without surrounding whitespace
    text: str
    # start time in seconds (NaN when unknown, e.g. user-supplied text without timings)
    start: float
    # end time in seconds (NaN when unknown)
    end: float
    # recogniser confidence in [0, 1]; 1.0 for user-supplied text
    probability: float = 1.0


@dataclass(frozen=True)
class Segment:
    """A sentence-like span of the transcript (Whisper segment)."""

    # the segment text
    text: str
    # start time in seconds
    start: float
    # end time in seconds
    end: float
    # index of the segment's first word in Transcript.words
    first_word: int = 0
    # one past the index of the segment's last word
    last_word: int = 0


@dataclass(frozen=True)
class Transcript:
    """What was said in a clip."""

    # all words in order
    words: tuple[Word, ...] = ()
    # sentence segments (may be empty for user-supplied text)
    segments: tuple[Segment, ...] = ()
    # language code, e.g. "en"
    language: str = "en"
    # where it came from: "whisper", "user" (sidecar or label file) or "none"
    source: str = "none"

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words).strip()

    @property
    def is_empty(self) -> bool:
        return len(self.words) == 0

    @classmethod
    def from_text(cls, text: str, language: str = "en", source: str = "user") -> "Transcript":
        words = tuple(Word(w, float("nan"), float("nan"), 1.0) for w in text.split())
        seg = (Segment(text.strip(), float("nan"), float("nan"), 0, len(words)),) if words else ()
        return cls(words, seg, language, source)

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if x != x else round(float(x), 4)

        return {
            "text": self.text,
            "language": self.language,
            "source": self.source,
            "words": [
                {"text": w.text, "start": num(w.start), "end": num(w.end), "probability": round(float(w.probability), 4)}
                for w in self.words
            ],
            "segments": [
                {"text": s.text, "start": num(s.start), "end": num(s.end), "first_word": s.first_word,
                 "last_word": s.last_word}
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Transcript":
        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        words = tuple(Word(w["text"], num(w.get("start")), num(w.get("end")), float(w.get("probability", 1.0)))
                      for w in d.get("words", ()))
        segs = tuple(Segment(s["text"], num(s.get("start")), num(s.get("end")), int(s.get("first_word", 0)),
                             int(s.get("last_word", 0))) for s in d.get("segments", ()))
        return cls(words, segs, d.get("language", "en"), d.get("source", "none"))

    def to_srt(self) -> str:
        """SubRip subtitles, one cue per segment (segments without timings are skipped)."""

        def ts(t: float) -> str:
            ms = int(round(t * 1000))
            h, ms = divmod(ms, 3_600_000)
            m, ms = divmod(ms, 60_000)
            s, ms = divmod(ms, 1000)
            return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"

        cues = [s for s in self.segments if s.start == s.start and s.end == s.end]
        return "".join(f"{i}\n{ts(s.start)} --> {ts(s.end)}\n{s.text.strip()}\n\n" for i, s in enumerate(cues, 1))


#: why a modality a bundle holds carries nothing a model can use (:func:`unusable_modalities`)
NO_SPEECH = "no speech found"
NO_FACE = "no face found"
NO_STEPS = "no frames"


def unusable_modalities(sequences: Mapping[str, FeatureSequence], has_speech: bool) -> dict[str, str]:
    """The one rule of presence: each held modality that carries nothing, modality -> why.

    Text without speech (the encoder's special tokens around an empty transcript carry no
    sentiment), a sequence without rows (e.g. word-aligned without words), and one whose every
    row is masked (vision: no face in any frame). Extract's table and manifest, ``--require``,
    ``msa predict`` and dataset samples all go through it (:meth:`FeatureBundle.present_modalities`).
    """
    out: dict[str, str] = {}
    for m, seq in sequences.items():
        if m == "text" and not has_speech:
            out[m] = NO_SPEECH
        elif seq.length == 0:
            out[m] = NO_STEPS
        elif not seq.mask.any():
            out[m] = NO_FACE if m == "vision" else f"no valid {m} steps"
    return out


@dataclass
class FeatureBundle:
    """All features extracted from one media file."""

    # the FeatureSpec the features were extracted with
    spec: FeatureSpec
    # per model modality ("text", "audio", "vision") its feature sequence; absent modalities are missing keys
    sequences: dict[str, FeatureSequence] = field(default_factory=dict)
    # the transcript used for the text features (None when no text modality)
    transcript: Transcript | None = None
    # extra integer arrays, e.g. "text.input_ids", "text.attention_mask" [Lt], "text.word_index" [Lt]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # free metadata: source path, content hash, duration, face ratio, timings, ...
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_speech(self) -> bool:
        """Whether the transcript has words. Without any, the text features (the encoder's special tokens
        around an empty transcript) carry no sentiment: datasets and predictions treat text as absent."""
        return self.transcript is not None and not self.transcript.is_empty

    def unusable(self) -> dict[str, str]:
        """The held modalities that carry nothing, modality -> why (:func:`unusable_modalities`)."""
        return unusable_modalities(self.sequences, self.has_speech)

    def present_modalities(self) -> tuple[str, ...]:
        """The modalities a model can use, in MODALITIES order (see :func:`unusable_modalities`)."""
        unusable = self.unusable()
        return tuple(m for m in MODALITIES if m in self.sequences and m not in unusable)

    def model_sequences(self) -> dict[str, FeatureSequence]:
        """The sequences a model reads: those of :meth:`present_modalities` (no text without speech, no
        vision without a face). One rule for datasets built from media, ``msa predict`` and ``msa extract``."""
        present = self.present_modalities()
        return {m: s for m, s in self.sequences.items() if m in present}

    def save(self, stem: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``stem.safetensors`` and ``stem.json`` atomically; returns both paths."""
        from safetensors.numpy import save_file

        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, np.ndarray] = {}
        names: dict[str, list[str]] = {}
        for mod, seq in self.sequences.items():
            tensors[f"{mod}.values"] = np.ascontiguousarray(seq.values, dtype=np.float32)
            tensors[f"{mod}.times"] = np.ascontiguousarray(seq.times, dtype=np.float32)
            tensors[f"{mod}.mask"] = np.ascontiguousarray(seq.mask.astype(np.uint8))
            names[mod] = list(seq.names)
        for k, v in self.arrays.items():
            tensors[k] = np.ascontiguousarray(v)
        header = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "names": names,
            "transcript": self.transcript.to_dict() if self.transcript is not None else None,
            "meta": self.meta,
        }
        st_path = stem.with_suffix(".safetensors")
        js_path = stem.with_suffix(".json")
        # safetensors first, json last: a bundle counts as complete only when its json exists,
        # and the json records the size and sha256 of exactly the safetensors file it belongs to
        record: dict[str, Any] = {}

        def write_tensors(tmp: str) -> None:
            save_file(tensors, str(tmp))
            record.update(file_record(tmp))

        atomic_write(st_path, write_tensors)
        header[FILE_RECORD_KEY] = record
        atomic_write_json(js_path, sealed_header(header))
        return st_path, js_path

    @classmethod
    def load(cls, stem: str | os.PathLike) -> "FeatureBundle":
        """Read a bundle; any unreadable, truncated or inconsistent pair raises BundleReadError."""
        stem = _stem(stem)
        header = check_bundle(stem)
        try:
            return cls._from_files(stem, header)
        except BundleReadError:
            raise
        except Exception as e:  # safetensors' own error type, a missing array, a malformed field
            raise BundleReadError(f"{stem}: unreadable feature bundle ({type(e).__name__}: {e})") from None

    @classmethod
    def _from_files(cls, stem: Path, header: Mapping[str, Any]) -> "FeatureBundle":
        from safetensors.numpy import load_file

        tensors = load_file(str(stem.with_suffix(".safetensors")))
        sequences: dict[str, FeatureSequence] = {}
        for mod, names in header.get("names", {}).items():
            sequences[mod] = FeatureSequence(
                tensors.pop(f"{mod}.values"), tensors.pop(f"{mod}.times"),
                tensors.pop(f"{mod}.mask").astype(bool), list(names),
            )
        tr = header.get("transcript")
        return cls(
            spec=FeatureSpec.from_dict(header["spec"]),
            sequences=sequences,
            transcript=Transcript.from_dict(tr) if tr is not None else None,
            arrays=dict(tensors),
            meta=header.get("meta", {}),
        )

    @staticmethod
    def exists(stem: str | os.PathLike) -> bool:
        stem = Path(stem)
        return stem.with_suffix(".json").is_file() and stem.with_suffix(".safetensors").is_file()
