"""Collation of :class:`~msa_toolkit.data.native.Sample` lists into the shared :class:`Batch`.

Per modality: optional normalisation with the train statistics (``(x - mean) / std``
on valid steps only; padding stays 0), truncation to a maximum length (keeping
the start), zero padding to the longest sequence in the batch, and the mask
``valid step AND stored step mask`` (e.g. False on frames with no face). A
modality the FeatureSpec lacks, or that no sample of the batch has, follows the
absent-modality convention of :mod:`msa_toolkit.data.batch`: zeros ``[B, 1, D]``
with an all-False mask. ``text_tokens`` holds the token ids (``text.input_ids``)
when every sample has them, padded with 0 to the text length of the batch (or,
when tokens and text rows differ in number, e.g. word-pooled text, to the
longest token sequence, capped at the text maximum length). The unimodal labels ``label_T/A/V`` are float
tensors when every sample has them, else None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ..spec import MODALITIES
from .batch import UNIMODAL_TASKS, Batch, pad_sequences
from .native import Sample

#: the array holding token ids of the text encoder, turned into Batch.text_tokens
TOKEN_IDS = "text.input_ids"


@dataclass(frozen=True)
class Collator:
    """Callable ``list[Sample] -> Batch`` (picklable, so DataLoader workers can use it)."""

    # feature dimension per modality ("text", "audio", "vision"); 1 for modalities the data lacks
    dims: Mapping[str, int]
    # maximum steps per modality (longer sequences are truncated); a missing key or None = no limit
    max_lengths: Mapping[str, int | None] = field(default_factory=dict)
    # per modality (mean [D], std [D]) used to normalise valid steps; empty = no normalisation
    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # which end to drop when truncating: "end" keeps the first steps, "start" the last ones
    truncate: str = "end"
    # whether to emit Batch.text_tokens when every sample has token ids
    with_tokens: bool = True

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        return collate_samples(samples, self.dims, self.max_lengths, self.stats, self.truncate, self.with_tokens)


def _normalise(values: np.ndarray, mask: np.ndarray | None, stat: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    if stat is not None and v.shape[0]:
        mean, std = stat
        v = (v - mean) / std
    if mask is not None and not mask.all():
        v = v * mask[:, None]
    return v


def collate_samples(samples: Sequence[Sample], dims: Mapping[str, int],
                    max_lengths: Mapping[str, int | None] | None = None,
                    stats: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    truncate: str = "end", with_tokens: bool = True) -> Batch:
    """Pad, mask, truncate and (optionally) normalise ``samples`` into a :class:`Batch`."""
    if truncate not in ("end", "start"):
        raise ValueError(f"truncate must be 'end' or 'start', got {truncate!r}")
    max_lengths = max_lengths or {}
    stats = stats or {}
    kw: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        d = max(int(dims.get(m, 0) or 0), 1)
        seqs: list[np.ndarray | None] = []
        step_masks: list[np.ndarray | None] = []
        for s in samples:
            v = s.features.get(m)
            if v is None or v.shape[0] == 0:
                seqs.append(None)
                step_masks.append(None)
                continue
            mk = s.masks.get(m)
            mk = None if mk is None else np.asarray(mk, bool)
            seqs.append(_normalise(v, mk, stats.get(m)))
            step_masks.append(mk)
        values, mask = pad_sequences(seqs, d, max_lengths.get(m), truncate)
        L = values.shape[1]
        for i, mk in enumerate(step_masks):
            if mk is None or mk.all():
                continue
            mk = mk[:L] if truncate == "end" else mk[-L:]
            mask[i, : mk.shape[0]] &= torch.from_numpy(np.ascontiguousarray(mk))
        kw[m] = values
        kw[f"{m}_mask"] = mask
    tokens = None
    if with_tokens and samples and all(TOKEN_IDS in s.arrays for s in samples):
        # tokens aligned with text rows (token-level features) share the text length; otherwise
        # (e.g. word-pooled text features) they are padded to their own longest, capped like text
        aligned = all(s.features.get("text") is not None and len(s.arrays[TOKEN_IDS]) == s.features["text"].shape[0]
                      for s in samples)
        L = kw["text"].shape[1] if aligned else \
            max(1, min(max(len(s.arrays[TOKEN_IDS]) for s in samples), max_lengths.get("text") or 1 << 30))
        tokens = torch.zeros(len(samples), L, dtype=torch.long)
        for i, s in enumerate(samples):
            ids = np.asarray(s.arrays[TOKEN_IDS], np.int64)
            ids = ids[:L] if truncate == "end" else ids[-L:]
            tokens[i, : ids.shape[0]] = torch.from_numpy(np.ascontiguousarray(ids))
    label = torch.tensor([s.label for s in samples], dtype=torch.float32)
    return Batch(label=label, text_tokens=tokens, ids=[s.id for s in samples], **kw, **unimodal_labels(samples))


def unimodal_labels(samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
    """``{"label_T": float [B], ...}`` for each unimodal label every sample has (a partial one is left out)."""
    out = {}
    for t in UNIMODAL_TASKS:
        values = [getattr(s, f"label_{t}") for s in samples]
        if samples and all(v is not None for v in values):
            out[f"label_{t}"] = torch.tensor(values, dtype=torch.float32)
    return out


__all__ = ["Collator", "collate_samples", "TOKEN_IDS"]
