"""Tests of the geometric action-unit proxies of "mediapipe_face" (msa_toolkit.extractors.vision.action_units).

Faces with a known answer are made from MediaPipe's canonical (neutral) face model: single actions
are applied by moving the landmarks the action moves (jaw opened, lip corners raised, brows lowered,
...), the face is placed in an image with a known head pose and size, and the proxies are read back
through the extractor's own pose fit. Then the real mesh on skimage's photos (the astronaut's broad
smile, the cameraman's closed mouth) checks the values are finite and plausible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from msa_toolkit.extractors.vision import _mesh_tables as G
from msa_toolkit.extractors.vision import action_units as A
from msa_toolkit.extractors.vision import estimate_head_pose, to_head_frame
from msa_toolkit.extractors.vision._canonical_mesh import CANONICAL_MESH

#: canonical inter-ocular distance (between the eye centres), model units
IOD = float(np.linalg.norm(CANONICAL_MESH[[263, 362]].mean(0) - CANONICAL_MESH[[33, 133]].mean(0)))
#: size of every synthetic movement, model units (0.5 / 6.3 = 0.08 IOD: a clear movement)
D = 0.5
#: proxies the synthetic movements do not touch must stay at 0 up to rounding
EXACT = 1e-6


def au(values: np.ndarray, name: str) -> float:
    return float(values[A.AU_NAMES.index(name)])


def with_iris(face: np.ndarray) -> np.ndarray:
    """478 points: the 468 face points plus iris centres at the eye centres, ring points around them."""
    iris = []
    for corners in (G.RIGHT_EYE_CORNERS, G.LEFT_EYE_CORNERS):  # 468-472 right iris, 473-477 left
        c = face[list(corners)].mean(0)
        iris += [c, c + (0.5, 0, 0), c + (0, 0.5, 0), c - (0.5, 0, 0), c - (0, 0.5, 0)]
    return np.vstack([face, iris])


def rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Ry(yaw) @ Rx(-pitch) @ Rz(roll)``, degrees (the convention of ``mesh.rotation_to_euler``)."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def to_image(face: np.ndarray, yaw=0.0, pitch=0.0, roll=0.0, scale=10.0, shift=(320.0, 240.0, 0.0)) -> np.ndarray:
    """Head-frame points -> frame pixels as the mesh gives them (x right, y down, z away from the camera)."""
    cam = scale * with_iris(face) @ rot(yaw, pitch, roll).T
    return (cam * np.array([1.0, -1.0, -1.0]) + np.asarray(shift)).astype(np.float32)


def proxies(landmarks: np.ndarray) -> np.ndarray:
    """The extractor's path: rigid pose fit, head frame, proxies."""
    pose = estimate_head_pose(landmarks)
    return A.action_unit_features(to_head_frame(landmarks, pose))


# ---- synthetic actions on the canonical face (head frame: x to the subject's left, y up, z to the camera) ----
def moved(idx, delta) -> np.ndarray:
    face = CANONICAL_MESH.copy()
    face[list(idx)] += np.asarray(delta, np.float64)
    return face


def both(region) -> tuple[int, ...]:
    return (*region[0], *region[1])


def jaw_drop() -> np.ndarray:
    """The jaw opens by D: every point below the lip corners moves down D, the corners half as far."""
    face = CANONICAL_MESH.copy()
    face[face[:, 1] < -4.38, 1] -= D
    face[[61, 291, 78, 308], 1] -= D / 2
    return face


def smile() -> np.ndarray:
    """The lip corners (outer 61/291, inner 78/308) move up D and outwards D."""
    face = CANONICAL_MESH.copy()
    for idx, side in (((61, 78), -1.0), ((291, 308), 1.0)):
        face[list(idx)] += (side * D, D, 0.0)
    return face


def lip_stretch() -> np.ndarray:
    face = CANONICAL_MESH.copy()
    face[[61, 78], 0] -= D
    face[[291, 308], 0] += D
    return face


def brow_lower() -> np.ndarray:
    """Both brows move down D, their innermost points also D/2 towards the midline."""
    face = moved(both(A.WHOLE_BROW), (0, -D, 0))
    face[[107, 55], 0] += D / 2
    face[[336, 285], 0] -= D / 2
    return face


UPPER_LIP = (0, 37, 39, 40, 185, 267, 269, 270, 409, 13, 82, 81, 80, 191, 312, 311, 310, 415)
CHIN_BOSS = (152, 175, 199, 200, 148, 377, 176, 400, 171, 396, 208, 428)

