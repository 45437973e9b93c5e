"""Extractor base classes and the extractor registry.

Four kinds of extractor, one per stage of the pipeline:

- :class:`ASRExtractor`     waveform -> :class:`~msa_toolkit.features.Transcript`
- :class:`TextExtractor`    transcript(s) -> token-level FeatureSequence (+ token ids, word->token map)
- :class:`AudioExtractor`   16 kHz mono waveform -> FeatureSequence with times
- :class:`VisualExtractor`  stream of RGB frames (``msa_toolkit.media.Frame``) -> FeatureSequence with face mask

Every extractor is configured by keyword parameters (validated against
``DEFAULTS``), loads heavy models lazily in :meth:`Extractor.load`, and
describes itself with :attr:`Extractor.spec` (an
:class:`~msa_toolkit.spec.ExtractorSpec`) that goes into the FeatureSpec.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np

from ..features import FeatureSequence, Transcript
from ..spec import ExtractorSpec


class Extractor(ABC):
    """Common behaviour: parameters, lazy loading, spec."""

    #: registry name
    name: ClassVar[str] = ""
    #: "asr" | "text" | "audio" | "vision"
    modality: ClassVar[str] = ""
    #: implementation version; bump when the output changes for the same params
    version: ClassVar[str] = "1"
    #: every accepted parameter and its default
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    #: parameters that do not change the output (device, threads, batch size): kept out of the spec
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset()
    #: parameters added after specs were first recorded, each with the value that reproduces a
    #: recorded spec lacking it (what the extractor did before the parameter existed); see
    #: :meth:`recorded_params`
    EARLIER_VALUES: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **params: Any):
        unknown = sorted(set(params) - set(self.DEFAULTS))
        if unknown:
            raise ValueError(f"extractor {self.name!r} has no parameter(s) {unknown}; valid: {sorted(self.DEFAULTS)}")
        self.params: dict[str, Any] = {**self.DEFAULTS, **params}
        self._loaded = False

    @classmethod
    def recorded_params(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that reproduce ``params`` as a spec recorded them: a key absent from a spec
        written before it existed takes its :attr:`EARLIER_VALUES` value, not today's default."""
        return {**{k: v for k, v in cls.EARLIER_VALUES.items() if k not in params}, **params}

    def load(self) -> None:
        """Load models/resources once (override :meth:`_load`)."""
        if not self._loaded:
            self._load()
            self._loaded = True

    def _load(self) -> None:
        """Heavy initialisation; default none."""

    # -- description -----------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Output feature dimension (0 for ASR)."""
        return 0

    @property
    def frame_rate(self) -> float | None:
        """Output frames per second, or None for token/word-level output."""
        return None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return ()

    def library_versions(self) -> str:
        """Versions of the libraries that shape the output, appended to ``version``."""
        return ""

    @property
    def spec(self) -> ExtractorSpec:
        lib = self.library_versions()
        return ExtractorSpec(
            name=self.name,
            modality=self.modality,
            version=self.version + (f"+{lib}" if lib else ""),
            params={k: v for k, v in self.params.items() if k not in self.RUNTIME_PARAMS},
            dim=self.dim,
            frame_rate=self.frame_rate,
            feature_names=self.feature_names,
        )


class ASRExtractor(Extractor):
    modality: ClassVar[str] = "asr"

    @abstractmethod
    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> Transcript:
        """Recognise speech; an empty Transcript (no words) when nothing was said."""


class TextExtractor(Extractor):
    modality: ClassVar[str] = "text"

    @abstractmethod
    def encode(self, transcripts: list[Transcript]) -> list[tuple[FeatureSequence, dict[str, np.ndarray]]]:
        """Token-level features for each transcript, batched.

        Returns per transcript ``(sequence [Lt, D], arrays)`` where ``arrays`` holds
        ``text.input_ids`` [Lt], ``text.attention_mask`` [Lt] and ``text.word_index`` [Lt]
        (index of the transcript word each token belongs to, -1 for special tokens).
        """


class AudioExtractor(Extractor):
    modality: ClassVar[str] = "audio"

    @abstractmethod
    def extract(self, waveform: np.ndarray, sample_rate: int) -> FeatureSequence:
        """Frame-level acoustic features of a mono float32 waveform."""


class VisualExtractor(Extractor):
    modality: ClassVar[str] = "vision"

    @property
    def fps(self) -> float:
        """Frames per second the extractor wants to receive."""
        return float(self.params.get("fps", 0.0))

    @abstractmethod
    def extract(self, frames: Iterable[Any]) -> FeatureSequence:
        """Per-frame features from a stream of ``media.Frame``; mask False where no face was found."""


_EXTRACTORS: dict[str, type[Extractor]] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make an extractor available by ``cls.name``."""
    if not cls.name or not cls.modality:
        raise ValueError(f"{cls.__name__} needs class attributes name and modality")
    if cls.name in _EXTRACTORS and _EXTRACTORS[cls.name] is not cls:
        raise ValueError(f"extractor {cls.name!r} registered twice")
    _EXTRACTORS[cls.name] = cls
    return cls


_loaded = False


def extractor_modules() -> list[str]:
    """Dotted names of the extractor modules and subpackages of ``msa_toolkit.extractors``.

    Every public one (not ``base``, not starting with ``_``) is imported on the first
    registry access and registers its classes; such modules import only light libraries at
    module level (heavy ones inside ``_load``), so discovery stays cheap.
    """
    package = importlib.import_module(__package__)
    return sorted(f"{__package__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_") and m.name != "base")


def _ensure_loaded() -> None:
    """Import every extractor module once; import errors propagate (a typo must raise)."""
    global _loaded
    if _loaded:
        return
    for module in extractor_modules():
        importlib.import_module(module)
    _loaded = True  # only after every module imported: a failed import raises again on the next access


def list_extractors(modality: str | None = None) -> list[str]:
    _ensure_loaded()
    return sorted(n for n, c in _EXTRACTORS.items() if modality is None or c.modality == modality)


def get_extractor_class(name: str) -> type[Extractor]:
    _ensure_loaded()
    if name not in _EXTRACTORS:
        raise KeyError(f"unknown extractor {name!r}; available: {', '.join(sorted(_EXTRACTORS))}")
    return _EXTRACTORS[name]


def create_extractor(name: str, **params: Any) -> Extractor:
    return get_extractor_class(name)(**params)
