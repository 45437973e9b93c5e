"""Normalisation statistics of a dataset: per-column mean and std over the valid, finite rows of the
statistics split (train), accumulated while the split is written (:func:`~.native.write_dataset`).

Stored statistics (a manifest's ``stats``, a checkpoint's ``normalization``) are checked before use
(:func:`usable_stats`): a std that is null, not finite, negative, zero or below :data:`MIN_STD`, a mean
that is null or not finite, a value beyond float32 or a list whose length is not the feature dim would
turn ``(x - mean) / std`` into inf/NaN features (and numpy RuntimeWarnings). :func:`stats_problems`
names each one; ``msa dataset validate`` lists them.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import DatasetError

#: the smallest std a column may have (the accumulator writes 1.0 for flatter columns)
MIN_STD = 1e-6
_F32_MAX = float(np.finfo(np.float32).max)


class StatsAccumulator:
    """Per-column mean/std over valid, finite rows (float64 sums)."""

    def __init__(self, dim: int):
        self.n = 0
        self.s = np.zeros(dim, np.float64)
        self.ss = np.zeros(dim, np.float64)

    def add(self, values: np.ndarray, mask: np.ndarray) -> None:
        rows = values[mask] if mask is not None else values
        if rows.size:
            rows = rows[np.isfinite(rows).all(axis=1)].astype(np.float64)
            self.n += rows.shape[0]
            self.s += rows.sum(0)
            self.ss += (rows * rows).sum(0)

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            return {"count": 0, "mean": [0.0] * len(self.s), "std": [1.0] * len(self.s)}
        mean = self.s / self.n
        var = np.maximum(self.ss / self.n - mean * mean, 0.0)
        std = np.sqrt(var)
        std[std < MIN_STD] = 1.0
        return {"count": int(self.n), "mean": mean.tolist(), "std": std.tolist()}



def _columns(mask: np.ndarray) -> str:
    cols = np.nonzero(mask)[0].tolist()
    return ("columns " if len(cols) > 1 else "column ") + ", ".join(map(str, cols[:8])) + (", ..." if len(cols) > 8 else "")


def stats_problems(stats: Mapping[str, Any], dims: Mapping[str, int]) -> list[str]:
    """Why stored statistics (``{modality: {"mean": [...], "std": [...]}}``; other entries such as
    ``"split"`` are skipped) cannot normalise features of ``dims``: one line per modality and key."""
    out: list[str] = []
    for m, s in stats.items():
        if not isinstance(s, Mapping) or "mean" not in s:
            continue
        for key in ("mean", "std"):
            try:
                a = np.asarray(s.get(key), dtype=np.float64)
            except (TypeError, ValueError):
                out.append(f"{m}: {key} is not a list of numbers")
                continue
            if a.ndim != 1 or (m in dims and a.shape[0] != dims[m]):
                n = a.shape[0] if a.ndim == 1 else a.size
                out.append(f"{m}: {key} has {n} values for {dims.get(m, '?')} feature columns")
                continue
            bad = ~np.isfinite(a) | (np.abs(np.nan_to_num(a, nan=0.0)) > _F32_MAX)
            if bad.any():
                big = a[np.isfinite(a) & bad]
                out.append(f"{m}: {key} is null or not finite in {_columns(bad)}"
                           + (f" ({big[0]:g} overflows float32)" if big.size else ""))
            if key == "std":
                if (a < 0).any():
                    out.append(f"{m}: std is negative in {_columns(a < 0)}")
                low = (a >= 0) & (a < MIN_STD)
                if low.any():
                    out.append(f"{m}: std is zero or below {MIN_STD:g} in {_columns(low)}")
    return out


#: what to do about a dataset's unusable statistics (a checkpoint's: retrain)
DATASET_FIX = "msa dataset validate lists them; write the dataset again, or train with trainer.normalize=false"
CHECKPOINT_FIX = "the checkpoint was trained with them; train again on a dataset msa dataset validate accepts"


def usable_stats(stats: Mapping[str, Any], dims: Mapping[str, int], where: Any,
                 fix: str = DATASET_FIX) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{modality: (mean, std)}`` float32 arrays of stored statistics; a :class:`DatasetError` naming
    ``where``, every problem (:func:`stats_problems`) and ``fix`` when they cannot normalise."""
    problems = stats_problems(stats, dims)
    if problems:
        raise DatasetError(f"{where}: normalisation statistics cannot be used: {'; '.join(problems)} ({fix})")
    return {m: (np.asarray(s["mean"], np.float32), np.asarray(s["std"], np.float32))
            for m, s in stats.items() if isinstance(s, Mapping) and "mean" in s}


__all__ = ["MIN_STD", "StatsAccumulator", "stats_problems", "usable_stats", "DATASET_FIX", "CHECKPOINT_FIX"]
