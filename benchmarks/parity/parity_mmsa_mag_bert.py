"""Parity of the toolkit's MAG-BERT with MMSA's bert_mag (models/singleTask/BERT_MAG.py).

    python benchmarks/parity/parity_mmsa_mag_bert.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mmsa_mag_bert.json unless ``--json`` says otherwise.

The reference is MMSA's ``MAG_BertForSequenceClassification`` built on the tiny random BERT configuration
(``mmsa_bert_reference.TINY_BERT``) at MMSA's CMU-MOSI setting (config_regression.json ``bert_mag``, toolkit preset
``mosi``), dropouts at 0. Its ``forward`` calls transformers-4 APIs that the installed transformers no longer
has (``get_extended_attention_mask``, ``head_mask``; its ``init_weights`` fails the same way), so the script
runs the reference's own modules in the order that forward runs them: ``bert.embeddings``, ``bert.MAG``,
``bert.encoder`` (with the additive attention mask), ``bert.pooler``, ``dropout``, ``classifier``. Every
reference weight is copied into the toolkit model; on word-aligned inputs with padded tokens the prediction,
the L1, the gradients and the parameters after an Adam step are compared, twice.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParityReport, base_parser, check_coverage, compare_training, default_json,  # noqa: E402
                           finish, load_mapped, reference_commit, same)
from mmsa_bert_reference import TINY_BERT, save_tiny_bert, sequences, token_batch  # noqa: E402
from mmsa_reference import REPO, import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402

MAG_NAMES = {"W_hv": "gate_v", "W_ha": "gate_a", "W_v": "shift_v", "W_a": "shift_a", "LayerNorm": "norm"}


def weight_map(ref) -> list:
    maps = [same(n, "text_encoder.model." + n[len("bert."):]) for n, _ in ref.named_parameters()
            if n.startswith("bert.") and not n.startswith("bert.MAG.")]
    for r, t in MAG_NAMES.items():
        maps += [same(f"bert.MAG.{r}.{p}", f"mag.{t}.{p}") for p in ("weight", "bias")]
    return maps + [same(f"classifier.{p}", f"head.1.{p}") for p in ("weight", "bias")]


def reference_forward(ref, ids: torch.Tensor, mask: torch.Tensor, visual: torch.Tensor, acoustic: torch.Tensor):
    """MAG_BertForSequenceClassification.forward's computation, module by module (see the module docstring)."""
    bert = ref.bert
    emb = bert.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
    fused = bert.MAG(emb, visual, acoustic)
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    seq = bert.encoder(fused, attention_mask=additive)[0]
    return ref.classifier(ref.dropout(bert.pooler(seq)))


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    a = ap.parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, "models/singleTask/BERT_MAG.py")
    import transformers

    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    mod = import_mmsa(ref_dir, "MMSA.models.singleTask.BERT_MAG")
    args = mmsa_args(ref_dir, "bert_mag", aligned=True, dropout_prob=0.0)
    args.feature_dims = [TINY_BERT["hidden_size"], *args.feature_dims[1:]]
    for cls in (mod.MAG_BertModel, mod.MAG_BertForSequenceClassification):
        cls.init_weights = lambda self: None  # transformers-4 only; every weight is copied below anyway
    torch.manual_seed(a.seed)
    ref = mod.MAG_BertForSequenceClassification(transformers.BertConfig(**TINY_BERT, num_labels=1), args)
    with tempfile.TemporaryDirectory() as folder:
        tk = create_model("mag_bert", "mosi", text_encoder=save_tiny_bert(a.seed, Path(folder)), dropout=0.0,
                          head_dropout=0.0)
    maps = weight_map(ref)
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    B, L = a.batch_size, 10
    dims = {"audio": args.feature_dims[1], "vision": args.feature_dims[2]}
    ids, mask = token_batch(B, L, a.seed)
    (au, _, _), (vi, _, _) = (sequences(B, L, dims[m], a.seed + k, mask.sum(1)) for k, m in ((1, "audio"),
                                                                                              (2, "vision")))
    label = torch.empty(B).uniform_(-3, 3, generator=torch.Generator().manual_seed(a.seed + 3))
    batch = Batch(text=torch.zeros(B, L, 1), text_mask=mask, audio=au, audio_mask=mask, vision=vi, vision_mask=mask,
                  label=label, text_tokens=ids, ids=[f"s{i}" for i in range(B)])

    def ref_fn():
        pred = reference_forward(ref, ids, mask, vi, au)
        return {"prediction": pred.view(-1), "total": torch.nn.functional.l1_loss(pred, label.view(-1, 1))}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, **loss.components, "total": loss.total}

    n_ref, n_tk = sum(p.numel() for p in ref.parameters()), sum(p.numel() for p in tk.parameters())
    report = ParityReport("mag_bert", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "batch_size": B, "length": L, "dims": dims, "bert": TINY_BERT,
                           "optimizer": "Adam", "lr": args.learning_rate, "dropout": 0.0})
    report.add("parameter count (BERT included)", float(abs(n_ref - n_tk)), 0.0, f"reference {n_ref:,}, toolkit {n_tk:,}")
    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: l1", "total", "prediction_l1"),
             ("loss: total", "total", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs, lambda ps: torch.optim.Adam(ps, lr=args.learning_rate),
                     seed=a.seed, tolerance=a.tolerance, measured_floor=True)
    report.not_compared += [
        "MAG_BertModel.forward itself (transformers-4 APIs; its modules are run in its order instead)",
        "dropout (off on both sides: the sides draw masks differently)",
        "the frozen-text variant (no text encoder): MMSA has none"]
    return finish(report, a.json if a.json is not None else str(default_json("mmsa_mag_bert")))


if __name__ == "__main__":
    sys.exit(main())
