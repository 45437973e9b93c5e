#!/usr/bin/env python
"""Train the bundled default model (assets/default_model/) from the shared CMU-MOSI / CMU-MOSEI transcripts.

What it does, reproducibly:

1. builds text-only native datasets with the bundled text extractor (all-MiniLM-L6-v2 token
   features of the label-file transcripts): MOSI, MOSEI, and a combined set whose train split
   is MOSEI train + MOSI train and whose valid split is MOSEI valid + MOSI dev;
2. trains each candidate (registered models, small configurations) on the combined set,
   choosing the checkpoint on the combined validation split;
3. picks the candidate with the best validation MAE (the test splits are never looked at
   for any choice);
4. evaluates the chosen checkpoint once on the MOSI and MOSEI test splits and writes
   assets/default_model/{model.safetensors, MODEL_CARD.md, metrics.json}.

Usage:
    python scripts/train_default_model.py [--data ../shared/data] [--work /tmp/msa_default] [--epochs 30]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: candidates: (run name, model name, model overrides, trainer overrides)
CANDIDATES: tuple[tuple[str, str, dict, dict], ...] = (
    ("text_only_h128", "text_only", {"hidden": 128, "dropout": 0.2}, {"lr": 1e-3, "weight_decay": 1e-4}),
    ("text_only_h256", "text_only", {"hidden": 256, "dropout": 0.3}, {"lr": 5e-4, "weight_decay": 1e-4}),
)

#: metrics shown in the model card, in order
CARD_METRICS = ("acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "acc5", "acc7", "mae", "corr")


def combined_labels(data: Path, out: Path) -> Path:
    """MOSEI + MOSI rows in one label file with prefixed ids and a shared split vocabulary."""
    rows = []
    with open(data / "mosi" / "label.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"id": f"mosi_{r['id']}", "text": r["text"], "label": r["label"], "mode": r["mode"]})
    with open(data / "mosei" / "label.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.append({"id": f"mosei_{r['video_id']}_{r['clip_id']}", "text": r["text"], "label": r["label"],
                         "mode": r["mode"]})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "label", "mode"])
        w.writeheader()
        w.writerows(rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=Path("/tmp/msa_default_model"))
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "default_model")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()

    from msa_toolkit.data.build import build_dataset
    from msa_toolkit.training.api import evaluate, train

    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    sets = {
        "combined": combined_labels(args.data, args.work / "combined_label.csv"),
        "mosi": args.data / "mosi" / "label.csv",
        "mosei": args.data / "mosei" / "label.csv",
    }
    ds = {}
    for name, labels in sets.items():
        ds[name] = args.work / f"ds_{name}"
        if not (ds[name] / "manifest.json").exists():
            print(f"building {name} text dataset from {labels}", flush=True)
            build_dataset(labels, None, ds[name], transcripts="label", cache_dir=args.cache_dir, progress=False)
    results = {}
    for run, model, model_over, trainer_over in CANDIDATES:
        over = {**{f"model.{k}": v for k, v in model_over.items()},
                **{f"trainer.{k}": v for k, v in trainer_over.items()},
                "trainer.epochs": args.epochs, "trainer.patience": 6, "trainer.progress": False}
        print(f"training {run}", flush=True)
        r = train(model, ds["combined"], args.work / "runs" / run, overrides=over, seeds=[args.seed])
        fit = r.runs[0]
        results[run] = {"model": model, "overrides": over, "valid": fit.valid, "best_epoch": fit.best_epoch,
                        "checkpoint": str(fit.checkpoint)}
        print(f"  {run}: valid MAE {fit.valid['mae']:.4f}, non-0 Acc-2 {fit.valid.get('acc2_non0', float('nan')):.4f}",
              flush=True)
    best = min(results, key=lambda k: results[k]["valid"]["mae"])
    ckpt = Path(results[best]["checkpoint"])
    test = {name: evaluate(ckpt, ds[name], split="test", device="cpu") for name in ("mosi", "mosei")}
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, args.out / "model.safetensors")
    metrics = {"chosen": best, "candidates": results, "test": test, "seconds": round(time.time() - t0, 1),
               "command": "python scripts/train_default_model.py " + " ".join(sys.argv[1:])}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    write_card(args.out / "MODEL_CARD.md", best, results[best], test, ckpt)
    print(json.dumps({"chosen": best, "test": test}, indent=2, default=float))
    return 0


def write_card(path: Path, best: str, info: dict, test: dict, ckpt: Path) -> None:
    def row(name: str) -> str:
        m = test[name]
        return f"| {name.upper()} test | " + " | ".join(
            f"{100 * m[k]:.1f}" if k not in ("mae", "corr") else f"{m[k]:.3f}" for k in CARD_METRICS) + " |"

    size_kb = ckpt.stat().st_size / 1024
    path.write_text(f"""# Bundled default model

`model.safetensors` ({size_kb:.0f} KB) is what `msa predict` uses without `--checkpoint`.

- **What it is**: `{info['model']}` ({best}): the clip's transcript (Whisper tiny.en at prediction
  time) → all-MiniLM-L6-v2 token features (bundled) → masked mean → MLP → sentiment score in [-3, 3].
  It is a **text-only** model: it hears what is said, not how it is said or what the face shows.
- **Trained on**: the human sentiment labels and transcripts of CMU-MOSEI train (16,274 segments) and
  CMU-MOSI train (1,281 segments) from `shared/data/` (label-file transcripts; no audio or video of those
  datasets is available here). Checkpoint and candidate chosen on MOSEI valid + MOSI dev; the test
  splits were evaluated once, after the choice.
- **Multimodal models** (DLF, ALMT, MMCL, MInD) are trained on your own videos with `msa dataset create`
  and `msa train`, then used with `msa predict --checkpoint`.
- **Rebuild**: `python scripts/train_default_model.py` (see `metrics.json` for every candidate's
  validation scores and the exact settings).

## Test scores (evaluated once)

| split | non-0 Acc-2 | non-0 F1 | has-0 Acc-2 | has-0 F1 | Acc-5 | Acc-7 | MAE | Corr |
|---|---|---|---|---|---|---|---|---|
{row('mosi')}
{row('mosei')}

For reference, a ridge regression on mean-pooled all-MiniLM-L6-v2 sentence embeddings trained on MOSI
alone scores 78.3 non-0 Acc-2, MAE 0.978, Corr 0.672 on the MOSI test split.

## Data licence and intended use

CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., ACL 2018) are research datasets distributed
by their authors through the CMU Multimodal SDK for research use. This model is derived from their
labels and transcripts and is shipped for research and benchmarking only; cite the datasets when you
use it, and do not use it for decisions about people.
""")


if __name__ == "__main__":
    raise SystemExit(main())