#: (action, landmark set, expected signs of the proxies that move; every other proxy must stay 0)
CASES = {
    "jaw_drop": (jaw_drop, {"au25_lips_part": 1, "au26_jaw_drop": 1}),
    "smile": (smile, {"au12_lip_corner_pull": 1, "au20_lip_stretch": 1, "au15_lip_corner_depress": -1}),
    "lip_stretch": (lip_stretch, {"au20_lip_stretch": 1, "au12_lip_corner_pull": 1}),
    "frown": (lambda: moved((61, 291, 78, 308), (0, -D, 0)),
              {"au15_lip_corner_depress": 1, "au12_lip_corner_pull": -1}),
    "dimpler": (lambda: moved((61, 291, 78, 308), (0, 0, -D)), {"au14_dimpler": 1}),
    "brow_lower": (brow_lower, {"au04_brow_lower": 1, "au01_inner_brow_raise": -1, "au02_outer_brow_raise": -1}),
    "inner_brow_raise": (lambda: moved(both(A.INNER_BROW), (0, D, 0)),
                         {"au01_inner_brow_raise": 1, "au04_brow_lower": -1}),
    "outer_brow_raise": (lambda: moved(both(A.OUTER_BROW), (0, D, 0)),
                         {"au02_outer_brow_raise": 1, "au04_brow_lower": -1}),
    "upper_lid_raise": (lambda: moved(both(A.UPPER_LID), (0, D, 0)), {"au05_upper_lid_raise": 1}),
    "cheek_raise": (lambda: moved(both(A.CHEEK), (0, D, 0)), {"au06_cheek_raise": 1}),
    "lid_tighten": (lambda: moved(both(A.LOWER_LID), (0, D, 0)), {"au07_lid_tighten": 1}),
    "nose_wrinkle": (lambda: moved(both(A.NOSE_WING), (0, D, 0)), {"au09_nose_wrinkle": 1}),
    # raising the whole upper lip also parts the lips
    "upper_lip_raise": (lambda: moved(UPPER_LIP, (0, D, 0)), {"au10_upper_lip_raise": 1, "au25_lips_part": 1}),
    "lip_press": (lambda: moved(A.LOWER_LIP_OUTER, (0, D, 0)) + moved(A.UPPER_LIP_OUTER, (0, -D, 0)) - CANONICAL_MESH,
                  {"au24_lip_press": 1}),
    # the chin boss moving up also shortens the nose-chin height and lifts the corners' reference point
    "chin_raise": (lambda: moved(CHIN_BOSS, (0, D, 0)),
                   {"au17_chin_raise": 1, "au26_jaw_drop": -1, "au12_lip_corner_pull": -1,
                    "au15_lip_corner_depress": 1}),
}


