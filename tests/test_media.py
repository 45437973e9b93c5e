"""Tests for msa_toolkit.media on every committed fixture plus small files written on the fly."""

from __future__ import annotations

import inspect
import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from msa_toolkit import media
from msa_toolkit.errors import MediaError

ASSETS = Path(__file__).resolve().parent / "assets"
META: dict[str, dict] = json.loads((ASSETS / "sentences.json").read_text())
DECODABLE = sorted(n for n, m in META.items() if m["decodable"])
WITH_AUDIO = [n for n in DECODABLE if META[n]["has_audio"]]
WITH_VIDEO = [n for n in DECODABLE if META[n]["has_video"]]
AUDIO_ONLY = [n for n in DECODABLE if not META[n]["has_video"]]
SR = media.SAMPLE_RATE

#: audio length may differ from duration * rate by at most this (s): well under one video frame (40 ms)
AUDIO_LENGTH_TOL_S = 0.01
#: speech onset/offset found by thresholding may be off by a fraction of a phoneme's attack (s)
SPEECH_EDGE_TOL_S = 0.03
#: amplitude that counts as "speech present" when locating onsets (espeak peaks at -3 dBFS = 0.71)
SPEECH_THRESHOLD = 0.02
#: mean absolute pixel error allowed between a decoded frame and the picture it encodes
#: (x264 at crf 30 gives about 4 on these clips)
PIXEL_TOL = 6.0
#: centre of the astronaut's face in skimage.data.astronaut() used by make_assets.py (x, y)
FACE_X, FACE_Y = 226, 120


def fixture(name: str) -> Path:
    return ASSETS / name


# ---------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DECODABLE)
def test_probe_matches_recorded_properties(name):
    m = META[name]
    info = media.probe(fixture(name))
    assert info.path == str(fixture(name))
    assert info.has_audio is m["has_audio"]
    assert info.has_video is m["has_video"]
    assert info.duration == pytest.approx(m["duration"], abs=1e-3)
    assert info.audio_sample_rate == m["audio_sample_rate"]
    assert info.audio_channels == (1 if m["has_audio"] else 0)
    if m["has_video"]:
        assert info.fps == pytest.approx(m["fps"])
        assert (info.width, info.height) == (
            m.get("display_width", m["width"]),
            m.get("display_height", m["height"]),
        )
        assert info.rotation == m["rotation"]
        assert info.n_frames == m["n_frames"]
        assert "mp4" in info.format_name
    else:
        assert (info.fps, info.width, info.height, info.n_frames, info.rotation) == (0.0, 0, 0, 0, 0)
        assert Path(name).suffix[1:] in info.format_name


def test_media_info_is_frozen():
    info = media.probe(fixture("speech.wav"))
    with pytest.raises(AttributeError):
        info.duration = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WITH_AUDIO)
def test_load_audio_length_matches_duration(name):
    audio = media.load_audio(fixture(name))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    expected = META[name]["duration"] * SR
    assert abs(len(audio) - expected) <= AUDIO_LENGTH_TOL_S * SR, (len(audio), expected)


@pytest.mark.parametrize("name", [n for n in WITH_AUDIO if META[n]["has_speech"]])
def test_speech_sits_at_its_recorded_time(name):
    """Priming samples and start offsets handled: speech starts and ends where it was placed."""
    audio = media.load_audio(fixture(name))
    loud = np.flatnonzero(np.abs(audio) > SPEECH_THRESHOLD)
    assert loud[0] / SR == pytest.approx(META[name]["speech_start"], abs=SPEECH_EDGE_TOL_S)
    assert loud[-1] / SR == pytest.approx(META[name]["speech_end"], abs=SPEECH_EDGE_TOL_S)
    # silence before the speech really is silent
    assert np.abs(audio[: int(0.4 * SR)]).max() < 0.01


def test_silence_clip_is_quiet_but_not_digital_zero():
    audio = media.load_audio(fixture("silence.mp4"))
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 1e-4 < rms < 0.01


def test_audio_only_formats_decode_to_the_same_waveform():
    """wav (16 kHz PCM), mp3 (encoder delay) and flac (22.05 kHz) hold the same speech: no lag, same shape."""
    ref = media.load_audio(fixture("speech.wav"))
    for name in ("speech.mp3", "speech.flac"):
        other = media.load_audio(fixture(name))
        assert len(other) == len(ref)
        corr = np.correlate(other[SR : 2 * SR], ref[SR : 2 * SR])[0]
        norm = np.sqrt(np.sum(other[SR : 2 * SR] ** 2) * np.sum(ref[SR : 2 * SR] ** 2))
        assert corr / norm > 0.98, name
        # a shift of even one sample lowers the zero-lag correlation of speech markedly
        shifted = np.correlate(other[SR + 3 : 2 * SR + 3], ref[SR : 2 * SR])[0] / norm
        assert shifted < corr / norm


