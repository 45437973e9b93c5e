"""LoadedExtractors: the extractors of one ExtractConfig, run stage by stage on one file.

Per file: probe and decode once (the 16 kHz waveform is shared by ASR and the
acoustic extractor; frames are streamed once to the visual extractor), run the
configured extractors, optionally align to words, and return a FeatureBundle.
Any error inside a stage becomes an :class:`ExtractionError` naming that stage.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import numpy as np

from .. import __version__
from .._io import SAMPLE_RATE
from ..align import align_bundle, needs_timing, time_transcript
from ..cache import hash_file
from ..errors import ExtractConfigError, ExtractionError, MediaError, ModelLoadError
from ..features import FeatureBundle, FeatureSequence, Transcript
from .completeness import decode_check
from .config import ExtractConfig, spec_of
from .inputs import find_user_transcript
from .lanes import Step, ThreadPlan, library_threads, parallel_from_env, run_lanes, thread_plan, until_cancelled

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


def run_vision(extractor: Any, path: Path, cancel: threading.Event | None = None) -> FeatureSequence:
    """Run a visual extractor on one file: on decoded frames, or on the file itself for extractors
    that read media themselves (``needs_path = True``, e.g. OpenFace's binary or its CSVs).

    ``cancel``: stop (:class:`~.lanes.Cancelled`) at the next frame once it is set.
    """
    if getattr(extractor, "needs_path", False):
        return extractor.extract_file(path)
    from .. import media

    # frames are decoded at the extractor's rate, full resolution (it downscales for detection itself)
    frames = media.iter_frames(path, fps=extractor.fps or None)
    return extractor.extract(until_cancelled(frames, cancel) if cancel is not None else frames)


def input_token(extractors: Mapping[str, Any], path: Path) -> str:
    """Cache-key input besides the media file and transcript: what extractors read from elsewhere
    (e.g. the sha256 of an OpenFace CSV next to the clip), so an edited sidecar is read again."""
    return "".join(e.input_token(path) for e in extractors.values() if hasattr(e, "input_token"))


#: why a stage is absent: the file has no video stream / no audio track
NO_VIDEO = "no video stream"
NO_AUDIO = "no audio track"


def absent_stages(path: Path, extractors: Mapping[str, Any], info: Any, user_transcript: Transcript | None,
                  require: Iterable[str] = ()) -> dict[str, str]:
    """The enabled stages this file cannot feed, stage -> reason (an absence, not a failure).

    vision needs a video stream; asr needs an audio track; text needs the transcript, so
    without an audio track it is absent unless the user supplied a transcript; audio needs
    an audio track. Raises :class:`ExtractionError` (stage = the absent stage) when a stage in
    ``require`` is absent, or when every enabled stage is: such a file yields nothing.
    """
    absent: dict[str, str] = {}
    if "vision" in extractors and not info.has_video:
        absent["vision"] = NO_VIDEO
    if not info.has_audio:
        if "asr" in extractors and user_transcript is None:
            absent["asr"] = NO_AUDIO
        if "text" in extractors and user_transcript is None:
            absent["text"] = f"{NO_AUDIO} (nothing to transcribe)"
        if "audio" in extractors:
            absent["audio"] = NO_AUDIO
    for stage in require:
        if stage in absent:
            raise ExtractionError(path, stage, f"{absent[stage]} ({stage} is required)")
    if absent and set(absent) >= set(extractors):
        first = next(iter(absent))
        off = [m for m in ("text", "audio", "vision") if m not in extractors]
        raise ExtractionError(path, first, f"{absent[first]}: nothing to extract ({', '.join(absent)} absent"
                                           + (f"; {', '.join(off)} not extracted)" if off else ")"))
    return absent


@dataclass
class _FileOutputs:
    """What the stages of one file produce (each step of :meth:`LoadedExtractors._steps` fills its part)."""

    # the transcript: the user's, or Whisper's (asr step)
    transcript: Transcript | None
    # modality -> features
    sequences: dict[str, FeatureSequence] = field(default_factory=dict)
    # extra arrays (text token ids, attention mask, word index)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # meta entries from the visual extractor (faces seen)
    extra: dict[str, Any] = field(default_factory=dict)
    # fraction of user words matched to Whisper's when timing them, else None
    word_match: float | None = None
    # set when the file has failed: the other lane stops at its next frame
    cancel: threading.Event = field(default_factory=threading.Event)


#: --device choices: where the neural extractors (Whisper, transformers text encoders, wav2vec2) run
DEVICES = ("cpu", "cuda", "auto")
#: CTranslate2 compute type of Whisper on a GPU (the CPU default is int8)
CUDA_COMPUTE_TYPE = "float16"


def cuda_available() -> bool:
    """True when CTranslate2 (Whisper) sees a CUDA device (imports ctranslate2, not torch)."""
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:
        return False


def on_device(config: ExtractConfig, device: str) -> ExtractConfig:
    """``config`` with every extractor that has a ``device`` parameter on ``device`` ("cpu", "cuda",
    or "auto" = cuda when CTranslate2 sees a GPU); on cuda, Whisper's CTranslate2 ``compute_type``
    becomes float16 unless the config names another one than the CPU default.

    ``device`` and ``compute_type`` are runtime parameters: the FeatureSpec and cache keys stay the
    same (GPU features differ from CPU ones only by float rounding). The visual and openSMILE
    extractors have no GPU path and are left alone.
    """
    if device not in DEVICES:
        raise ExtractConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    from ..extractors.base import get_extractor_class

    changes: dict[str, Any] = {}
    for mod, (name, params) in config.stages().items():
        try:
            defaults = get_extractor_class(name).DEFAULTS
        except KeyError:  # reported by create_extractors
            continue
        if "device" not in defaults:
            continue
        params["device"] = device
        if "compute_type" in defaults:
            cpu_type = defaults["compute_type"]
            current = params.get("compute_type", cpu_type)
            if device == "cuda" and current == cpu_type:
                params["compute_type"] = CUDA_COMPUTE_TYPE
            elif device == "cpu" and current == CUDA_COMPUTE_TYPE:
                params["compute_type"] = cpu_type
        changes[f"{mod}_params"] = params
    return replace(config, **changes)


#: the stages that can run beside the speech lane (lanes.py); without any, Whisper has the whole budget
OTHER_LANE_STAGES = ("audio", "vision")


def apply_thread_plan(extractors: Mapping[str, Any], plan: ThreadPlan) -> None:
    """Give Whisper the speech lane's CTranslate2 threads unless the user set ``cpu_threads`` (0 = auto);
    all of the plan's cores when no acoustic or visual stage could run beside it (e.g. a text-only
    checkpoint in `msa predict` / `msa serve`: half the cores would otherwise idle).

    ``cpu_threads`` is a runtime parameter (not in the FeatureSpec); torch and OpenCV are capped
    while stages run (:func:`~.lanes.library_threads`).
    """
    asr = extractors.get("asr")
    params = getattr(asr, "params", None)
    if isinstance(params, dict) and "cpu_threads" in params and not int(params["cpu_threads"] or 0):
        alone = not any(stage in extractors for stage in OTHER_LANE_STAGES)
        params["cpu_threads"] = plan.cores if alone else plan.speech


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
        # the same extractors without word alignment (see unaligned()), made on first use
        self._unaligned: LoadedExtractors | None = None
        # overlap the speech lane with the acoustic/visual stages (lanes.py); $MSA_PARALLEL_STAGES=0 turns it off
        self.parallel_stages: bool = parallel_from_env()
        # threads per lane, from $MSA_WORKER_THREADS or this process's CPUs
        self.threads: ThreadPlan = thread_plan()
        apply_thread_plan(self.extractors, self.threads)

    def load(self) -> None:
        """Load every extractor's models (once; later calls do nothing).

        Optional: each extractor also loads itself on first use, so a run whose files are all
        cached (or all fail before a model is needed) loads nothing.
        """
        for e in self.extractors.values():
            e.load()

    # -- word alignment as a transform of a cached bundle ---------------------------------
    def unaligned(self) -> "LoadedExtractors":
        """These same extractor objects (loaded once, shared) producing unaligned bundles: the
        bundle an ``align="words"`` bundle is derived from. ``self`` when not aligning."""
        if self.config.align == "none":
            return self
        if self._unaligned is None:
            other = copy.copy(self)
            other.config = replace(self.config, align="none")
            other.spec = spec_of(self.extractors.values(), "none")
            other._unaligned = other
            self._unaligned = other
        self._unaligned.parallel_stages = self.parallel_stages  # the switch may have changed since
        return self._unaligned

    def align_cached(self, path: Path, bundle: FeatureBundle) -> FeatureBundle:
        """The word-aligned bundle of an unaligned one (the cheap "align" step, no extractor runs).

        Raises ExtractionError(stage "align") as :meth:`run` would, e.g. for words without timings.
        """
        t = time.perf_counter()
        seqs = run_stage(path, "align", lambda: self.align_words(bundle.sequences, bundle.arrays, bundle.transcript,
                                                                   path))
        meta = dict(bundle.meta)
        timings = dict(meta.get("timings") or {})
        timings["align"] = round(time.perf_counter() - t, 4)
        timings["total"] = round(float(timings.get("total", 0.0)) + timings["align"], 4)
        meta["timings"] = timings
        return with_presence(FeatureBundle(self.spec, seqs, bundle.transcript, dict(bundle.arrays), meta),
                             meta.get("absent") or {})

    # -- steps shared with extract_texts ---------------------------------------------------
    def encode_texts(self, transcripts: Iterable[Transcript]) -> list[tuple[FeatureSequence, dict[str, np.ndarray]]]:
        """Token features + token arrays of each transcript, in one batched text-encoder call."""
        return self.extractors["text"].encode(list(transcripts))

    def align_words(self, sequences: Mapping[str, FeatureSequence], arrays: Mapping[str, np.ndarray],
                    transcript: Transcript | None, path: Path | str = "") -> dict[str, FeatureSequence]:
        """The sequences averaged per transcript word when ``config.align == "words"``, else unchanged.

        Raises ExtractionError (stage "align", naming ``path``) when there is no transcript to align to.
        """
        if self.config.align != "words":
            return dict(sequences)
        if transcript is None:
            raise ExtractionError(path, "align", f"{NO_AUDIO}: no words to align to (align words needs speech, "
                                                 "or a transcript with word times)")
        return align_bundle(sequences, arrays, transcript, self.spec)

    # -- one file ------------------------------------------------------------------------
    def run(self, path: Path, user_transcript: Transcript | None = None,
            on_stage: StageCallback | None = None) -> FeatureBundle:
        """All stages on one file; ``on_stage(name)`` is called as each stage starts (progress display).

        After decoding, the speech lane (asr, then text) and the other lane (vision; audio goes to
        whichever lane is free first) overlap when :attr:`parallel_stages` is on (see
        :mod:`.lanes`); the bundle is the same either way. A stage whose input stream the file
        lacks (vision without a video stream; asr, text and audio without an audio track) is
        skipped and recorded in ``meta["absent"]``; see :func:`absent_stages`.
        """
        from .. import media

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
        absent = absent_stages(path, self.extractors, info, user_transcript, self.config.require)
        ex = {k: e for k, e in self.extractors.items() if k not in absent}
        wave = self._decode_audio(path, info, user_transcript, ex)
        timings["decode"] = time.perf_counter() - t0

        out = _FileOutputs(user_transcript)
        steps = self._steps(path, ex, wave, info, user_transcript, timings, note, out)
        parallel = self.parallel_stages and self.threads.cores >= 2 and sum(map(len, steps)) >= 2
        if parallel:
            for stage, e in ex.items():  # models load here, not in two threads at once (no overlapped imports)
                run_stage(path, stage, e.load)
        with library_threads(self.threads):
            run_lanes(*steps, parallel=parallel, cancel=out.cancel)
        vis = ex.get("vision")
        on_frames = vis is not None and not getattr(vis, "needs_path", False)
        decoded = decode_check(info, None if wave is None else len(wave),
                               out.sequences.get("vision") if on_frames else None, getattr(vis, "fps", None))
        wave = None
        sequences, arrays, transcript, extra = out.sequences, out.arrays, out.transcript, out.extra
        if self.config.align == "words":
            sequences = self._timed(path, "align", timings,
                                    lambda: self.align_words(sequences, arrays, transcript, path))
        timings["total"] = time.perf_counter() - t0
        keep_transcript = "asr" in self.extractors or "text" in self.extractors or transcript
        meta = self._meta(path, info, transcript, sequences, timings)
        meta.update(extra)
        meta.update(decoded)
        if out.word_match is not None:  # the user's words were timed from Whisper's (word_timing.py)
            meta.update(word_match=round(out.word_match, 4), word_timing="whisper")
        return with_presence(FeatureBundle(self.spec, sequences, transcript if keep_transcript else None, arrays,
                                           meta), absent)

    def _steps(self, path: Path, ex: Mapping[str, Any], wave: np.ndarray | None, info: Any,
               user_transcript: Transcript | None, timings: dict[str, float], note: StageCallback,
               out: "_FileOutputs") -> tuple[list[Step], list[Step], list[Step]]:
        """The (speech lane, other lane, shared) steps of one file; each stores its result in ``out``."""
        speech: list[Step] = []
        other: list[Step] = []
        shared: list[Step] = []

        def step(stage: str, fn: Callable[[], None]) -> Step:
            def go() -> None:
                note(stage)
                self._timed(path, stage, timings, fn)
            return stage, go

        def asr() -> None:
            if user_transcript is None:
                out.transcript = ex["asr"].transcribe(wave, SAMPLE_RATE)
            else:
                out.transcript, out.word_match = self.time_user_words(user_transcript, wave, info)

        def text() -> None:
            seq, arr = self.encode_texts([out.transcript])[0]
            out.sequences["text"], out.arrays = seq, dict(arr)

        def audio() -> None:
            out.sequences["audio"] = ex["audio"].extract(wave, SAMPLE_RATE)

        def vision() -> None:
            vis = ex["vision"]
            out.sequences["vision"] = run_vision(vis, path, out.cancel)
            out.extra.update(getattr(vis, "last_meta", None) or {})  # e.g. faces seen (mediapipe_face)
            if "max_faces" in out.extra:
                out.extra["multi_face"] = int(out.extra["max_faces"]) > 1

        if "asr" in ex and (user_transcript is None or self.times_user_words(user_transcript)):
            speech.append(step("asr", asr))
        if "text" in ex:
            speech.append(step("text", text))
        if "audio" in ex:
            shared.append(step("audio", audio))
        if "vision" in ex:
            other.append(step("vision", vision))
        return speech, other, shared

    def times_user_words(self, user_transcript: Transcript | None) -> bool:
        """True when word alignment needs the user transcript's words timed from Whisper's."""
        return self.config.align == "words" and "asr" in self.extractors and needs_timing(user_transcript)

    def time_user_words(self, user: Transcript, wave: np.ndarray, info: Any) -> tuple[Transcript, float]:
        """``user``'s words timed from Whisper's words of ``wave``, and the fraction of words matched."""
        duration = float(info.duration) if info.duration is not None else len(wave) / SAMPLE_RATE
        return time_transcript(user, self.extractors["asr"].transcribe(wave, SAMPLE_RATE), duration)

    def _decode_audio(self, path: Path, info: Any, user_transcript: Transcript | None,
                      ex: Mapping[str, Any]) -> np.ndarray | None:
        """The 16 kHz waveform when ASR or audio runs (``ex``: the extractors of the stages present)."""
        from .. import media

        need_asr = "asr" in ex and (user_transcript is None or self.times_user_words(user_transcript))
        if "text" in ex and "asr" not in self.extractors and user_transcript is None:
            raise ExtractionError(path, "text", "text features need a transcript: enable asr or supply one "
                                                "(a sidecar .txt next to the file, or --transcripts FOLDER)")
        if not (need_asr or "audio" in ex):
            return None
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


def with_presence(bundle: FeatureBundle, absent: Mapping[str, str]) -> FeatureBundle:
    """``bundle`` with its meta's ``modalities`` (those present, :meth:`FeatureBundle.present_modalities`)
    and ``absent`` (``absent``: the stages the file could not feed, then each held modality that
    carries nothing, e.g. ``{"text": "no speech found"}``) set: what the manifest, the summary
    table and ``require`` read.

    A word-aligned clip without words holds none: its sequences have no rows.
    """
    bundle.meta["modalities"] = list(bundle.present_modalities())
    bundle.meta["absent"] = {**absent, **bundle.unusable()}
    return bundle


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
