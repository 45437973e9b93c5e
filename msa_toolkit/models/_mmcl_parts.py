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
    """Ring buffer of detached (state, action, mask, reward) transitions, one row per sample.

    Storage is plain tensors, deliberately *not* buffers: they stay out of checkpoints and out of
    DistributedDataParallel's per-step buffer broadcast (each rank keeps its own experience).
    They are allocated lazily on the first ``add`` (building a model costs no memory) on the
    device of the incoming transitions, and follow it if the model moves. When full, the oldest
    transitions are overwritten (first in, first out).
    """

    def __init__(self, capacity: int):
        super().__init__()
        if capacity < 1:
            raise ValueError("replay capacity must be >= 1")
        self.capacity = int(capacity)
        self.ptr = 0
        self.size = 0
        self.state = self.action = self.mask = self.reward = torch.empty(0)

    def __len__(self) -> int:
        return self.size

    def _allocate(self, state: torch.Tensor, action: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor) -> None:
        cap = self.capacity
        self.state = state.new_zeros((cap, *state.shape[1:]))
        self.action = action.new_zeros((cap, *action.shape[1:]))
        self.mask = mask.new_zeros((cap, *mask.shape[1:]))
        self.reward = reward.new_zeros((cap, *reward.shape[1:]))
        self.ptr = self.size = 0

    @torch.no_grad()
    def add(self, state: torch.Tensor, action: torch.Tensor, mask: torch.Tensor, reward: torch.Tensor) -> None:
        """Append a batch of transitions: state [N, ...], action [N, ...], mask [N, ...], reward [N]."""
        if self.state.numel() == 0 or self.state.shape[1:] != state.shape[1:] or self.state.dtype != state.dtype:
            self._allocate(state, action, mask, reward)
        elif self.state.device != state.device:
            self.state, self.action, self.mask, self.reward = (t.to(state.device) for t in
                                                               (self.state, self.action, self.mask, self.reward))
        n = state.shape[0]
        if n >= self.capacity:  # only the newest `capacity` rows survive
            state, action, mask, reward = state[-self.capacity:], action[-self.capacity:], mask[-self.capacity:], \
                reward[-self.capacity:]
            n = self.capacity
        idx = (torch.arange(n, device=self.state.device) + self.ptr) % self.capacity
        self.state[idx] = state.detach()
        self.action[idx] = action.detach().to(self.action.dtype)
        self.mask[idx] = mask
        self.reward[idx] = reward.detach().to(self.reward.dtype)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """n transitions drawn uniformly with replacement (torch's global RNG)."""
        if self.size == 0:
            raise RuntimeError("replay buffer is empty")
        idx = torch.randint(0, self.size, (n,), device=self.state.device)
        return self.state[idx], self.action[idx], self.mask[idx], self.reward[idx]


def modality_chunks(x: torch.Tensor, n: int = 3) -> Iterable[torch.Tensor]:
    """Split the concatenated step axis [B, n*S, ...] into n chunks [B, S, ...]."""
    return x.chunk(n, dim=1)
