"""Geometric action-unit proxies: FACS-like facial actions measured on the 478-point mesh.

OpenFace estimates action-unit intensities from appearance; without it, these columns measure the
*geometric* part of each action: how far the landmarks an action moves have moved. Every measure
is taken on the mesh in the head frame (:func:`.mesh.to_head_frame`: pose and scale removed; x
towards the subject's left, y up, z towards the camera) and divided by the inter-ocular distance
``IOD`` (between the eye centres, each the midpoint of its corners: mesh 33/133 and 263/362), as
the geometric columns of :mod:`.mesh` are. Each column is the measure minus its value on
MediaPipe's canonical face model (:mod:`._canonical_mesh`, a neutral face), so the canonical face
gives exactly 0 and a positive value means *more of the action* than the neutral face shows
(negative: the opposite movement, e.g. ``au01`` < 0 for lowered inner brows).

Values are unitless displacements (fractions of the IOD; 0.05 is a visible movement, a broad
smile gives ``au12`` ~0.15-0.2). A real person's resting face differs from the canonical one, so
expect per-person offsets of up to ~0.1-0.2 (a per-clip or per-speaker mean removes them). The
canonical model's inner lips are 0.084 IOD apart, about what the mesh reports for a closed mouth,
so ``au25_lips_part`` is ~0 for closed lips too. Bilateral actions are averaged over both sides.
``y(P)`` is the mean head-frame height of the points ``P`` (right-side indices listed; the left
side uses their mirror images, given in the tables below), ``eye`` the eye centre of that side.

=============================  ====================================================================
``au01_inner_brow_raise``      ``y(inner brow 107, 66, 55, 65) - y(eye)``
``au02_outer_brow_raise``      ``y(outer brow 70, 63, 46, 53) - y(eye)``
``au04_brow_lower``            ``-(y(whole brow 70, 63, 105, 66, 107, 46, 53, 52, 65, 55) - y(eye))``
                               ``- (|x107 - x336| + |x55 - x285|) / 4``: lowered and drawn together
``au05_upper_lid_raise``       ``y(upper lid 159, 158, 160) - y(eye)``
``au06_cheek_raise``           ``y(cheek below the eye 117, 118, 119, 101, 50) - y(eye)``
``au07_lid_tighten``           ``y(lower lid 145, 144, 153) - y(eye)``: the lower lid rises
``au09_nose_wrinkle``          ``y(nose wing and alar crease 129, 102, 49, 48, 64) - y(eye)``
``au10_upper_lip_raise``       ``y(upper inner lip 13, 82, 312) - y(subnasale 2)``
``au12_lip_corner_pull``       ``((y(c) - y(m)) + |x(c) - x(m)|) / sqrt 2``: corner ``c`` (61, 291)
                               moved up and out (zygomaticus direction); ``m`` = midpoint of the
                               subnasale (2) and the chin (152), so an opening jaw, which moves the
                               corners about half as far as the chin, leaves it unchanged
``au14_dimpler``               ``-(z(c) - z(m))``: corners pulled back into the cheeks (uses the
                               mesh's depth estimate, the least reliable coordinate)
``au15_lip_corner_depress``    ``-(y(c) - y(m))``: corners pulled down
``au17_chin_raise``            ``-(y(lower inner lip 14, 87, 317) - y(chin 152))``: the chin boss
                               pushes up and shortens the lip-to-chin height (a weak proxy)
``au20_lip_stretch``           ``|x(c) - x(m)|``: corners pulled out sideways (half the mouth widening)
``au24_lip_press``             ``-((y(0, 37, 267) - y(13, 82, 312)) + (y(14, 87, 317) - y(17, 84, 314)))``:
                               the red of the lips (outer minus inner contour height) thins; AU23
                               (lip tightener) thins the lips too and also drives it
``au25_lips_part``             ``y(13, 82, 312) - y(14, 87, 317)``: the inner-lip gap
``au26_jaw_drop``              ``y(subnasale 2) - y(chin 152)``: the lower face lengthens
=============================  ====================================================================

AU12, AU15 and AU20 are projections of the same corner displacement onto three muscles' pull
directions (up-out, down, out), so they are linearly related (AU12 = (AU20 - AU15) / sqrt 2).
Their reference ``m`` follows the chin: a chin raise (AU17) lifting the chin by ``h`` lifts ``m`` by
``h / 2`` and reads as a little AU15 as well.
"""

from __future__ import annotations

import math

import numpy as np

from . import _mesh_tables as G
from ._canonical_mesh import CANONICAL_MESH

#: the action-unit columns, in output order
AU_NAMES: tuple[str, ...] = (
    "au01_inner_brow_raise", "au02_outer_brow_raise", "au04_brow_lower", "au05_upper_lid_raise",
    "au06_cheek_raise", "au07_lid_tighten", "au09_nose_wrinkle", "au10_upper_lip_raise",
    "au12_lip_corner_pull", "au14_dimpler", "au15_lip_corner_depress", "au17_chin_raise",
    "au20_lip_stretch", "au24_lip_press", "au25_lips_part", "au26_jaw_drop",
)

