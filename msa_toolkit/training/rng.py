"""Random number generators of a training run: seeding, and capturing/restoring their states.

:func:`seed_everything` is the one place a run seeds Python, numpy and torch. The resume state
(``last.pt``) stores :func:`rng_state` of every rank and the states of the train loader's
generators (:func:`loader_generators`), so a resumed run draws the same numbers as an
uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch

#: numpy's legacy global seed must fit in 32 bits
NUMPY_SEED_MODULUS = 2**32


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % NUMPY_SEED_MODULUS)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states, in types ``torch.load(weights_only=True)`` reads back (numpy's
    Mersenne-twister keys as a list of ints, not an array)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    st = {"python": random.getstate(), "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Mapping[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(st["python"])
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects a DataLoader shuffles with (loader, samplers)."""
    gens: list[torch.Generator] = []
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (loader, getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens
