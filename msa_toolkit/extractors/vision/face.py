"""Face detection and tracking: MediaPipe's BlazeFace detectors and the one-person tracker.

Detection runs the *full-range* detector on the frame downscaled to at most ``max_side``
pixels, and the *short-range* one only when full-range finds nothing; scores are filtered here
(MediaPipe ignores ``min_detection_confidence`` in this release). The tracker follows one
person: first the most salient face, then the detection overlapping the previous box, waiting
:data:`TRACK_MEMORY_S` for a lost face before re-acquiring (so a second person is never silently
swapped in for a briefly occluded speaker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: seconds a lost face is waited for before the tracker re-acquires the largest face
TRACK_MEMORY_S = 1.0
#: minimum IoU with the previous box for a detection to count as the same face
TRACK_MIN_IOU = 0.1
#: ...otherwise its centre must lie within this many previous-box sizes of the previous centre
TRACK_MAX_CENTRE_DIST = 1.0
#: weight of the centre offset in the salience ``area * (1 - weight * offset)`` of a new face
SALIENCE_CENTRE_WEIGHT = 0.25
#: Default detection threshold. The detectors never return scores below 0.5 (their built-in floor);
#: real faces in the test clips score 0.75-0.94 full-range, while textures fool it up to ~0.62
#: (noface.mp4's coffee cup). 0.6 drops most of those; the mesh's own re-detection in the crop
#: (MESH_MIN_DETECTION_SCORE) rejects the rest, so a false face must fool two detectors at once.
DEFAULT_MIN_DETECTION_SCORE = 0.6
#: Default detection input size: BlazeFace full-range works on 192x192 internally, 640 px keeps
#: small faces (down to ~1/10 of the frame) detectable while making the RGB resize cheap.
DEFAULT_MAX_SIDE = 640


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


def detect_faces(detectors: Sequence[Any], image: np.ndarray, max_side: int, min_score: float) -> list[FaceBox]:
    """Faces scoring at least ``min_score`` in an HxWx3 uint8 RGB ``image``, in frame pixels.

    ``detectors`` are MediaPipe ``FaceDetection`` graphs tried in order (full-range, then
    short-range); the first that finds a face wins. ``max_side`` > 0 downscales the detector input.
    """
    import cv2

    h, w = image.shape[:2]
    small = image
    if max_side and max(h, w) > max_side:
        f = max_side / max(h, w)
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    for det in detectors:
        res = det.process(small)
        boxes = []
        for d in res.detections or ():
            score = float(d.score[0]) if d.score else 0.0
            if score < min_score:
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


@dataclass
class FaceTracker:
    """Follows one face through a clip (see the module docstring)."""

    # the box followed last, None before the first face or after reset()
    track: FaceBox | None = None
    # time (seconds) the followed face was last seen
    track_time: float = field(default=-math.inf)

    def reset(self) -> None:
        """Forget the followed face."""
        self.track = None
        self.track_time = -math.inf

    def select(self, boxes: list[FaceBox], time: float, frame_hw: tuple[int, int]) -> FaceBox | None:
        """Pick the followed face among ``boxes`` (detections at ``time``) and remember it."""
        prev = self.track
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
        if chosen is None and boxes and (prev is None or time - self.track_time > TRACK_MEMORY_S):
            chosen = max(boxes, key=lambda b: salience(b, frame_hw))
        if chosen is not None:
            self.track, self.track_time = chosen, time
        return chosen


def salience(box: FaceBox, frame_hw: tuple[int, int]) -> float:
    """``area * (1 - 0.25 * offset)``: largest first; centrality (centre offset over the half
    diagonal) breaks near-ties."""
    h, w = frame_hw
    half_diag = 0.5 * math.hypot(w, h)
    cx, cy = box.centre
    off = math.hypot(cx - w / 2, cy - h / 2) / half_diag
    return box.area * (1.0 - SALIENCE_CENTRE_WEIGHT * off)
