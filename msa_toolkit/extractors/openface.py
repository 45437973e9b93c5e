"""OpenFace 2.0 facial features: run its ``FeatureExtraction`` binary, or ingest CSVs it already wrote.

Two registered visual extractors produce the same features:

- ``"openface"`` runs OpenFace 2.0's ``FeatureExtraction`` (found on ``PATH``, in ``$MSA_OPENFACE_BIN``,
  or given as ``binary=``) on the media file itself, into a temporary output folder, with the
  output flags the selected columns need (the ones MMSA-FET passes: ``-2Dfp -3Dfp -pdmparams -pose
  -aus -gaze``), and parses the CSV it writes;
- ``"openface_csv"`` reads a CSV a user already has, one per clip: ``clip.csv`` next to ``clip.mp4``,
  ``processed/clip.csv`` next to it (OpenFace's default output folder), or ``<csv_dir>/clip.csv``
  (also ``<csv_dir>/<clip's folder name>/clip.csv``) when ``csv_dir`` is given.

Both describe themselves as ``"openface"`` in the FeatureSpec (same columns, same parser), so a
checkpoint trained on ingested CSVs is reproduced by ``predict`` when the binary is present.

Both read a *file*, not decoded frames: they set :attr:`needs_path` and implement
:meth:`OpenFaceExtractor.extract_file`; the pipeline must call that instead of ``extract(frames)``.

Columns keep OpenFace's names. ``columns`` selects them: a preset (``"aus"``, ``"aus+pose+gaze"``,
``"mmsa_fet"``, ``"full"``), any ``+``-joined set of the groups in :data:`GROUPS`, or a
comma-separated list of column names. Frame times are the CSV's ``timestamp`` (seconds); a row is
valid (``mask`` True) when ``success`` is 1 and ``confidence >= min_confidence``; invalid rows
have all values 0. See docs/visual_features.md for every column.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np

from ..errors import ExtractionError, OpenFaceNotFoundError
from ..features import FeatureSequence
from ..spec import ExtractorSpec
from .base import VisualExtractor, register_extractor

# ---- OpenFace 2.0's CSV layout (lib/local/Utilities/src/RecorderCSV.cpp; wiki "Output Format") ----
#: name of the OpenFace 2.0 binary that processes one video (single face)
BINARY_NAME = "FeatureExtraction"
#: environment variable that may name the binary (used when ``binary`` is not given)
BINARY_ENV = "MSA_OPENFACE_BIN"
#: name the spec records for both extractors: their output is the same
SPEC_NAME = "openface"
#: landmarks of OpenFace's 68-point face model
N_FACE_LANDMARKS = 68
#: eye-region landmarks of OpenFace's gaze model (28 per eye)
N_EYE_LANDMARKS = 56
#: non-rigid shape modes of OpenFace's point distribution model
N_PDM_MODES = 34
#: action units with an intensity column ``AUxx_r`` (0-5)
AU_INTENSITY: tuple[str, ...] = ("01", "02", "04", "05", "06", "07", "09", "10", "12", "14", "15", "17",
                                 "20", "23", "25", "26", "45")
#: action units with a presence column ``AUxx_c`` (0 or 1): the intensity ones plus AU28 (lip suck)
AU_PRESENCE: tuple[str, ...] = tuple(sorted(AU_INTENSITY + ("28",)))
#: bookkeeping columns every sequence CSV starts with (``face_id`` is absent in the oldest 2.0 releases)
META_COLUMNS: tuple[str, ...] = ("frame", "face_id", "timestamp", "confidence", "success")
#: a CSV must have these to be parsed
REQUIRED_META: tuple[str, ...] = ("timestamp", "confidence", "success")


def _indexed(prefix: str, n: int, axes: str) -> tuple[str, ...]:
    """``prefix + axis + "_" + i`` for each axis, all indices of one axis before the next (OpenFace's order)."""
    return tuple(f"{prefix}{a}_{i}" for a in axes for i in range(n))


#: column groups in the order OpenFace writes them: group -> (output flag, columns)
GROUPS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    # unit gaze vectors of eye 0 (leftmost in the image) and eye 1, world frame; mean gaze angles in radians
    "gaze": ("-gaze", ("gaze_0_x", "gaze_0_y", "gaze_0_z", "gaze_1_x", "gaze_1_y", "gaze_1_z",
                       "gaze_angle_x", "gaze_angle_y")),
    # 56 eye-region landmarks: 2-D in pixels, then 3-D in millimetres
    "eye_landmarks": ("-gaze", _indexed("eye_lmk_", N_EYE_LANDMARKS, "xy")
                      + _indexed("eye_lmk_", N_EYE_LANDMARKS, "XYZ")),
    # head location (mm, camera frame) and rotation (radians, about the camera axes)
    "pose": ("-pose", ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")),
    # 68 face landmarks in pixels
    "landmarks_2d": ("-2Dfp", _indexed("", N_FACE_LANDMARKS, "xy")),
    # 68 face landmarks in millimetres, camera frame
    "landmarks_3d": ("-3Dfp", _indexed("", N_FACE_LANDMARKS, "XYZ")),
    # rigid (scale, rotation, 2-D translation) and non-rigid shape parameters of the PDM
    "pdm": ("-pdmparams", ("p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty")
            + tuple(f"p_{i}" for i in range(N_PDM_MODES))),
    # action units: 17 intensities then 18 presences (the "35 AU columns")
    "aus": ("-aus", tuple(f"AU{a}_r" for a in AU_INTENSITY) + tuple(f"AU{a}_c" for a in AU_PRESENCE)),
}
#: named column selections: preset -> groups
PRESETS: Mapping[str, tuple[str, ...]] = {
    "aus": ("aus",),
    "aus+pose+gaze": ("gaze", "pose", "aus"),
    # MMSA-FET's example openface.json (landmark_2D, head_pose, action_units): 177 columns
    "mmsa_fet": ("pose", "landmarks_2d", "aus"),
    # every column of -2Dfp -3Dfp -pdmparams -pose -aus -gaze: the 709-dim CH-SIMS visual features
    "full": tuple(GROUPS),
}
#: every feature column OpenFace 2.0 writes, in its order
ALL_COLUMNS: tuple[str, ...] = tuple(c for _flag, cols in GROUPS.values() for c in cols)
_FLAG_OF: Mapping[str, str] = {c: flag for flag, cols in GROUPS.values() for c in cols}

#: default column selection: compact (49 columns) and free of pixel coordinates
DEFAULT_COLUMNS = "aus+pose+gaze"
#: lines of the binary's output quoted in an error
ERROR_TAIL_LINES = 8
#: how to get OpenFace, shown when the binary is missing
INSTALL_HINT = (
    "install OpenFace 2.0 (build it from https://github.com/TadasBaltrusaitis/OpenFace, see its wiki "
    "'Unix-Installation', and run download_models.sh) and put its build/bin folder on PATH, or pass its "
    f"path with --openface-bin / binary=, or set ${BINARY_ENV}; without OpenFace use --vision mediapipe_face"
)


def resolve_columns(columns: str | Iterable[str]) -> tuple[str, ...]:
    """Column names of a preset, a ``+``-joined group set, or an explicit (comma-separated) list.

    Presets and groups give OpenFace's own column order; an explicit list keeps its order.
    Raises ValueError naming unknown groups/columns.
    """
    if isinstance(columns, str):
        spec = columns.strip()
        parts = list(PRESETS[spec]) if spec in PRESETS else [p.strip() for p in spec.split("+")]
        if "," not in spec and all(p in GROUPS for p in parts):
            return tuple(c for g, (_flag, cols) in GROUPS.items() if g in parts for c in cols)
        names = [c.strip() for c in spec.split(",") if c.strip()]
    else:
        names = [str(c).strip() for c in columns]
    unknown = [c for c in names if c not in _FLAG_OF]
    what = "column(s)"
    if isinstance(columns, str) and "+" in spec and "," not in spec:  # a group set with an unknown group
        unknown, what = [p for p in parts if p not in GROUPS], "group(s)"
    if not names or unknown:
        raise ValueError(f"columns {columns!r}: unknown OpenFace {what} {unknown}; use a preset "
                         f"({', '.join(PRESETS)}), groups joined by '+' ({', '.join(GROUPS)}) or OpenFace "
                         "column names separated by commas (docs/visual_features.md)")
    if len(set(names)) != len(names):
        raise ValueError(f"columns {columns!r}: a column is listed twice")
    return tuple(names)


def output_flags(columns: Iterable[str]) -> list[str]:
    """``FeatureExtraction`` output flags that make it write ``columns`` (in OpenFace's group order)."""
    needed = {_FLAG_OF[c] for c in columns}
    flags: list[str] = []
    for flag, _cols in GROUPS.values():
        if flag in needed and flag not in flags:
            flags.append(flag)
    return flags


# ---- the CSV parser -------------------------------------------------------------------------------
def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (names stripped: OpenFace 2.0 writes ``", "`` separators) and non-empty data rows."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f, skipinitialspace=True) if any(x.strip() for x in r)]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file (byte {e.start} is not UTF-8), not an OpenFace CSV") from None
    if not rows:
        raise ValueError(f"{path}: empty file (no header line), not an OpenFace CSV")
    header = [h.strip() for h in rows[0]]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise ValueError(f"{path}: line {i} has {len(r)} fields, the header {len(header)} (truncated file?)")
    return header, rows[1:]


