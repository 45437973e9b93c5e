"""Parts private to the MMCL model: grid resampling, the authors' common block, target copies, the replay buffer.

Attention, transformer layers and positions come from :mod:`msa_toolkit.layers`
(MMCL and MInD both use :class:`~msa_toolkit.layers.EncoderLayer`); what
is here exists for MMCL's decoupling and its actor-critic objective. Everything
here is mask-aware (bool masks, True = valid) and returns finite values for
all-False masks (absent modality) and length-1 sequences.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..layers import MultiHeadAttention

# ----------------------------------------------------------------------------- time grid


def resample_to_grid(x: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive average pooling of each row's *valid* steps onto a fixed grid of ``length`` slots.

    x [B, T, D], mask bool [B, T] -> (y [B, length, D], slot_mask bool [B, length]).
    Row b with n valid steps (taken in order, wherever they are) gives slot j the mean of the valid
    steps with rank in [floor(j n / length), ceil((j + 1) n / length)): the identity when
    n == length, repetition when n < length, averaging when n > length. A row with no valid step
    gives zeros and an all-False slot mask; any other row gives an all-True slot mask.
    """
    B, T, _ = x.shape
    n = mask.sum(dim=1)  # [B]
    rank = mask.long().cumsum(dim=1) - 1  # [B, T]
    j = torch.arange(length, device=x.device)
    start = (j[None, :] * n[:, None]) // length  # [B, S]
    end = ((j[None, :] + 1) * n[:, None] + length - 1) // length
    r = rank[:, None, :]  # [B, 1, T]
    w = (r >= start[..., None]) & (r < end[..., None]) & mask[:, None, :]  # [B, S, T]
    w = w.to(x.dtype)
    y = torch.bmm(w, x) / w.sum(dim=-1, keepdim=True).clamp_min(1.0)
    slot_mask = (n > 0)[:, None].expand(B, length)
    return y, slot_mask


# ----------------------------------------------------------------------------- the authors' common block


class AttentionOnlyBlock(MultiHeadAttention):
    """The common-feature block of the authors' code (``Self_Attention`` in smwanghhh/MMCL ``network.py``).

    ``c = attention(x)`` with q, k, v from the fused ``qkv`` Linear(dim, 3 dim), then
    ``LayerNorm(c + to_out(c))``: the ``to_out`` Linear(dim, dim) is a residual refinement of the context, not an
    output projection, and there is no feed-forward and no residual from the input (the paper's block,
    :class:`~msa_toolkit.layers.EncoderLayer`, has both). ``dropout`` is the attention-probability
    dropout. ``forward(x [B, L, D], mask [B, L]) -> [B, L, D]``; padded steps are zeroed on output (the
    reference has no padding: its inputs are word-aligned of one length).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__(dim, heads, dropout=dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.attend(*self.project(x, x, x), mask)
        out = self.norm(c + self.to_out(c))
        return out * mask.unsqueeze(-1).to(out.dtype)


# ----------------------------------------------------------------------------- target networks


def _buffer_name(param_name: str) -> str:
    return param_name.replace(".", "__")


class TargetCopy(nn.Module):
    """A frozen copy of another module's parameters, held as buffers (never seen by an optimiser).

    ``params()`` maps the source's parameter names to the copies, ready for
    ``torch.func.functional_call(source, copy.params(), args)``; ``soft_update(source, tau)``
    applies ``target <- (1 - tau) * target + tau * source`` in place.
    """

    def __init__(self, source: nn.Module):
        super().__init__()
        self._names = [n for n, _ in source.named_parameters()]
        for n, p in source.named_parameters():
            self.register_buffer(_buffer_name(n), p.detach().clone())

    def params(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, _buffer_name(n)) for n in self._names}

    @torch.no_grad()
    def soft_update(self, source: nn.Module, tau: float) -> None:
        for n, p in source.named_parameters():
            getattr(self, _buffer_name(n)).mul_(1.0 - tau).add_(p.detach(), alpha=tau)


def frozen_params(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters detached: call it through functional_call to pass gradients to its
    inputs while keeping its own weights out of the backward pass."""
    return {n: p.detach() for n, p in module.named_parameters()}


# ----------------------------------------------------------------------------- replay buffer


class ReplayBuffer(nn.Module):
    """Replay buffer of detached (state, action, mask, reward) transitions, one row per sample, with the
    authors' policy (MMCL ``utils.ReplayBuffer``): a batch that would bring the buffer to ``capacity`` or beyond
    first drops the oldest half of what it holds, then is appended; ``sample(n)`` draws n distinct
    transitions uniformly (without replacement), or returns every transition when it holds fewer than n.

    Storage is plain tensors, deliberately *not* buffers: they stay out of checkpoints and out of
    DistributedDataParallel's per-step buffer broadcast (each rank keeps its own experience).
    They are allocated lazily on the first ``add`` (building a model costs no memory) on the
    device of the incoming transitions, and follow it if the model moves. Rows ``[0, size)`` hold the
    transitions oldest first; the storage grows past ``capacity`` only when a halved buffer plus one batch
    needs it (as the reference's list does).
    """

    def __init__(self, capacity: int):
        super().__init__()
        if capacity < 1:
            raise ValueError("replay capacity must be >= 1")
        self.capacity = int(capacity)
        self.size = 0
        self.state = self.action = self.mask = self.reward = torch.empty(0)

    def __len__(self) -> int:
        return self.size

    def _storage(self) -> tuple[torch.Tensor, ...]:
        return self.state, self.action, self.mask, self.reward

    def _reserve(self, rows: int, like: tuple[torch.Tensor, ...]) -> None:
        """Storage of at least ``rows`` rows shaped, typed and placed as ``like`` (kept rows copied over)."""
        old = self._storage()
        fits = all(o.dim() == t.dim() and o.shape[1:] == t.shape[1:] and o.dtype == t.dtype
                   for o, t in zip(old, like)) and old[0].numel() > 0
        if not fits:
            self.size = 0
        if fits and old[0].shape[0] >= rows and old[0].device == like[0].device:
            return
        new = tuple(t.new_zeros((max(rows, self.capacity), *t.shape[1:])) for t in like)
        for o, n in zip(old if fits else (), new):
            n[:self.size] = o[:self.size].to(n.device)
        self.state, self.action, self.mask, self.reward = new

    @torch.no_grad()
    def add(self, state: torch.Tensor, action: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor) -> None:
        """Append a batch of transitions: state [N, ...], action [N, ...], mask [N, ...], reward [N]."""
        batch = (state.detach(), action.detach().float(), mask, reward.detach().float())
        n = state.shape[0]
        self._reserve(0, batch)
        if self.size + n >= self.capacity:  # drop the oldest half (the reference's `del buffer[:len // 2]`)
            drop = self.size // 2
            for t in self._storage():
                t[:self.size - drop] = t[drop:self.size].clone()
            self.size -= drop
        self._reserve(self.size + n, batch)
        for t, rows in zip(self._storage(), batch):
            t[self.size:self.size + n] = rows
        self.size += n

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """n distinct transitions drawn uniformly (torch's global RNG); all of them when fewer than n are held."""
        if self.size == 0:
            raise RuntimeError("replay buffer is empty")
        idx = (torch.arange(self.size, device=self.state.device) if self.size <= n
               else torch.randperm(self.size, device=self.state.device)[:n])
        return self.state[idx], self.action[idx], self.mask[idx], self.reward[idx]


def modality_chunks(x: torch.Tensor, n: int = 3) -> Iterable[torch.Tensor]:
    """Split the concatenated step axis [B, n*S, ...] into n chunks [B, S, ...]."""
    return x.chunk(n, dim=1)
