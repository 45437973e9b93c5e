"""FeatureSpec: the exact description of how features were extracted.

A FeatureSpec travels with every feature bundle, dataset and checkpoint. Two
specs that differ in any extractor name, version, parameter, dimension or frame
rate produce incompatible features; :meth:`FeatureSpec.diff` names every
difference so callers can raise a clear error instead of a shape error deep in
a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .errors import SpecMismatchError

#: The three model-facing modalities, in the order every Batch uses.
MODALITIES: tuple[str, ...] = ("text", "audio", "vision")

#: Bumped when the on-disk layout of specs changes incompatibly.
SPEC_SCHEMA_VERSION = 1


def _canonical(obj: Any) -> Any:
    """Turn params into plain JSON types with sorted keys (tuples -> lists)."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return obj  # keep floats as floats; json distinguishes 1.0 and 1
    return obj


@dataclass(frozen=True)
class ExtractorSpec:
    """What one extractor produced and how."""

    # registry name of the extractor, e.g. "opensmile", "minilm", "mediapipe_face"
    name: str
    # which Batch slot the output feeds: "text", "audio", "vision", or "asr" (transcript only)
    modality: str
    # implementation version of the extractor + versions of the libraries that shape its output
    version: str
    # every parameter that changes the output (model id, feature set, fps, ...), JSON-serialisable
    params: Mapping[str, Any] = field(default_factory=dict)
    # number of feature columns (0 for "asr", which yields a transcript, not features)
    dim: int = 0
    # frames per second of the output sequence; None when frames are tokens/words, not time steps
    frame_rate: float | None = None
    # one name per feature column (len == dim); empty when columns are anonymous (embeddings)
    feature_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality,
            "version": self.version,
            "params": _canonical(dict(self.params)),
            "dim": self.dim,
            "frame_rate": self.frame_rate,
            "feature_names": list(self.feature_names),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ExtractorSpec":
        return cls(
            name=d["name"],
            modality=d["modality"],
            version=d["version"],
            params=dict(d.get("params", {})),
            dim=int(d.get("dim", 0)),
            frame_rate=d.get("frame_rate"),
            feature_names=tuple(d.get("feature_names", ())),
        )


@dataclass(frozen=True)
class FeatureSpec:
    """The full extraction configuration shared by bundles, datasets and checkpoints."""

    # one entry per extractor, at most one per modality ("asr", "text", "audio", "vision")
    extractors: tuple[ExtractorSpec, ...] = ()
    # "none" (native frame rates) or "words" (audio/vision averaged inside each ASR word span)
    alignment: str = "none"
    # free-form provenance, e.g. {"source": "mmsa_pickle"} for imported precomputed features;
    # part of the identity: features from unknown extractors never match real extractors
    origin: Mapping[str, Any] = field(default_factory=dict)
    # layout version of this record
    schema_version: int = SPEC_SCHEMA_VERSION

    def __post_init__(self) -> None:
        seen = [e.modality for e in self.extractors]
        dupes = {m for m in seen if seen.count(m) > 1}
        if dupes:
            raise ValueError(f"FeatureSpec has more than one extractor for {sorted(dupes)}")
        if self.alignment not in ("none", "words"):
            raise ValueError(f"alignment must be 'none' or 'words', got {self.alignment!r}")

    # -- lookups -----------------------------------------------------------------------
    def get(self, modality: str) -> ExtractorSpec | None:
        for e in self.extractors:
            if e.modality == modality:
                return e
        return None

    def has(self, modality: str) -> bool:
        return self.get(modality) is not None

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension per model modality; 0 when the modality is absent."""
        return {m: (self.get(m).dim if self.get(m) else 0) for m in MODALITIES}

    @property
    def modalities(self) -> tuple[str, ...]:
        """Model modalities this spec provides, in Batch order."""
        return tuple(m for m in MODALITIES if self.has(m))

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "alignment": self.alignment,
            "origin": _canonical(dict(self.origin)),
            "extractors": [e.to_dict() for e in sorted(self.extractors, key=lambda e: e.modality)],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        return cls(
            extractors=tuple(ExtractorSpec.from_dict(e) for e in d.get("extractors", ())),
            alignment=d.get("alignment", "none"),
            origin=dict(d.get("origin", {})),
            schema_version=int(d.get("schema_version", SPEC_SCHEMA_VERSION)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> "FeatureSpec":
        return cls.from_dict(json.loads(s))

    def fingerprint(self) -> str:
        """Stable hash of the spec (sha256 hex of its canonical JSON)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def with_extractors(self, extractors: Iterable[ExtractorSpec]) -> "FeatureSpec":
        return FeatureSpec(tuple(extractors), self.alignment, self.origin, self.schema_version)

    # -- comparison ----------------------------------------------------------------------
    def diff(self, other: "FeatureSpec", modalities: Iterable[str] | None = None) -> list[str]:
        """Human-readable differences between two specs (empty when compatible).

        ``modalities`` restricts the comparison (e.g. to the model modalities a
        checkpoint uses); the "asr" extractor is compared when listed.
        """
        mods = list(modalities) if modalities is not None else sorted(
            {e.modality for e in self.extractors} | {e.modality for e in other.extractors}
        )
        out: list[str] = []
        if self.alignment != other.alignment:
            out.append(f"alignment: {self.alignment!r} != {other.alignment!r}")
        if _canonical(dict(self.origin)) != _canonical(dict(other.origin)):
            out.append(f"origin: {dict(self.origin)} != {dict(other.origin)}")
        for m in mods:
            a, b = self.get(m), other.get(m)
            if a is None and b is None:
                continue
            if a is None or b is None:
                out.append(f"{m}: {'missing' if a is None else a.name} != {'missing' if b is None else b.name}")
                continue
            da, db = a.to_dict(), b.to_dict()
            for key in ("name", "version", "dim", "frame_rate", "feature_names"):
                if da[key] != db[key]:
                    out.append(f"{m}.{key}: {da[key]!r} != {db[key]!r}")
            for key in sorted(set(da["params"]) | set(db["params"])):
                va, vb = da["params"].get(key), db["params"].get(key)
                if va != vb:
                    out.append(f"{m}.params.{key}: {va!r} != {vb!r}")
        return out

    def require_compatible(self, other: "FeatureSpec", modalities: Iterable[str] | None = None,
                           what: str = "features", sides: tuple[str, str] | None = None) -> None:
        """Raise :class:`SpecMismatchError` naming every difference, if any.

        ``sides`` names this spec and ``other`` (e.g. ``("checkpoint", "dataset")``) so that each
        ``a != b`` line of the message says which value is whose.
        """
        d = self.diff(other, modalities)
        if d:
            whose = f" (each line: {sides[0]} != {sides[1]})" if sides else ""
            raise SpecMismatchError(
                f"{what} were extracted with a different FeatureSpec{whose}:\n  " + "\n  ".join(d)
            )
