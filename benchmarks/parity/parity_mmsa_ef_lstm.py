"""Parity of the toolkit's EF-LSTM with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/EF_LSTM.py).

    python benchmarks/parity/parity_mmsa_ef_lstm.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_ef_lstm_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CMU-MOSI configuration (``config_regression.json`` "ef_lstm", word-aligned 50/50/50 steps
as MMSA trains it; toolkit preset ``mosi``), dropout 0 (the LSTM's between-layer dropout included), the same
aligned batch without padding: the toolkit's step alignment is then the identity and its masked time-step batch
norm is MMSA's ``BatchNorm1d(50)``. Adam at the preset's lr and weight decay, as trains/singleTask/EF_LSTM.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import base_parser, finish  # noqa: E402
from mmsa_reference import import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402
from parity_mmsa_common import FEATURE_NETS, batches, feature_subnets, identity_map, run_parity  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    a = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/EF_LSTM.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "ef_lstm", aligned=True, dropout=0.0)
    args.seq_lens = args.seq_lens[0]  # AMIO sets seq_lens to the aligned length (AlignSubNet.get_seq_len)
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.EF_LSTM", attributes=feature_subnets(ref_dir)).EF_LSTM(args)
    tk = create_model("ef_lstm", "mosi", dropout=0.0)
    maps = identity_map(ref, tk, {})
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    L = args.seq_lens
    x, batch = batches(a.batch_size, {"text": L, "audio": L, "vision": L}, dims, a.seed + 1)
    c = tk.config

    def make_optimizer(model):
        return torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    report = run_parity("ef_lstm", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi", "batch_size": a.batch_size, "lengths": {"text": L, "audio": L,
                                                                                      "vision": L},
                         "dims": dims, "optimizer": "Adam", "lr": c.lr, "weight_decay": c.weight_decay,
                         "dropout": 0.0, "bridged": "none"},
                        make_optimizer, a.tolerance, a.seed)
    with torch.no_grad():
        report.add("input norm: running mean / variance after the two steps",
                   float(max((ref.norm.running_mean - tk.norm.running_mean).abs().max(),
                             (ref.norm.running_var - tk.norm.running_var).abs().max())))
    report.not_compared += [
        "padding: the toolkit's norm counts valid steps only and it reads the LSTM at the last valid step (MMSA: "
        "statistics over padded steps too, the last padded step); unaligned inputs (the toolkit aligns them per "
        "sample onto the text's steps, MMSA's AlignSubNet pools the padded length)",
        "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
