"""Parity of the toolkit's ALMT with the authors' code (Haoyu-ha/ALMT), BERT bypassed.

    python benchmarks/parity/parity_almt.py --reference-dir /path/to/ALMT [--json PATH]

Writes benchmarks/results/parity/parity_almt.json unless ``--json`` names another path (``--json ''``: none).

Both models are built at the reference's CMU-MOSI configuration (``configs/mosi.yaml`` of
the checkout, toolkit preset ``mosi``); the reference's BERT text encoder is replaced by the
identity so both take the same 768-d text features. Every reference weight is copied into
the toolkit model (table :func:`weight_map`), then forward outputs, the MSE loss, the
gradients, the parameters after one AdamW step and the next step's outputs are compared in
fp32 on CPU. Inputs have no padding: the reference has no key masks (the toolkit's masks
are all True here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParamMap, ParityReport, base_parser, check_coverage, check_reference_dir,  # noqa: E402
                           compare_training, finish, fused, import_reference, load_mapped, reference_commit,
                           same)

REPO = "Haoyu-ha/ALMT"
EXPECTED_FILES = ("models/almt.py", "models/almt_layer.py", "configs/mosi.yaml")
MODALITY_KEYS = {"text": "l", "audio": "a", "vision": "v"}


class _Identity(nn.Module):
    """Stands in for the reference's BertTextEncoder: the text input already is 768-d features."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _block(ref: str, tk: str) -> list[ParamMap]:
    """One pre-LN attention + feed-forward layer (reference PreNormAttention/PreNormForward pair)."""
    maps = [same(f"{ref}.0.norm_{x}.{p}", f"{tk}.norm_{x}.{p}") for x in "qkv" for p in ("weight", "bias")]
    maps.append(fused([f"{ref}.0.fn.to_{x}.weight" for x in "qkv"], f"{tk}.attn.qkv.weight"))
    maps += [same(f"{ref}.0.fn.to_out.0.{p}", f"{tk}.attn.to_out.{p}") for p in ("weight", "bias")]
    maps += [same(f"{ref}.1.norm.{p}", f"{tk}.norm_ff.{p}") for p in ("weight", "bias")]
    maps += [same(f"{ref}.1.fn.net.{i}.{p}", f"{tk}.ff.{i}.{p}") for i in (0, 3) for p in ("weight", "bias")]
    return maps


