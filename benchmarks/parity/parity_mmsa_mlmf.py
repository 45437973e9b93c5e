"""Parity of the toolkit's MLMF with MMSA's (thuiar/MMSA ``src/MMSA/models/multiTask/MLMF.py``).

    python benchmarks/parity/parity_mmsa_mlmf.py --reference-dir /path/to/MMSA [--json PATH] [--float64]

Writes benchmarks/results/parity/parity_mlmf_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CH-SIMS configuration (``config/config_regression.json`` "mlmf"/"sims", toolkit preset
``sims``; the script checks that the preset holds the same values), every dropout 0. The toolkit's documented
deviations are bridged so the two are one function: the subnetwork LayerNorms are replaced in memory by
BatchNorm1d (MMSA's); audio/vision go to MMSA averaged over time (its loader's ``need_normalized``) and to the
toolkit as the full sequences without padding. Loss: MMSA's trainer, Σ_m w_m · L1 over M, T, A, V. Optimiser:
MMSA's Adam groups of ``trains/multiTask/MLMF.py`` with its lr-0 group (rank weights, output bias) trained at the
learning rate on both sides for the after-step check; the groups themselves (names, lr, weight decay) are
compared against the toolkit's ``param_groups`` with ``train_fusion_weights=False`` (the reference recipe).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_mmsa_common import (MMSA_SUBNETS, head_renames, identity_map, mmsa_subnet_groups,  # noqa: E402
                                multitask_finish, multitask_setup, run_multitask_parity, subnet_renames)


def mmsa_groups(ref, p: dict, fusion_lr: float) -> list[dict]:
    """trains/multiTask/MLMF.py's Adam groups, the rank weights and output bias (parameters()[3:5]) at
    ``fusion_lr`` (MMSA: 0)."""
    named = list(ref.named_parameters())
    other = [q for n, q in named[5:] if not n.startswith(MMSA_SUBNETS)]
    return [*mmsa_subnet_groups(ref, p), {"params": [q for _, q in named[:3]], "lr": p["factor_lr"]},
            {"params": [q for _, q in named[3:5]], "lr": fusion_lr}, {"params": other}]


def main(argv: list[str] | None = None) -> int:
    a, ref_dir, p, ref, tk, mismatches = multitask_setup(
        argv, __doc__, "mlmf", "MLMF", lambda p: {"text_out": p["hidden_dims"][0] // 2, "rank": p["rank"],
                                                  "factor_lr": p["factor_lr"], "weight_decay": p["weight_decay"]},
        ("audio_subnet", "vision_subnet"))
    c = tk.config
    from msa_toolkit.models import create_model

    renames = {"video_factor": "vision_factor", "text_subnet.linear_1": "text_subnet.linear", **head_renames(),
               **subnet_renames({"audio_subnet": "audio_subnet", "video_subnet": "vision_subnet"})}
    maps = identity_map(ref, tk, renames)

    def make_optimizer(model):
        if model is ref:
            return torch.optim.Adam(mmsa_groups(ref, p, p["learning_rate"]), lr=p["learning_rate"],
                                    weight_decay=p["weight_decay"])
        return torch.optim.Adam(tk.param_groups(c.lr, c.weight_decay), lr=c.lr)

    report = run_multitask_parity("mlmf", ref_dir, ref, tk, maps, p, mismatches,
                                  {"preset": "sims", "optimizer": "Adam (groups)", "lr": c.lr,
                                   "factor_lr": c.factor_lr, "weight_decay": c.weight_decay, "dropout": 0.0},
                                  make_optimizer, a.batch_size, a.seed, a.tolerance)
    # MMSA's groups (its lr-0 group left out) against the toolkit's with train_fusion_weights=False, by mapped name
    frozen = create_model("mlmf", "sims", train_fusion_weights=False)
    to_tk = {m.ref[0]: m.tk[0] for m in maps}
    ref_names = {id(q): to_tk[n] for n, q in ref.named_parameters()}
    tk_names = {id(q): n for n, q in frozen.named_parameters()}

    def described(groups, names, lr, wd):
        return sorted((g.get("lr", lr), g.get("weight_decay", wd), tuple(sorted(names[id(q)] for q in g["params"])))
                      for g in groups if g.get("lr", lr) != 0.0)

    ref_groups = described(mmsa_groups(ref, p, 0.0), ref_names, p["learning_rate"], p["weight_decay"])
    tk_groups = described(frozen.param_groups(c.lr, c.weight_decay), tk_names, c.lr, c.weight_decay)
    report.add("optimiser groups: MMSA's vs toolkit train_fusion_weights=False (names, lr, weight decay)",
               0.0 if ref_groups == tk_groups else 1.0, 0.0,
               "fusion_weights and fusion_bias untrained (MMSA: lr 0); factors at factor_lr")
    return multitask_finish(report, a)


if __name__ == "__main__":
    sys.exit(main())
