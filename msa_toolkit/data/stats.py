"""Normalisation statistics of a dataset: per-column mean and std over the valid, finite rows of the
statistics split (train), accumulated while the split is written (:func:`~.native.write_dataset`)."""

from __future__ import annotations

from typing import Any

import numpy as np


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
        std[std < 1e-6] = 1.0
        return {"count": int(self.n), "mean": mean.tolist(), "std": std.tolist()}


__all__ = ["StatsAccumulator"]