def weight_map(embed_depth: int, ahl_depth: int, fusion_depth: int) -> list[ParamMap]:
    """Reference state_dict name -> toolkit state_dict name, the whole ALMT model.

    Toolkit names assumed (msa_toolkit/models/almt.py): ``hyper``, ``input_proj.<m>``,
    ``embed.<m>.{tokens,pos.table,blocks.<i>}``, ``language_encoder.{pos.table,blocks.<i>}``,
    ``ahl.<i>.{norm_text,norm_audio,norm_vision,norm_hyper,to_q,to_k_audio,to_v_audio,
    to_k_vision,to_v_vision,to_out.0}``, ``fusion.{pos_source.table,pos_target.table,cls,blocks.<i>}``,
    ``head``; each block ``norm_q/norm_k/norm_v``, ``attn.qkv`` (fused q/k/v), ``attn.to_out``, ``norm_ff``,
    ``ff.0/ff.3``.
    """
    squeeze0 = lambda x: x.squeeze(0)  # noqa: E731  reference keeps a leading batch axis of 1
    maps = [same("h_hyper", "hyper", squeeze0), same("regression_layer.0.weight", "head.weight"),
            same("regression_layer.0.bias", "head.bias")]
    for m, k in MODALITY_KEYS.items():
        maps += [same(f"proj_{k}.0.{p}", f"input_proj.{m}.{p}") for p in ("weight", "bias")]
        maps += [same(f"proj_{k}.1.extra_token", f"embed.{m}.tokens", squeeze0),
                 same(f"proj_{k}.1.pos_embedding", f"embed.{m}.pos.table", squeeze0)]
        for i in range(embed_depth):
            maps += _block(f"proj_{k}.1.encoder.layers.{i}", f"embed.{m}.blocks.{i}")
    maps.append(same("l_encoder.pos_embedding", "language_encoder.pos.table", squeeze0))
    for i in range(ahl_depth - 1):
        maps += _block(f"l_encoder.encoder.layers.{i}", f"language_encoder.blocks.{i}")
    ahl_norms = {"norm1": "norm_text", "norm2": "norm_audio", "norm3": "norm_vision", "norm4": "norm_hyper"}
    ahl_proj = {"to_q": "to_q", "to_k_ta": "to_k_audio", "to_v_ta": "to_v_audio", "to_k_tv": "to_k_vision",
                "to_v_tv": "to_v_vision"}
    for i in range(ahl_depth):
        r, t = f"h_hyper_layer.layers.{i}.0", f"ahl.{i}"
        maps += [same(f"{r}.{a}.{p}", f"{t}.{b}.{p}") for a, b in ahl_norms.items() for p in ("weight", "bias")]
        maps += [same(f"{r}.fn.{a}.weight", f"{t}.{b}.weight") for a, b in ahl_proj.items()]
        maps += [same(f"{r}.fn.to_out.0.{p}", f"{t}.to_out.0.{p}") for p in ("weight", "bias")]
    maps += [same("fusion_layer.pos_embedding_s", "fusion.pos_source.table", squeeze0),
             same("fusion_layer.pos_embedding_t", "fusion.pos_target.table", squeeze0),
             same("fusion_layer.extra_token", "fusion.cls", squeeze0)]
    for i in range(fusion_depth):
        maps += _block(f"fusion_layer.CrossTransformerEncoder.layers.{i}", f"fusion.blocks.{i}")
    return maps


def build_reference(ref_dir: Path):
    """The reference ALMT at its MOSI config, BERT replaced by the identity."""
    import yaml

    almt = import_reference(ref_dir, "models.almt")
    almt.BertTextEncoder = _Identity
    with open(ref_dir / "configs" / "mosi.yaml") as f:
        cfg = yaml.safe_load(f)
    from parity_common import Namespace
    args = Namespace({k: Namespace(v) for k, v in cfg.items()})
    return almt.ALMT(args), cfg["model"]


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    a = ap.parse_args(argv)
    ref_dir = check_reference_dir(a.reference_dir, EXPECTED_FILES, REPO)
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    ref, rc = build_reference(ref_dir)
    tk = create_model("almt", "mosi")
    c = tk.config
    maps = weight_map(c.embed_depth, c.ahl_depth, c.fusion_depth)
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    g = torch.Generator().manual_seed(a.seed + 1)
    B, L = a.batch_size, {"text": rc["l_input_length"], "audio": rc["a_input_length"], "vision": rc["v_input_length"]}
    dims = {"text": rc["l_input_dim"], "audio": rc["a_input_dim"], "vision": rc["v_input_dim"]}
    x = {m: torch.randn(B, L[m], dims[m], generator=g) for m in L}
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    batch = Batch(label=label, **{k: v for m in x for k, v in ((m, x[m]), (f"{m}_mask", torch.ones(B, L[m], dtype=torch.bool)))})

    def ref_fn():
        pred = ref(x["vision"], x["audio"], x["text"])
        return {"prediction": pred.squeeze(-1), "total": nn.functional.mse_loss(pred, label.view(-1, 1))}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, **loss.components, "total": loss.total}

    report = ParityReport("almt", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "batch_size": B, "lengths": L, "dims": dims, "optimizer": "AdamW",
                           "lr": c.lr, "weight_decay": c.weight_decay, "dropout": 0.0})
    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: mse", "total", "prediction_mse"),
             ("loss: total", "total", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: torch.optim.AdamW(ps, lr=c.lr, weight_decay=c.weight_decay),
                     seed=a.seed, tolerance=a.tolerance)
    report.not_compared.append("key padding masks (the reference has none; inputs here have no padding)")
    return finish(report, a.json)


if __name__ == "__main__":
    sys.exit(main())