def _main_face(table: np.ndarray, col: Mapping[str, int]) -> np.ndarray:
    """Rows of one face: when the CSV tracks several (``face_id``), the one with the most valid frames."""
    if "face_id" not in col or table.shape[0] == 0:
        return table
    ids = table[:, col["face_id"]]
    uniq = np.unique(ids)
    if uniq.size <= 1:
        return table
    valid = table[:, col["success"]] > 0.5
    best = max(uniq, key=lambda f: (int(np.sum(valid & (ids == f))), -f))  # ties: lowest id
    return table[ids == best]


def read_openface_csv(path: str | os.PathLike, columns: Iterable[str], min_confidence: float = 0.0) -> FeatureSequence:
    """Parse an OpenFace 2.0 sequence CSV into a FeatureSequence with ``columns`` (OpenFace names).

    Rows are sorted by ``timestamp`` (their times); ``mask`` is ``success == 1 and confidence >=
    min_confidence``; masked rows and non-finite values are 0. A header-only CSV gives an empty
    sequence. Raises ValueError (naming the file) for an empty file, ragged rows, non-numeric values
    or missing columns (all named).
    """
    path = Path(path)
    names = list(columns)
    header, rows = _read_table(path)
    col = {h: i for i, h in enumerate(header)}
    missing = [c for c in (*REQUIRED_META, *names) if c not in col]
    if missing:
        more = f" (+{len(missing) - 20} more)" if len(missing) > 20 else ""
        raise ValueError(f"{path}: missing OpenFace column(s) {missing[:20]}{more}; was it written by "
                         "FeatureExtraction with the flags these columns need "
                         f"({' '.join(output_flags(c for c in missing if c in _FLAG_OF))})?")
    if not rows:
        return FeatureSequence.empty(len(names), names)
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value ({e})") from None
    table = _main_face(table, col)
    table = table[np.argsort(table[:, col["timestamp"]], kind="stable")]
    mask = (table[:, col["success"]] > 0.5) & (table[:, col["confidence"]] >= float(min_confidence))
    values = np.nan_to_num(table[:, [col[c] for c in names]], nan=0.0, posinf=0.0, neginf=0.0)
    values[~mask] = 0.0
    return FeatureSequence(values, table[:, col["timestamp"]], mask, names)


