"""Parity of the toolkit's Graph-MFN with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/Graph_MFN.py).

    python benchmarks/parity/parity_mmsa_graph_mfn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_graph_mfn_mmsa.json unless ``--json`` names another path (``--json ''``:
none).

Both models at MMSA's CMU-MOSI configuration (``config_regression.json`` "graph_mfn", toolkit preset ``mosi``),
every dropout 0, the same word-aligned batch without padding (50 steps per modality; the toolkit's step alignment
is then the identity). Adam at the preset's lr and weight decay, as MMSA's trainer. MMSA keeps the DFG's
multimodal vertex networks in a plain dict (not parameters of its model: never trained, not counted); here they
are registered on the reference (``graph_mfn.nodes``) so that both sides count, train and compare them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import base_parser, finish  # noqa: E402
from mmsa_reference import import_mmsa, mmsa_args, mmsa_checkout, zero_dropout  # noqa: E402
from parity_mmsa_common import (FEATURE_NETS, batches, count_parameters, feature_subnets, identity_map,  # noqa: E402
                                run_parity)

#: MMSA layer -> toolkit module (each MLP is Linear-ReLU-Dropout-Linear: fc1 -> .0, fc2 -> .3)
LAYERS = {"lstm_l": "core.cells.0", "lstm_a": "core.cells.1", "lstm_v": "core.cells.2",
          "l_transform": "core.fusion.singletons.0", "a_transform": "core.fusion.singletons.1",
          "v_transform": "core.fusion.singletons.2", "graph_mfn.nodes": "core.fusion.nodes",
          "graph_mfn.t_network.0": "core.fusion.top.0", "graph_mfn.t_network.1.0": "core.fusion.top.1",
          "graph_mfn.efficacy_model.0": "core.fusion.efficacy.0",
          "graph_mfn.efficacy_model.1.0": "core.fusion.efficacy.1",
          "graph_mfn.efficacy_model.2": "core.fusion.efficacy.2",
          "att2_fc1": "core.proposal.0", "att2_fc2": "core.proposal.3", "gamma1_fc1": "core.retain.0",
          "gamma1_fc2": "core.retain.3", "gamma2_fc1": "core.write.0", "gamma2_fc2": "core.write.3",
          "out_fc1": "out.0", "out_fc2": "out.3"}


def _register_vertex_networks(ref: nn.Module) -> int:
    """Register MMSA's dict of multimodal vertex networks on its DFG (``graph_mfn.nodes.<i_j>``: each
    Linear -> Sequential(Linear), flattened to ``.0`` / ``.1``); returns MMSA's own trainable count before."""
    before = count_parameters(ref)
    nodes = nn.ModuleDict()
    for key, net in ref.graph_mfn.networks.items():
        nodes["_".join(map(str, key))] = nn.Sequential(net[0], net[1][0])
    ref.graph_mfn.nodes = nodes
    return before


def main(argv: list[str] | None = None) -> int:
    a = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/Graph_MFN.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "graph_mfn", aligned=True)
    zero_dropout(args, ["NNConfig", "gamma1Config", "gamma2Config", "outConfig"])
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.Graph_MFN", attributes=feature_subnets(ref_dir)).Graph_MFN(args)
    mmsa_count = _register_vertex_networks(ref)
    tk = create_model("graph_mfn", "mosi", update_dropout=0.0, retain_dropout=0.0, write_dropout=0.0,
                      out_dropout=0.0)
    maps = identity_map(ref, tk, LAYERS)
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    L = args.seq_lens[0]
    x, batch = batches(a.batch_size, {"text": L, "audio": L, "vision": L}, dims, a.seed + 1)
    c = tk.config

    def make_optimizer(model):
        return torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    report = run_parity("graph_mfn", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi", "batch_size": a.batch_size, "lengths": {"text": L, "audio": L,
                                                                                      "vision": L},
                         "dims": dims, "optimizer": "Adam", "lr": c.lr, "weight_decay": c.weight_decay,
                         "dropout": 0.0, "bridged": "MMSA's DFG vertex networks registered as parameters",
                         "mmsa_count_parameters": mmsa_count},
                        make_optimizer, a.tolerance, a.seed)
    report.not_compared += [
        f"MMSA's own count_parameters ({mmsa_count:,}) leaves out the DFG's multimodal vertex networks (a plain "
        "dict in MMSA, never trained there); the comparison registers them on the reference",
        "padding: the toolkit keeps every state unchanged on padded steps (MMSA runs through its padding); "
        "unaligned inputs (aligned per sample onto the text's steps in the toolkit)",
        "MMSA's per-step efficacies output (the toolkit keeps the last step's in core.fusion.last_efficacies)",
        "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
