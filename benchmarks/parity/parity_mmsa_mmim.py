"""Parity of the toolkit's MMIM with MMSA's (models/singleTask/MMIM.py, trains/singleTask/MMIM.py).

    python benchmarks/parity/parity_mmsa_mmim.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mmsa_mmim.json unless ``--json`` says otherwise.

Both models are built at MMSA's CMU-MOSI setting (config_regression.json ``mmim``, toolkit preset ``mosi``), the
fusion dropout at 0, with the same tiny random BERT as fine-tuned text encoder; every reference weight is
copied into the toolkit model. Three training batches (padded tokens, unaligned audio/vision) run with the
weights held fixed, MMSA's memory of positive/negative projections handled as its ``train_others`` does:
per batch the prediction, the CPC score, the MMILB bound (lld), the entropy H, the L1 and the total of
MMSA's second stage are compared, and the gradients: those of the MMILB networks against MMSA's first stage
(``-lld`` without labels), the others against its second stage. Then one Adam step with MMSA's groups (its
MMILB optimiser and its BERT / main groups) against the toolkit's ``param_groups`` is compared.
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
from mmsa_reference import REPO, SUBNETS, import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402

PAIRS = {"tv": ("mi_tv", "objective_.mi.tv"), "ta": ("mi_ta", "objective_.mi.ta")}


def weight_map(ref) -> list:
    maps = bert_maps("bertmodel.model.", "text_encoder.model.", ref)
    lstm = [f"{p}{s}" for p in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0") for s in ("", "_reverse")]
    for m, r in (("vision", "visual_enc"), ("audio", "acoustic_enc")):
        maps += [same(f"{r}.rnn.{p}", f"lstm.{m}.rnn.{p}") for p in lstm]
        maps += [same(f"{r}.linear_1.{p}", f"proj.{m}.1.{p}") for p in ("weight", "bias")]
    for p in ("weight", "bias"):
        for r, t in PAIRS.values():
            maps += [same(f"{r}.mlp_mu.{i}.{p}", f"{t}.mu.{i}.{p}") for i in (0, 2)]
            maps += [same(f"{r}.mlp_logvar.{i}.{p}", f"{t}.logvar.{i}.{p}") for i in (0, 2)]
            maps.append(same(f"{r}.entropy_prj.0.{p}", f"{t}.entropy_proj.0.{p}"))
        maps += [same(f"cpc_z{k}.net.{p}", f"cpc.{m}.net.0.{p}") for k, m in (("t", "text"), ("v", "vision"),
                                                                                ("a", "audio"))]
        maps += [same(f"fusion_prj.linear_1.{p}", f"fusion.1.{p}"), same(f"fusion_prj.linear_2.{p}", f"fusion.3.{p}"),
                 same(f"fusion_prj.linear_3.{p}", f"head.{p}")]
    return maps


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.set_defaults(batch_size=8)  # enough positive and negative samples for non-singular covariances
    a = ap.parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, "models/singleTask/MMIM.py")
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    model_mod = import_mmsa(ref_dir, "MMSA.models.singleTask.MMIM",
                            attributes={SUBNETS: {"BertTextEncoder": bert_stub(a.seed)}})
    hidden = TINY_BERT["hidden_size"]
    args = mmsa_args(ref_dir, "mmim", dropout_prj=0.0)
    args.feature_dims = [hidden, *args.feature_dims[1:]]  # d_tout is read from the text dim: the tiny BERT's
    torch.manual_seed(a.seed)
    ref = model_mod.MMIM(args)
    with tempfile.TemporaryDirectory() as folder:
        tk = create_model("mmim", "mosi", text_encoder=save_tiny_bert(a.seed, Path(folder)), dropout=0.0)
    maps = weight_map(ref)
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()
    B, L = a.batch_size, {"text": 8, "audio": 12, "vision": 10}
    dims = {"audio": args.feature_dims[1], "vision": args.feature_dims[2]}
    report = ParityReport("mmim", REPO, reference_commit(ref_dir),
                          {"preset": "mosi", "batch_size": B, "lengths": L, "dims": dims, "bert": TINY_BERT,
                           "dropout": 0.0, "mem_size": args.mem_size})
    n_ref, n_tk = sum(p.numel() for p in ref.parameters()), sum(p.numel() for p in tk.parameters())
    report.add("parameter count (BERT included)", float(abs(n_ref - n_tk)), 0.0, f"reference {n_ref:,}, toolkit {n_tk:,}")

    mem = {k: {"pos": [], "neg": []} for k in PAIRS}
    for i in range(3):
        ids, tmask = token_batch(B, L["text"], a.seed + 10 * i)
        (au, am, al), (vi, vm, vl) = (sequences(B, L[m], dims[m], a.seed + 10 * i + k) for k, m in
                                      ((1, "audio"), (2, "vision")))
        g = torch.Generator().manual_seed(a.seed + 10 * i + 3)
        label = torch.empty(B).uniform_(0.1, 3, generator=g) * torch.tensor([1.0, -1.0]).repeat(B // 2 + 1)[:B]
        batch = Batch(text=torch.zeros(B, L["text"], 1), text_mask=tmask, audio=au, audio_mask=am, vision=vi,
                      vision_mask=vm, label=label, text_tokens=ids, ids=[f"s{j}" for j in range(B)])
        text, y, tag = mmsa_text(ids, tmask), label.view(-1, 1), f"batch {i}"
        # MMSA's first stage: the MMILB networks maximise lld (no labels, no memory)
        ref.zero_grad(set_to_none=True)
        (-ref(text, (au, al), (vi, vl))["lld"]).backward()
        stage1 = {n: p.grad.clone() for n, p in ref.named_parameters() if n.startswith("mi_") and p.grad is not None}
        # its second stage (train_others), memory passed from batch mem_size on, H subtracted after it
        ref.zero_grad(set_to_none=True)
        use_mem = i >= args.mem_size
        r = ref(text, (au, al), (vi, vl), y=y, mem={k: mem[k] if use_mem else None for k in PAIRS} | {"va": None})
        for k in PAIRS:
            pn = r["pn_dic"][k]
            for s in ("pos", "neg"):
                mem[k][s] = (mem[k][s] + [pn[s].detach()])[-args.mem_size:]
        y_loss = torch.nn.functional.l1_loss(r["M"], y)
        ref_total = y_loss + args.alpha * r["nce"] - args.beta * r["lld"]
        if i > args.mem_size:
            ref_total = ref_total - args.beta * r["H"]
        ref_total.backward()
        for n, p in ref.named_parameters():
            if n.startswith("mi_"):
                p.grad = stage1.get(n)  # MMSA steps the MMILB networks with the first stage's gradients only
        tk.zero_grad(set_to_none=True)
        out = tk(batch)
        loss = tk.objective(out, batch)
        (loss.total).backward()
        quirk = i == args.mem_size  # MMSA computes H here but subtracts it only from the next batch
        H = r["H"] if torch.is_tensor(r["H"]) else torch.tensor(float(r["H"]))
        for label_, e, t, tol in (("prediction", r["M"], out.prediction, a.tolerance),
                                  ("L1", y_loss, loss.components["prediction_l1"], a.tolerance),
                                  ("nce (alpha-weighted)", args.alpha * r["nce"], loss.components["nce"], a.tolerance),
                                  ("lld (-beta-weighted)", -args.beta * r["lld"], loss.components["lld"], a.tolerance),
                                  ("MMILB stage loss -lld", -r["lld"], loss.components["mmilb_lld"], a.tolerance),
                                  ("entropy H (-beta-weighted)", -args.beta * H, loss.components["entropy"], a.tolerance),
                                  ("total (second stage)", ref_total, loss.total - loss.components["mmilb_lld"],
                                   None if quirk else a.tolerance)):
            d, s = diff_and_scale(e.reshape(-1), t.reshape(-1))
            report.add(f"{tag}: {label_}", d, tol, "MMSA skips H at i_batch == mem_size" if tol is None else "", s)
        report.add_group(f"{tag}: gradients (MMILB: first stage; others: second stage)", grad_diffs(maps, ref, tk),
                         None if quirk else a.tolerance, "MMSA skips H at i_batch == mem_size" if quirk else "")
    main_params = [p for n, p in ref.named_parameters() if not n.startswith("mi_") and "bert" not in n]
    bert_params = [p for n, p in ref.named_parameters() if "bert" in n]
    mi_params = [p for n, p in ref.named_parameters() if n.startswith("mi_")]
    opt_mi = torch.optim.Adam(mi_params, lr=args.lr_mmilb, weight_decay=args.weight_decay_mmilb)
    opt_main = torch.optim.Adam([{"params": bert_params, "weight_decay": args.weight_decay_bert, "lr": args.lr_bert},
                                 {"params": main_params, "weight_decay": args.weight_decay_main, "lr": args.lr_main}])
    opt_tk = torch.optim.Adam(tk.param_groups(tk.config.lr, tk.config.weight_decay))
    grads = grad_diffs(maps, ref, tk)
    opt_mi.step(), opt_main.step(), opt_tk.step()
    real, noise = param_diffs(maps, ref, tk, {k: v[0] for k, v in grads.items()})
    report.add_group("Adam step with MMSA's groups: parameters", real, a.tolerance)
    report.add_group("Adam step: zero-gradient elements", noise, None, "rounding noise normalised by Adam; informational")
    report.not_compared += [
        "dropout (off on both sides: the sides draw masks differently)",
        "MMSA's separate first-stage pass over the training set before each epoch: here each step carries both "
        "stages' gradients (compared per batch above with the weights held fixed)",
        "MMSA starts the memory empty each epoch and subtracts H only from batch mem_size + 1 on (the batch-1 "
        "rows marked info); the toolkit subtracts it once the memory is full",
        "aligned data (MMSA packs audio/vision with the text lengths there; compared on unaligned data)",
        "gradient-norm clipping and the plateau schedule (trainer behaviour, see the recipe)"]
    return finish(report, a.json if a.json is not None else str(default_json("mmsa_mmim")))


if __name__ == "__main__":
    sys.exit(main())