def thin_to_rate(seq: FeatureSequence, fps: float) -> FeatureSequence:
    """At most one row per ``1/fps`` slot: of the rows nearest each ``k / fps`` instant, the nearest."""
    if fps <= 0 or seq.length == 0:
        return seq
    x = seq.times.astype(np.float64) * fps
    slot = np.floor(x + 0.5)
    order = np.lexsort((np.abs(x - slot), slot))  # by slot, then by distance to the slot's instant
    first = np.ones(order.size, bool)
    first[1:] = slot[order][1:] != slot[order][:-1]
    keep = np.sort(order[first])
    return FeatureSequence(seq.values[keep], seq.times[keep], seq.mask[keep], list(seq.names))


# ---- the extractors -------------------------------------------------------------------------------
class _OpenFaceBase(VisualExtractor):
    """Shared parameters, columns and spec of the two OpenFace extractors."""

    version: ClassVar[str] = "1"
    #: reads the media file itself (``extract_file``) instead of decoded frames
    needs_path: ClassVar[bool] = True
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "columns": DEFAULT_COLUMNS,
        "min_confidence": 0.0,
        "fps": 0.0,
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._columns = resolve_columns(self.params["columns"])
        if not isinstance(self.params["columns"], str):
            self.params["columns"] = ",".join(self._columns)
        if not 0.0 <= float(self.params["min_confidence"]) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.params['min_confidence']!r}")
        if float(self.params["fps"]) < 0:
            raise ValueError(f"fps must be >= 0 (0 = every frame OpenFace writes), got {self.params['fps']!r}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self._columns

    @property
    def dim(self) -> int:
        return len(self._columns)

    @property
    def frame_rate(self) -> float | None:
        """``fps`` when rows are thinned to it; None at the video's own rate (varies per file)."""
        fps = float(self.params["fps"])
        return fps if fps > 0 else None

    @property
    def spec(self) -> ExtractorSpec:
        return replace(super().spec, name=SPEC_NAME)

    def extract(self, frames: Iterable[Any]) -> FeatureSequence:
        raise NotImplementedError(f"the {self.name!r} extractor reads the media file: call extract_file(path) "
                                  "(the pipeline does so for extractors with needs_path = True)")

    def parse(self, csv_path: str | os.PathLike) -> FeatureSequence:
        """The selected columns of one OpenFace CSV, masked and thinned to ``fps``."""
        seq = read_openface_csv(csv_path, self._columns, float(self.params["min_confidence"]))
        return thin_to_rate(seq, float(self.params["fps"]))


@register_extractor
class OpenFaceExtractor(_OpenFaceBase):
    """Runs OpenFace 2.0's ``FeatureExtraction`` on a media file and parses its CSV.

    Parameters: ``columns`` (preset, groups or column list; see the module docstring),
    ``min_confidence`` (rows below it are masked), ``fps`` (0 = every video frame, else rows are
    thinned to this rate), ``binary`` (runtime: path or name of ``FeatureExtraction``; default
    ``$MSA_OPENFACE_BIN`` or ``FeatureExtraction`` on ``PATH``).
    """

    name: ClassVar[str] = "openface"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {**_OpenFaceBase.DEFAULTS, "binary": None}
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset({"binary"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._binary: str | None = None

    def _load(self) -> None:
        self._binary = find_binary(self.params["binary"])

    def command(self, path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
        """The ``FeatureExtraction`` command line for one file."""
        self.load()
        return [str(self._binary), "-f", str(path), "-out_dir", str(out_dir), *output_flags(self._columns)]

    def extract_file(self, path: str | os.PathLike) -> FeatureSequence:
        """Run the binary on ``path`` into a temporary folder and parse the CSV it writes."""
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="msa_openface_") as out_dir:
            cmd = self.command(path, out_dir)
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      errors="replace")
            except OSError as e:
                raise ExtractionError(path, "vision", f"cannot run {cmd[0]}: {e}") from None
            out = Path(out_dir)
            csvs = sorted(out.glob("*.csv"))
            target = out / f"{path.stem}.csv"
            found = target if target.is_file() else (csvs[0] if len(csvs) == 1 else None)
            if proc.returncode != 0 or found is None:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-ERROR_TAIL_LINES:])
                what = f"exit status {proc.returncode}" if proc.returncode else "no CSV written"
                raise ExtractionError(path, "vision", f"OpenFace FeatureExtraction failed ({what}): {tail}")
            try:
                return self.parse(found)
            except (OSError, ValueError) as e:  # the temporary CSV is gone once this returns: don't name it
                cause = str(e).replace(str(found), f"the CSV FeatureExtraction wrote for {path.name}")
                raise ExtractionError(path, "vision", cause) from None


