"""Parity of the toolkit's Self-MM with MMSA's (models/multiTask/SELF_MM.py, trains/multiTask/SELF_MM.py).

    python benchmarks/parity/parity_mmsa_self_mm.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mmsa_self_mm.json unless ``--json`` says otherwise.

Both models are built at MMSA's CMU-MOSI setting (config_regression.json ``self_mm``, toolkit preset ``mosi``)
with every dropout at 0 and the same tiny random BERT (``mmsa_bert_reference.TINY_BERT``) as fine-tuned text
encoder; every reference weight is copied into the toolkit model. A training set of two batches (padded
tokens, unaligned audio/vision of random lengths) is run for three epochs with the weights held fixed: per
batch the four heads' predictions and representations, the four weighted L1 terms (MMSA's trainer's
``weighted_loss`` with its ``label_map``), the total, every gradient, and the generated unimodal labels after
MMSA's ``update_labels`` / ``update_features`` / ``update_centers`` are compared. Finally one Adam step with
MMSA's five parameter groups (built from the reference model as its trainer does) against the toolkit
model's ``param_groups`` is compared parameter by parameter.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParityReport, base_parser, check_coverage, default_json, diff_and_scale,  # noqa: E402
                           finish, grad_diffs, load_mapped, param_diffs, reference_commit, same)
from mmsa_bert_reference import (TINY_BERT, bert_maps, bert_stub, mmsa_text, save_tiny_bert, sequences,  # noqa: E402
                                 token_batch)
from mmsa_reference import (REPO, SUBNETS, TRAINER_PACKAGES, gpu_probe_stub, import_mmsa, mmsa_args,  # noqa: E402
                            mmsa_checkout)

HEADS = {"fusion": "M", "text": "T", "audio": "A", "vision": "V"}
REF_HEAD = {"fusion": "fusion", "text": "text", "audio": "audio", "vision": "video"}
DROPOUTS = {"a_lstm_dropout": 0.0, "v_lstm_dropout": 0.0, "post_fusion_dropout": 0.0, "post_text_dropout": 0.0,
            "post_audio_dropout": 0.0, "post_video_dropout": 0.0}


def weight_map(ref) -> list:
    maps = bert_maps("text_model.model.", "text_encoder.model.", ref)
    for m, r in (("audio", "audio_model"), ("vision", "video_model")):
        maps += [same(f"{r}.rnn.{p}", f"{m}_lstm.rnn.{p}") for p in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                                      "bias_hh_l0")]
        maps += [same(f"{r}.linear_1.{p}", f"{m}_proj.1.{p}") for p in ("weight", "bias")]
    for h, r in REF_HEAD.items():
        for i, t in ((1, "embed.1"), (2, "out.0"), (3, "out.3")):
            maps += [same(f"post_{r}_layer_{i}.{p}", f"heads.{h}.{t}.{p}") for p in ("weight", "bias")]
    return maps


def reference_groups(ref, a) -> list[dict]:
    """MMSA's five Adam groups, from the reference model's parameter names (as trains/multiTask/SELF_MM.py)."""
    no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
    bert = list(ref.text_model.named_parameters())
    rest = [p for n, p in ref.named_parameters() if not n.startswith(("text_model", "audio_model", "video_model"))]
    return [{"params": [p for n, p in bert if not any(k in n for k in no_decay)], "weight_decay": a.weight_decay_bert,
             "lr": a.learning_rate_bert},
            {"params": [p for n, p in bert if any(k in n for k in no_decay)], "weight_decay": 0.0,
             "lr": a.learning_rate_bert},
            {"params": list(ref.audio_model.parameters()), "weight_decay": a.weight_decay_audio,
             "lr": a.learning_rate_audio},
            {"params": list(ref.video_model.parameters()), "weight_decay": a.weight_decay_video,
             "lr": a.learning_rate_video},
            {"params": rest, "weight_decay": a.weight_decay_other, "lr": a.learning_rate_other}]


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="passes over the two training batches")
    ap.set_defaults(batch_size=8)  # 16 samples: both label signs stay populated for every head's centres
    a = ap.parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, "models/multiTask/SELF_MM.py", "trains/multiTask/SELF_MM.py")
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    model_mod = import_mmsa(ref_dir, "MMSA.models.multiTask.SELF_MM",
                            attributes={SUBNETS: {"BertTextEncoder": bert_stub(a.seed)}})
    trainer_mod = import_mmsa(ref_dir, "MMSA.trains.multiTask.SELF_MM", TRAINER_PACKAGES, stubs=gpu_probe_stub())
    B, n_batches, L = a.batch_size, 2, {"text": 8, "audio": 12, "vision": 10}
    args = mmsa_args(ref_dir, "self_mm", text_out=TINY_BERT["hidden_size"], train_samples=B * n_batches, **DROPOUTS)
    dims = {"audio": args.feature_dims[1], "vision": args.feature_dims[2]}
    torch.manual_seed(a.seed)
    ref = model_mod.SELF_MM(args)
    trainer = trainer_mod.SELF_MM(args)
    with tempfile.TemporaryDirectory() as folder:
        tk = create_model("self_mm", "mosi", text_encoder=save_tiny_bert(a.seed, Path(folder)),
                          audio_lstm_dropout=0.0, vision_lstm_dropout=0.0, fusion_dropout=0.0,
                          text_head_dropout=0.0, audio_head_dropout=0.0, vision_head_dropout=0.0)
    maps = weight_map(ref)
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()
    report = ParityReport("self_mm", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "batch_size": B, "batches": n_batches, "epochs": a.epochs,
                           "lengths": L, "dims": dims, "bert": TINY_BERT, "dropout": 0.0})
    n_ref = sum(p.numel() for p in ref.parameters())
    n_tk = sum(p.numel() for p in tk.parameters())
    report.add("parameter count (BERT included)", float(abs(n_ref - n_tk)), 0.0,
               f"reference {n_ref:,}, toolkit {n_tk:,}")

    batches = []
    for i in range(n_batches):
        ids, tmask = token_batch(B, L["text"], a.seed + 10 * i)
        (au, am, al), (vi, vm, vl) = (sequences(B, L[m], dims[m], a.seed + 10 * i + k) for k, m in
                                      ((1, "audio"), (2, "vision")))
        label = torch.empty(B).uniform_(-3, 3, generator=torch.Generator().manual_seed(a.seed + 10 * i + 3))
        index = torch.arange(i * B, (i + 1) * B)
        tb = Batch(text=torch.zeros(B, L["text"], 1), text_mask=tmask, audio=au, audio_mask=am, vision=vi,
                   vision_mask=vm, label=label, text_tokens=ids, ids=[f"s{j}" for j in index.tolist()])
        batches.append((mmsa_text(ids, tmask), (au, al), (vi, vl), label, index, tb))
    trainer.init_labels(torch.cat([b[4] for b in batches]), torch.cat([b[3] for b in batches]))

    for epoch in range(1, a.epochs + 1):
        for i, (text, audio, vision, label, index, tb) in enumerate(batches):
            tag = f"epoch {epoch} batch {i}"
            ref.zero_grad(set_to_none=True), tk.zero_grad(set_to_none=True)
            r = ref(text, audio, vision)
            ref_terms = {h: trainer.weighted_loss(r[k], trainer.label_map[h][index],
                                                  indexes=index, mode=h) for h, k in HEADS.items()}
            ref_total = sum(ref_terms.values())
            out = tk(tb)
            loss = tk.objective(out, tb)
            for h, k in HEADS.items():
                report.add(f"{tag}: prediction {h}", *_d(r[k], out.aux[f"pred_{h}"]))
                report.add(f"{tag}: representation {h}", *_d(r[f"Feature_{k.lower() if k != 'M' else 'f'}"],
                                                             out.aux[f"feature_{h}"]))
                report.add(f"{tag}: loss l1_{h}", *_d(ref_terms[h], loss.components[f"l1_{h}"]))
            report.add(f"{tag}: loss total", *_d(ref_total, loss.total))
            ref_total.backward(), loss.total.backward()
            report.add_group(f"{tag}: gradients", grad_diffs(maps, ref, tk))
            feats = [r[f"Feature_{x}"].detach() for x in "ftav"]
            if epoch > 1:
                trainer.update_labels(*feats, epoch, index, r)
            trainer.update_features(*feats, index)
            trainer.update_centers()
            rows = tk.objective.rows(tb.ids, tb.label)
            for col, h in enumerate(("fusion", "text", "audio", "vision")):
                report.add(f"{tag}: generated labels {h}",
                           *_d(trainer.label_map[h][index], tk.objective.labels[rows, col]))
    opt_r = torch.optim.Adam(reference_groups(ref, args))
    opt_t = torch.optim.Adam(tk.param_groups(tk.config.lr, tk.config.weight_decay))
    grads = grad_diffs(maps, ref, tk)
    opt_r.step(), opt_t.step()
    real, noise = param_diffs(maps, ref, tk, {k: v[0] for k, v in grads.items()})
    report.add_group("Adam step with the five parameter groups: parameters", real)
    report.add_group("Adam step: zero-gradient elements", noise, None,
                     "rounding noise normalised by Adam; informational")
    report.not_compared += [
        "dropout (off on both sides: the two sides draw their masks differently)",
        "aligned data: MMSA runs the audio/vision LSTMs over the text lengths there; the toolkit over each "
        "modality's own mask (compared here on unaligned data, MMSA's setting)",
        "gradient accumulation over update_epochs batches and early stopping (trainer behaviour, see the recipe)",
        "a head whose positive or negative group is empty: MMSA's centre is NaN (mean of nothing), the toolkit's "
        "zero (with 8 samples per batch both groups stay populated here)"]
    return finish(report, a.json if a.json is not None else str(default_json("mmsa_self_mm")))


def _d(expected: torch.Tensor, actual: torch.Tensor) -> tuple[float, float, str, float]:
    d, s = diff_and_scale(expected.reshape(-1), actual.reshape(-1))
    return d, 1e-5, "", s


if __name__ == "__main__":
    sys.exit(main())