@pytest.mark.parametrize("rate", [8000, 44100])
def test_load_audio_other_sample_rates(rate):
    audio = media.load_audio(fixture("speech_positive.mp4"), sample_rate=rate)
    assert len(audio) == round(META["speech_positive.mp4"]["duration"] * rate)


def test_load_audio_rejects_bad_sample_rate():
    with pytest.raises(ValueError):
        media.load_audio(fixture("speech.wav"), sample_rate=0)


def test_video_without_audio():
    with pytest.raises(MediaError, match="no audio") as err:
        media.load_audio(fixture("noaudio.mp4"))
    assert err.value.path == str(fixture("noaudio.mp4"))
    frames = list(media.iter_frames(fixture("noaudio.mp4")))
    assert len(frames) == META["noaudio.mp4"]["n_frames"]


# ---------------------------------------------------------------------------------------------
# video
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", WITH_VIDEO)
def test_native_frames(name):
    m = META[name]
    frames = list(media.iter_frames(fixture(name)))
    shape = (m.get("display_height", m["height"]), m.get("display_width", m["width"]), 3)
    assert len(frames) == m["n_frames"]
    for k, f in enumerate(frames):
        assert f.index == k
        assert f.time == pytest.approx(k / m["fps"], abs=1e-3)
        assert f.image.shape == shape and f.image.dtype == np.uint8
        assert f.image.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("fps", [1.0, 10.0, 7.5, 25.0, 60.0])
def test_resampled_frame_count_and_times(fps):
    m = META["speech_positive.mp4"]
    frames = list(media.iter_frames(fixture("speech_positive.mp4"), fps=fps))
    assert abs(len(frames) - m["duration"] * fps) <= 1
    assert len(frames) == math.ceil(m["duration"] * fps - 1e-9)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(f.time == pytest.approx(f.index / fps) for f in frames)