def find_binary(binary: str | os.PathLike | None = None) -> str:
    """Absolute path of ``FeatureExtraction``: ``binary`` (a path or a name on PATH), else
    ``$MSA_OPENFACE_BIN``, else ``FeatureExtraction`` on PATH. Raises :class:`OpenFaceNotFoundError`."""
    wanted = str(binary) if binary else os.environ.get(BINARY_ENV) or BINARY_NAME
    found = shutil.which(wanted)
    if found is None:
        where = "is not an executable file" if os.sep in wanted else "was not found on PATH"
        raise OpenFaceNotFoundError(f"OpenFace's {wanted!r} {where}; {INSTALL_HINT}")
    return str(Path(found).resolve())


@register_extractor
class OpenFaceCSVExtractor(_OpenFaceBase):
    """Reads the OpenFace 2.0 CSV a user already has for each clip (no OpenFace run).

    Parameters: as ``openface`` (``columns``, ``min_confidence``, ``fps``), plus ``csv_dir``
    (runtime: folder of ``<clip name>.csv`` files; default: look next to each clip). See
    :meth:`find_csv` for where a clip's CSV is looked for.
    """

    name: ClassVar[str] = "openface_csv"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {**_OpenFaceBase.DEFAULTS, "csv_dir": None}
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset({"csv_dir"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        csv_dir = self.params["csv_dir"]
        if csv_dir is not None and not Path(csv_dir).expanduser().is_dir():
            raise ValueError(f"csv_dir {str(csv_dir)!r} is not a folder")

    def candidates(self, path: str | os.PathLike) -> list[Path]:
        """Where the CSV of ``path`` may be, in the order they are tried."""
        path = Path(path)
        name = f"{path.stem}.csv"
        if self.params["csv_dir"] is not None:
            root = Path(self.params["csv_dir"]).expanduser()
            return [root / name, root / path.parent.name / name]
        return [path.with_name(name), path.parent / "processed" / name]

    def find_csv(self, path: str | os.PathLike) -> Path:
        """The CSV of ``path``: the first existing candidate; ExtractionError naming them all otherwise."""
        tried = self.candidates(path)
        for c in tried:
            if c.is_file():
                return c
        raise ExtractionError(path, "vision", "no OpenFace CSV found (looked for "
                                              + ", ".join(str(c) for c in tried) + ")")

    def input_token(self, path: str | os.PathLike) -> str:
        """sha256 of the clip's CSV: extra cache-key input, so an edited CSV is re-read."""
        from ..cache import hash_file

        return hash_file(self.find_csv(path))

    def extract_file(self, path: str | os.PathLike) -> FeatureSequence:
        found = self.find_csv(path)
        try:
            return self.parse(found)
        except (OSError, ValueError) as e:
            raise ExtractionError(path, "vision", str(e)) from None
