"""Parity of the toolkit's DLF with the authors' code (pwang322/DLF), BERT bypassed.

    python benchmarks/parity/parity_dlf.py --reference-dir /path/to/DLF [--json PATH]

Writes benchmarks/results/parity/parity_dlf.json unless ``--json`` names another path (``--json ''``: none).

Both models are built at the reference's CMU-MOSI configuration (``config/config.json``,
aligned 50/50/50, toolkit preset ``mosi``) with the settings that make the two models the
same function; the toolkit's documented deviations (msa_toolkit/models/dlf.py) are bridged:

- convolution kernels 1 (the toolkit pads "same", the reference does not pad, so at k = 5
  their sequence lengths differ) — the k = 5 projection is checked on its own instead;
- the reference's causal attention mask off (``attn_mask`` false; the toolkit attends
  bidirectionally) and no padding (the reference has no key masks);
- the reference's triplet projections ``Linear(L*d, d)`` over the flattened sequence are set
  to the toolkit's mean-pool + ``Linear(d, d)`` (each column block = W / L);
- every dropout 0, so the comparison is deterministic.

The reference loss is the expression of its training loop (``trains/singleTask/DLF.py``,
which needs CUDA) written out here with its own ``HingeLoss``; the model is imported.
Layer-level checks (the MulT encoder alone, the k = 5 projection, the positional table)
are reported too, so a mismatch can be traced to the first layer that diverges.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParamMap, ParityReport, ReferencePositions, base_parser,  # noqa: E402
                           check_coverage, check_reference_dir, compare_training, diff_and_scale, finish,
                           import_reference, load_mapped, reference_commit, same)

REPO = "pwang322/DLF"
EXPECTED_FILES = ("trains/singleTask/model/DLF.py", "trains/singleTask/HingeLoss.py", "config/config.json")
#: toolkit modality -> reference suffix
KEY = {"text": "l", "audio": "a", "vision": "v"}
#: reference order of the three blocks in its concatenations (l, v, a) as toolkit modalities
REF_ORDER = ("text", "vision", "audio")
TK_ORDER = ("text", "audio", "vision")
ZERO_DROPOUT = {"attn_dropout": 0.0, "attn_dropout_a": 0.0, "attn_dropout_v": 0.0, "relu_dropout": 0.0,
                "embed_dropout": 0.0, "res_dropout": 0.0, "output_dropout": 0.0, "text_dropout": 0.0}
TK_ZERO_DROPOUT = {"attn_dropout": 0.0, "attn_dropout_audio": 0.0, "attn_dropout_vision": 0.0, "ff_dropout": 0.0,
                   "res_dropout": 0.0, "embed_dropout": 0.0, "out_dropout": 0.0, "text_dropout": 0.0}


def block_index(d: int, extra: int = 0) -> torch.Tensor:
    """Index ``idx`` with ``x_toolkit = x_reference[idx]`` for a concatenation of per-modality d-blocks.

    ``extra`` > 0 appends the shared block of ``3 d`` (itself per-modality ordered) after the
    three d-blocks (DLF's fusion input).
    """
    def blocks(offset: int) -> list[torch.Tensor]:
        return [torch.arange(d) + offset + REF_ORDER.index(m) * d for m in TK_ORDER]

    idx = blocks(0)
    if extra:
        idx += blocks(3 * d)
    return torch.cat(idx)


def _encoder(ref: str, tk: str, layers: int) -> list[ParamMap]:
    """A reference MulT TransformerEncoder -> the toolkit's CrossModalTransformer."""
    maps = [same(f"{ref}.layer_norm.{p}", f"{tk}.norm.{p}") for p in ("weight", "bias")]
    for i in range(layers):
        r, t = f"{ref}.layers.{i}", f"{tk}.blocks.{i}"
        # MulT's fused in-projection is the toolkit's fused ``qkv`` (rows q, k, v) as it is
        maps += [same(f"{r}.self_attn.in_proj_weight", f"{t}.attn.qkv.weight"),
                 same(f"{r}.self_attn.in_proj_bias", f"{t}.attn.qkv.bias")]
        maps += [same(f"{r}.self_attn.out_proj.{p}", f"{t}.attn.to_out.{p}") for p in ("weight", "bias")]
        maps += [same(f"{r}.fc1.{p}", f"{t}.ff.0.{p}") for p in ("weight", "bias")]
        maps += [same(f"{r}.fc2.{p}", f"{t}.ff.3.{p}") for p in ("weight", "bias")]
        maps += [same(f"{r}.layer_norms.1.{p}", f"{t}.norm_ff.{p}") for p in ("weight", "bias")]
        # MulT normalises query, key and value with one LayerNorm; so does the toolkit (shared_kv_norm)
        maps += [same(f"{r}.layer_norms.0.{p}", f"{t}.norm_q.{p}") for p in ("weight", "bias")]
    return maps


def _pooled_linear(ref: str, tk: str, d: int, L: int) -> ParamMap:
    """Reference ``Linear(L*d, d)`` on the flattened [d, L] sequence -> toolkit mean-pool + ``Linear(d, d)``."""
    def prepare(r):  # make the reference weight column-block constant: W_big[:, j*L + t] = W[:, j] / L
        return [r[0].view(d, d, L).mean(-1, keepdim=True).expand(d, d, L).reshape(d, d * L)]

    return ParamMap((ref,), (tk,), lambda r: [r[0].view(d, d, L).sum(-1)],
                    lambda rg, tg: (rg[0].view(d, d, L).mean(-1), tg[0]), elementwise=False,
                    note="flattened-sequence Linear tied to mean-pool + Linear", prepare=prepare)


def _head(ref: tuple[str, str, str], tk: str, idx: torch.Tensor | None) -> list[ParamMap]:
    """MulT residual head (proj1, proj2, out); ``idx`` permutes its input space (block order)."""
    cols = (lambda w: w[:, idx]) if idx is not None else None
    rows = (lambda w: w[idx]) if idx is not None else None
    p1, p2, out = ref
    return [same(f"{p1}.weight", f"{tk}.proj1.weight", cols), same(f"{p1}.bias", f"{tk}.proj1.bias"),
            same(f"{p2}.weight", f"{tk}.proj2.weight", rows), same(f"{p2}.bias", f"{tk}.proj2.bias", rows),
            same(f"{out}.weight", f"{tk}.out.weight", cols), same(f"{out}.bias", f"{tk}.out.bias")]


def weight_map(d: int, L: dict[str, int], layers: int, mem_layers: int) -> list[ParamMap]:
    """Reference state_dict name -> toolkit state_dict name, the whole DLF model.

    Toolkit names assumed (msa_toolkit/models/dlf.py): ``proj.<m>.conv``, ``shared_encoder``,
    ``specific_encoders.<m>``, ``decoders.<m>``, ``triplet_proj.<m>``, ``shared_self_attn.<m>``,
    ``shared_head``, ``lfa_text_mem``, ``lfa_cross.{audio,vision}``, ``lfa_mem.{audio,vision}``,
    ``specific_heads.<m>``, ``gates.<m>``, ``shared_gate``, ``fusion_head``; encoders are
    ``CrossModalTransformer`` (``blocks.<i>.{norm_q,attn.qkv,attn.to_out,norm_ff,ff.0,ff.3}``,
    ``norm``); heads are ``ResidualHead`` (``proj1``, ``proj2``, ``out``).
    """
    idx3, idx6 = block_index(d), block_index(d, extra=1)
    maps = _encoder("encoder_c", "shared_encoder", layers)
    for m, k in KEY.items():
        maps.append(same(f"proj_{k}.weight", f"proj.{m}.conv.weight"))
        maps += _encoder(f"encoder_s_{k}", f"specific_encoders.{m}", layers)
        maps.append(same(f"decoder_{k}.weight", f"decoders.{m}.weight", lambda w: w.squeeze(-1)))
        maps += [_pooled_linear(f"align_c_{k}.weight", f"triplet_proj.{m}.weight", d, L[m]),
                 same(f"align_c_{k}.bias", f"triplet_proj.{m}.bias")]
        maps += _encoder(f"self_attentions_c_{k}", f"shared_self_attn.{m}", layers)
        maps += _head((f"proj1_{k}_high", f"proj2_{k}_high", f"out_layer_{k}_high"), f"specific_heads.{m}", None)
        maps += [same(f"projector_{k}.{p}", f"gates.{m}.{p}") for p in ("weight", "bias")]
    maps += _head(("proj1_c", "proj2_c", "out_layer_c"), "shared_head", idx3)
    maps += [same("projector_c.weight", "shared_gate.weight", lambda w: w[idx3][:, idx3]),
             same("projector_c.bias", "shared_gate.bias", lambda b: b[idx3])]
    maps += _head(("proj1", "proj2", "out_layer"), "fusion_head", idx6)
    maps += _encoder("trans_l_mem", "lfa_text_mem", layers)
    for m, k in (("audio", "a"), ("vision", "v")):
        maps += _encoder(f"trans_l_with_{k}", f"lfa_cross.{m}", layers)
        maps += _encoder(f"trans_{k}_mem", f"lfa_mem.{m}", mem_layers)
    return maps


#: reference layers built but used in neither the loss nor the prediction (toolkit deviation 5)
REF_UNUSED = ("trans_a_with_l.", "trans_a_with_v.", "trans_v_with_l.", "trans_v_with_a.", "proj_cosine_l.",
              "proj_cosine_v.", "proj_cosine_a.", *(f"{p}_{k}_low." for p in ("proj1", "proj2", "out_layer")
                                                    for k in "lva"))


def reference_args(cfg: dict, aligned: bool, kernel: int, attn_mask: bool, dims: tuple[int, int, int],
                   keep_dropout: bool = False) -> Namespace:
    """The reference's args at its MOSI config, BERT off, with the given kernel / mask / alignment.

    Dropouts are 0 unless ``keep_dropout`` (then the config's values).
    """
    p = {**cfg["DLF"]["commonParams"], **cfg["DLF"]["datasetParams"]["mosi"]}
    if not keep_dropout:
        p.update(ZERO_DROPOUT)
    p.update(use_bert=False, dataset_name="mosi", need_data_aligned=aligned, attn_mask=attn_mask,
             feature_dims=dims, conv1d_kernel_size_l=kernel, conv1d_kernel_size_a=kernel,
             conv1d_kernel_size_v=kernel)
    return Namespace(p)


def reference_loss(out: dict, label: torch.Tensor, hinge, num: int) -> dict[str, torch.Tensor]:
    """The reference training loop's loss terms, weighted as it weights them (names = toolkit components)."""
    y = label.view(-1, 1)
    t = {"final_l1": F.l1_loss(out["output_logit"], y), "shared_l1": F.l1_loss(out["logits_c"], y),
         "text_l1": 3 * F.l1_loss(out["logits_l_hetero"], y), "vision_l1": F.l1_loss(out["logits_v_hetero"], y),
         "audio_l1": F.l1_loss(out["logits_a_hetero"], y)}
    t["reconstruction"] = 0.1 * sum(F.mse_loss(out[f"recon_{k}"], out[f"origin_{k}"]) for k in "lva")
    t["specific"] = 0.1 * sum(F.mse_loss(out[f"s_{k}"].permute(1, 2, 0), out[f"s_{k}_r"]) for k in "lva")
    minus1 = torch.tensor([-1])
    t["orthogonality"] = 0.01 * sum(F.cosine_embedding_loss(out[f"s_{k}"].reshape(-1, num), out[f"c_{k}"].reshape(
        -1, num), minus1) for k in "lva")
    feats = torch.stack([out[f"c_{k}_sim"] for k in "lva"], 1).flatten(0, 1)
    t["triplet"] = 0.01 * hinge(label.repeat_interleave(3).view(-1, 1), feats)
    t["total"] = sum(t.values())
    return t


def layer_checks(report: ParityReport, ref_mod, ref, tk, x_text: torch.Tensor, kernel5: int, tol: float) -> None:
    """Checks of single layers (encoder, positions, k = 5 projection) to locate a divergence."""
    with torch.no_grad():
        p = tk.proj["text"](x_text)
        r = ref.encoder_s_l(p.transpose(0, 1)).transpose(0, 1)
        d, s = diff_and_scale(r, tk.specific_encoders["text"](p))
        report.add("layer: MulT encoder alone (specific text encoder)", d, tol, scale=s)
        pe_mod = sys.modules.get("_dlf_ref_pos")
        if pe_mod is not None:
            L, dim = x_text.shape[1], p.shape[-1]
            ref_pe = pe_mod.SinusoidalPositionalEmbedding(dim)(torch.ones(1, L))[0]
            d, s = diff_and_scale(ref_pe, tk.specific_encoders["text"].pos(p[:1]))
            report.add("layer: sinusoidal position table", d, tol, "fairseq table (positions from 1, "
                       "sin|cos halves) vs toolkit table", scale=s)
        conv = torch.nn.Conv1d(x_text.shape[-1], p.shape[-1], kernel5, bias=False)
        from msa_toolkit.layers.heads import ConvProjection
        tk_conv = ConvProjection(x_text.shape[-1], p.shape[-1], kernel5)
        tk_conv.conv.weight.copy_(conv.weight)
        ref_y = conv(x_text.transpose(1, 2)).transpose(1, 2)
        h = kernel5 // 2
        d, s = diff_and_scale(ref_y, tk_conv(x_text)[:, h:x_text.shape[1] - h])
        report.add(f"layer: k={kernel5} projection, inner steps", d, tol, "reference keeps L-k+1 steps, toolkit L "
                   "('same' padding): compared on the steps both have", scale=s)


def patch_positions(tk, table_cls) -> int:
    """Swap every CrossModalTransformer's ``pos`` in this toolkit *instance* for the reference table.

    In-memory, on this object only (the toolkit's code is not changed): used with
    ``--diagnose-positions`` to show whether the position table is the only difference.
    """
    from msa_toolkit.layers import CrossModalTransformer
    n = 0
    for mod in tk.modules():
        if isinstance(mod, CrossModalTransformer):
            mod.pos = ReferencePositions(table_cls, mod.norm.normalized_shape[0])
            n += 1
    return n


def _stub_gpu_utils() -> None:
    """The reference's utils import pynvml (GPU selection), not needed here: stub it when absent."""
    import importlib.util

    if "pynvml" not in sys.modules and importlib.util.find_spec("pynvml") is None:
        sys.modules["pynvml"] = types.ModuleType("pynvml")


def import_reference_modules(ref_dir: Path):
    """(model module, HingeLoss module, config dict) of the checkout; the position module is kept
    as ``sys.modules["_dlf_ref_pos"]`` for the layer checks."""
    import json

    model_mod = import_reference(ref_dir, "trains.singleTask.model.DLF", _stub_gpu_utils)
    hinge_mod = import_reference(ref_dir, "trains.singleTask.HingeLoss", _stub_gpu_utils)
    sys.modules["_dlf_ref_pos"] = import_reference(ref_dir, "trains.subNets.transformers_encoder.position_embedding",
                                                   _stub_gpu_utils)
    return model_mod, hinge_mod, json.loads((ref_dir / "config" / "config.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--diagnose-positions", action="store_true",
                    help="diagnosis: give the toolkit instance the reference's position table, to show that "
                         "it is the only difference")
    a = ap.parse_args(argv)
    ref_dir = check_reference_dir(a.reference_dir, EXPECTED_FILES, REPO)
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    model_mod, hinge_mod, cfg = import_reference_modules(ref_dir)
    mosi = cfg["DLF"]["datasetParams"]["mosi"]
    d, _ = mosi["dst_feature_dim_nheads"]
    dims = (768, 5, 20)
    L = {"text": 50, "audio": 50, "vision": 50}

    torch.manual_seed(a.seed)
    ref = model_mod.DLF(reference_args(cfg, aligned=True, kernel=1, attn_mask=False, dims=dims))
    tk = create_model("dlf", "mosi", text_len=50, audio_len=50, vision_len=50, kernel_text=1, kernel_audio=1,
                      kernel_vision=1, **TK_ZERO_DROPOUT)
    c = tk.config
    maps = weight_map(d, L, c.layers, c.mem_layers)
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()
    if a.diagnose_positions:
        n = patch_positions(tk, sys.modules["_dlf_ref_pos"].SinusoidalPositionalEmbedding)
        print(f"diagnosis: {n} toolkit encoders given the reference's position table (in memory only)")

    g = torch.Generator().manual_seed(a.seed + 1)
    B = a.batch_size
    x = {m: torch.randn(B, L[m], dim, generator=g) for m, dim in zip(TK_ORDER, dims)}
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    masks = {f"{m}_mask": torch.ones(B, L[m], dtype=torch.bool) for m in L}
    batch = Batch(label=label, **x, **masks)
    hinge = hinge_mod.HingeLoss()

    def ref_fn():
        out = ref(x["text"], x["audio"], x["vision"])
        preds = {"prediction": out["output_logit"].squeeze(-1), "pred_shared": out["logits_c"].squeeze(-1),
                 **{f"pred_{m}": out[f"logits_{k}_hetero"].squeeze(-1) for m, k in KEY.items()}}
        return {**preds, **reference_loss(out, label, hinge, num=d)}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, **{k: v for k, v in out.aux.items() if k.startswith("pred_")},
                **loss.components, "total": loss.total}

    report = ParityReport("dlf", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "lengths": L, "dims": dims, "batch_size": B, "kernel": 1,
                           "reference attn_mask": False, "dropout": 0.0, "optimizer": "Adam", "lr": c.lr,
                           "diagnose_positions": a.diagnose_positions})
    layer_checks(report, model_mod, ref, tk, x["text"], mosi["conv1d_kernel_size_l"], a.tolerance)
    pairs = [(f"forward: {k}", k, k) for k in ("prediction", "pred_shared", "pred_text", "pred_audio", "pred_vision")]
    pairs += [(f"loss: {k}", k, k) for k in ("final_l1", "shared_l1", "text_l1", "audio_l1", "vision_l1",
                                             "reconstruction", "specific", "orthogonality", "triplet", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: torch.optim.Adam(ps, lr=c.lr), seed=a.seed, tolerance=a.tolerance)
    report.not_compared += [
        "kernel-5 convolutions in the full model (sequence lengths differ by design; the projection is checked "
        "alone)",
        "the reference's causal attention mask (config attn_mask=true; the toolkit is bidirectional by design)",
        "padding / key masks (the reference has none)",
        "dropout (all 0 for a deterministic comparison); gradient value clipping (0.6, elementwise on both sides)",
        "reference layers used in neither loss nor prediction: " + ", ".join(REF_UNUSED)]
    return finish(report, a.json)


if __name__ == "__main__":
    sys.exit(main())
