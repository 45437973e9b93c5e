"""Face mesh geometry and head pose: the square crop the 478-point mesh runs on, the rigid fit
of MediaPipe's canonical face to the mesh, and the geometric feature columns.

- **Mesh crop** — the mesh (``refine_landmarks=True``: iris points 468-477) runs on a square crop
  of the full-resolution frame around the detection; its landmarks are mapped back to frame
  pixels (``z`` in the same pixel scale as ``x``).
- **Head pose** — a rigid similarity fit (Umeyama / Kabsch with scale) of 36 expression-free mesh
  points to the same points of the canonical face model, in 3-D (the mesh's own depth estimate is
  used, so no camera intrinsics are assumed and there is no PnP ambiguity: ``cv2.solvePnP``'s
  default iterative solver can flip to the mirrored solution, a closed-form 3-D fit cannot).
  ``R = Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` in a camera frame with x right, y up, z towards the camera.
- **Geometry** — eye / mouth / brow measures are taken on the mesh expressed in the head frame
  (pose and scale removed) and divided by the inter-ocular distance, so they are unitless and
  insensitive to head pose and face size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _mesh_tables as G
from .face import FaceBox

#: side of the square mesh crop relative to the detection box: BlazeFace boxes span brows to chin,
#: the mesh's own detector and 192x192 landmark model want the whole head with some context
MESH_CROP_SCALE = 1.7
#: crops larger than this are downscaled before the mesh (its models see 128 and 192 px inputs)
MESH_CROP_MAX_SIDE = 384
#: smallest crop side (pixels) worth running the mesh on
MESH_CROP_MIN_SIDE = 8
#: the mesh re-detects the face inside its crop (short-range detector; this threshold does reach the
#: graph): on the crop real faces score ~0.7-0.95 and the detector's false positives on textures
#: (e.g. tests/assets/noface.mp4's coffee cup, 0.50-0.62 full-range) score 0 on most frames and
#: ~0.5-0.6 on a rare one, so the crop re-detection verifies every detection
MESH_MIN_DETECTION_SCORE = 0.6
#: canonical model face height (forehead top, mesh 10, y = 8.26 to chin, mesh 152, y = -9.40), model units
CANONICAL_FACE_HEIGHT = 8.261778 + 9.403378

#: the geometric columns (face_score first; its value comes from the detector, not the mesh)
GEOMETRY_NAMES: tuple[str, ...] = (
    "face_score",
    "head_yaw", "head_pitch", "head_roll",
    "face_x", "face_y", "face_size",
    "eye_open_left", "eye_open_right",
    "gaze_left_x", "gaze_left_y", "gaze_right_x", "gaze_right_y",
    "mouth_open", "mouth_width",
    "lip_corner_raise_left", "lip_corner_raise_right",
    "brow_height_left", "brow_height_right",
)
#: the 68 iBUG landmark columns (x, y of each point)
LANDMARK_NAMES: tuple[str, ...] = tuple(f"lm{i:02d}_{a}" for i in range(68) for a in ("x", "y"))


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
class MeshCrop:
    """The square, zero-padded crop of a frame the mesh runs on."""

    # HxWx3 uint8 RGB, square, at most MESH_CROP_MAX_SIDE pixels
    image: np.ndarray
    # frame x of the crop's left edge (may be < 0 where the crop leaves the frame), pixels
    x0: int
    # frame y of the crop's top edge, pixels
    y0: int
    # side of the crop in frame pixels (before any downscaling)
    side: int


# ---- the mesh crop -------------------------------------------------------------------------------
def mesh_crop(image: np.ndarray, box: FaceBox) -> MeshCrop | None:
    """The square crop around ``box`` (zero-padded where it leaves the frame: MediaPipe projects
    landmarks exactly only for square inputs); None when too little of it lies inside the frame."""
    import cv2

    h, w = image.shape[:2]
    cx, cy = box.centre
    side = max(MESH_CROP_MIN_SIDE, int(round(MESH_CROP_SCALE * max(box.width, box.height))))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if sx1 - sx0 < MESH_CROP_MIN_SIDE or sy1 - sy0 < MESH_CROP_MIN_SIDE:
        return None
    crop = image[sy0:sy1, sx0:sx1]
    if (sx0, sy0, sx1, sy1) != (x0, y0, x0 + side, y0 + side):
        crop = cv2.copyMakeBorder(crop, sy0 - y0, y0 + side - sy1, sx0 - x0, x0 + side - sx1,
                                  cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if side > MESH_CROP_MAX_SIDE:
        crop = cv2.resize(crop, (MESH_CROP_MAX_SIDE, MESH_CROP_MAX_SIDE), interpolation=cv2.INTER_AREA)
    return MeshCrop(np.ascontiguousarray(crop), x0, y0, side)


def crop_landmarks_to_frame(landmarks: Any, crop: MeshCrop) -> np.ndarray | None:
    """The mesh's normalised crop landmarks as float32 [478, 3] frame pixels; None for a wrong count."""
    if len(landmarks) != G.NUM_MESH_POINTS:
        return None
    pts = np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float32) * np.float32(crop.side)
    pts[:, 0] += crop.x0
    pts[:, 1] += crop.y0
    return pts


# ---- pose and geometry ----------------------------------------------------------------------------------------
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
