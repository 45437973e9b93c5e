"""ExtractConfig: which extractor runs for each stage, with its parameters.

Each field carries a ``help`` text in its dataclass metadata; the command line
(:mod:`msa_toolkit.cli._options`) shows it for the matching flag, so the
library and the CLI describe a setting in the same words.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping

from .._fields import doc, field_helps
from ..errors import ExtractConfigError, ModelLoadError, SpecMismatchError
from ..spec import FeatureSpec

#: the extraction stages an ExtractConfig configures, in pipeline order
CONFIG_STAGES: tuple[str, ...] = ("asr", "text", "audio", "vision")
#: accepted values of ExtractConfig.align
ALIGN_CHOICES: tuple[str, ...] = ("none", "words")
#: ExtractConfig.require value that fails a file decoded short of what its streams declare (completeness.py)
COMPLETE = "complete"
#: what ExtractConfig.require may name: the stages (a missing stream or no speech/face makes them absent), or
#: COMPLETE
REQUIRE_CHOICES: tuple[str, ...] = CONFIG_STAGES + (COMPLETE,)


@dataclass(frozen=True)
class ExtractConfig:
    """Which extractor runs for each stage, with its parameters (None disables a stage)."""

    asr: str | None = doc("whisper", "Speech recogniser: whisper, or none (text then needs user transcripts).")
    # e.g. {"model": "tiny.en", "vad_filter": True}
    asr_params: Mapping[str, Any] = doc({}, "Parameters of the speech recogniser, e.g. model, language, vad_filter.")
    text: str | None = doc("minilm", "Text encoder: minilm (bundled all-MiniLM-L6-v2), a transformers model id "
                                     "already in the local cache, a local model folder, or none.")
    # e.g. {"model": "bert-base-uncased", "max_length": 128}
    text_params: Mapping[str, Any] = doc({}, "Parameters of the text encoder, e.g. model, max_length.")
    audio: str | None = doc("opensmile", "Acoustic features: opensmile (eGeMAPSv02 LLDs), librosa, wav2vec2, "
                                         "or none.")
    # e.g. {"feature_set": "ComParE_2016"}
    audio_params: Mapping[str, Any] = doc({}, "Parameters of the acoustic extractor, e.g. feature_set, model.")
    vision: str | None = doc("mediapipe_face", "Facial features: mediapipe_face, openface (OpenFace 2.0 binary), "
                                               "openface_csv (existing OpenFace CSVs), or none.")
    # e.g. {"fps": 10} or {"columns": "aus", "binary": "/opt/FeatureExtraction"}
    vision_params: Mapping[str, Any] = doc({}, "Parameters of the visual extractor, e.g. fps, columns, binary, "
                                               "csv_dir.")
    # "words": audio, vision and text averaged per transcript word
    align: str = doc("none", "none (native frame rates) or words (average per transcript word).")
    # not part of the FeatureSpec: it decides which files count as failed, not what features are
    require: tuple[str, ...] = doc((), "Stages a file must have: asr, text, audio, vision, or complete (the "
                                       "whole file decoded, not stopped short of its declared duration) (repeat or "
                                       "comma-separate). By default a missing stream only marks its modalities "
                                       "absent (an audio-only file gets no vision, a silent clip no text, a "
                                       "faceless one no vision); a required stage that is absent fails the file.")

    def __post_init__(self) -> None:
        if self.align not in ALIGN_CHOICES:
            raise ExtractConfigError(f"align must be 'none' or 'words', got {self.align!r}")
        req = self.require.split(",") if isinstance(self.require, str) else self.require
        object.__setattr__(self, "require", tuple(dict.fromkeys(s.strip() for s in req if s.strip())))
        for stage in self.require:
            if stage not in REQUIRE_CHOICES:
                raise ExtractConfigError(f"require: unknown stage {stage!r} (choose from {', '.join(REQUIRE_CHOICES)})")
            if stage != COMPLETE and not getattr(self, stage):
                raise ExtractConfigError(f"require: the {stage} stage is switched off, so it cannot be required")
        if self.align == "words" and self.asr is None and self.text is None:
            raise ExtractConfigError("align='words' needs word timings: enable asr")

    # -- stages ------------------------------------------------------------------------
    def stages(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Enabled stages: modality -> (extractor name, params), in pipeline order."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for mod in CONFIG_STAGES:
            name = getattr(self, mod)
            if name:
                out[mod] = (name, dict(getattr(self, f"{mod}_params")))
        return out

    def create_extractors(self, modalities: Iterable[str] | None = None) -> dict[str, Any]:
        """One (not yet loaded) extractor per enabled stage."""
        from ..extractors.base import get_extractor_class, list_extractors

        wanted = set(modalities) if modalities is not None else None
        out: dict[str, Any] = {}
        for mod, (name, params) in self.stages().items():
            if wanted is not None and mod not in wanted:
                continue
            try:
                cls = get_extractor_class(name)
            except KeyError:
                raise ExtractConfigError(f"{mod}: unknown extractor {name!r}; available for {mod}: "
                                         f"{', '.join(list_extractors(mod))}, or none") from None
            if cls.modality != mod:
                raise ExtractConfigError(f"{mod}: extractor {name!r} is a {cls.modality!r} extractor")
            try:
                out[mod] = cls(**params)
            except ValueError as e:
                raise ExtractConfigError(f"{mod}: {e}") from None
        return out

    def build_spec(self, modalities: Iterable[str] | None = None) -> FeatureSpec:
        """The FeatureSpec this configuration produces (optionally only some stages)."""
        exs = self.create_extractors(modalities)
        return spec_of(exs.values(), self.align)

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> "ExtractConfig":
        """The configuration that reproduces ``spec`` on this machine.

        Raises :class:`SpecMismatchError` naming what cannot be reproduced:
        precomputed features (non-empty ``origin``), an extractor unknown here,
        a model that cannot be loaded offline, or a version/dim that differs. A parameter an
        extractor gained after ``spec`` was written takes the value that reproduces it
        (:meth:`~msa_toolkit.extractors.base.Extractor.recorded_params`), so the returned
        configuration's own spec names it explicitly.
        """
        if spec.origin:
            raise SpecMismatchError(
                f"features of origin {dict(spec.origin)} were not produced by this toolkit's extractors "
                "and cannot be re-extracted from media")
        kw: dict[str, Any] = {mod: None for mod in CONFIG_STAGES}
        kw["align"] = spec.alignment
        for e in spec.extractors:
            if e.modality not in CONFIG_STAGES:
                raise SpecMismatchError(f"unknown modality {e.modality!r} in FeatureSpec")
        # a parameter added since the spec was written takes the value it had then, on both sides
        spec = spec.with_extractors(replace(e, params=_recorded_params(e.name, e.params)) for e in spec.extractors)
        for e in spec.extractors:
            kw[e.modality] = e.name
            kw[f"{e.modality}_params"] = dict(e.params)
        try:
            cfg = cls(**kw)
            here = cfg.build_spec()
        except (ExtractConfigError, ModelLoadError) as e:
            raise SpecMismatchError(f"cannot reproduce the FeatureSpec here: {e}") from None
        here.require_compatible(spec, what="extraction on this machine", sides=("this machine", "recorded"))
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def _recorded_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` of a recorded extractor spec, completed with the values that extractor ``name`` had
    before any parameter added since (an unknown name is left for ``build_spec`` to report)."""
    from ..extractors.base import get_extractor_class

    try:
        cls = get_extractor_class(name)
    except KeyError:
        return dict(params)
    return cls.recorded_params(params)


def field_help(name: str) -> str:
    """The help text of ExtractConfig field ``name`` (from its dataclass metadata)."""
    helps = field_helps(ExtractConfig)
    if name not in helps:
        raise KeyError(f"ExtractConfig has no field {name!r}")
    return helps[name]


def spec_of(extractors: Iterable[Any], alignment: str) -> FeatureSpec:
    """FeatureSpec of extractors, in the canonical order (by modality) its JSON form uses."""
    return FeatureSpec(tuple(sorted((e.spec for e in extractors), key=lambda s: s.modality)), alignment=alignment)
