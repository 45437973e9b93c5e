"""Vision extractors: ``"mediapipe_face"``, per-frame facial features of one followed face.

One module per concern:

- :mod:`.face` — face detection (MediaPipe BlazeFace) and the one-person tracker;
- :mod:`.mesh` — the 478-point mesh crop, the head-pose fit and the geometric columns
  (index tables and canonical points in :mod:`._mesh_tables`);
- :mod:`.action_units` — geometric action-unit proxies measured against MediaPipe's canonical face
  model (its 468 vertices in :mod:`._canonical_mesh`);
- :mod:`.expression` — FER2013 expression probabilities;
- :mod:`.extractor` — :class:`MediaPipeFaceExtractor`, which runs them per frame (its module
  docstring lists every feature column);
- :mod:`._runtime` — model-file lookup, quiet native logs, RGB input.

Importing this package is cheap: MediaPipe, OpenCV and ai-edge-litert are imported only when an
extractor loads or processes a frame.
"""

from ._runtime import INSTALL_HINT, mediapipe_model_paths
from .action_units import AU_NAMES, NEUTRAL_MEASURES, action_unit_features
from .expression import (EXPRESSION_NAMES, EXPRESSIONS, FER_BOX_MARGIN, FER_INPUT_SIDE, FER_MAX_WARP_MULTIPLE,
                         fer_affine, fer_model_path)
from .extractor import DEFAULT_FPS, WARMUP_SIDE, FaceAnalysis, MediaPipeFaceExtractor, sample_frames
from .face import (DEFAULT_MAX_SIDE, DEFAULT_MIN_DETECTION_SCORE, TRACK_MAX_CENTRE_DIST, TRACK_MEMORY_S, TRACK_MIN_IOU,
                   FaceBox, FaceTracker)
from .mesh import (CANONICAL_FACE_HEIGHT, MESH_CROP_MAX_SIDE, MESH_CROP_SCALE, MESH_MIN_DETECTION_SCORE, HeadPose,
                   estimate_head_pose, fit_similarity, geometric_features, rotation_to_euler, to_head_frame)

__all__ = [
    "MediaPipeFaceExtractor", "FaceAnalysis", "FaceBox", "FaceTracker", "HeadPose", "sample_frames",
    "estimate_head_pose", "fit_similarity", "rotation_to_euler", "to_head_frame", "geometric_features",
    "fer_affine", "fer_model_path", "mediapipe_model_paths", "EXPRESSIONS", "EXPRESSION_NAMES", "INSTALL_HINT",
    "DEFAULT_FPS", "DEFAULT_MAX_SIDE", "DEFAULT_MIN_DETECTION_SCORE", "TRACK_MEMORY_S", "TRACK_MIN_IOU",
    "TRACK_MAX_CENTRE_DIST", "MESH_CROP_SCALE", "MESH_CROP_MAX_SIDE", "MESH_MIN_DETECTION_SCORE",
    "CANONICAL_FACE_HEIGHT", "FER_INPUT_SIDE", "FER_BOX_MARGIN", "FER_MAX_WARP_MULTIPLE", "WARMUP_SIDE",
    "AU_NAMES", "NEUTRAL_MEASURES", "action_unit_features",
]