def test_resampling_picks_the_frame_on_screen():
    """At 10 fps, output k is native frame floor(k * 25 / 10); at 50 fps each native frame appears twice."""
    native = [f.image for f in media.iter_frames(fixture("speech_negative.mp4"))]
    down = list(media.iter_frames(fixture("speech_negative.mp4"), fps=10))
    for f in down:
        assert np.array_equal(f.image, native[int(f.index * 25 // 10)])
    up = list(media.iter_frames(fixture("speech_negative.mp4"), fps=50))
    assert len(up) == 2 * len(native)
    for f in up:
        assert np.array_equal(f.image, native[f.index // 2])
    # a repeated frame is a separate array: drawing on one leaves the other intact
    up[0].image[:] = 0
    assert np.array_equal(up[1].image, native[0])


def test_first_frame_shows_the_photo_in_rgb():
    """noaudio.mp4 starts with the 320x240 crop centred on the face at rest (see make_assets.py)."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut()
    expected = photo[FACE_Y - 120 : FACE_Y + 120, FACE_X - 160 : FACE_X + 160].astype(float)
    image = next(media.iter_frames(fixture("noaudio.mp4"))).image.astype(float)
    error = np.abs(image - expected).mean()
    assert error < PIXEL_TOL
    # channel order matters: BGR is far off (the suit is orange, the background grey) ...
    assert np.abs(image[..., ::-1] - expected).mean() > 3 * error
    # ... and so is a picture misplaced by a few pixels
    assert np.abs(image[:, 4:] - expected[:, :-4]).mean() > 3 * error


def test_rotation_is_applied():
    """rotated.mp4 stores landscape pixels with a 90-degree display matrix; frames come out upright portrait."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = skimage_data.astronaut().astype(float)
    frames = list(media.iter_frames(fixture("rotated.mp4")))
    image = frames[0].image.astype(float)
    assert image.shape == (320, 240, 3)
    # upright portrait window 240 wide x 320 tall centred on the face; rows above the photo are
    # reflected border, so compare from output row 40 (= photo row 0) down
    expected = photo[0:280, FACE_X - 120 : FACE_X + 120]
    error = np.abs(image[40:] - expected).mean()
    assert error < PIXEL_TOL
    upside_down = np.abs(np.rot90(image, 2)[40:] - expected).mean()
    assert upside_down > 3 * error
    small = next(media.iter_frames(fixture("rotated.mp4"), max_side=160)).image
    assert small.shape == (160, 120, 3)


@pytest.mark.parametrize("max_side, shape", [(160, (120, 160, 3)), (100, (75, 100, 3)), (1000, (240, 320, 3))])
def test_max_side_downscales(max_side, shape):
    f = next(media.iter_frames(fixture("speech_positive.mp4"), fps=5, max_side=max_side))
    assert f.image.shape == shape and f.image.dtype == np.uint8


def test_iter_frames_is_a_streaming_generator():
    gen = media.iter_frames(fixture("speech_positive.mp4"), fps=25)
    assert inspect.isgenerator(gen)
    first = next(gen)
    second = next(gen)
    assert (first.index, second.index) == (0, 1)
    gen.close()  # stopping early releases the file without error
    # consuming lazily: only the frames asked for are produced
    taken = [f.index for _, f in zip(range(3), media.iter_frames(fixture("speech_positive.mp4"), fps=2))]
    assert taken == [0, 1, 2]


@pytest.mark.parametrize("name", AUDIO_ONLY)
def test_audio_only_has_no_frames(name):
    with pytest.raises(MediaError, match="no video") as err:
        media.iter_frames(fixture(name))
    assert err.value.path == str(fixture(name))


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"fps": -5}, {"max_side": 0}])
def test_iter_frames_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        media.iter_frames(fixture("noaudio.mp4"), **kwargs)


# ---------------------------------------------------------------------------------------------
# failures: one MediaError naming the file, from every function
# ---------------------------------------------------------------------------------------------
def _bad_files(tmp: Path) -> dict[str, Path]:
    truncated = tmp / "truncated.mp4"
    data = fixture("speech_positive.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    folder = tmp / "folder.mp4"
    folder.mkdir()
    return {
        "corrupt": fixture("corrupt.mp4"),
        "empty": fixture("empty.mp4"),
        "missing": tmp / "does_not_exist.mp4",
        "truncated": truncated,
        "text": text,
        "folder": folder,
    }


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing", "truncated", "text", "folder"])
@pytest.mark.parametrize("func", ["probe", "load_audio", "iter_frames"])
def test_bad_files_raise_media_error(tmp_path, kind, func):
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(MediaError) as err:
        result = getattr(media, func)(path)
        list(result) if func == "iter_frames" else None
    assert err.value.path == str(path)
    assert str(path) in str(err.value) and err.value.cause


def test_failure_causes_are_specific(tmp_path):
    with pytest.raises(MediaError, match="empty"):
        media.probe(fixture("empty.mp4"))
    with pytest.raises(MediaError, match="not found"):
        media.probe(tmp_path / "nope.wav")
    with pytest.raises(MediaError, match="Invalid data"):
        media.probe(fixture("corrupt.mp4"))


def test_media_extensions():
    assert {".mp4", ".mkv", ".avi", ".mov", ".webm", ".wav", ".mp3", ".flac", ".m4a", ".opus"} <= media.MEDIA_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in media.MEDIA_EXTENSIONS)
    assert media.is_media_file("clip.MP4") and media.is_media_file(Path("a/b/voice.flac"))
    assert not media.is_media_file("notes.txt") and not media.is_media_file("mp4")


# ---------------------------------------------------------------------------------------------
# other containers and codecs, written on the fly (tiny: 64x48, 1 s)
# ---------------------------------------------------------------------------------------------
TINY_W, TINY_H, TINY_FPS = 64, 48, 20
TONE_HZ = 440.0


def _write(path: Path, vcodec: str | None, acodec: str | None, arate: int = 48000, seconds: float = 1.0,
           audio_delay: float = 0.0, channels: int = 1) -> None:
    """A tiny file: a moving gradient (video) and/or a 440 Hz tone (audio, optionally delayed)."""
    with av.open(str(path), "w") as c:
        vs = as_ = None
        if vcodec:
            vs = c.add_stream(vcodec, rate=TINY_FPS)
            vs.width, vs.height = TINY_W, TINY_H
            vs.pix_fmt = "yuvj420p" if vcodec == "mjpeg" else "yuv420p"
        if acodec:
            as_ = c.add_stream(acodec, rate=arate, layout="mono" if channels == 1 else "stereo")
        if vs is not None:
            for k in range(int(seconds * TINY_FPS)):
                img = np.zeros((TINY_H, TINY_W, 3), np.uint8)
                img[..., 0] = (np.arange(TINY_W) * 4 + k * 10) % 256
                f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=vs.pix_fmt)
                f.pts, f.time_base = k, Fraction(1, TINY_FPS)
                c.mux(vs.encode(f))
            c.mux(vs.encode(None))
        if as_ is not None:
            n = int(seconds * arate)
            tone = (0.5 * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / arate)).astype(np.float32)
            planes = tone[None, :] if channels == 1 else np.stack([tone, np.zeros_like(tone)])
            chunk = as_.codec_context.frame_size or 1024
            offset = int(round(audio_delay * arate))
            layout = "mono" if channels == 1 else "stereo"
            for start in range(0, n, chunk):
                # planar float in; PyAV converts to the codec's sample format and frame size
                data = np.ascontiguousarray(planes[:, start : start + chunk])
                f = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
                f.sample_rate, f.pts, f.time_base = arate, offset + start, Fraction(1, arate)
                c.mux(as_.encode(f))
            c.mux(as_.encode(None))


