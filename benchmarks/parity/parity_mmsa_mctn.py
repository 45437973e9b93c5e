"""Parity of the toolkit's MCTN with MMSA's (thuiar/MMSA models/singleTask/MCTN.py).

    python benchmarks/parity/parity_mmsa_mctn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mctn.json unless ``--json`` says otherwise (``--json ''``: none).

Both models are built at MMSA's CMU-MOSI configuration (``config_regression.json`` "mctn" / "mosi": hidden 32,
features zero-padded to 768; toolkit preset ``mosi``); every reference weight is copied into the toolkit model
(:func:`weight_map`) and both get the same word-aligned batch (768/5/20-d, no padding). MMSA's LSTMs are not
``batch_first`` yet its trainer hands them batch-first tensors, so its recurrences and its decoder attention
run across the batch. Here MMSA's model receives the batch **time-major**, the layout its seq2seq modules are
written for, and then computes the paper's translations; its regression head, which pools with a softmax over
axis 1 (time only in the batch-first layout), is bridged: :func:`time_major_regression` runs the same modules
(its LSTM, ``linear``, ``linear2``) with the pooling over time. Compared in fp32 on CPU: the prediction, the
three translated sequences, each loss term (MMSA's forward: 0.1 x three MSEs + L1), the total, the gradients
and the parameters after one Adam step (MMSA's optimiser, lr 1e-4; the gradient-norm clip 1.0 of its trainer
is applied on both sides), then again one step later.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParamMap, ParityReport, base_parser, check_coverage, compare_training,  # noqa: E402
                           finish, load_mapped, reference_commit, same)
from mmsa_reference import REPO, aligned_batch, import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402

#: reference name prefix -> toolkit name prefix (longest first); other names are the same on both sides.
#: MMSA registers each decoder's attention twice (attn1 / decoder1.attention): named_parameters lists it as attn1
RENAME = (("attn1.", "decoder1.attention."), ("attn2.", "decoder2.attention."),
          ("regression.linear2.", "regression.out."), ("regression.linear.", "regression.score."))


def weight_map(ref: nn.Module) -> list[ParamMap]:
    maps = []
    for name, _ in ref.named_parameters():
        tk = name
        for old, new in RENAME:
            if name.startswith(old):
                tk = new + name[len(old):]
                break
        maps.append(same(name, tk))
    return maps


def time_major_regression(self, x: torch.Tensor) -> torch.Tensor:
    """MMSA's Regression.forward with its own modules, for time-major ``x`` [L, B, H]: the attention softmax
    over time (axis 0) where MMSA's code takes axis 1 (time in the batch-first layout it is called with)."""
    activations, _ = self.rnn(x)
    attention = torch.softmax(self.tanh(self.linear(activations)).squeeze(2), dim=0)
    return self.linear2((activations * attention.unsqueeze(2)).sum(0))


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8, help="steps of the aligned sequences")
    a = ap.parse_args(argv)
    root = mmsa_checkout(a.reference_dir, "models/singleTask/MCTN.py")
    from msa_toolkit.models import create_model

    args = mmsa_args(root, "mctn", aligned=True)
    mod = import_mmsa(root, "MMSA.models.singleTask.MCTN")
    torch.manual_seed(a.seed)
    ref = mod.MCTN(args)
    ref.seq2seq1.device = ref.seq2seq2.device = "cpu"  # MMSA hard-codes "cuda"
    ref.regression.forward = types.MethodType(time_major_regression, ref.regression)
    tk = create_model("mctn", "mosi")
    maps = weight_map(ref)
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    dims, W = (768, 5, 20), args.output_dim
    B, L = a.batch_size, a.length
    x, label, batch = aligned_batch(B, L, dims, a.seed + 1)
    tm = {m: v.transpose(0, 1).contiguous() for m, v in x.items()}  # [L, B, D]
    pad = {m: F.pad(v, (0, W - v.shape[-1])) for m, v in tm.items()}
    seen: list[torch.Tensor] = []
    for s2s in (ref.seq2seq1, ref.seq2seq2):
        s2s.register_forward_hook(lambda module, inputs, out: seen.append(out[1]))

    def ref_fn():
        seen.clear()
        total, pred = ref(tm["text"], tm["audio"], tm["vision"], label.view(-1, 1), lengths=None)
        video_1, text_1, audio_1 = seen  # seq2seq1 (text -> vision), seq2seq1 (back), seq2seq2 (-> audio)
        mse = nn.MSELoss()
        return {"prediction": pred.squeeze(1), "vision": video_1, "text": text_1, "audio": audio_1,
                "l_v": 0.1 * mse(video_1, pad["vision"]), "l_t": 0.1 * mse(text_1, pad["text"]),
                "l_a": 0.1 * mse(audio_1, pad["audio"]), "l_y": nn.L1Loss()(pred, label.view(-1, 1)),
                "total": total}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        c = loss.components
        return {"prediction": out.prediction, "vision": out.aux["translation_vision"].transpose(0, 1),
                "text": out.aux["cycle_text"].transpose(0, 1), "audio": out.aux["translation_audio"].transpose(0, 1),
                "l_v": c["translation_vision"], "l_t": c["cycle_text"], "l_a": c["translation_audio"],
                "l_y": c["prediction"], "total": loss.total}

    n_ref = sum(p.numel() for p in ref.parameters())
    report = ParityReport("mctn", REPO, reference_commit(root),
                          {"preset": "mosi", "batch_size": B, "length": L, "dims": dims, "feature_dim": W,
                           "optimizer": "Adam", "lr": args.init_lr, "grad_clip_norm": args.grad_clip,
                           "reference_layout": "time-major inputs, regression pooling bridged over time"})
    report.add("parameters: count", float(abs(n_ref - tk.num_parameters())), 0.0,
               f"reference {n_ref}, toolkit {tk.num_parameters()}")
    pairs = [("forward: prediction", "prediction", "prediction"),
             ("forward: text -> vision translation", "vision", "vision"),
             ("forward: vision -> text back-translation", "text", "text"),
             ("forward: joint -> audio translation", "audio", "audio"),
             ("loss: 0.1 x MSE vision", "l_v", "l_v"), ("loss: 0.1 x MSE text (cycle)", "l_t", "l_t"),
             ("loss: 0.1 x MSE audio", "l_a", "l_a"), ("loss: L1 prediction", "l_y", "l_y"),
             ("loss: total (MMSA's loss_all)", "total", "total")]

    class ClippedAdam(torch.optim.Adam):
        """MMSA's step: clip_grad_norm_(parameters, grad_clip) then Adam."""

        def step(self, closure=None):
            torch.nn.utils.clip_grad_norm_([p for g_ in self.param_groups for p in g_["params"]], args.grad_clip)
            return super().step(closure)

    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: ClippedAdam(ps, lr=args.init_lr), seed=a.seed, tolerance=a.tolerance,
                     measured_floor=True, resync=True)
    report.not_compared += [
        "MMSA's batch-first call (recurrences across the batch): not the paper's model; MMSA is run time-major",
        "MMSA's regression pooling as written (softmax over axis 1): bridged to pool over time "
        "(time_major_regression, the reference's own modules)",
        "padding: MMSA has no masks; inputs here have none (the toolkit packs and masks them)",
        "truncation to max_seq_len 50: the batch here is shorter"]
    return finish(report, a.json, "")


if __name__ == "__main__":
    sys.exit(main())
