"""Parity of the toolkit's CENET with MMSA's (thuiar/MMSA models/singleTask/CENET.py), small random BERT.

    python benchmarks/parity/parity_mmsa_cenet.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_cenet.json unless ``--json`` says otherwise (``--json ''``: none).

MMSA's CENET is its own copy of BERT (written against ``pytorch_transformers``) with the CE module inside its
encoder; the toolkit's hooks CE into a Hugging Face BERT given as ``model.text_encoder``. Both are built from
the same small, randomly initialised BERT configuration (:data:`BERT`; ``pytorch_transformers`` is stubbed with
``transformers``' BertConfig and a minimal PreTrainedModel, nothing is downloaded): MMSA's model is built
directly, a ``transformers.BertModel`` of that configuration is saved to a temporary folder for the toolkit, and
every MMSA weight is copied into the toolkit model (:func:`weight_map`). Both get the same token ids (no padding)
and 5/20-d audio/visual sequences; compared in fp32 on CPU with dropout 0: the prediction, the L1 loss of MMSA's
trainer, the gradients and the parameters after one Adam step (lr 1e-5 as the mosi config, gradient norm clipped
at 2 as its trainer), then again one step later.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParityReport, base_parser, check_coverage, compare_training,  # noqa: E402
                           finish, fused, load_mapped, reference_commit, same)
from mmsa_reference import REPO, import_mmsa, mmsa_checkout  # noqa: E402

#: the small BERT built on both sides
BERT = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=1)
#: MMSA builds these embedding tables (pos_tag/senti/polarity_embedding=True in AMIO) but never feeds them
REF_UNUSED = ("bert.embeddings.senti_embeddings.", "bert.embeddings.pos_tag_embeddings.",
              "bert.embeddings.polarity_embeddings.")


def pytorch_transformers_stub() -> types.ModuleType:
    """What MMSA's CENET.py imports from ``pytorch_transformers``, from ``transformers`` and a minimal base."""
    import transformers

    class PreTrainedModel(nn.Module):
        def __init__(self, config, *args, **kwargs):
            super().__init__()
            self.config = config

        def init_weights(self):
            self.apply(self._init_weights)

    mod = types.ModuleType("pytorch_transformers")
    mod.__path__ = []
    mod.BertConfig, mod.PreTrainedModel = transformers.BertConfig, PreTrainedModel
    mod.BERT_PRETRAINED_MODEL_ARCHIVE_MAP = {}
    utils = types.ModuleType("pytorch_transformers.modeling_utils")
    utils.PreTrainedModel, utils.prune_linear_layer = PreTrainedModel, None
    mod.modeling_utils = utils
    return mod


def _stubs() -> dict[str, types.ModuleType]:
    mod = pytorch_transformers_stub()
    return {"pytorch_transformers": mod, "pytorch_transformers.modeling_utils": mod.modeling_utils}


def weight_map(ref: nn.Module):
    maps, tkb = [], "text_encoder.model."
    for name, _ in ref.named_parameters():
        if name.startswith(REF_UNUSED) or name.startswith("bert.encoder.CE."):
            continue
        if name.startswith("bert."):
            maps.append(same(name, tkb + name[len("bert."):]))
    for i, tk in (("dense", "head.1"), ("out_proj", "head.4")):
        maps += [same(f"classifier.{i}.{p}", f"{tk}.{p}") for p in ("weight", "bias")]
    ce = "bert.encoder.CE."
    for ref_m, tk_m in (("visual", "vision"), ("acoustic", "audio")):
        maps += [same(f"{ce}{ref_m}_transform.{i}.{p}", f"ce.{tk_m}_transform.{i}.{p}") for i in (0, 2)
                 for p in ("weight", "bias")]
    for ref_a, tk_a in (("hv", "vision"), ("ha", "audio")):
        maps += [fused([f"{ce}{ref_a}.W{x}.{p}" for x in "qkv"], f"ce.{tk_a}_attention.qkv.{p}")
                 for p in ("weight", "bias")]
    maps += [same(f"{ce}cat_connect.{p}", f"ce.cat_connect.{p}") for p in ("weight", "bias")]
    return maps


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8, help="tokens (and audio/visual steps)")
    a = ap.parse_args(argv)
    root = mmsa_checkout(a.reference_dir, "models/singleTask/CENET.py")
    import transformers

    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    mod = import_mmsa(root, "MMSA.models.singleTask.CENET", stubs=_stubs())
    config = transformers.BertConfig(**BERT)
    config.output_attentions = config.output_hidden_states = False
    dims = (BERT["hidden_size"], 5, 20)
    torch.manual_seed(a.seed)
    ref = mod.CENET(config, pos_tag_embedding=True, senti_embedding=True, polarity_embedding=True,
                    args=Namespace({"feature_dims": dims}))
    with tempfile.TemporaryDirectory() as tmp:
        transformers.BertModel(config).save_pretrained(tmp)
        tk = create_model("cenet", "mosi", text_encoder=tmp, text_dim=dims[0], dropout=0.0)
    maps = weight_map(ref)
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    g = torch.Generator().manual_seed(a.seed + 1)
    B, L = a.batch_size, a.length
    ids = torch.randint(1, BERT["vocab_size"], (B, L), generator=g)
    audio, vision = torch.randn(B, L, dims[1], generator=g), torch.randn(B, L, dims[2], generator=g)
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    ones = torch.ones(B, L, dtype=torch.bool)
    text3 = torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1).float()  # MMSA's [B, 3, L]
    batch = Batch(text=torch.zeros(B, L, dims[0]), text_tokens=ids, audio=audio, vision=vision, label=label,
                  text_mask=ones, audio_mask=ones, vision_mask=ones)

    def ref_fn():
        logits = ref(text3, audio, vision)[0]
        return {"prediction": logits.view(-1), "total": nn.L1Loss()(logits, label.view(-1, 1))}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, "total": loss.total}

    n_ref = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith(REF_UNUSED))
    n_tk = sum(p.numel() for p in tk.parameters())
    report = ParityReport("cenet", REPO, reference_commit(root),
                          {"preset": "mosi", "bert": BERT, "batch_size": B, "length": L, "dims": dims,
                           "optimizer": "Adam", "lr": 1e-5, "grad_clip_norm": 2.0, "dropout": 0.0})
    report.add("parameters: count (BERT included, reference without its unused embedding tables)",
               float(abs(n_ref - n_tk)), 0.0, f"reference {n_ref}, toolkit {n_tk}")
    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: L1 (total)", "total", "total")]

    class ClippedAdam(torch.optim.Adam):
        def step(self, closure=None):
            torch.nn.utils.clip_grad_norm_([p for g_ in self.param_groups for p in g_["params"]], 2.0)
            return super().step(closure)

    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs, lambda ps: ClippedAdam(ps, lr=1e-5),
                     seed=a.seed, tolerance=a.tolerance, measured_floor=True, resync=True)
    report.not_compared += [
        "pretrained BERT weights: a small random BERT configuration on both sides (no download)",
        "MMSA's unused POS-tag / sentiment-word / polarity embedding tables (never fed; not built by the toolkit)",
        "the optimiser's groups (weight decay 1e-4 on weights, 0 on biases/LayerNorm) and Adam epsilon: the step "
        "here is plain Adam on both sides",
        "padding: MMSA's CE has no key masks; inputs here have none"]
    return finish(report, a.json, "")


if __name__ == "__main__":
    sys.exit(main())
