"""Non-finite feature values (NaN, +-inf) on the way into a dataset: replaced by 0 and counted.

``msa dataset import`` and ``msa dataset create`` pass every sample through :func:`clean_sample`;
the per-modality counts go into the command's summary and the dataset's provenance, so no value
is changed silently. (MMSA's own loader does the same for the ``-inf`` of its audio features.)
"""

from __future__ import annotations

from typing import MutableMapping

import numpy as np

from .native import Sample

#: what a non-finite feature value becomes
REPLACEMENT = 0.0


def clean_sample(sample: Sample, counts: MutableMapping[str, int]) -> Sample:
    """Replace NaN/inf feature values of ``sample`` in place by :data:`REPLACEMENT`; add their number per
    modality to ``counts``. Returns the sample."""
    for m, v in sample.features.items():
        x = np.asarray(v, dtype=np.float32)
        bad = ~np.isfinite(x)
        n = int(np.count_nonzero(bad))
        if n:
            x = np.where(bad, np.float32(REPLACEMENT), x)
            sample.features[m] = x
        counts[m] = counts.get(m, 0) + n
    return sample


def describe_counts(counts: MutableMapping[str, int]) -> str:
    """"text 0, audio 3, vision 0" (every modality seen, in order)."""
    return ", ".join(f"{m} {n}" for m, n in counts.items())


__all__ = ["clean_sample", "describe_counts", "REPLACEMENT"]
