"""What an extraction run returns: one FileResult per processed file, one Failure per failed file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..features import FeatureBundle
from ..spec import FeatureSpec
from .config import COMPLETE

#: pipeline stages, in order; a Failure names one of them
STAGES: tuple[str, ...] = ("input", "decode", "asr", "text", "audio", "vision", "align", "save", "worker")
#: the stage of a file a folder scan passed over (not a media extension); listed, never extracted
SKIPPED = "skipped"


@dataclass(frozen=True)
class Failure:
    """One file that could not be processed."""

    # the input path
    path: str
    # the stage that failed (one of STAGES)
    stage: str
    # what went wrong, readable by users
    message: str


@dataclass(frozen=True)
class FileResult:
    """One file that was processed (or found in the cache)."""

    # the input path
    path: str
    # output name (bundle files are <name>.safetensors / <name>.json)
    name: str
    # stem of the stored bundle: in out_dir when given, else the cache entry
    bundle_path: str
    # cache key (content hash + spec fingerprint)
    key: str
    # True when nothing was computed (cache hit)
    cached: bool
    # wall time spent on this file in seconds (hashing + extraction or cache copy)
    seconds: float
    # media duration in seconds (from the bundle meta)
    duration: float | None = None
    # number of transcript words
    n_words: int = 0
    # model modalities the bundle holds, e.g. ("text", "audio") for an audio-only file
    modalities: tuple[str, ...] = ()
    # stages the file could not feed, stage -> reason, e.g. {"vision": "no video stream"}
    absent: Mapping[str, str] = field(default_factory=dict)
    # most faces seen at once in one analysed frame (None without a face-counting visual extractor)
    max_faces: int | None = None
    # seconds actually decoded (the longest decoded stream; None when unmeasured), see completeness.py
    decoded_duration: float | None = None
    # why the file looks truncated (a stream decoded well short of its declared end), else None
    incomplete: str | None = None

    @classmethod
    def from_meta(cls, path: str, name: str, bundle_path: str, key: str, cached: bool, seconds: float,
                  meta: Mapping[str, Any]) -> "FileResult":
        """The result of one file whose bundle has ``meta`` (bundle meta as written by the runner)."""
        faces = meta.get("max_faces")
        return cls(path, name, bundle_path, key, cached, seconds, meta.get("duration"), int(meta.get("n_words", 0)),
                   tuple(meta.get("modalities") or ()), dict(meta.get("absent") or {}),
                   int(faces) if faces is not None else None, meta.get("decoded_duration"), meta.get("incomplete"))

    def load(self) -> FeatureBundle:
        return FeatureBundle.load(self.bundle_path)


def unmet_requirement(path: str, meta: Mapping[str, Any], require: tuple[str, ...]) -> Failure | None:
    """The Failure of a file whose bundle (``meta``) lacks what ``require`` asks for (ExtractConfig.require:
    a stage recorded absent, or COMPLETE for a file decoded short of its declared duration), else None."""
    absent = meta.get("absent") or {}
    for need in require:
        if need in absent:
            return Failure(path, need, f"{absent[need]} ({need} is required)")
        if need == COMPLETE and meta.get("incomplete"):
            return Failure(path, "decode", f"{meta['incomplete']} ({COMPLETE} is required)")
    return None


@dataclass
class ExtractResult:
    """What :func:`~msa_toolkit.extraction.extract` did: processed files, failures, the FeatureSpec, outputs."""

    # the FeatureSpec every bundle was extracted with
    spec: FeatureSpec
    # processed files, sorted by path
    items: list[FileResult] = field(default_factory=list)
    # files that failed, sorted by path
    failures: list[Failure] = field(default_factory=list)
    # manifest path (None without out_dir)
    manifest_path: Path | None = None
    # total wall time in seconds
    seconds: float = 0.0
    # files a folder scan passed over (stage "skipped": not a media extension), sorted by path
    skipped: list[Failure] = field(default_factory=list)
    # True when the run was stopped (SIGTERM / Ctrl-C) before every file was done
    interrupted: bool = False
    # problems worth telling the user that lost nothing, e.g. "the manifest was written to /tmp/..."
    warnings: list[str] = field(default_factory=list)
    # outputs not written where asked: asked path -> where it went instead ("" when nowhere; msa extract
    # then exits with OUTPUT_FALLBACK_EXIT)
    misplaced: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_cached(self) -> int:
        return sum(1 for i in self.items if i.cached)

    def bundles(self) -> dict[str, FeatureBundle]:
        """Load every bundle, keyed by output name."""
        return {i.name: i.load() for i in self.items}
