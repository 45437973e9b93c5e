"""Every model on the synthetic multimodal set, against the text-only baseline (mean ± std over seeds).

The synthetic set (``msa_toolkit.data.synthetic``) draws one latent per modality;
the label mixes them with weights text 0.5 / audio 0.25 / vision 0.25 (normalised),
so text alone explains at most ~2/3 of the label variance: a model that fuses
audio and vision must beat ``text_only``. Each model trains with the generic
Trainer (its own config's optimiser/lr/schedule; early stopping on valid MAE),
the best-valid checkpoint is evaluated once on test, and a modality ablation
(``evaluate(..., drop=("audio", "vision"))``) shows how much each model relies
on the non-text modalities.

Run: ``python benchmarks/synthetic_fusion.py [--seeds 1,2,3] [--epochs 30] [--models a,b] [--preset P]
[--set key=value ...] [--out benchmarks/results/synthetic_fusion.md] [--work /tmp/msa_synth]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from msa_toolkit.data.synthetic import make_synthetic_dataset  # noqa: E402
from msa_toolkit.models import get_entry, list_models  # noqa: E402
from msa_toolkit.training.api import evaluate, train  # noqa: E402

METRICS = ("mae", "corr", "acc2_non0", "f1_non0", "acc7")


def _pm(vals, pct: bool) -> str:
    a = np.asarray(vals, float) * (100 if pct else 1)
    s = a.std(ddof=1) if a.size > 1 else 0.0
    return f"{a.mean():.2f} ± {s:.2f}" if pct else f"{a.mean():.3f} ± {s:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--models", default="")
    ap.add_argument("--preset", default=None, help="preset for every model that has it (default: model defaults)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override (trainer.x=.. / model.x=..)")
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--n-eval", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/msa_synthetic_fusion"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = [m for m in args.models.split(",") if m] or list_models()
    names = ["text_only"] + [n for n in names if n != "text_only"]
    ds = args.work / "data"
    make_synthetic_dataset(ds, n_train=args.n_train, n_valid=args.n_eval, n_test=args.n_eval, seed=0)
    rows = {}
    for name in names:
        preset = args.preset if args.preset and args.preset in get_entry(name).presets else None
        t0 = time.time()
        shutil.rmtree(args.work / "runs" / name, ignore_errors=True)
        res = train(name, ds, args.work / "runs" / name, preset=preset, seeds=seeds,
                    overrides=[f"trainer.epochs={args.epochs}", f"trainer.patience={args.patience}",
                               "trainer.progress=false", "trainer.plots=false", "trainer.device=cpu", *args.sets])
        ablation = [evaluate(r.checkpoint, ds, drop=("audio", "vision"), device="cpu")["mae"] for r in res.runs]
        rows[name] = {"preset": preset or "-", "test": {k: [r.test[k] for r in res.runs] for k in METRICS},
                      "text_only_input_mae": ablation, "epochs": [r.best_epoch for r in res.runs],
                      "minutes": (time.time() - t0) / 60}
        print(f"{name:12s} test MAE {_pm(rows[name]['test']['mae'], False)}  corr "
              f"{_pm(rows[name]['test']['corr'], False)}  (audio+vision dropped: MAE {_pm(ablation, False)})  "
              f"{rows[name]['minutes']:.1f} min", flush=True)
    base = np.mean(rows["text_only"]["test"]["mae"])
    lines = [
        "# Synthetic multimodal set: fusion vs text only",
        "",
        f"Command: `python benchmarks/synthetic_fusion.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; CPU",
        f"- data: `make_synthetic_dataset(n_train={args.n_train}, n_valid={args.n_eval}, n_test={args.n_eval}, seed=0)`"
        " (dims 16/8/8, lengths ≤ 12/20/16, label = text 0.5 / audio 0.25 / vision 0.25 latents + noise)",
        f"- seeds {seeds}; up to {args.epochs} epochs, early stopping on valid MAE (patience {args.patience}); "
        "each model's own optimiser/lr/schedule unless overridden "
        f"(overrides: {', '.join(args.sets) or 'none'}); test metrics of the best-valid epoch; mean ± std over seeds",
        "- last column: test MAE of the same checkpoints with audio and vision dropped (`--drop audio --drop vision`)",
        "",
        "| model | preset | MAE ↓ | Corr ↑ | Acc-2 non-0 % | F1 non-0 % | Acc-7 % | beats text_only MAE | MAE w/o audio+vision |",
        "|---|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for name, r in rows.items():
        t = r["test"]
        better = "—" if name == "text_only" else ("yes" if np.mean(t["mae"]) < base else "no")
        lines.append(f"| {name} | {r['preset']} | {_pm(t['mae'], False)} | {_pm(t['corr'], False)} | "
                     f"{_pm(t['acc2_non0'], True)} | {_pm(t['f1_non0'], True)} | {_pm(t['acc7'], True)} | {better} | "
                     f"{_pm(r['text_only_input_mae'], False)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        raw = args.out.parent / args.out.stem / f"{args.out.stem}.json"  # results/synthetic_fusion/synthetic_fusion.json
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
