"""Media decoding with PyAV: metadata, 16 kHz mono audio, and RGB frames streamed at a chosen fps.

Three entry points, each opening the file itself:

- :func:`probe` -> :class:`MediaInfo` (duration, streams, native fps, display size, rotation, ...)
- :func:`load_audio` -> float32 mono waveform in [-1, 1] at ``sample_rate`` (default 16 kHz),
  placed on the file's timeline: sample ``i`` is at ``i / sample_rate`` seconds
  from the start of the file, and the length matches the audio's duration.
- :func:`iter_frames` -> a generator of :class:`Frame` (RGB uint8, rotation applied,
  optionally downscaled), resampled to a constant fps by timestamp: output frame
  ``k`` is the picture on screen at time ``k / fps``.

Every failure caused by the input (missing, empty, corrupt or unsupported file,
or a file without the stream asked for) raises one
:class:`~msa_toolkit.errors.MediaError` naming the file and the cause; no raw
PyAV or OS exception escapes.

Timestamps are measured from the file's start time (the earliest stream
start), so audio samples and video frames of one file share one clock.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from ._io import AUDIO_EXTENSIONS, MEDIA_EXTENSIONS, SAMPLE_RATE, VIDEO_EXTENSIONS, is_media_file  # noqa: F401
from .errors import MediaError

# the sample rate and extension lists live in _io (no PyAV import needed to scan folders)

#: PyAV's container durations and start times are in AV_TIME_BASE units (microseconds).
_AV_TIME_BASE = 1_000_000
#: Slack when comparing timestamps (s): far below one frame or one audio sample at 16 kHz (62.5 us).
_TIME_EPS = 1e-6
#: Decoded audio may exceed its stream duration by codec padding (AAC pads the last frame to 1024
#: samples; other codecs similarly) or fall short by rounding. Trimming/padding to the stated duration
#: is trusted only within this margin; beyond it the stated duration is wrong and the decoded
#: length wins (e.g. VBR files without a header, whose duration is estimated from the bit rate).
_AUDIO_LENGTH_SLACK_S = 0.25
#: Longest time (s) the last video frame is held to reach the stream's stated end when resampling.
_MAX_LAST_FRAME_S = 1.0
#: Fallback frame rate when a stream states none (rare: raw elementary streams).
_DEFAULT_FPS = 25.0
#: Exceptions PyAV / the OS raise for unreadable inputs; all become MediaError.
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a media file without decoding it all."""

    # the file, as given
    path: str
    # length in seconds (container duration; 0.0 if unknown)
    duration: float
    # True if the file has an audio track
    has_audio: bool
    # True if the file has a real video track (cover art in audio files does not count)
    has_video: bool
    # native average frame rate (frames/s); 0.0 without video
    fps: float
    # width of the frames as displayed and as iter_frames yields them (rotation applied), 0 without video
    width: int
    # height of the frames as displayed and as iter_frames yields them (rotation applied), 0 without video
    height: int
    # clockwise rotation in degrees (0, 90, 180, 270) that the display matrix asks for; iter_frames applies it
    rotation: int
    # number of video frames (from the container index, else estimated as duration * fps); 0 without video
    n_frames: int
    # native audio sample rate (Hz); 0 without audio
    audio_sample_rate: int
    # native number of audio channels; 0 without audio
    audio_channels: int
    # FFmpeg's name of the container format, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "mp3"
    format_name: str
    # where the audio track / video stream says it ends (s from the file's start), None when it does not
    # say: a decode that stops well short of it read a truncated file (extraction/completeness.py)
    audio_end: float | None = None
    video_end: float | None = None


@dataclass(frozen=True)
class Frame:
    """One video frame as :func:`iter_frames` yields it."""

    # presentation time in seconds from the start of the file (k / fps when resampled)
    time: float
    # index of this frame in the output sequence (0, 1, 2, ...)
    index: int
    # (H, W, 3) uint8 RGB picture, rotation applied, downscaled if max_side was given
    image: np.ndarray


# ---------------------------------------------------------------------------------------------
# opening
# ---------------------------------------------------------------------------------------------
def _describe(exc: BaseException) -> str:
    """A short cause for a PyAV / OS exception, without repeating the file name."""
    if isinstance(exc, av.FFmpegError):
        text = exc.strerror or str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return text.rstrip(".")


def _check_file(path: Path) -> None:
    """Raise MediaError for inputs that cannot be media: missing, not a file, empty."""
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(path, "file is empty (0 bytes)")


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for decoding; every failure inside the block becomes a MediaError."""
    p = Path(path)
    _check_file(p)
    try:
        container = av.open(str(p), mode="r")
    except _DECODE_ERRORS as e:
        raise MediaError(p, f"cannot open as media ({_describe(e)})") from None
    try:
        if not container.streams.audio and not _video_stream(container):
            raise MediaError(p, "no audio or video stream found (unsupported or corrupt file)")
        yield container
    except MediaError:
        raise
    except _DECODE_ERRORS as e:
        raise MediaError(p, f"decoding failed ({_describe(e)})") from None
    finally:
        container.close()


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The first real video stream (cover art / attached pictures are skipped), or None."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    """A stream timestamp in seconds, or None if unknown."""
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _start_time(container: av.container.InputContainer) -> float:
    """The file's time origin (s): the container start time (earliest stream start), else 0."""
    if container.start_time is not None:
        return container.start_time / _AV_TIME_BASE
    starts = [_seconds(s.start_time, s.time_base) for s in container.streams]
    known = [t for t in starts if t is not None]
    return min(known) if known else 0.0