def test_names_and_neutral_face():
    assert len(A.AU_NAMES) == len(set(A.AU_NAMES)) == 16
    assert all(n.startswith("au") and n[2:4].isdigit() for n in A.AU_NAMES)
    np.testing.assert_allclose(proxies(to_image(CANONICAL_MESH)), 0.0, atol=EXACT)
    # the full canonical model agrees with the rigid subset the head-pose fit uses
    np.testing.assert_allclose(CANONICAL_MESH[G.RIGID_INDICES], G.CANONICAL_RIGID, atol=1e-9)
    # the model is left-right symmetric: every region's left points mirror its right points
    for region in (A.INNER_BROW, A.OUTER_BROW, A.WHOLE_BROW, A.UPPER_LID, A.LOWER_LID, A.CHEEK, A.NOSE_WING):
        np.testing.assert_allclose(CANONICAL_MESH[list(region[1])],
                                   CANONICAL_MESH[list(region[0])] * (-1, 1, 1), atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_action_moves_its_proxies_and_only_them(case):
    make, expected = CASES[case]
    values = proxies(to_image(make()))
    for name, sign in expected.items():
        assert sign * au(values, name) > 0.2 * D / IOD, (name, au(values, name))
    others = [n for n in A.AU_NAMES if n not in expected]
    np.testing.assert_allclose([au(values, n) for n in others], 0.0, atol=EXACT, err_msg=str(others))


def test_magnitudes_are_displacements_over_the_interocular_distance():
    assert au(proxies(to_image(jaw_drop())), "au26_jaw_drop") == pytest.approx(D / IOD, rel=1e-5)
    assert au(proxies(to_image(jaw_drop())), "au25_lips_part") == pytest.approx(D / IOD, rel=1e-5)
    assert au(proxies(to_image(CASES["upper_lid_raise"][0]())), "au05_upper_lid_raise") == pytest.approx(D / IOD, rel=1e-5)
    s = proxies(to_image(smile()))
    assert au(s, "au12_lip_corner_pull") == pytest.approx(math.sqrt(2) * D / IOD, rel=1e-5)  # (D + D) / sqrt 2
    assert au(s, "au20_lip_stretch") == pytest.approx(D / IOD, rel=1e-5)
    assert au(s, "au15_lip_corner_depress") == pytest.approx(-D / IOD, rel=1e-5)
    b = proxies(to_image(brow_lower()))
    assert au(b, "au04_brow_lower") == pytest.approx(1.5 * D / IOD, rel=1e-5)  # D down + D/2 inwards


@pytest.mark.parametrize("pose", [(0, 0, 0, 1.0), (35, 0, 0, 3.0), (-30, 15, 0, 0.5), (10, -20, 25, 40.0),
                                  (-5, 10, -40, 7.0)])
def test_invariant_to_head_rotation_scale_and_translation(pose):
    yaw, pitch, roll, scale = pose
    for case, (make, _) in CASES.items():
        face = make()
        ref = proxies(to_image(face))
        got = proxies(to_image(face, yaw, pitch, roll, scale, shift=(123.0, -45.0, 17.0)))
        np.testing.assert_allclose(got, ref, atol=1e-5, err_msg=case)


def test_combined_actions_add_up():
    """Actions on disjoint landmarks combine: smile + jaw drop + lowered brows."""
    face = smile() + jaw_drop() + brow_lower() - 2 * CANONICAL_MESH
    face[[61, 291, 78, 308]] = smile()[[61, 291, 78, 308]] + (jaw_drop() - CANONICAL_MESH)[[61, 291, 78, 308]]
    values = proxies(to_image(face, yaw=20, pitch=-10, roll=5, scale=4.0))
    parts = sum(proxies(to_image(make())) for make in (smile, jaw_drop, brow_lower))
    np.testing.assert_allclose(values, parts, atol=1e-5)


def test_a_noisy_face_stays_near_zero():
    """Landmark jitter of 1 % of the IOD on every coordinate (rigid points too) moves no proxy by more than
    ~0.05 (the proxies built on two single points, like au26 = subnasale - chin, move most)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        face = CANONICAL_MESH + rng.normal(0, 0.01 * IOD, CANONICAL_MESH.shape)
        assert np.abs(proxies(to_image(face, yaw=15, roll=-10))).max() < 0.06


# ---- the real mesh on photos --------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_proxies():
    cv2 = pytest.importorskip("cv2")
    skdata = pytest.importorskip("skimage.data")
    from msa_toolkit.errors import ModelLoadError
    from msa_toolkit.extractors.vision import MediaPipeFaceExtractor

    try:
        ex = MediaPipeFaceExtractor(expressions=False)
        ex.load()
    except ModelLoadError as e:  # pragma: no cover - environment without the model packages
        pytest.skip(str(e))
    start = ex.feature_names.index(A.AU_NAMES[0])
    astronaut = np.ascontiguousarray(skdata.astronaut())
    h, w = astronaut.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 3), 20, 1.0)
    small = np.full_like(astronaut, 128)
    small[:256, :256] = cv2.resize(astronaut, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    images = {
        "astronaut": astronaut,
        "astronaut_rolled": cv2.warpAffine(astronaut, turn, (w, h), borderMode=cv2.BORDER_REFLECT),
        "astronaut_small": small,
        "cameraman": cv2.cvtColor(skdata.camera(), cv2.COLOR_GRAY2RGB),
    }
    out = {}
    for name, image in images.items():
        ex.reset()
        res = ex.analyze(image)
        assert res is not None, name
        out[name] = res.features[start:start + len(A.AU_NAMES)]
    ex.close()
    return out


def test_photos_give_finite_plausible_values(photo_proxies):
    for name, values in photo_proxies.items():
        assert values.dtype == np.float32 and np.all(np.isfinite(values)), name
        assert np.all(np.abs(values) < 0.5), (name, values)  # within half an IOD of the neutral face


def test_astronaut_smiles_with_parted_lips_and_the_cameraman_does_not(photo_proxies):
    smile, still = photo_proxies["astronaut"], photo_proxies["cameraman"]
    assert au(smile, "au12_lip_corner_pull") > 0.08 and au(smile, "au20_lip_stretch") > 0.05
    assert au(smile, "au15_lip_corner_depress") < 0
    assert au(smile, "au25_lips_part") > 0.06  # teeth show
    assert abs(au(still, "au25_lips_part")) < 0.04  # closed mouth: about the canonical model's gap
    assert au(smile, "au12_lip_corner_pull") - au(still, "au12_lip_corner_pull") > 0.15


def test_photo_values_survive_rotation_and_downscaling(photo_proxies):
    base = photo_proxies["astronaut"]
    for name in ("astronaut_rolled", "astronaut_small"):
        np.testing.assert_allclose(photo_proxies[name], base, atol=0.06, err_msg=name)
