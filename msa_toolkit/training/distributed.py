"""PyTorch distributed set-up for training launched by ``torchrun``.

``torchrun --nproc_per_node N -m msa_toolkit.cli.main train ...`` (or ``torchrun
$(which msa) train ...``) sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; :func:`setup` then initialises the default process group — NCCL
when the process has a CUDA device, gloo on CPU — and pins each process to
``cuda:LOCAL_RANK``. Without those variables everything is single-process and
every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    # global rank of this process (0 when not distributed)
    rank: int = 0
    # number of processes (1 when not distributed)
    world_size: int = 1
    # rank within the node; selects the CUDA device
    local_rank: int = 0
    # the device this process trains on
    device: torch.device = torch.device("cpu")
    # whether this call initialised the process group (and so must destroy it)
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> cuda:LOCAL_RANK when CUDA is available, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    from ..errors import MSAError
    from .config import check_device

    device = check_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MSAError(f"device {device!r} requested but CUDA is not available (use --device cpu or auto)")
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def setup(device: str = "auto", backend: str | None = None) -> DistContext:
    """Initialise the process group if launched by torchrun; otherwise a single-process context."""
    if not launched_by_torchrun():
        return DistContext(device=resolve_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if dev.type == "cuda" else "gloo"), rank=rank, world_size=world)
        owns = True
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def current(device: torch.device) -> DistContext:
    """Context of an already initialised process group (or single-process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                           local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())), device=device)
    return DistContext(device=device)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when single-process)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any, src: int = 0) -> Any:
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Mean of a dict of floats over ranks (same keys on every rank), in the order of ``values``."""
    if not ctx.distributed or not values:
        return dict(values)
    keys = sorted(values)  # one order on every rank for the reduction
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    t /= ctx.world_size
    mean = dict(zip(keys, t.tolist()))
    return {k: float(mean[k]) for k in values}
