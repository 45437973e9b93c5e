"""Parity of the toolkit's TFR-Net with MMSA's (thuiar/MMSA ``src/MMSA/models/missingTask/TFR_NET``): the parts
that compute the same function.

    python benchmarks/parity/parity_mmsa_tfr_net.py --reference-dir /path/to/MMSA [--float64] [--json PATH]

Writes benchmarks/results/parity/parity_tfr_net_mmsa[_float64].json unless ``--json`` names another path.

MMSA's ``Alignment``, ``Fusion`` and ``RECLoss`` are built from ``config/config_regression.json`` ("tfr_net",
"mosi") without importing MMSA's package ``__init__`` (its sub-packages are registered empty, so nothing else of
MMSA loads; ``TFR_NET`` itself is not built: it downloads BERT). Compared with copied weights: the prediction
path (projections, the nine MulT encoders, the gated-GRU fusion, the classifier), its L1 loss, the gradients and
the Adam step; and the reconstruction criterion (RECLoss "combine" vs ``reconstruction_loss``) on the same
tensors. Bridged: MMSA's causal attention mask off (``attn_mask`` False, the toolkit has none), the toolkit's
classifier LayerNorm replaced in memory by BatchNorm1d (MMSA's), every dropout 0, no padding, no missing steps.
Not comparable: MMSA's ``trans_*_final`` transformers (they attend across the batch axis, see the model's
docstring) and hence the generators' inputs.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParityReport, after_step_as_info, base_parser, check_coverage,  # noqa: E402
                           compare_training, diff_and_scale, finish, load_mapped, reference_commit, same)
from mmsa_reference import REPO, SUBNETS, import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402
from parity_dlf import _encoder  # noqa: E402  the MulT TransformerEncoder -> CrossModalTransformer table

#: the TFR_NET package (bare: its __init__ imports the model, which downloads BERT)
TFR_PACKAGES = ("MMSA.models.missingTask", "MMSA.models.missingTask.TFR_NET")
KEYS = {"text": "l", "audio": "a", "vision": "v"}
FUSION = {"text": "text", "audio": "audio", "vision": "vision"}


class Reference(nn.Module):
    """MMSA's alignment + fusion (the prediction path of TFR_NET.forward with nothing missing)."""

    def __init__(self, model_mod, args):
        super().__init__()
        self.align_subnet = model_mod.Alignment(args)
        args.fusion_t_in = args.fusion_a_in = args.fusion_v_in = args.dst_feature_dim_nheads[0] * 3
        self.fusion_subnet = model_mod.Fusion(args)

    def forward(self, text, audio, vision, masks):
        h_l, h_a, h_v, *_ = self.align_subnet(text, audio, vision)
        return self.fusion_subnet((h_l, masks[0]), (h_a, masks[1]), (h_v, masks[2])), (h_l, h_a, h_v)


