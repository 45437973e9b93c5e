"""A synthetic native dataset whose label needs text AND audio AND vision.

Each sample draws one latent score per modality, ``z_m ~ N(0, 1)``, independent
across modalities. Its sequence of that modality has random length in
``[ceil(L/2), L]`` with rows ``x_t = z_m * w_m + noise`` (``w_m`` a fixed random
unit direction per modality), so the latent is recoverable from any one
modality by mean pooling. The label is

    label = clip(1.5 * (c_t z_t + c_a z_a + c_v z_v) / ||c|| + eps, -3, 3)

with ``c_t = text_weight`` and ``c_a = c_v = (1 - text_weight) / 2`` over the
modalities present, ``eps ~ N(0, label_noise)``. A text-only model can explain
at most ``c_t^2 / ||c||^2`` of the label variance (2/3 with the default
weight 0.5), so fusion measurably beats text only. Used by tests and benchmarks.
"""

from __future__ import annotations

import math
import os
from typing import Iterator, Sequence

import numpy as np

from ..spec import MODALITIES, ExtractorSpec, FeatureSpec
from .native import MSADataset, Sample, write_dataset
from .batch import TASK_MODALITY


def synthetic_spec(dims: Sequence[int] = (16, 8, 8), modalities: Sequence[str] = MODALITIES,
                   seed: int = 0) -> FeatureSpec:
    """The FeatureSpec of a synthetic dataset (origin ``{"source": "synthetic"}``)."""
    ex = tuple(
        ExtractorSpec(name=f"synthetic_{m}", modality=m, version="1", params={"seed": seed}, dim=int(d))
        for m, d in zip(MODALITIES, dims) if m in modalities
    )
    return FeatureSpec(extractors=ex, origin={"source": "synthetic"})


def make_synthetic_dataset(out_dir: str | os.PathLike, n_train: int = 256, n_valid: int = 64, n_test: int = 64,
                           dims: Sequence[int] = (16, 8, 8), lengths: Sequence[int] = (12, 20, 16),
                           text_weight: float = 0.5, seed: int = 0, modalities: Sequence[str] = MODALITIES,
                           noise: float = 0.5, label_noise: float = 0.1, with_tokens: bool = False,
                           vocab_size: int = 1000, overwrite: bool = True, unimodal_labels: bool = False) -> MSADataset:
    """Write a synthetic native dataset to ``out_dir`` and return it opened (see module docstring).

    ``unimodal_labels``: each sample also gets ``label_T/A/V`` = clip(1.5 · z_m + label noise, -3, 3), what its
    modality alone says (for multi-task models), drawn from their own generator so the rest is unchanged."""
    bad = [m for m in modalities if m not in MODALITIES]
    modalities = tuple(m for m in MODALITIES if m in modalities)
    if bad or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {bad or 'none'}")
    if not 0.0 <= text_weight <= 1.0:
        raise ValueError(f"text_weight must be in [0, 1], got {text_weight}")
    rng = np.random.default_rng(seed)
    dim = dict(zip(MODALITIES, (int(d) for d in dims)))
    maxlen = dict(zip(MODALITIES, (int(L) for L in lengths)))
    dirs = {}
    for m in MODALITIES:
        w = rng.standard_normal(dim[m])
        dirs[m] = (w / np.linalg.norm(w)).astype(np.float32)
    coef = {"text": text_weight, "audio": (1 - text_weight) / 2, "vision": (1 - text_weight) / 2}
    norm = math.sqrt(sum(coef[m] ** 2 for m in modalities)) or 1.0

    def gen(split: str, n: int, split_seed: int) -> Iterator[Sample]:
        r = np.random.default_rng([seed, split_seed])
        r_uni = np.random.default_rng([seed, split_seed, 1])
        for i in range(n):
            z = {m: float(r.standard_normal()) for m in MODALITIES}
            feats = {}
            for m in modalities:
                L = int(r.integers(math.ceil(maxlen[m] / 2), maxlen[m] + 1))
                x = z[m] * dirs[m][None, :] + noise * r.standard_normal((L, dim[m])).astype(np.float32)
                feats[m] = x.astype(np.float32)
            score = sum(coef[m] * z[m] for m in modalities) / norm
            label = float(np.clip(1.5 * score + label_noise * r.standard_normal(), -3.0, 3.0))
            arrays = {}
            if with_tokens and "text" in feats:
                arrays["text.input_ids"] = r.integers(1, vocab_size, feats["text"].shape[0]).astype(np.int64)
                arrays["text.attention_mask"] = np.ones(feats["text"].shape[0], np.int64)
            vid = f"{split}{i // 4:04d}"
            uni = {f"label_{t}": float(np.clip(1.5 * z[m] + label_noise * r_uni.standard_normal(), -3.0, 3.0))
                   for t, m in TASK_MODALITY.items()} if unimodal_labels else {}
            yield Sample(id=f"{vid}_{i % 4}", label=label, features=feats, arrays=arrays,
                         video_id=vid, clip_id=str(i % 4), **uni,
                         annotation="Positive" if label > 0 else ("Negative" if label < 0 else "Neutral"))

    spec = synthetic_spec(dims, modalities, seed)
    splits = {"train": gen("train", n_train, 1), "valid": gen("valid", n_valid, 2), "test": gen("test", n_test, 3)}
    params = {"n_train": n_train, "n_valid": n_valid, "n_test": n_test, "dims": list(dims), "lengths": list(lengths),
              "text_weight": text_weight, "seed": seed, "modalities": list(modalities), "noise": noise,
              "label_noise": label_noise, **({"unimodal_labels": True} if unimodal_labels else {})}
    return write_dataset(out_dir, spec, {k: v for k, v in splits.items()},
                         provenance={"source": "synthetic", "params": params}, overwrite=overwrite)


__all__ = ["make_synthetic_dataset", "synthetic_spec"]
