"""Parity of the toolkit's MLF-DNN with MMSA's (thuiar/MMSA ``src/MMSA/models/multiTask/MLF_DNN.py``).

    python benchmarks/parity/parity_mmsa_mlf_dnn.py --reference-dir /path/to/MMSA [--json PATH] [--float64]

Writes benchmarks/results/parity/parity_mlf_dnn_mmsa.json unless ``--json`` names another path (``--json ''``:
none). (The single-task LF-DNN's script is ``parity_mmsa_lf_dnn.py``.)

Both models at MMSA's CH-SIMS configuration (``config/config_regression.json`` "mlf_dnn"/"sims", toolkit preset
``sims``; the script checks that the preset holds the same values), every dropout 0. Bridged: the subnetwork
LayerNorms replaced in memory by BatchNorm1d (MMSA's); audio/vision go to MMSA averaged over time and to the
toolkit as the full sequences without padding; the concatenation order (MMSA: audio, video, text; toolkit: text,
audio, vision) is a column permutation of the first post-fusion layer (mapped). Loss: MMSA's trainer, Σ_m w_m ·
L1 over M, T, A, V; optimiser: MMSA's Adam groups of ``trains/multiTask/MLF_DNN.py`` (per-subnetwork weight
decay) against the toolkit's ``param_groups``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_mmsa_common import (MMSA_SUBNETS, head_renames, identity_map, mmsa_subnet_groups,  # noqa: E402
                                multitask_finish, multitask_setup, run_multitask_parity, subnet_renames)


def main(argv: list[str] | None = None) -> int:
    a, ref_dir, p, ref, tk, mismatches = multitask_setup(
        argv, __doc__, "mlf_dnn", "MLF_DNN",
        lambda p: {"text_out": p["text_out"], "post_fusion_dim": p["post_fusion_dim"],
                   "post_fusion_dropout": p["post_dropouts"][3], "weight_decay": p["weight_decay"]},
        ("audio_subnet", "vision_subnet"))
    c = tk.config
    A, V = c.audio_hidden, c.vision_hidden  # reference columns: audio [0, A), video [A, A+V), text [A+V, ...)
    idx = torch.cat([torch.arange(A + V, A + V + c.text_out), torch.arange(A), torch.arange(A, A + V)])
    renames = {"text_subnet.linear_1": "text_subnet.linear", "post_fusion_layer_1": "post.1",
               "post_fusion_layer_2": "post.3", "post_fusion_layer_3": "post.5", **head_renames(),
               **subnet_renames({"audio_subnet": "audio_subnet", "video_subnet": "vision_subnet"})}
    maps = identity_map(ref, tk, renames, {"post_fusion_layer_1.weight": lambda w: w[:, idx]})

    def make_optimizer(model):
        if model is ref:  # MMSA's trains/multiTask/MLF_DNN.py groups
            other = [q for n, q in ref.named_parameters() if not n.startswith(MMSA_SUBNETS)]
            return torch.optim.Adam([*mmsa_subnet_groups(ref, p), {"params": other}], lr=p["learning_rate"],
                                    weight_decay=p["weight_decay"])
        return torch.optim.Adam(tk.param_groups(c.lr, c.weight_decay), lr=c.lr)

    report = run_multitask_parity("mlf_dnn", ref_dir, ref, tk, maps, p, mismatches,
                                  {"preset": "sims", "optimizer": "Adam (groups)", "lr": c.lr,
                                   "weight_decay": c.weight_decay, "dropout": 0.0},
                                  make_optimizer, a.batch_size, a.seed, a.tolerance)
    return multitask_finish(report, a)


if __name__ == "__main__":
    sys.exit(main())
