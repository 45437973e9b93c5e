"""Real-data text benchmarks: every model on the CMU-MOSI / CMU-MOSEI transcripts, 3 seeds, standard splits.

Builds text-only native datasets from the shared label files
(``../shared/data/{mosi,mosei}/label.csv``) with
``msa_toolkit.data.build.build_dataset(labels, transcripts="label")`` — the
label file's transcript goes through the bundled all-MiniLM-L6-v2 text
encoder (token features); audio and vision are absent (masked). Then every
registered model trains through ``msa_toolkit.training.benchmark.run_benchmark``
(= ``msa benchmark``: its ``mosi``/``mosei`` preset when it has one; input dims
and lengths come from the data; resumable), the best-valid checkpoint is
evaluated once on test, and mean ± std over seeds is tabulated.

Reference floor on the MOSI test split (``../shared/data/README.md``): ridge
regression on mean-pooled MiniLM sentence embeddings — non-0 Acc-2 78.3 %,
has-0 Acc-2 77.2 %, MAE 0.978, Corr 0.672, Acc-7 29.2 %.

Run: ``python benchmarks/real_text.py --dataset mosi [--dataset mosei] [--seeds 1,2,3] [--models a,b]
[--epochs 40] [--recipe toolkit|reference] [--device auto] [--set key=value ...] [--work /tmp/msa_real_text]
[--data-root DIR]`` (``--data-root`` when the checkout is not next to ``shared/``, e.g. a git worktree);
results go to ``benchmarks/results/real_text_<dataset>.md``, the raw JSON and chart to
``benchmarks/results/real_text_<dataset>/`` (``--max-rows N`` builds a small subset for a smoke test and
writes nothing under benchmarks/results unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from msa_toolkit.models import list_models  # noqa: E402
from msa_toolkit.training.benchmark import run_benchmark  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
FLOORS = {"mosi": {"acc2_non0": 0.783, "acc2_has0": 0.772, "mae": 0.978, "corr": 0.672, "acc7": 0.292}}


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


def build(name: str, work: Path, max_rows: int | None, shared: Path = SHARED) -> Path:
    """The text dataset ``work/<name>_text[_<max_rows>]``, built from ``shared/<name>/label.csv`` unless it exists."""
    from msa_toolkit.data.build import build_dataset

    tag = f"{name}_text" + (f"_{max_rows}" if max_rows else "")
    ds = work / tag
    if (ds / "manifest.json").is_file():  # built before under this --work: reused as it is
        return ds
    labels = shared / name / "label.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} not found (--data-root names the folder holding {name}/label.csv)")
    if max_rows:
        labels = _subset(labels, work / f"{tag}.csv", max_rows)
    t0 = time.time()
    rep = build_dataset(labels, None, ds, transcripts="label", progress=True)
    print(f"built {ds}: {rep.sizes} in {time.time() - t0:.0f} s", flush=True)
    return ds


def write_report(dsname: str, args, argv, bench_dir: Path, out_dir: Path | None) -> str:
    """The msa benchmark Markdown with the command, the data and the ridge floor in front."""
    from msa_toolkit.training.benchmark import PERCENT_METRICS

    lines = [f"# {dsname.upper()} text-only benchmark (label-file transcripts, MiniLM token features)", "",
             f"Command: `python benchmarks/real_text.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`"
             f" (= `msa benchmark` on the built dataset, runs in `{bench_dir}`)", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}",
             f"- data: `build_dataset(../shared/data/{dsname}/label.csv, transcripts='label')`, standard splits"
             + (f" (first {args.max_rows} rows per split)" if args.max_rows else ""),
             f"- recipe {args.recipe}; up to {args.epochs} epochs, early stopping on valid MAE (patience "
             f"{args.patience}) unless the recipe says otherwise; each model's `{dsname}` preset where it has one"]
    if dsname in FLOORS:
        lines.append("- ridge floor (shared/data README): " + ", ".join(
            f"{k} {100 * v:.1f}" if k in PERCENT_METRICS else f"{k} {v:.3f}" for k, v in FLOORS[dsname].items()))
    text = "\n".join(lines) + "\n\n" + (bench_dir / "results.md").read_text()
    print(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"real_text_{dsname}.md").write_text(text)
        raw = out_dir / f"real_text_{dsname}"  # the raw JSON and the chart beside the Markdown
        raw.mkdir(exist_ok=True)
        (raw / f"real_text_{dsname}.json").write_text((bench_dir / "results.json").read_text())
        if (bench_dir / "results.png").is_file():
            (raw / f"real_text_{dsname}.png").write_bytes((bench_dir / "results.png").read_bytes())
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", choices=("mosi", "mosei"), default=[])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--models", default="")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--recipe", default="toolkit", help="toolkit | reference")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra override (trainer.x=.. / model.x=..)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/msa_real_text"))
    ap.add_argument("--data-root", type=Path, default=SHARED,
                    help="folder holding mosi/label.csv and mosei/label.csv (default ../shared/data of the checkout)")
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
        ds = build(dsname, args.work, args.max_rows, args.data_root)
        bench_dir = args.work / "bench" / dsname  # resumable: finished runs are skipped on a re-run
        run_benchmark(names, ds, bench_dir, seeds=seeds, recipe=args.recipe, preset=dsname, percent=True,
                      overrides=[f"trainer.epochs={args.epochs}", f"trainer.patience={args.patience}",
                                 f"trainer.device={args.device}", "trainer.plots=false", "trainer.progress=false",
                                 *args.sets])
        write_report(dsname, args, argv, bench_dir, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
