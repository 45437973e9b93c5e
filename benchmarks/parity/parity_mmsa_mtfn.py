"""Parity of the toolkit's MTFN with MMSA's (thuiar/MMSA ``src/MMSA/models/multiTask/MTFN.py``).

    python benchmarks/parity/parity_mmsa_mtfn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mtfn_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CH-SIMS configuration (``config/config_regression.json`` "mtfn"/"sims", toolkit preset
``sims``; the script checks that the preset holds the same values), every dropout 0. The toolkit's documented
deviations are bridged so the two are one function: the toolkit's subnetwork LayerNorms are replaced in memory
by BatchNorm1d (MMSA's); audio/vision go to MMSA averaged over time (its loader's ``need_normalized``) and to the
toolkit as the full sequences without padding (its masked mean is the same average); the fusion tensor's index
order is a column permutation of the first post-fusion layer (mapped). Loss: MMSA's trainer, Σ_m w_m · L1 over
M, T, A, V with the config's weights; optimiser: MMSA's Adam groups (per-subnetwork weight decay) against the
toolkit's ``param_groups``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import ParamMap, after_step_as_info, same  # noqa: E402
from parity_mmsa_common import (MMSA_SUBNETS, head_renames, mmsa_subnet_groups, multitask_finish,  # noqa: E402
                                multitask_setup, run_multitask_parity)

#: MMSA's subnetwork prefixes -> the toolkit's
SUBNETS = {"audio_subnet": "audio_net", "video_subnet": "vision_net"}


def fusion_permutation(t: int, a: int, v: int) -> torch.Tensor:
    """For each toolkit fusion column (text, audio, vision order, constant 1 last) the MMSA column (audio,
    video, text order, constant 1 first)."""
    it, ia, iv = torch.meshgrid(torch.arange(t + 1), torch.arange(a + 1), torch.arange(v + 1), indexing="ij")
    k = lambda i, n: (i + 1) % (n + 1)  # noqa: E731  toolkit index -> MMSA index (the 1 moves to the front)
    return ((k(ia, a) * (v + 1) + k(iv, v)) * (t + 1) + k(it, t)).flatten()


def weight_map(c) -> list[ParamMap]:
    """MMSA MTFN state_dict names -> toolkit MTFN names."""
    maps = []
    for ref, tk in SUBNETS.items():
        maps += [same(f"{ref}.norm.{p}", f"{tk}.net.0.{p}") for p in ("weight", "bias")]
        maps += [same(f"{ref}.linear_{i}.{p}", f"{tk}.net.{j}.{p}") for i, j in ((1, 2), (2, 4), (3, 6))
                 for p in ("weight", "bias")]
    maps += [same(f"text_subnet.rnn.{p}_l0", f"text_net.rnn.{p}_l0") for p in ("weight_ih", "weight_hh", "bias_ih",
                                                                               "bias_hh")]
    maps += [same(f"text_subnet.linear_1.{p}", f"text_net.linear.{p}") for p in ("weight", "bias")]
    perm = fusion_permutation(c.text_out, c.audio_hidden, c.vision_hidden)
    maps.append(same("post_fusion_layer_1.weight", "post.1.weight", lambda w: w[:, perm]))
    maps.append(same("post_fusion_layer_1.bias", "post.1.bias"))
    maps += [same(f"post_fusion_layer_{i}.{p}", f"post.{j}.{p}") for i, j in ((2, 3), (3, 5))
             for p in ("weight", "bias")]
    maps += [same(f"{ref}.{p}", f"{tk}.{p}") for ref, tk in head_renames().items() for p in ("weight", "bias")]
    return maps


def main(argv: list[str] | None = None) -> int:
    a, ref_dir, p, ref, tk, mismatches = multitask_setup(
        argv, __doc__, "mtfn", "MTFN", lambda p: {"text_out": p["text_out"], "post_fusion_dim": p["post_fusion_dim"],
                                                  "post_fusion_dropout": p["post_dropouts"][3]},
        ("audio_net", "vision_net"))
    c = tk.config

    def make_optimizer(model):
        if model is ref:  # MMSA's trains/multiTask/MTFN.py groups
            named = list(ref.named_parameters())
            other = [q for n, q in named[2:] if not n.startswith(MMSA_SUBNETS)]
            return torch.optim.Adam([*mmsa_subnet_groups(ref, p), {"params": [q for _, q in named[:2]], "lr": 0.0},
                                     {"params": other}], lr=p["learning_rate"])
        return torch.optim.Adam(tk.param_groups(c.lr, c.weight_decay), lr=c.lr)

    report = run_multitask_parity("mtfn", ref_dir, ref, tk, weight_map(c), p, mismatches,
                                  {"preset": "sims", "optimizer": "Adam (groups)", "lr": c.lr, "dropout": 0.0},
                                  make_optimizer, a.batch_size, a.seed, a.tolerance,
                                  ref_unused=("output_range", "output_shift"))
    if not a.float64:
        after_step_as_info(report, "Adam (lr 5e-3, eps 1e-8) amplifies the gradients' rounding differences on "
                                   "elements with |g| ~ 1e-7")
    return multitask_finish(report, a)


if __name__ == "__main__":
    sys.exit(main())