def weight_map(c) -> list:
    maps = [same(f"align_subnet.Model.proj_{k}.weight", f"proj.{m}.conv.weight") for m, k in KEYS.items()]
    for m, k in KEYS.items():
        maps += _encoder(f"align_subnet.Model.trans_{k}_mem", f"memory.{m}", c.mem_layers)
        for s, ks in KEYS.items():
            if s != m:
                maps += _encoder(f"align_subnet.Model.trans_{k}_with_{ks}", f"cross.{s}_to_{m}", c.layers)
        r, t = f"fusion_subnet.Model.{m}_encoder", f"fusion.{m}"
        maps += [same(f"{r}.gru.gru.{p}", f"{t}.gru.{p}") for layer in range(c.fusion_gru_layers)
                 for d in ("", "_reverse") for p in (f"weight_ih_l{layer}{d}", f"weight_hh_l{layer}{d}",
                                                     f"bias_ih_l{layer}{d}", f"bias_hh_l{layer}{d}")]
        maps += [same(f"{r}.cnn.{p}", f"{t}.gate.{p}") for p in ("weight", "bias")]
        maps += [same(f"{r}.fc.{p}", f"{t}.fc.{p}") for p in ("weight", "bias")]
    for ref, i in (("linear_trans_norm", 0), ("linear_trans_hidden", 1), ("linear_trans_final", 4)):
        maps += [same(f"fusion_subnet.Model.classifier.{ref}.{p}", f"head.{i}.{p}") for p in ("weight", "bias")]
    return maps


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--float64", action="store_true", help="both sides in float64")
    a = ap.parse_args(argv)
    if a.float64:
        torch.set_default_dtype(torch.float64)
    ref_dir = mmsa_checkout(a.reference_dir, "models/missingTask/TFR_NET/model.py",
                            "models/missingTask/TFR_NET/fusion.py")
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    zero = {k: 0.0 for k in ("text_dropout", "attn_dropout", "attn_dropout_a", "attn_dropout_v", "relu_dropout",
                             "embed_dropout", "res_dropout", "fusion_drop", "cls_dropout")}
    model_mod = import_mmsa(ref_dir, "MMSA.models.missingTask.TFR_NET.model", TFR_PACKAGES,
                            stubs={f"{SUBNETS}.BertTextEncoder": types.SimpleNamespace(BertTextEncoder=None)})
    torch.manual_seed(a.seed)

    class Args(Namespace):  # MMSA reads args["num_temporal_head"] as well as args.x
        def __getitem__(self, k):
            return getattr(self, k)

    args = Args(vars(mmsa_args(ref_dir, "tfr_net", **zero, attn_mask=False, device="cpu")))
    ref = Reference(model_mod, args)
    tk = create_model("tfr_net", "mosi", **{k: 0.0 for k in ("text_dropout", "attn_dropout", "attn_dropout_audio",
                                                            "attn_dropout_vision", "ff_dropout", "res_dropout",
                                                            "embed_dropout", "fusion_dropout", "cls_dropout",
                                                            "missing_rate_text", "missing_rate_audio",
                                                            "missing_rate_vision")})
    c = tk.config
    total = c.fusion_text_hidden + c.fusion_audio_hidden + c.fusion_vision_hidden
    tk.head[0] = nn.BatchNorm1d(total)  # bridge: MMSA's classifier BatchNorm1d
    maps = weight_map(c)
    check_coverage(maps, ref, tk, ref_unused=[f"align_subnet.Model.trans_{k}_final." for k in "lav"],
                   tk_unused=["generator."])
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    g = torch.Generator().manual_seed(a.seed + 1)
    # MMSA's final transformers are built for its seq_lens (text, audio, vision) and run in forward
    B, L = a.batch_size, dict(zip(("text", "audio", "vision"), args.seq_lens))
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    x = {m: torch.randn(B, L[m], dims[m], generator=g) for m in L}
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    ones = {m: torch.ones(B, L[m]) for m in L}
    batch = Batch(label=label, **x, **{f"{m}_mask": ones[m].bool() for m in L})

    def ref_fn():
        pred, _ = ref(x["text"], x["audio"], x["vision"], (ones["text"], ones["audio"], ones["vision"]))
        return {"prediction": pred.squeeze(-1), "total": nn.functional.l1_loss(pred, label.view(-1, 1))}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, "prediction_l1": loss.components["prediction_l1"], "total": loss.total}

    report = ParityReport("tfr_net", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "batch_size": B, "lengths": L, "dims": dims, "optimizer": "Adam",
                           "lr": c.lr, "weight_decay": c.weight_decay, "dropout": 0.0, "missing_rate": 0.0})
    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: L1 (= total)", "total", "prediction_l1"),
             ("loss: total", "total", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: torch.optim.Adam(ps, lr=c.lr, weight_decay=c.weight_decay), seed=a.seed,
                     tolerance=a.tolerance, measured_floor=True)

    # the reconstruction criterion on the same tensors: MMSA's RECLoss("combine") vs reconstruction_loss
    from msa_toolkit.models._tfr_parts import reconstruction_loss

    rec = model_mod.RECLoss(args)
    pred, target = torch.randn(B, 7, 5, generator=g), torch.randn(B, 7, 5, generator=g)
    dropped = torch.rand(B, 7, generator=g) < 0.3
    want = rec(pred, target, dropped.to(pred.dtype))
    got = reconstruction_loss(pred, target, dropped, args.weight_sim_loss)
    d, s = diff_and_scale(want, got)
    if not a.float64:
        after_step_as_info(report, "Adam (lr 1e-3, eps 1e-8) amplifies the gradients' rounding differences on "
                                   "elements with tiny gradients")
    report.add("reconstruction loss: RECLoss(combine) vs reconstruction_loss", d, a.tolerance, scale=s)
    report.not_compared += [
        "MMSA's trans_*_final transformers (they take [B, 3d, L] as (sequence, batch, embed): attention across the "
        "batch) and so the generators and the weighted reconstruction terms of the full model",
        "the causal attention mask (MMSA attn_mask true; off here, the toolkit has none) and padding masks",
        "the missing-feature simulation (MMSA: in its data loader, seed 1111; the toolkit: in training forward)",
        "classifier LayerNorm (toolkit) vs BatchNorm1d (MMSA): bridged in memory", "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa_float64" if a.float64 else "mmsa")


if __name__ == "__main__":
    sys.exit(main())