@pytest.mark.parametrize(
    "suffix, vcodec, acodec, arate",
    [
        # (AAC in Matroska is left out: FFmpeg's muxer records no priming for it, so any decoder
        # returns 1024 leading samples of encoder delay; mp4/mov/m4a carry it in an edit list)
        (".mkv", "libx264", "flac", 44100),
        (".webm", "libvpx", "libopus", 48000),
        (".avi", "mpeg4", "pcm_s16le", 22050),
        (".mov", "mjpeg", "aac", 48000),
        (".m4a", None, "aac", 44100),
        (".opus", None, "libopus", 48000),
    ],
)
def test_other_containers(tmp_path, suffix, vcodec, acodec, arate):
    path = tmp_path / f"clip{suffix}"
    _write(path, vcodec, acodec, arate)
    assert media.is_media_file(path)
    info = media.probe(path)
    assert info.has_audio and info.has_video is (vcodec is not None)
    assert info.duration == pytest.approx(1.0, abs=0.06)
    audio = media.load_audio(path)
    # codec priming (AAC 1024 / Opus 312 samples) is dropped: exactly one second of tone
    assert abs(len(audio) - SR) <= AUDIO_LENGTH_TOL_S * SR
    middle = audio[SR // 4 : 3 * SR // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    # the tone starts at time 0 (no leftover priming silence, no shift)
    assert np.abs(audio[:80]).max() > 0.1
    if vcodec:
        assert (info.width, info.height, info.fps) == (TINY_W, TINY_H, TINY_FPS)
        frames = list(media.iter_frames(path, fps=10))
        assert len(frames) == 10 and frames[0].image.shape == (TINY_H, TINY_W, 3)


def test_delayed_audio_is_placed_on_the_file_timeline(tmp_path):
    """Audio starting 0.5 s after the video gets 0.5 s of leading silence, so audio and frames share a clock."""
    path = tmp_path / "delayed.mkv"
    _write(path, "libx264", "pcm_s16le", 16000, seconds=2.0, audio_delay=0.5)
    audio = media.load_audio(path)
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert loud[0] / SR == pytest.approx(0.5, abs=0.005)
    assert len(audio) / SR == pytest.approx(2.5, abs=0.01)


def test_stereo_is_averaged_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    _write(path, None, "pcm_s16le", 16000, channels=2)
    assert media.probe(path).audio_channels == 2
    audio = media.load_audio(path)
    # left = 0.5 sine, right = silence: the mono mix is a 0.25 sine
    assert np.abs(audio).max() == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("max_side", [None, 160])
def test_frames_equal_pyav_per_frame_conversion(max_side):
    """iter_frames converts through one VideoReformatter for the stream (its swscale context is kept, where
    ``frame.to_ndarray(format=...)`` builds one per frame): the pixels are PyAV's per-frame conversion's."""
    path = fixture("speech_positive.mp4")
    with av.open(str(path)) as c:
        expected = []
        for frame in c.decode(video=0):
            if max_side is not None:
                frame = frame.reformat(width=160, height=120, format="rgb24", interpolation="AREA")
            expected.append(frame.to_ndarray(format="rgb24"))
    got = [f.image for f in media.iter_frames(path, max_side=max_side)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
