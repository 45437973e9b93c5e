"""Batch: the one padded input every model takes.

Convention for an absent modality (e.g. a text-only dataset): its tensor is
zeros of shape ``[B, 1, D]`` and its mask is all False. ``D`` is the modality's
dim from the FeatureSpec, or 1 when the spec has no extractor for it. Models
must produce finite outputs and losses for such inputs.

Unimodal labels (CH-SIMS style, :data:`UNIMODAL_TASKS`): ``label_T``, ``label_A``, ``label_V`` are float [B]
when every sample of the batch has them (the dataset stores them, e.g. imported from an MMSA SIMS pickle's
``regression_labels_T/A/V``), else None. Multi-task models train on them; a model that needs them says so with
``needs_unimodal_labels`` and a dataset without them is refused before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import numpy as np
import torch

from ..spec import MODALITIES

#: the unimodal tasks of multi-task datasets (CH-SIMS): Batch field ``label_<task>``, one per modality
UNIMODAL_TASKS = ("T", "A", "V")
#: modality of each unimodal task
TASK_MODALITY = {"T": "text", "A": "audio", "V": "vision"}


@dataclass
class Batch:
    """Padded multimodal batch; masks are True on valid steps."""

    # float [B, Lt, Dt] text features (token-level hidden states)
    text: torch.Tensor
    # bool [B, Lt]
    text_mask: torch.Tensor
    # float [B, La, Da] acoustic features
    audio: torch.Tensor
    # bool [B, La]
    audio_mask: torch.Tensor
    # float [B, Lv, Dv] visual features
    vision: torch.Tensor
    # bool [B, Lv]
    vision_mask: torch.Tensor
    # float [B] regression labels (zeros at inference time)
    label: torch.Tensor
    # long [B, Lt] token ids for models that fine-tune the text encoder (None when not stored)
    text_tokens: torch.Tensor | None = None
    # sample ids, len B (not moved to devices)
    ids: list[str] = field(default_factory=list)
    # float [B] unimodal labels (text / audio / vision), None when the dataset has none
    label_T: torch.Tensor | None = None
    label_A: torch.Tensor | None = None
    label_V: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        return Batch(**kw)

    @property
    def size(self) -> int:
        return int(self.label.shape[0])

    def unimodal_label(self, task: str) -> torch.Tensor | None:
        """float [B] label of one unimodal task ("T", "A", "V"), None when the batch has none."""
        if task not in UNIMODAL_TASKS:
            raise ValueError(f"unknown unimodal task {task!r}; expected one of {UNIMODAL_TASKS}")
        return getattr(self, f"label_{task}")

    def features(self, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, mask) of one modality by name."""
        return getattr(self, modality), getattr(self, f"{modality}_mask")

    def present(self, modality: str) -> torch.Tensor:
        """bool [B]: whether each sample has at least one valid step of ``modality``."""
        return getattr(self, f"{modality}_mask").any(dim=1)

    def drop(self, *modalities: str) -> "Batch":
        """A copy with the named modalities zeroed and fully masked (modality ablation)."""
        kw = {}
        for m in modalities:
            if m not in MODALITIES:
                raise ValueError(f"unknown modality {m!r}; expected one of {MODALITIES}")
            v, mask = self.features(m)
            kw[m] = torch.zeros_like(v)
            kw[f"{m}_mask"] = torch.zeros_like(mask)
        return replace(self, **kw)


def pad_sequences(seqs: Sequence[np.ndarray | None], dim: int, max_len: int | None = None,
                  truncate: str = "end") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a list of [T_i, D] arrays (None = absent) into ([B, L, D], mask [B, L]).

    ``max_len`` truncates longer sequences (keeping the start when ``truncate='end'``,
    the end when ``'start'``). An all-absent or all-empty list gives L = 1 with an all-False mask.
    """
    lengths = [0 if s is None else int(s.shape[0]) for s in seqs]
    longest = max(lengths, default=0)
    L = max(1, min(longest, max_len) if max_len else longest)
    out = torch.zeros(len(seqs), L, max(dim, 1), dtype=torch.float32)
    mask = torch.zeros(len(seqs), L, dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s is None or s.shape[0] == 0:
            continue
        s = np.asarray(s, dtype=np.float32)
        if s.shape[0] > L:
            s = s[:L] if truncate == "end" else s[-L:]
        n = s.shape[0]
        out[i, :n, : s.shape[1]] = torch.from_numpy(np.ascontiguousarray(s))
        mask[i, :n] = True
    return out, mask


def synthetic_batch(batch_size: int = 4, lengths: tuple[int, int, int] = (6, 9, 7),
                    dims: tuple[int, int, int] = (16, 5, 7), seed: int = 0,
                    with_tokens: bool = False, vocab_size: int = 100, unimodal: bool = True) -> Batch:
    """A random, partially padded Batch for tests and benchmarks; ``unimodal``: with random label_T/A/V in [-1, 1]
    (drawn last, so the other tensors do not depend on it)."""
    g = torch.Generator().manual_seed(seed)
    kw: dict[str, torch.Tensor] = {}
    for m, L, D in zip(MODALITIES, lengths, dims):
        kw[m] = torch.randn(batch_size, L, D, generator=g)
        valid = torch.randint(1, L + 1, (batch_size,), generator=g)
        valid[0] = L
        kw[f"{m}_mask"] = torch.arange(L)[None, :] < valid[:, None]
        kw[m] = kw[m] * kw[f"{m}_mask"].unsqueeze(-1)
    label = torch.empty(batch_size).uniform_(-3, 3, generator=g)
    tokens = torch.randint(1, vocab_size, (batch_size, lengths[0]), generator=g) if with_tokens else None
    uni = {f"label_{t}": torch.empty(batch_size).uniform_(-1, 1, generator=g) for t in UNIMODAL_TASKS} \
        if unimodal else {}
    return Batch(label=label, text_tokens=tokens, ids=[f"s{i}" for i in range(batch_size)], **kw, **uni)
