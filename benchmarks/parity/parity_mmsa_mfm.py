"""Parity of the toolkit's MFM with MMSA's (thuiar/MMSA models/singleTask/MFM.py), word-aligned inputs.

    python benchmarks/parity/parity_mmsa_mfm.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mfm.json unless ``--json`` says otherwise (``--json ''``: none).

Both models are built at MMSA's CMU-MOSI configuration (``config_regression.json`` "mfm" / "mosi", toolkit
preset ``mosi``) with every dropout 0; every reference weight is copied into the toolkit model (table
:func:`weight_map`); both get the same aligned batch (768/5/20-d, no padding) and the same Gaussian prior
samples (same seed, drawn in the same order); the forward outputs, each loss term as MMSA's trainer forms it
(L1 + gen_loss + lda_mmd x mmd_loss), the gradients and the parameters after one Adam step (MMSA's
optimiser: Adam, lr 1e-3; weight decay 0 here, see not_compared) are compared in fp32 on CPU, then again one step later.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParamMap, ParityReport, base_parser, check_coverage, compare_training,  # noqa: E402
                           finish, load_mapped, reference_commit, same)
from mmsa_reference import REPO, aligned_batch, import_mmsa, mmsa_args, mmsa_checkout, zero_dropout  # noqa: E402

#: MMSA's per-modality suffixes -> toolkit modality names
MOD = {"l": "text", "a": "audio", "v": "vision"}
LSTM_CELL = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: MMSA's MFN output layers, built inside MFM but never used by it (the toolkit does not build them)
REF_UNUSED = ("mfn_encoder.out_fc1.", "mfn_encoder.out_fc2.")


def _linear(ref: str, tk: str) -> list[ParamMap]:
    return [same(f"{ref}.{p}", f"{tk}.{p}") for p in ("weight", "bias")]


def weight_map() -> list[ParamMap]:
    """MMSA MFM state_dict names -> toolkit names (msa_toolkit/models/mfm.py, layers/memory_fusion.py)."""
    maps: list[ParamMap] = []
    for i, k in enumerate("lav"):
        m = MOD[k]
        maps += [same(f"mfn_encoder.lstm_{k}.{p}", f"mfn.cells.{i}.{p}") for p in LSTM_CELL]
        maps += [same(f"encoder_{k}.lstm.{p}", f"encoders.{m}.{p}_l0") for p in LSTM_CELL]
        maps += _linear(f"encoder_{k}.fc1", f"encoder_out.{m}")
        maps += [same(f"decoder_{k}.lstm.{p}", f"decoders.{m}.cell.{p}") for p in LSTM_CELL]
        maps += _linear(f"decoder_{k}.fc1", f"decoders.{m}.out")
        maps += _linear(f"z{k}_to_f{k}_fc1", f"fm.{m}.0") + _linear(f"z{k}_to_f{k}_fc2", f"fm.{m}.3")
    for ref, tk in (("att1", "attention"), ("att2", "proposal"), ("gamma1", "retain"), ("gamma2", "write")):
        maps += _linear(f"mfn_encoder.{ref}_fc1", f"mfn.{tk}.0") + _linear(f"mfn_encoder.{ref}_fc2", f"mfn.{tk}.3")
    maps += _linear("last_to_zy_fc1", "to_zy") + _linear("zy_to_fy_fc1", "fy.0") + _linear("zy_to_fy_fc2", "fy.3")
    maps += _linear("fy_to_y_fc1", "head.0") + _linear("fy_to_y_fc2", "head.3")
    return maps


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8, help="steps of the aligned sequences")
    a = ap.parse_args(argv)
    root = mmsa_checkout(a.reference_dir, "models/singleTask/MFM.py")
    from msa_toolkit.models import create_model

    dims = (768, 5, 20)
    args = mmsa_args(root, "mfm", aligned=True, feature_dims=dims)
    zero_dropout(args, [k for k in vars(args) if k.endswith("_dropout")]
                 + ["NN1Config", "NN2Config", "gamma1Config", "gamma2Config", "outConfig"])
    mod = import_mmsa(root, "MMSA.models.singleTask.MFM")
    torch.manual_seed(a.seed)
    ref = mod.MFM(args)
    zero = {k: 0.0 for k in ("attn_dropout", "update_dropout", "retain_dropout", "write_dropout", "zy_dropout",
                             "zl_dropout", "za_dropout", "zv_dropout", "fy_dropout")}
    tk = create_model("mfm", "mosi", **zero)
    maps = weight_map()
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    B, L = a.batch_size, a.length
    x, label, batch = aligned_batch(B, L, dims, a.seed + 1)
    l1 = nn.L1Loss()

    def ref_fn():
        pred, gen, mmd, _ = ref(x["text"], x["audio"], x["vision"])
        pred = pred.squeeze(1)
        disc, mmd = l1(pred, label), args.lda_mmd * mmd
        return {"prediction": pred, "l1": disc, "gen": gen, "mmd": mmd, "total": disc + gen + mmd}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        c = loss.components
        return {"prediction": out.prediction, "l1": c["prediction"],
                "gen": c["recon_text"] + c["recon_audio"] + c["recon_vision"],
                "mmd": sum(v for k, v in c.items() if k.startswith("mmd_")), "total": loss.total}

    n_ref = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(REF_UNUSED))
    report = ParityReport("mfm", REPO, reference_commit(root),
                          {"preset": "mosi", "batch_size": B, "length": L, "dims": dims, "optimizer": "Adam",
                           "lr": 1e-3, "weight_decay": 0.0, "dropout": 0.0,
                           "parameters": tk.num_parameters()})
    report.add("parameters: count (reference without its unused MFN output layers)",
               float(abs(n_ref - tk.num_parameters())), 0.0, f"reference {n_ref}, toolkit {tk.num_parameters()}")
    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: L1 prediction", "l1", "l1"),
             ("loss: reconstruction (gen_loss)", "gen", "gen"), ("loss: lda_mmd x MMD", "mmd", "mmd"),
             ("loss: total", "total", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=0.0),
                     seed=a.seed, tolerance=a.tolerance, measured_floor=True, resync=True)
    report.not_compared += [
        "MMSA's MFN output layers out_fc1/out_fc2 (built inside MFM, never used; not built by the toolkit)",
        "padding: MMSA runs through padded steps; inputs here have none (the toolkit masks them)",
        "dropout: 0 on both sides (the two draw their masks differently)",
        "the preset's weight decay in the optimiser step: with Adam's L2 term an element whose gradient nearly "
        "cancels weight_decay x weight turns fp32 rounding into a step of either sign; the step is compared "
        "without it (the gradients are the same either way)"]
    return finish(report, a.json, "")


if __name__ == "__main__":
    sys.exit(main())
