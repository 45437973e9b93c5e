"""DataModule: the one object training code needs from a dataset.

    dm = DataModule("ds", batch_size=32)
    for batch in dm.train_loader():      # shuffled; DistributedSampler under torchrun
        ...
    dm.train_loader(bucket_by_length=True)   # batches of similar lengths (BucketBatchSampler)
    for batch in dm.loader("valid"):     # "dev" works too
        ...

Loaders yield :class:`~msa_toolkit.data.batch.Batch` objects (see
:mod:`msa_toolkit.data.collate`). ``max_lengths`` default to the longest train
sequence per modality, capped at :data:`DEFAULT_LENGTH_CAPS` (so one long clip
cannot blow up attention memory); explicit values override per modality.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sized

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from ..spec import MODALITIES, FeatureSpec
from .collate import Collator
from .native import MSADataset, SplitDataset, as_dataset

#: upper bound of the automatic truncation length per modality
DEFAULT_LENGTH_CAPS: dict[str, int] = {"text": 128, "audio": 1000, "vision": 500}


#: batches per pool of :class:`BucketBatchSampler`: samples are sorted by length within a pool
BUCKET_POOL_BATCHES = 32


def _dist_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar lengths, in a shuffled order (length bucketing).

    Each epoch the inner ``sampler``'s indices (a shuffled permutation, or a rank's shard from a
    :class:`DistributedSampler`) are cut into pools of ``pool_batches * batch_size``; each pool is
    sorted by ``lengths`` and cut into batches, and the batches of all pools are shuffled. So batch
    membership changes every epoch, every sample is seen once, and a batch is padded only to its own
    longest sample. Deterministic under the inner sampler's seed and ``generator``.
    """

    def __init__(self, sampler: Sampler[int] | Sized, lengths: np.ndarray, batch_size: int, drop_last: bool = False,
                 pool_batches: int = BUCKET_POOL_BATCHES, generator: torch.Generator | None = None,
                 seed: int = 0):
        # the per-epoch order of sample indices (RandomSampler, or DistributedSampler's rank shard)
        self.sampler = sampler
        # sort key per sample of the dataset (e.g. the total number of steps)
        self.lengths = np.asarray(lengths)
        # samples per batch
        self.batch_size = int(batch_size)
        # drop the last incomplete batch
        self.drop_last = bool(drop_last)
        # batches per sorted pool
        self.pool_batches = max(1, int(pool_batches))
        # shuffles the batch order (None: a generator seeded with ``seed`` + epoch)
        self.generator = generator
        # seed of the batch order when no generator is given
        self.seed = int(seed)
        # epoch of the batch order when no generator is given (set_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the inner sampler (a DistributedSampler reshuffles with it)."""
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _batches(self) -> list[list[int]]:
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        pool = self.pool_batches * self.batch_size
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            # the incomplete batch is the shortest one of the last pool
            batches = [b for b in batches if len(b) == self.batch_size]
        g = self.generator if self.generator is not None else torch.Generator().manual_seed(self.seed + self.epoch)
        return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class DataModule:
    """Loaders for the splits of one native dataset, sharing collation settings."""

    def __init__(self, dataset_or_path: MSADataset | str | os.PathLike, batch_size: int = 32,
                 max_lengths: Mapping[str, int | None] | None = None, normalize: bool = True,
                 num_workers: int = 0, seed: int = 0, drop_last: bool = False,
                 pin_memory: bool | None = None, length_caps: Mapping[str, int] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # the opened dataset
        self.dataset = as_dataset(dataset_or_path)
        # samples per batch (per process when distributed)
        self.batch_size = int(batch_size)
        # DataLoader worker processes
        self.num_workers = int(num_workers)
        # seed of the train shuffling (and of the DistributedSampler)
        self.seed = int(seed)
        # drop the last incomplete train batch
        self.drop_last = bool(drop_last)
        # pin host memory (default: when CUDA is available)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        # whether features are standardised with the train statistics
        self.normalize = bool(normalize)
        caps = {**DEFAULT_LENGTH_CAPS, **dict(length_caps or {})}
        self._max_lengths = self._default_max_lengths(caps)
        for m, v in dict(max_lengths or {}).items():
            if m not in MODALITIES:
                raise ValueError(f"max_lengths: unknown modality {m!r}; expected one of {MODALITIES}")
            self._max_lengths[m] = None if v is None else int(v)
        self.collator = Collator(dims=self.dims, max_lengths=dict(self._max_lengths),
                                 stats=self.dataset.stats if normalize else {})
        self._generator = torch.Generator().manual_seed(self.seed)

    # -- description -------------------------------------------------------------------
    @property
    def spec(self) -> FeatureSpec:
        return self.dataset.spec

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension per modality as it appears in batches (1 for absent modalities)."""
        return {m: max(d, 1) for m, d in self.spec.dims.items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities the dataset provides."""
        return self.spec.modalities

    @property
    def max_lengths(self) -> dict[str, int | None]:
        """Truncation length per modality (1 for absent modalities)."""
        return dict(self._max_lengths)

    @property
    def split_names(self) -> tuple[str, ...]:
        return self.dataset.splits

    @property
    def stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self.dataset.stats

    def split(self, name: str) -> SplitDataset:
        return self.dataset.split(name)

    def _default_max_lengths(self, caps: Mapping[str, int]) -> dict[str, int | None]:
        ref = "train" if "train" in self.dataset else self.dataset.splits[0]
        out: dict[str, int | None] = {}
        for m in MODALITIES:
            if not self.spec.has(m):
                out[m] = 1
                continue
            lens = self.dataset.split(ref).lengths(m)
            longest = int(lens.max()) if lens.size else 1
            out[m] = max(1, min(longest, int(caps.get(m, longest))))
        return out

    # -- loaders -----------------------------------------------------------------------
    def _loader(self, ds: SplitDataset, shuffle: bool, sampler: Any = None, batch_size: int | None = None,
                drop_last: bool = False, batch_sampler: Any = None) -> DataLoader:
        kw: dict[str, Any] = {}
        if self.num_workers > 0:
            kw["persistent_workers"] = False
            kw["prefetch_factor"] = 4
        if batch_sampler is not None:
            kw["batch_sampler"] = batch_sampler
        else:
            kw.update(batch_size=batch_size or self.batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, drop_last=drop_last,
                      generator=self._generator if (shuffle and sampler is None) else None)
        return DataLoader(ds, collate_fn=self.collator, num_workers=self.num_workers, pin_memory=self.pin_memory,
                          **kw)

    def sample_lengths(self, split: str = "train") -> np.ndarray:
        """Per sample, the steps it will have in a batch: lengths capped at ``max_lengths``, summed over modalities."""
        ds = self.dataset.split(split)
        total = np.zeros(len(ds), np.int64)
        for m in self.modalities:
            cap = self._max_lengths.get(m)
            lens = ds.lengths(m)
            total += np.minimum(lens, cap) if cap else lens
        return total

    def train_loader(self, distributed: bool = False, num_replicas: int | None = None,
                     rank: int | None = None, bucket_by_length: bool = False) -> DataLoader:
        """Shuffled loader over the train split.

        Uses a :class:`DistributedSampler` (seeded with ``seed``) when ``distributed``
        is True or ``torch.distributed`` is initialised; ``num_replicas``/``rank``
        default to the process group's. Call ``set_epoch(epoch)`` on ``loader.sampler``
        (or ``loader.batch_sampler`` with bucketing) each epoch in that case (the trainer does).
        ``bucket_by_length``: batches of similar lengths (:class:`BucketBatchSampler`; under DDP
        each rank buckets its own shard).
        """
        ds = self.dataset.split("train")
        if distributed or num_replicas is not None or _dist_initialized():
            if not _dist_initialized() and (num_replicas is None or rank is None):
                raise ValueError("a distributed train loader needs torch.distributed initialised (e.g. under "
                                 "torchrun) or explicit num_replicas and rank")
            sampler = DistributedSampler(ds, num_replicas=num_replicas, rank=rank, shuffle=True,
                                         seed=self.seed, drop_last=self.drop_last)
            if bucket_by_length:
                return self._loader(ds, False, batch_sampler=BucketBatchSampler(
                    sampler, self.sample_lengths(), self.batch_size, self.drop_last, seed=self.seed + sampler.rank))
            return self._loader(ds, shuffle=False, sampler=sampler, drop_last=self.drop_last)
        if bucket_by_length:
            inner = RandomSampler(ds, generator=self._generator)
            return self._loader(ds, False, batch_sampler=BucketBatchSampler(
                inner, self.sample_lengths(), self.batch_size, self.drop_last, generator=self._generator))
        return self._loader(ds, shuffle=True, drop_last=self.drop_last)

    def no_train_batch_reason(self, world_size: int = 1) -> str:
        """Why the train loader yields no batch: an empty split, or too few samples (per process) to fill
        one batch while ``drop_last`` drops the partial one."""
        n = len(self.dataset.split("train"))
        if n == 0 or not self.drop_last:
            return "the training split is empty"
        per = -(-n // max(1, world_size))
        where = f"{per} per process of {n}" if world_size > 1 else f"{n}"
        return (f"no training batch: {where} training samples fill no batch of {self.batch_size} and "
                f"trainer.drop_last=true (the reference recipes of MInD and MMCL set it) drops the partial one; "
                f"pass --set trainer.batch_size=N with N <= {per}, or --set trainer.drop_last=false")

    def loader(self, split: str, shuffle: bool = False, batch_size: int | None = None) -> DataLoader:
        """Loader over any split (``dev``/``val`` mean ``valid``), in order unless ``shuffle``."""
        return self._loader(self.dataset.split(split), shuffle=shuffle, batch_size=batch_size)

    def __repr__(self) -> str:
        return (f"DataModule({self.dataset!r}, batch_size={self.batch_size}, "
                f"max_lengths={self.max_lengths}, normalize={self.normalize})")


__all__ = ["DataModule", "BucketBatchSampler", "DEFAULT_LENGTH_CAPS", "BUCKET_POOL_BATCHES"]