def _duration(container: av.container.InputContainer) -> float:
    """The file's duration (s): the container's, else the longest stream's, else 0."""
    if container.duration is not None and container.duration > 0:
        return container.duration / _AV_TIME_BASE
    durations = [_seconds(s.duration, s.time_base) for s in container.streams]
    known = [d for d in durations if d]
    return max(known) if known else 0.0


def _fps(stream: av.video.stream.VideoStream) -> float:
    """Native frame rate of a video stream (average, else guessed, else the default)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return _DEFAULT_FPS


def _clockwise(ccw_degrees: float) -> int:
    """FFmpeg's counter-clockwise display rotation -> clockwise degrees in {0, 90, 180, 270}."""
    return int(round(-ccw_degrees / 90.0)) % 4 * 90


def _stream_rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Clockwise rotation of a video stream, read from its first decoded frame's display matrix.

    FFmpeg attaches the container's display matrix to decoded frames; older
    files may only carry a ``rotate`` metadata tag, used as a fallback. Decoding
    one frame is cheap and also proves the video is decodable. Leaves the
    container positioned after that frame (callers re-open or stop reading).
    """
    tag = stream.metadata.get("rotate")
    for frame in container.decode(stream):
        if frame.rotation:
            return _clockwise(frame.rotation)
        break
    if tag:
        try:
            return int(round(float(tag) / 90.0)) % 4 * 90
        except ValueError:
            return 0
    return 0


def _display_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """(width, height) after a clockwise rotation."""
    return (height, width) if rotation in (90, 270) else (width, height)


# ---------------------------------------------------------------------------------------------
# probe
# ---------------------------------------------------------------------------------------------
def probe(path: str | os.PathLike) -> MediaInfo:
    """Read a file's metadata (decodes at most one video frame, to learn its rotation).

    Raises :class:`MediaError` if the file is missing, empty, corrupt, or has no
    audio or video stream.
    """
    with _open(path) as c:
        duration = _duration(c)
        audio = c.streams.audio[0] if c.streams.audio else None
        video = _video_stream(c)
        fps = width = height = rotation = n_frames = 0
        if video is not None:
            fps = _fps(video)
            n_frames = int(video.frames) or int(round(duration * fps))
            stored_w, stored_h = video.codec_context.width, video.codec_context.height
            rotation = _stream_rotation(c, video)
            width, height = _display_size(stored_w, stored_h, rotation)
        sample_rate = channels = 0
        if audio is not None:
            sample_rate = int(audio.codec_context.sample_rate or audio.sample_rate or 0)
            channels = int(audio.codec_context.channels or 0)
        return MediaInfo(
            path=str(path),
            duration=float(duration),
            has_audio=audio is not None,
            has_video=video is not None,
            fps=float(fps),
            width=int(width),
            height=int(height),
            rotation=int(rotation),
            n_frames=int(n_frames),
            audio_sample_rate=sample_rate,
            audio_channels=channels,
            format_name=c.format.name,
            audio_end=_stream_end(audio, _start_time(c)) if audio is not None else None,
            video_end=_stream_end(video, _start_time(c)) if video is not None else None,
        )


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------
def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio track to float32 mono in [-1, 1] at ``sample_rate`` Hz.

    The rate is converted by FFmpeg's resampler (``av.AudioResampler``,
    flushed at the end so no tail samples are lost) and the channels are
    averaged.
    The result sits on the file's timeline: if the track starts after the
    file's start time, silence is prepended. Decoders already drop encoder
    priming samples (AAC, MP3) where the container says so; codec padding at
    the end is trimmed so the length equals the track's stated duration times
    ``sample_rate`` (when decoded and stated lengths agree within
    ``_AUDIO_LENGTH_SLACK_S``; otherwise the decoded length is kept).

    Raises :class:`MediaError` if the file has no audio track or cannot be decoded.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(path, "no audio track (the file has video only)")
        stream = c.streams.audio[0]
        origin = _start_time(c)
        # planar float at the target rate, channels kept: the mono mix is their plain mean (as in
        # librosa / Whisper); FFmpeg's own downmix weights channels by -3 dB and can clip
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        for frame in c.decode(stream):
            if first_time is None and frame.time is not None:
                first_time = frame.time
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
        stated = _seconds(stream.duration, stream.time_base)
        stream_start = _seconds(stream.start_time, stream.time_base)

    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    # silence before a track that starts later than the file (e.g. audio delayed against video)
    start = first_time if first_time is not None else (stream_start if stream_start is not None else origin)
    lead = max(0, int(round((start - origin) * sample_rate)))
    if lead:
        audio = np.concatenate([np.zeros(lead, np.float32), audio])
    if stated is not None and stated > 0:
        track_start = (stream_start if stream_start is not None else start) - origin
        expected = int(round((max(track_start, 0.0) + stated) * sample_rate))
        if abs(len(audio) - expected) <= _AUDIO_LENGTH_SLACK_S * sample_rate:
            if len(audio) > expected:
                audio = audio[:expected]
            elif len(audio) < expected:
                audio = np.concatenate([audio, np.zeros(expected - len(audio), np.float32)])
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------
def _output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Stored (pre-rotation) frame size after downscaling so the longest side is <= max_side."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def iter_frames(
    path: str | os.PathLike, fps: float | None = None, max_side: int | None = None
) -> Iterator[Frame]:
    """Stream the video as RGB frames, one decoded frame in memory at a time.

    With ``fps=None`` every decoded frame is yielded at its own timestamp. With
    a target ``fps`` the stream is resampled by timestamp: output frame ``k`` is
    the decoded frame on screen at ``k / fps`` (the latest frame starting at or
    before it), so frames are dropped or repeated as needed and the output has
    ``ceil(duration * fps)`` frames. The display rotation is applied, and with
    ``max_side`` frames are downscaled (area interpolation) so their longer side
    is at most ``max_side`` pixels.

    The file is checked before the generator is returned: a missing, corrupt
    or video-less file raises :class:`MediaError` at the call, not at the first
    ``next()``. Decoding errors later in the file raise MediaError while iterating.
    """
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_side is not None and max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    with _open(path) as c:
        video = _video_stream(c)
        if video is None:
            raise MediaError(path, "no video stream (the file has audio only)")
        rotation = _stream_rotation(c, video)
    return _frames(path, fps, max_side, rotation)


def _frames(
    path: str | os.PathLike, fps: float | None, max_side: int | None, rotation: int
) -> Iterator[Frame]:
    """The generator behind :func:`iter_frames`."""
    with _open(path) as c:
        stream = _video_stream(c)
        assert stream is not None  # checked by iter_frames
        stream.thread_type = "AUTO"
        origin = _start_time(c)
        native_fps = _fps(stream)
        stored_w, stored_h = stream.codec_context.width, stream.codec_context.height
        out_w, out_h = _output_size(stored_w, stored_h, max_side)
        turns = -rotation // 90  # np.rot90 turns counter-clockwise for positive k
        # one reformatter for the stream: it keeps its swscale context between frames, where
        # ``frame.to_ndarray(format=...)`` builds a new one for every frame; same pixels
        reformatter = VideoReformatter()

        def to_rgb(frame: av.VideoFrame) -> np.ndarray:
            if (frame.width, frame.height) != (out_w, out_h):
                frame = reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24", interpolation="AREA")
            else:
                frame = reformatter.reformat(frame, format="rgb24")
            image = frame.to_ndarray()
            if turns % 4:
                image = np.rot90(image, turns)
            return np.ascontiguousarray(image)

        decoded = _timed(c.decode(stream), origin, native_fps)
        if fps is None:
            for k, (t, frame) in enumerate(decoded):
                yield Frame(time=t, index=k, image=to_rgb(frame))
            return

        stream_end = _stream_end(stream, origin)
        k = 0
        held: av.VideoFrame | None = None
        held_image: np.ndarray | None = None
        last_time = 0.0

        def emit_until(limit: float) -> Iterator[Frame]:
            """Yield the held frame for every target time k / fps before ``limit``."""
            nonlocal k, held_image
            while k / fps < limit - _TIME_EPS:
                if held_image is None:
                    held_image = image = to_rgb(held)
                else:
                    image = held_image.copy()  # repeats get their own array: callers may draw on frames
                yield Frame(time=k / fps, index=k, image=image)
                k += 1

        for t, frame in decoded:
            if held is not None:
                # the held frame is on screen from its own time until t
                yield from emit_until(t)
            held, held_image, last_time = frame, None, t
        if held is None:
            return
        # the last frame stays on screen for one native frame duration, or until the stream's
        # stated end when that is close (a stated end far beyond the last frame is not trusted)
        end = last_time + 1.0 / native_fps
        if stream_end is not None and end < stream_end <= last_time + _MAX_LAST_FRAME_S:
            end = stream_end
        yield from emit_until(end)


def _timed(
    frames: Iterator[av.VideoFrame], origin: float, native_fps: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Pair decoded frames with their time (s) from ``origin``; frames without pts follow the previous one."""
    previous: float | None = None
    for frame in frames:
        t = frame.time - origin if frame.time is not None else None
        if t is None:
            t = 0.0 if previous is None else previous + 1.0 / native_fps
        if previous is not None and t <= previous:
            # out-of-order or duplicate timestamp (broken file): keep time moving forward
            t = previous + 1.0 / native_fps
        previous = t
        yield t, frame


def _stream_end(stream: av.stream.Stream, origin: float) -> float | None:
    """End time (s from origin) of a stream (video or audio), from its stated start and duration."""
    duration = _seconds(stream.duration, stream.time_base)
    if not duration:
        return None
    start = _seconds(stream.start_time, stream.time_base)
    return (start if start is not None else origin) - origin + duration
