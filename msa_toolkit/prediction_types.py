"""Typed prediction results and their output formats (terminal table, JSON, CSV).

Kept apart from :mod:`msa_toolkit.prediction` so that formatting needs no torch.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from ._io import csv_safe_row, dumps_json

#: the score range of CMU-MOSI / CMU-MOSEI style labels
SCORE_MIN, SCORE_MAX = -3.0, 3.0

#: names of the 7 classes round(clip(score, -3, 3)) = -3 ... 3 (the field's Acc-7 classes)
CLASS7_NAMES: tuple[str, ...] = (
    "strongly negative", "negative", "weakly negative", "neutral",
    "weakly positive", "positive", "strongly positive",
)


def class7(score: float) -> int:
    """The Acc-7 class of a score: round(clip(score, -3, 3)) in -3..3."""
    return int(round(min(SCORE_MAX, max(SCORE_MIN, score))))


def polarity(score: float) -> str:
    """negative / neutral / positive, consistent with the 7 classes (neutral = class 0, |score| < 0.5)."""
    c = class7(score)
    return "neutral" if c == 0 else ("positive" if c > 0 else "negative")


@dataclass(frozen=True)
class SegmentPrediction:
    """Sentiment of one Whisper sentence segment (``--segments``)."""

    # segment start time in seconds
    start: float
    # segment end time in seconds
    end: float
    # the segment's words
    text: str
    # sentiment score in [-3, 3]
    score: float

    @property
    def polarity(self) -> str:
        return polarity(self.score)


@dataclass(frozen=True)
class WordTime:
    """One transcript word with its time in the clip (``--segments``: the timeline's words)."""

    # the word as recognised
    text: str
    # start time in seconds (NaN, written as null, for a transcript without times: a plain text)
    start: float
    # end time in seconds
    end: float


@dataclass(frozen=True)
class Prediction:
    """Sentiment of one clip, with what the model saw."""

    # the input file
    path: str
    # sentiment score in [-3, 3] (None when the file failed)
    score: float | None
    # the recognised (or supplied) transcript; "" when no speech was found
    transcript: str = ""
    # whether speech (at least one word) was found
    speech_found: bool = False
    # fraction of analysed video frames with a face (None when the model uses no visual features)
    face_ratio: float | None = None
    # model modalities that carried information for this clip, e.g. ("text",)
    modalities_present: tuple[str, ...] = ()
    # clip duration in seconds
    duration: float | None = None
    # wall-clock seconds per stage ("extract", "model", "total")
    timings: dict[str, float] = field(default_factory=dict)
    # caveats, e.g. "no speech found: text modality absent"
    flags: tuple[str, ...] = ()
    # per-segment timeline when requested
    segments: tuple[SegmentPrediction, ...] = ()
    # failure message when the file could not be processed (score is None then)
    error: str | None = None
    # stages the file could not feed, stage -> reason, e.g. {"vision": "no video stream"} (audio-only file)
    absent: dict[str, str] = field(default_factory=dict)
    # most faces seen at once in one analysed frame (None when no face-counting visual extractor ran)
    max_faces: int | None = None
    # the transcript's words with their times, with the segments (``--segments``)
    words: tuple[WordTime, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None and self.score is not None

    @property
    def skipped(self) -> bool:
        """A file in a folder that is not media: listed (error ``[skipped] ...``), never scored."""
        return (self.error or "").startswith("[skipped]")

    @property
    def polarity(self) -> str | None:
        return None if self.score is None else polarity(self.score)

    @property
    def label7(self) -> str | None:
        return None if self.score is None else CLASS7_NAMES[class7(self.score) + 3]

    @property
    def class7(self) -> int | None:
        return None if self.score is None else class7(self.score)

    def to_dict(self, segments: bool | None = None) -> dict[str, Any]:
        """The JSON record; ``segments`` and ``words`` only when asked (``--segments``: True), or, with None, when
        there are segments."""
        d = asdict(self)
        if self.error is not None:  # a failed or skipped file: whether it holds speech is unknown, not "no"
            d["speech_found"] = None
        d["modalities_present"] = list(self.modalities_present)
        d["absent"] = dict(self.absent)
        d["flags"] = list(self.flags)
        d["segments"] = [{**asdict(s), "polarity": s.polarity} for s in self.segments]
        d["words"] = [asdict(w) for w in self.words]
        if not (segments or (segments is None and self.segments)):
            del d["segments"], d["words"]
        d["polarity"] = self.polarity
        d["class7"] = self.class7
        d["label7"] = self.label7
        return d


#: CSV columns, in order
CSV_COLUMNS = ("path", "score", "polarity", "class7", "label7", "transcript", "speech_found", "face_ratio",
               "modalities_present", "duration", "total_seconds", "flags", "error", "absent", "max_faces")


def to_json(preds: Iterable[Prediction], extra: dict[str, Any] | None = None, segments: bool | None = None) -> str:
    """The ``--json`` document; each prediction has ``segments`` only when asked (:meth:`Prediction.to_dict`)."""
    out = {"predictions": [p.to_dict(segments) for p in preds]}
    if extra:
        out.update(extra)
    return dumps_json(out, indent=2)


def to_csv(preds: Iterable[Prediction]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for p in preds:
        w.writerow(csv_safe_row([
            p.path, "" if p.score is None else f"{p.score:.4f}", p.polarity or "", "" if p.class7 is None else p.class7,
            p.label7 or "", p.transcript, "" if p.error is not None else p.speech_found,
            "" if p.face_ratio is None else f"{p.face_ratio:.3f}",
            "+".join(p.modalities_present), "" if p.duration is None else f"{p.duration:.2f}",
            "" if "total" not in p.timings else f"{p.timings['total']:.3f}", "; ".join(p.flags), p.error or "",
            "; ".join(f"{m}: {why}" for m, why in p.absent.items()), "" if p.max_faces is None else p.max_faces,
        ]))
    return buf.getvalue()
