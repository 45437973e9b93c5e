"""LoadedExtractors: the extractors of one ExtractConfig, run stage by stage on one file.

Per file: probe and decode once (the 16 kHz waveform is shared by ASR and the
acoustic extractor; frames are streamed once to the visual extractor), run the
configured extractors, optionally align to words, and return a FeatureBundle.
Any error inside a stage becomes an :class:`ExtractionError` naming that stage.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np

from .. import __version__
from .._io import SAMPLE_RATE
from ..align import align_bundle
from ..cache import hash_file
from ..errors import ExtractionError, MediaError, ModelLoadError
from ..features import FeatureBundle, FeatureSequence, Transcript
from .config import ExtractConfig, spec_of
from .inputs import find_user_transcript

T = TypeVar("T")

#: one stage's progress callback: called with the stage name as the stage starts
StageCallback = Callable[[str], None]


def run_stage(path: Path, stage: str, fn: Callable[[], T]) -> T:
    """Run one stage; any exception becomes an ExtractionError naming the stage.

    A :class:`ModelLoadError` passes through: a model that cannot load affects every file.
    """
    try:
        return fn()
    except ExtractionError:
        raise
    except MediaError as e:
        raise ExtractionError(path, stage, e.cause) from None
    except ModelLoadError:
        raise
    except Exception as e:
        raise ExtractionError(path, stage, f"{type(e).__name__}: {e}") from None


def _no_note(_stage_name: str) -> None:
    """The progress callback used when nobody listens."""


def run_vision(extractor: Any, path: Path) -> FeatureSequence:
    """Run a visual extractor on one file: on decoded frames, or on the file itself for extractors
    that read media themselves (``needs_path = True``, e.g. OpenFace's binary or its CSVs)."""
    if getattr(extractor, "needs_path", False):
        return extractor.extract_file(path)
    from .. import media

    # frames are decoded at the extractor's rate, full resolution (it downscales for detection itself)
    return extractor.extract(media.iter_frames(path, fps=extractor.fps or None))


def input_token(extractors: Mapping[str, Any], path: Path) -> str:
    """Cache-key input besides the media file and transcript: what extractors read from elsewhere
    (e.g. the sha256 of an OpenFace CSV next to the clip), so an edited sidecar is read again."""
    return "".join(e.input_token(path) for e in extractors.values() if hasattr(e, "input_token"))


class LoadedExtractors:
    """The extractors of one ExtractConfig (loaded by :meth:`load`); runs every stage on one file.

    Reuse one instance across :func:`~msa_toolkit.extraction.extract` calls (``extractors=``) so a
    long-lived caller loads Whisper and the encoders once.
    """

    def __init__(self, config: ExtractConfig):
        # the configuration these extractors were created from
        self.config = config
        # stage ("asr", "text", "audio", "vision") -> extractor, not yet loaded
        self.extractors: dict[str, Any] = config.create_extractors()
        # the FeatureSpec of every bundle these extractors produce
        self.spec = spec_of(self.extractors.values(), config.align)

    def load(self) -> None:
        """Load every extractor's models (once; later calls do nothing)."""
        for e in self.extractors.values():
            e.load()

    # -- steps shared with extract_texts ---------------------------------------------------
    def encode_texts(self, transcripts: Iterable[Transcript]) -> list[tuple[FeatureSequence, dict[str, np.ndarray]]]:
        """Token features + token arrays of each transcript, in one batched text-encoder call."""
        return self.extractors["text"].encode(list(transcripts))

    def align_words(self, sequences: Mapping[str, FeatureSequence], arrays: Mapping[str, np.ndarray],
                    transcript: Transcript | None) -> dict[str, FeatureSequence]:
        """The sequences averaged per transcript word when ``config.align == "words"``, else unchanged."""
        if self.config.align != "words":
            return dict(sequences)
        return align_bundle(sequences, arrays, transcript, self.spec)

    # -- one file ------------------------------------------------------------------------
    def run(self, path: Path, user_transcript: Transcript | None = None,
            on_stage: StageCallback | None = None) -> FeatureBundle:
        """All stages on one file; ``on_stage(name)`` is called as each stage starts (progress display)."""
        from .. import media

        ex = self.extractors
        note = on_stage or _no_note
        note("decode")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            info = media.probe(path)
        except MediaError as e:
            raise ExtractionError(path, "decode", e.cause) from None
        except Exception as e:
            raise ExtractionError(path, "decode", f"{type(e).__name__}: {e}") from None
        wave = self._decode_audio(path, info, user_transcript)
        timings["decode"] = time.perf_counter() - t0

        sequences: dict[str, FeatureSequence] = {}
        arrays: dict[str, np.ndarray] = {}
        transcript: Transcript | None = user_transcript
        if "asr" in ex and user_transcript is None:
            note("asr")
            transcript = self._timed(path, "asr", timings, lambda: ex["asr"].transcribe(wave, SAMPLE_RATE))
        if "text" in ex:
            note("text")
            seq, arr = self._timed(path, "text", timings, lambda: self.encode_texts([transcript])[0])
            sequences["text"], arrays = seq, dict(arr)
        if "audio" in ex:
            note("audio")
            sequences["audio"] = self._timed(path, "audio", timings, lambda: ex["audio"].extract(wave, SAMPLE_RATE))
        wave = None  # free the waveform before video decoding
        if "vision" in ex:
            note("vision")
            vis = ex["vision"]
            sequences["vision"] = self._timed(path, "vision", timings, lambda: run_vision(vis, path))
        if self.config.align == "words":
            sequences = self._timed(path, "align", timings, lambda: self.align_words(sequences, arrays, transcript))
        timings["total"] = time.perf_counter() - t0
        keep_transcript = "asr" in ex or "text" in ex or transcript
        return FeatureBundle(self.spec, sequences, transcript if keep_transcript else None, arrays,
                             self._meta(path, info, transcript, sequences, timings))

    def _decode_audio(self, path: Path, info: Any, user_transcript: Transcript | None) -> np.ndarray | None:
        """Check the file has the streams the stages need; the 16 kHz waveform when ASR or audio runs."""
        from .. import media

        ex = self.extractors
        need_asr = "asr" in ex and user_transcript is None
        need_audio = need_asr or "audio" in ex
        if "text" in ex and "asr" not in ex and user_transcript is None:
            raise ExtractionError(path, "text", "text features need a transcript: enable asr or supply one "
                                                "(a sidecar .txt next to the file, or --transcripts FOLDER)")
        if "vision" in ex and not info.has_video:  # checked first: no point decoding audio for a file that will fail
            raise ExtractionError(path, "vision", "the file has no video stream (for audio-only files use "
                                                  "--vision none)")
        if not need_audio:
            return None
        if not info.has_audio:
            raise ExtractionError(path, "asr" if need_asr else "audio",
                                  "the file has no audio track (for video-only files disable the audio stages: "
                                  "--asr none --audio none with a transcript, or --text none)")
        return run_stage(path, "decode", lambda: media.load_audio(path, sample_rate=SAMPLE_RATE))

    @staticmethod
    def _timed(path: Path, stage: str, timings: dict[str, float], fn: Callable[[], T]) -> T:
        """:func:`run_stage`, recording its wall time in ``timings[stage]``."""
        t = time.perf_counter()
        out = run_stage(path, stage, fn)
        timings[stage] = time.perf_counter() - t
        return out

    @staticmethod
    def _meta(path: Path, info: Any, transcript: Transcript | None, sequences: Mapping[str, FeatureSequence],
              timings: Mapping[str, float]) -> dict[str, Any]:
        """The bundle's meta: source, duration, streams, speech/face found, timings."""
        meta: dict[str, Any] = {
            "source": str(path),
            "duration": float(info.duration) if info.duration is not None else None,
            "has_audio": bool(info.has_audio),
            "has_video": bool(info.has_video),
            "speech_found": bool(transcript is not None and not transcript.is_empty),
            "n_words": len(transcript.words) if transcript is not None else 0,
            "transcript_source": transcript.source if transcript is not None else None,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "toolkit_version": __version__,
        }
        if "vision" in sequences:
            m = sequences["vision"].mask
            meta["face_ratio"] = float(m.mean()) if m.size else 0.0
        return meta


def load_extractors(config: ExtractConfig = ExtractConfig()) -> LoadedExtractors:
    """Create and load every extractor of ``config`` once, for reuse with ``extract(..., extractors=...)``."""
    runner = LoadedExtractors(config)
    runner.load()
    return runner


def extract_file(path: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                 transcript: Transcript | str | None = None) -> FeatureBundle:
    """Extract one file without cache or output folder (raises ExtractionError on failure).

    ``transcript`` (text or Transcript) replaces ASR when given; otherwise a sidecar
    ``.txt`` next to the file is used when present.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ExtractionError(p, "input", "no such file")
    if isinstance(transcript, str):
        transcript = Transcript.from_text(transcript)
    if transcript is None:
        transcript = find_user_transcript(p, p.stem, None)
    runner = load_extractors(config)
    bundle = runner.run(p, transcript)
    bundle.meta["sha256"] = hash_file(p)
    return bundle