# ---- landmark regions: (subject's right side, left side) with the left points mirroring the right ones
#: inner brow: the two innermost points of the upper and of the lower brow contour
INNER_BROW = ((107, 66, 55, 65), (336, 296, 285, 295))
#: outer brow: the two outermost points of the upper and of the lower brow contour
OUTER_BROW = ((70, 63, 46, 53), (300, 293, 276, 283))
#: the whole brow: upper contour (outer -> inner), then lower contour (outer -> inner)
WHOLE_BROW = ((70, 63, 105, 66, 107, 46, 53, 52, 65, 55), (300, 293, 334, 296, 336, 276, 283, 282, 295, 285))
#: innermost brow points paired across the midline (upper contour, lower contour): their gap narrows in AU4
INNER_BROW_PAIRS = ((107, 336), (55, 285))
#: upper eyelid, middle three points
UPPER_LID = ((159, 158, 160), (386, 385, 387))
#: lower eyelid, middle three points
LOWER_LID = ((145, 144, 153), (374, 373, 380))
#: cheek below the eye (infraorbital ridge and upper cheek), not used by the head-pose fit
CHEEK = ((117, 118, 119, 101, 50), (346, 347, 348, 330, 280))
#: nose wing and alar crease, not used by the head-pose fit
NOSE_WING = ((129, 102, 49, 48, 64), (358, 331, 279, 278, 294))
#: midline and paramedian lip points: upper outer, upper inner, lower inner, lower outer contour
UPPER_LIP_OUTER = (0, 37, 267)
UPPER_LIP_INNER = (13, 82, 312)
LOWER_LIP_INNER = (14, 87, 317)
LOWER_LIP_OUTER = (17, 84, 314)
#: lip corners (right, left), outer contour
LIP_CORNERS = (G.RIGHT_LIP_CORNER, G.LEFT_LIP_CORNER)
#: soft-tissue chin bottom (menton)
CHIN = 152
#: AU12's direction (up and out at 45 degrees) has unit length after dividing by this
_SQRT2 = math.sqrt(2.0)


def _measures(hp: np.ndarray) -> np.ndarray:
    """The raw measures of :data:`AU_NAMES` (before subtracting the neutral face), float64 [16]."""
    eyes = (0.5 * (hp[G.RIGHT_EYE_CORNERS[0]] + hp[G.RIGHT_EYE_CORNERS[1]]),
            0.5 * (hp[G.LEFT_EYE_CORNERS[0]] + hp[G.LEFT_EYE_CORNERS[1]]))
    iod = max(float(np.linalg.norm(eyes[1] - eyes[0])), 1e-6)

    def y(idx: tuple[int, ...]) -> float:
        return float(hp[list(idx), 1].mean())

    def above_eye(region: tuple[tuple[int, ...], tuple[int, ...]]) -> float:
        return 0.5 * sum(y(region[s]) - float(eyes[s][1]) for s in (0, 1))

    gap_inner = sum(abs(float(hp[a, 0] - hp[b, 0])) for a, b in INNER_BROW_PAIRS)
    ref = 0.5 * (hp[G.SUBNASALE] + hp[CHIN])
    up = np.array([hp[c, 1] - ref[1] for c in LIP_CORNERS])
    out = np.array([abs(hp[c, 0] - ref[0]) for c in LIP_CORNERS])
    back = np.array([ref[2] - hp[c, 2] for c in LIP_CORNERS])
    upper_in, lower_in = y(UPPER_LIP_INNER), y(LOWER_LIP_INNER)
    subnasale_y, chin_y = float(hp[G.SUBNASALE, 1]), float(hp[CHIN, 1])
    raw = (
        above_eye(INNER_BROW),
        above_eye(OUTER_BROW),
        -above_eye(WHOLE_BROW) - gap_inner / 4.0,
        above_eye(UPPER_LID),
        above_eye(CHEEK),
        above_eye(LOWER_LID),
        above_eye(NOSE_WING),
        upper_in - subnasale_y,
        float((up + out).mean()) / _SQRT2,
        float(back.mean()),
        -float(up.mean()),
        -(lower_in - chin_y),
        float(out.mean()),
        -((y(UPPER_LIP_OUTER) - upper_in) + (lower_in - y(LOWER_LIP_OUTER))),
        upper_in - lower_in,
        subnasale_y - chin_y,
    )
    return np.asarray(raw, np.float64) / iod


#: the measures on the canonical (neutral) face, float64 [len(AU_NAMES)]
NEUTRAL_MEASURES: np.ndarray = _measures(CANONICAL_MESH)
NEUTRAL_MEASURES.flags.writeable = False


def action_unit_features(head_points: np.ndarray) -> np.ndarray:
    """The action-unit proxies of mesh points in the head frame (:func:`.mesh.to_head_frame`;
    at least the 468 face points), float32 [len(AU_NAMES)]."""
    return (_measures(np.asarray(head_points, np.float64)) - NEUTRAL_MEASURES).astype(np.float32)
