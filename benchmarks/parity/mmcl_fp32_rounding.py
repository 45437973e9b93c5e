"""How large fp32 rounding is in MMCL's critic gradients: the toolkit alone, fp32 against float64.

    python benchmarks/parity/mmcl_fp32_rounding.py [--steps 2]

The fp32 rows of ``parity_mmcl.py`` compare the critic's gradients with the authors' code's; where the two
sides order their operations differently, those rows measure rounding. This script gives the scale to read
them against: the toolkit's MMCL at the MOSI preset (``common_block="attention"``, the critic's LayerNorm
swapped for BatchNorm1d as the parity script does, every dropout 0), Adam steps on one random batch of 128,
and every fp32 gradient compared with the same computation in float64, for the critic's input projection
computed whole (the reference's order: [s; a, ..., a] through one Linear) and split (the toolkit's,
``MMCLCritic.project_state``). Prints the worst (max abs difference, tensor, scale) per step and order.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch import nn

from msa_toolkit.data.batch import Batch
from msa_toolkit.models import create_model
from msa_toolkit.models._mmcl_parts import modality_chunks
from msa_toolkit.models.layers import masked_mean
from msa_toolkit.spec import MODALITIES


def critic_whole(critic, state, action, mask):
    """Q(s, a) with each modality's input projection applied to [s; a, ..., a] whole."""
    pooled = []
    for m, s, a, k in zip(MODALITIES, modality_chunks(state), modality_chunks(action), modality_chunks(mask)):
        x = torch.cat([s, a.expand(*a.shape[:-1], critic.repeat)], dim=-1)
        pooled.append(masked_mean(critic.encoders[m](x, k), k))
    return critic.proj(torch.cat(pooled, dim=-1)).squeeze(-1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args(argv)
    cast = torch.Tensor.float  # the model casts its inputs with .float(): keep float64 ones as they are
    torch.Tensor.float = lambda self, *args, **kw: self if self.dtype == torch.float64 else cast(self, *args, **kw)
    torch.manual_seed(0)
    base = create_model("mmcl", "mosi", common_block="attention", dropout=0.0)
    base.objective.critic.proj[3] = nn.BatchNorm1d(base.config.d_model)
    c, B = base.config, a.batch
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(B, 50, d, generator=g, dtype=torch.float64)
         for m, d in zip(MODALITIES, (c.text_dim, c.audio_dim, c.vision_dim))}
    masks = {f"{m}_mask": torch.ones(B, 50, dtype=torch.bool) for m in MODALITIES}
    label = torch.zeros(B, dtype=torch.float64).uniform_(-3, 3, generator=g)

    def grads(dtype: torch.dtype, whole: bool) -> list[dict[str, torch.Tensor]]:
        torch.manual_seed(5)
        m = copy.deepcopy(base).to(dtype).train()
        if whole:
            crit = m.objective.critic
            crit.forward = lambda s, act, k, state_proj=None: critic_whole(crit, s, act, k)
        opt = torch.optim.Adam(m.parameters(), lr=c.lr)
        b = Batch(label=label.to(dtype), **{k: v.to(dtype) for k, v in x.items()}, **masks)
        out = []
        for _ in range(a.steps):
            opt.zero_grad()
            m.objective(m(b), b).total.backward()
            out.append({n: p.grad.double().clone() for n, p in m.named_parameters() if p.grad is not None})
            opt.step()
            m.objective.after_step(m)
        return out

    def worst(got, want):
        return max(((got[n] - want[n]).abs().max().item(), n, want[n].abs().max().item()) for n in want)

    for whole in (True, False):
        exact, single = grads(torch.float64, whole), grads(torch.float32, whole)
        for step, (s32, s64) in enumerate(zip(single, exact)):
            d, name, scale = worst(s32, s64)
            print(f"{'whole' if whole else 'split'} step {step}: fp32 vs float64 {d:.1e} ({name}, scale {scale:.2g})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
