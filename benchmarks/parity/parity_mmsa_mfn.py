"""Parity of the toolkit's MFN with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/MFN.py).

    python benchmarks/parity/parity_mmsa_mfn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mfn_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CMU-MOSI configuration (``config_regression.json`` "mfn", toolkit preset ``mosi``), every
dropout 0, the same word-aligned batch without padding (50 steps per modality; the toolkit's step alignment is
then the identity). Adam at the preset's lr and weight decay, as trains/singleTask/MFN.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import base_parser, finish  # noqa: E402
from mmsa_reference import import_mmsa, mmsa_args, mmsa_checkout, zero_dropout  # noqa: E402
from parity_mmsa_common import FEATURE_NETS, batches, feature_subnets, identity_map, run_parity  # noqa: E402

#: MMSA layer -> toolkit module (each MLP is Linear-ReLU-Dropout-Linear: fc1 -> .0, fc2 -> .3)
LAYERS = {"lstm_l": "core.cells.0", "lstm_a": "core.cells.1", "lstm_v": "core.cells.2",
          "att1_fc1": "core.attention.0", "att1_fc2": "core.attention.3", "att2_fc1": "core.proposal.0",
          "att2_fc2": "core.proposal.3", "gamma1_fc1": "core.retain.0", "gamma1_fc2": "core.retain.3",
          "gamma2_fc1": "core.write.0", "gamma2_fc2": "core.write.3", "out_fc1": "out.0", "out_fc2": "out.3"}


def main(argv: list[str] | None = None) -> int:
    a = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/MFN.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "mfn", aligned=True)
    zero_dropout(args, ["NN1Config", "NN2Config", "gamma1Config", "gamma2Config", "outConfig"])
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.MFN", attributes=feature_subnets(ref_dir)).MFN(args)
    tk = create_model("mfn", "mosi", attn_dropout=0.0, update_dropout=0.0, retain_dropout=0.0, write_dropout=0.0,
                      out_dropout=0.0)
    maps = identity_map(ref, tk, LAYERS)
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    L = args.seq_lens[0]
    x, batch = batches(a.batch_size, {"text": L, "audio": L, "vision": L}, dims, a.seed + 1)
    c = tk.config

    def make_optimizer(model):
        return torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    report = run_parity("mfn", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi", "batch_size": a.batch_size, "lengths": {"text": L, "audio": L,
                                                                                      "vision": L},
                         "dims": dims, "optimizer": "Adam", "lr": c.lr, "weight_decay": c.weight_decay,
                         "dropout": 0.0, "bridged": "none"},
                        make_optimizer, a.tolerance, a.seed)
    report.not_compared += [
        "padding: the toolkit keeps every state unchanged on padded steps (MMSA runs through its padding); "
        "unaligned inputs (aligned per sample onto the text's steps in the toolkit)",
        "MMSA's loader feeds MFN the time-averaged audio and vision repeated at every step (need_normalized): "
        "the toolkit's pool_audio_vision (reference recipe); a data-loader step, not the model",
        "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
