"""Parity of the toolkit's LF-DNN with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/LF_DNN.py).

    python benchmarks/parity/parity_mmsa_lf_dnn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_lf_dnn_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CMU-MOSI configuration (``config_regression.json`` "lf_dnn", toolkit preset ``mosi``), every
dropout 0, the same batch: text [B, 50, 768], audio [B, 1, 5], vision [B, 1, 20] (MMSA's loader averages audio
and vision over time). Bridged in the toolkit *instance*: BatchNorm1d for the subnetworks' LayerNorms. The first
post-fusion layer's columns are permuted (MMSA concatenates audio, video, text; the toolkit text, audio, vision).
Adam at the preset's lr and weight decay on both sides, as MMSA's trains/singleTask/LF_DNN.py.
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
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/LF_DNN.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "lf_dnn")
    zero_dropout(args, ["dropouts"])
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.LF_DNN", attributes=feature_subnets(ref_dir)).LF_DNN(args)
    tk = create_model("lf_dnn", "mosi", audio_dropout=0.0, vision_dropout=0.0, text_dropout=0.0,
                      post_fusion_dropout=0.0)
    batchnorm_subnets(tk, ("audio_subnet", "vision_subnet"))
    c = tk.config
    A, V = c.audio_hidden, c.vision_hidden  # reference columns: audio [0, A), video [A, A+V), text [A+V, ...)
    idx = torch.cat([torch.arange(A + V, A + V + c.text_out), torch.arange(A), torch.arange(A, A + V)])
    renames = {"text_subnet.linear_1": "text_subnet.linear", "post_fusion_layer_1": "post.1",
               "post_fusion_layer_2": "post.3", "post_fusion_layer_3": "post.5",
               **subnet_renames({"audio_subnet": "audio_subnet", "video_subnet": "vision_subnet"})}
    maps = identity_map(ref, tk, renames, {"post_fusion_layer_1.weight": lambda w: w[:, idx]})
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    x, batch = batches(a.batch_size, {"text": 50, "audio": 1, "vision": 1}, dims, a.seed + 1)

    def make_optimizer(model):
        return torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    report = run_parity("lf_dnn", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi", "batch_size": a.batch_size, "lengths": {"text": 50, "audio": 1,
                                                                                      "vision": 1},
                         "dims": dims, "optimizer": "Adam", "lr": c.lr, "weight_decay": c.weight_decay,
                         "dropout": 0.0, "bridged": "BatchNorm1d in the subnets"},
                        make_optimizer, a.tolerance, a.seed)
    report.not_compared += [
        "BatchNorm1d (reference) vs LayerNorm (toolkit) in the audio/visual subnetworks: bridged in memory",
        "masked means over valid steps and the LSTM state at the last valid step (no padding here)",
        "dropout (0 on both sides); MMSA's one-layer TextSubNet zeroes its text dropout, the toolkit applies "
        "text_dropout (the reference recipe sets it to 0)"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
