"""Real-data text benchmarks: every model on the CMU-MOSI / CMU-MOSEI transcripts, 3 seeds, standard splits.

Builds text-only native datasets from the shared label files
(``../shared/data/{mosi,mosei}/label.csv``) with
``msa_toolkit.data.build.build_dataset(labels, transcripts="label")`` — the
label file's transcript goes through the bundled all-MiniLM-L6-v2 text
encoder (token features); audio and vision are absent (masked). Then every
registered model trains with the generic Trainer (its ``mosi``/``mosei`` preset
when it has one; input dims and lengths come from the data), the best-valid
checkpoint is evaluated once on test, and mean ± std over seeds is tabulated.

Reference floor on the MOSI test split (``../shared/data/README.md``): ridge
regression on mean-pooled MiniLM sentence embeddings — non-0 Acc-2 78.3 %,
has-0 Acc-2 77.2 %, MAE 0.978, Corr 0.672, Acc-7 29.2 %.

Run: ``python benchmarks/real_text.py --dataset mosi [--dataset mosei] [--seeds 1,2,3] [--models a,b]
[--epochs 40] [--device auto] [--set key=value ...] [--work /tmp/msa_real_text]``; results go to
``benchmarks/results/real_text_<dataset>.md`` and ``.json`` (``--max-rows N`` builds a small subset
for a smoke test and writes nothing under benchmarks/results unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import csv
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

from msa_toolkit.models import get_entry, list_models  # noqa: E402
from msa_toolkit.training.api import train  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
FLOORS = {"mosi": {"acc2_non0": 0.783, "acc2_has0": 0.772, "mae": 0.978, "corr": 0.672, "acc7": 0.292}}
COLUMNS = (("acc2_non0", "Acc-2 non-0 %", True), ("f1_non0", "F1 non-0 %", True),
           ("acc2_has0", "Acc-2 has-0 %", True), ("f1_has0", "F1 has-0 %", True), ("acc7", "Acc-7 %", True),
           ("acc5", "Acc-5 %", True), ("mae", "MAE ↓", False), ("corr", "Corr ↑", False))


def _pm(vals, pct: bool) -> str:
    a = np.asarray(vals, float) * (100 if pct else 1)
    s = a.std(ddof=1) if a.size > 1 else 0.0
    return f"{a.mean():.2f} ± {s:.2f}" if pct else f"{a.mean():.3f} ± {s:.3f}"


def _subset(labels: Path, out: Path, max_rows: int) -> Path:
    """The first ``max_rows`` rows of each split of a label file (for smoke tests)."""
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    keep, seen = [], {}
    for r in rows:
        split = r.get("mode", "")
        if seen.get(split, 0) < max_rows:
            keep.append(r)
            seen[split] = seen.get(split, 0) + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    return out


def build(name: str, work: Path, max_rows: int | None) -> Path:
    from msa_toolkit.data.build import build_dataset

    labels = SHARED / name / "label.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} not found")
    tag = f"{name}_text" + (f"_{max_rows}" if max_rows else "")
    ds = work / tag
    if (ds / "manifest.json").is_file():
        return ds
    if max_rows:
        labels = _subset(labels, work / f"{tag}.csv", max_rows)
    t0 = time.time()
    rep = build_dataset(labels, None, ds, transcripts="label", progress=True)
    print(f"built {ds}: {rep.sizes} in {time.time() - t0:.0f} s", flush=True)
    return ds


def write_table(dsname: str, rows: dict, args, argv, seeds, out_dir, total: int) -> None:
    """Print and (re)write the results table; called after every model so partial runs leave results."""
    lines = [
        f"# {dsname.upper()} text-only benchmark (label-file transcripts, MiniLM token features)"
        + ("" if len(rows) == total else f" — partial: {len(rows)} of {total} models"),
        "",
        f"Command: `python benchmarks/real_text.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
        f"device {args.device} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'})",
        f"- data: `build_dataset(../shared/data/{dsname}/label.csv, transcripts='label')`, standard splits"
        + (f" (first {args.max_rows} rows per split)" if args.max_rows else ""),
        f"- seeds {seeds}; up to {args.epochs} epochs, early stopping on valid MAE (patience {args.patience}); "
        "each model's preset for this dataset where it has one; test metrics of the best-valid checkpoint, "
        "mean ± std over seeds",
        "",
        "| model | preset | " + " | ".join(c for _, c, _ in COLUMNS) + " | minutes |",
        "|---|---|" + "---:|" * (len(COLUMNS) + 1),
    ]
    if dsname in FLOORS:
        f = FLOORS[dsname]
        lines.append("| ridge floor (README) | - | " + " | ".join(
            (f"{100 * f[k]:.1f}" if p else f"{f[k]:.3f}") if k in f else "" for k, _, p in COLUMNS) + " | |")
    for name, r in rows.items():
        lines.append(f"| {name} | {r['preset']} | " + " | ".join(_pm(r["test"][k], p) for k, _, p in COLUMNS)
                     + f" | {r['minutes']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"real_text_{dsname}.md").write_text(text)
        (out_dir / f"real_text_{dsname}.json").write_text(json.dumps(rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=("mosi", "mosei"), default=[])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--models", default="")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override (trainer.x=.. / model.x=..)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/msa_real_text"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--max-rows", type=int, default=None, help="rows per split (smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    names = [m for m in args.models.split(",") if m] or list_models()
    names = ["text_only"] + [n for n in names if n != "text_only"]
    out_dir = args.out or (None if args.max_rows else ROOT / "benchmarks" / "results")
    for dsname in args.dataset or ["mosi"]:
        ds = build(dsname, args.work, args.max_rows)
        rows = {}
        for name in names:
            preset = dsname if dsname in get_entry(name).presets else None
            run = args.work / "runs" / dsname / name
            shutil.rmtree(run, ignore_errors=True)
            t0 = time.time()
            res = train(name, ds, run, preset=preset, seeds=seeds,
                        overrides=[f"trainer.epochs={args.epochs}", f"trainer.patience={args.patience}",
                                   f"trainer.device={args.device}", "trainer.plots=false", "trainer.progress=false",
                                   *args.sets])
            rows[name] = {"preset": preset or "-", "minutes": (time.time() - t0) / 60,
                          "best_epochs": [r.best_epoch for r in res.runs],
                          "test": {k: [r.test[k] for r in res.runs] for k, _, _ in COLUMNS},
                          "valid": {k: [r.valid[k] for r in res.runs] for k, _, _ in COLUMNS}}
            print(f"{dsname} {name:12s} " + "  ".join(f"{k} {_pm(rows[name]['test'][k], p)}" for k, _, p in COLUMNS)
                  + f"  ({rows[name]['minutes']:.1f} min)", flush=True)
            write_table(dsname, rows, args, argv, seeds, out_dir, len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
