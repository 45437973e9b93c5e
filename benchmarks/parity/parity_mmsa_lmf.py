"""Parity of the toolkit's LMF with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/LMF.py).

    python benchmarks/parity/parity_mmsa_lmf.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_lmf_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CMU-MOSI configuration (``config_regression.json`` "lmf", toolkit preset ``mosi``), every
dropout 0, the same batch: text [B, 50, 768], audio [B, 1, 5] and vision [B, 1, 20] (MMSA's loader averages audio
and vision over time for LMF; the toolkit's masked mean of one step is that step). Bridged in the toolkit
*instance*: its audio/visual LayerNorms become BatchNorm1d (MMSA's; the toolkit keeps LayerNorm so batches of one
train). Optimisers as the training code builds them: MMSA's two Adam groups (factors at ``factor_lr``,
``parameters()[5:]`` at ``learning_rate``, weight decay on both) and the toolkit's ``param_groups``; both
sides here also train the rank weights and output bias (MMSA leaves them out of its optimiser: the toolkit's
``train_fusion_weights=False``, checked separately as a group comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import base_parser, finish  # noqa: E402
from mmsa_reference import import_mmsa, mmsa_args, mmsa_checkout, zero_dropout  # noqa: E402
from parity_mmsa_common import (FEATURE_NETS, batches, batchnorm_subnets, feature_subnets, identity_map,  # noqa: E402
                                run_parity, subnet_renames)

def main(argv: list[str] | None = None) -> int:
    a = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/LMF.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "lmf")
    zero_dropout(args, ["dropouts"])
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.LMF", attributes=feature_subnets(ref_dir)).LMF(args)
    tk = create_model("lmf", "mosi", audio_dropout=0.0, vision_dropout=0.0, text_dropout=0.0)
    batchnorm_subnets(tk, ("audio_subnet", "vision_subnet"))
    renames = {"video_factor": "vision_factor", "text_subnet.linear_1": "text_subnet.linear",
               **subnet_renames({"audio_subnet": "audio_subnet", "video_subnet": "vision_subnet"})}
    maps = identity_map(ref, tk, renames)
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    x, batch = batches(a.batch_size, {"text": 50, "audio": 1, "vision": 1}, dims, a.seed + 1)
    c = tk.config

    def make_optimizer(model):
        if model is ref:  # trains/singleTask/LMF.py, with parameters()[3:5] (fusion weights, bias) added
            ps = list(ref.parameters())
            return torch.optim.Adam([{"params": ps[:3], "lr": args.factor_lr},
                                     {"params": ps[3:], "lr": args.learning_rate}], weight_decay=args.weight_decay)
        return torch.optim.Adam(tk.param_groups(c.lr, c.weight_decay), weight_decay=c.weight_decay)

    report = run_parity("lmf", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi", "batch_size": a.batch_size, "lengths": {"text": 50, "audio": 1,
                                                                                      "vision": 1},
                         "dims": dims, "optimizer": "Adam (factors / rest)", "lr": c.lr, "factor_lr": c.factor_lr,
                         "weight_decay": c.weight_decay, "dropout": 0.0, "bridged": "BatchNorm1d in the subnets"},
                        make_optimizer, a.tolerance, a.seed)
    # MMSA's optimiser groups (parameters()[:3] at factor_lr, [5:] at learning_rate) against the toolkit's
    # param_groups with train_fusion_weights=False (the reference recipe), by mapped name
    frozen = create_model("lmf", "mosi", train_fusion_weights=False)
    tk_names = {id(p): n for n, p in frozen.named_parameters()}
    to_tk = {m.ref[0]: m.tk[0] for m in maps}
    ref_names = [n for n, _ in ref.named_parameters()]
    ref_groups = [(args.factor_lr, sorted(to_tk[n] for n in ref_names[:3])),
                  (args.learning_rate, sorted(to_tk[n] for n in ref_names[5:]))]
    tk_groups = [(g["lr"], sorted(tk_names[id(p)] for p in g["params"]))
                 for g in frozen.param_groups(frozen.config.lr, frozen.config.weight_decay)]
    report.add("optimiser groups: MMSA's vs toolkit train_fusion_weights=False (names and LRs)",
               0.0 if ref_groups == tk_groups else 1.0, 0.0,
               "fusion_weights and fusion_bias in neither; factors at factor_lr")
    report.not_compared += [
        "BatchNorm1d (reference) vs LayerNorm (toolkit) in the audio/visual subnetworks: bridged in memory",
        "masked means over valid steps and the LSTM state at the last valid step (no padding here; MMSA averages "
        "over the padded length and reads the LSTM's last padded step)",
        "dropout (0 on both sides); MMSA's one-layer TextSubNet zeroes its text dropout, the toolkit applies "
        "text_dropout (the reference recipe sets it to 0)"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
