"""Was the whole file decoded? Decoded against declared duration, per stream.

A truncated MP4 whose index (``moov``) sits at the front still opens and declares its full
duration; decoding then stops early without an error, and the bundle would silently hold the
first seconds only. After a file's stages ran, :func:`decode_check` compares where each decoded
stream ended (audio: the waveform's length; video: the visual extractor's last frame) with where
that stream says it ends (:attr:`MediaInfo.audio_end` / ``video_end``). The bundle meta records
``declared_duration`` and ``decoded_duration``, and ``incomplete`` (why) when a stream stopped more
than :data:`SHORT_SLACK_S` early: a warning in ``msa extract``'s summary and a failure under
``--require complete``.
"""

from __future__ import annotations

from typing import Any

from .._io import SAMPLE_RATE
from ..features import FeatureSequence

#: seconds a decoded stream may end before its stated end (codec padding, frame rounding) and count as whole
SHORT_SLACK_S = 0.5


def decode_check(info: Any, audio_samples: int | None, vision: FeatureSequence | None,
                 vision_fps: float | None) -> dict[str, Any]:
    """Bundle meta entries: ``declared_duration``, ``decoded_duration`` (None when no stream was decoded
    here, e.g. an extractor that reads the file itself), and ``incomplete`` when a stream stopped short.

    ``audio_samples``: length of the 16 kHz waveform (None when not decoded); ``vision``: the visual
    sequence, one row per analysed frame at ``vision_fps`` (None when vision did not run on frames).
    """
    ends: dict[str, tuple[float, float | None]] = {}  # stream -> (decoded end, stated end)
    if audio_samples is not None:
        ends["audio track"] = (audio_samples / SAMPLE_RATE, getattr(info, "audio_end", None))
    if vision is not None and vision_fps and vision.length:
        ends["video stream"] = (float(vision.times[-1]) + 1.0 / vision_fps, getattr(info, "video_end", None))
    meta: dict[str, Any] = {
        "declared_duration": float(info.duration) if info.duration is not None else None,
        "decoded_duration": round(max(e for e, _ in ends.values()), 3) if ends else None,
    }
    slack = SHORT_SLACK_S + (1.0 / vision_fps if vision_fps else 0.0)
    short = [f"{name} decoded to {end:.1f} s of the {stated:.1f} s it declares"
             for name, (end, stated) in ends.items()
             if stated is not None and end < stated - (slack if name == "video stream" else SHORT_SLACK_S)]
    if short:
        meta["incomplete"] = "; ".join(short) + " (truncated file?)"
    return meta
