"""The robustness report (benchmarks/results/robustness_mosi.md, robustness_mosi/{.json,.png}) from `msa benchmark --robustness`
directories: one of plainly trained models, and optionally one trained with the LNLN-style schedule.

    python benchmarks/robustness_report.py --plain WORK/plain --lnln WORK/lnln --out benchmarks/results/robustness_mosi.md

Per model (and per model trained with the schedule): clean test metrics, the AUILC of non-0 Acc-2 and MAE per
protocol, and per protocol and rate the non-0 Acc-2 and MAE (mean ± sample std over the seeds). The command that
produced the runs is `benchmarks/robustness_mosi.sh`; this script only reads their results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any, Mapping

PROTOCOL_TITLES = {"A": "Protocol A: frames dropped at rate r (each step kept iff a uniform draw > r)",
                   "B": "Protocol B: a fraction r of the (utterance, modality) entries missing (>= 1 kept)",
                   "noise": "Noise: Gaussian noise of std p on the standardised audio and vision features"}
METRICS = (("acc2_non0", "non-0 Acc-2 %", 100.0), ("mae", "MAE", 1.0))
#: the hand-written reading of the results between these markers is carried over when the report is rewritten
NOTES = ("<!-- notes: kept when the report is regenerated -->", "<!-- /notes -->")


def _cell(s: Mapping[str, Any] | None, k: float) -> str:
    if not s or not s.get("n"):
        return "n/a"
    std = s.get("std")
    return f"{k * s['mean']:.2f}" + (f" ± {k * std:.2f}" if std is not None else " (n=1)") if k != 1.0 else \
        f"{s['mean']:.3f}" + (f" ± {std:.3f}" if std is not None else " (n=1)")


def _rows(results: Mapping[str, Any], suffix: str) -> dict[str, Mapping[str, Any]]:
    return {f"{m}{suffix}": e for m, e in results["table"].items() if e.get("ok")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plain", required=True, type=Path, help="benchmark directory of the plainly trained models")
    ap.add_argument("--lnln", type=Path, help="benchmark directory of the models trained with the LNLN schedule")
    ap.add_argument("--out", required=True, type=Path,
                    help="the Markdown file; the JSON and PNG go to the folder of the same name beside it")
    args = ap.parse_args()

    from msa_toolkit.training.robustness import plot_curves

    old = args.out.read_text() if args.out.is_file() else ""
    notes = old[old.index(NOTES[0]):old.index(NOTES[1]) + len(NOTES[1])] if NOTES[0] in old and NOTES[1] in old \
        else f"{NOTES[0]}\n**What it means.** (to be written from the tables below)\n{NOTES[1]}"
    plain = json.loads((args.plain / "results.json").read_text())
    entries = _rows(plain, "")
    if args.lnln is not None:
        entries.update(_rows(json.loads((args.lnln / "results.json").read_text()), " (lnln)"))
    protos = list(dict.fromkeys(p for e in entries.values() for p in e.get("robustness", {})))
    lines = ["# Robustness on CMU-MOSI utterance features: missing and noisy modalities", "",
             "**Method.** Real CMU-MOSI utterance-level features (`mosi_poria_utterance.pkl`: text 100-d, audio 73-d, "
             "vision 100-d, one step per utterance; train/valid/test as stored) imported with "
             "`msa_toolkit.data.mmsa.import_mmsa`. Every registered model, toolkit recipe and default preset, seeds "
             "1, 2, 3, at most 20 epochs with early stopping on valid MAE (patience 5). Each best checkpoint is scored on the test split under protocols A, B and "
             "noise (`msa benchmark --robustness A,B,noise`, mask seed 1111; definitions in `docs/robustness.md`). "
             "Rows marked (lnln) are ALMT and DLF trained with `--set trainer.missing_schedule=lnln` (per epoch half "
             "the samples clean, the others one protocol-A rate per modality from U(0, 1)), evaluated the same way. "
             "Figures are mean ± sample std over the 3 seeds; accuracies in percent. AUILC: trapezoid area under the "
             "metric-vs-rate curve over the rates evaluated, not normalised (A and noise over [0, 0.9], B over "
             "[0, 0.7]); higher is better except for MAE. With one step per utterance, protocol A zeroes each "
             "(utterance, modality) with probability r independently (all three can go at once), while protocol B "
             "masks them and always keeps one.", "",
             "- Commands: `PY=.venv/bin/python MOSI_PKL=../shared/data/mosi_utterance/mosi_poria_utterance.pkl "
             "benchmarks/robustness_mosi.sh WORK` (for each model `msa benchmark --models M -o WORK/plain -d "
             "WORK/mosi_utt --seeds 1,2,3 --epochs 20 --set trainer.patience=5 "
             "--device cpu --threads 1 --robustness A,B,noise`, the same into `WORK/lnln` for almt and dlf with "
             "`--set trainer.missing_schedule=lnln`), then `python benchmarks/robustness_report.py --plain "
             "WORK/plain --lnln WORK/lnln --out benchmarks/results/robustness_mosi.md`",
             f"- Written: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: the shared 2-core CPU "
             f"({platform.machine()}), no GPU, 1 torch thread, under the shared CPU lock",
             "- Raw: `robustness_mosi/robustness_mosi.json` (every model's table entry: clean metrics, per-rate seed "
             "statistics, AUILC); curves: `robustness_mosi/robustness_mosi.png` (mean over seeds, band ± std)", "",
             notes, "", "## Clean test metrics and AUILC", ""]
    head = "| model | seeds | non-0 Acc-2 % | MAE | " + " | ".join(
        f"AUILC-{p} {label}" for p in protos for _, label, _ in METRICS) + " |"
    lines += [head, "|---|---:|---:|---:|" + "---:|" * (2 * len(protos))]
    for name, e in entries.items():
        lines.append(f"| {name} | {e['ok']} | {_cell(e['test'].get('acc2_non0'), 100.0)} | "
                     f"{_cell(e['test'].get('mae'), 1.0)} | " +
                     " | ".join(_cell(e.get("robustness", {}).get(p, {}).get("auilc", {}).get(k), scale)
                                for p in protos for k, _, scale in METRICS) + " |")
    for p in protos:
        rates = [r["rate"] for r in next(e for e in entries.values() if p in e.get("robustness", {}))
                 ["robustness"][p]["per_rate"]]
        for k, label, scale in METRICS:
            lines += ["", f"## {PROTOCOL_TITLES.get(p, p)}: {label}", "",
                      "| model | " + " | ".join(f"r={r:g}" for r in rates) + " |", "|---|" + "---:|" * len(rates)]
            for name, e in entries.items():
                per = e.get("robustness", {}).get(p, {}).get("per_rate", [])
                lines.append(f"| {name} | " + " | ".join(_cell(row["metrics"].get(k), scale) for row in per) + " |")
    failed = []
    for m, e in plain["table"].items():  # one line per model and error text, with the seeds it hit
        by_error: dict[str, list[str]] = {}
        for err in e.get("errors", []):
            seed, _, text = err.partition(": ") if err.startswith("seed ") else ("", "", err)
            by_error.setdefault(text, []).append(seed.removeprefix("seed "))
        failed += [f"- {m} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}): {text}"
                   for text, seeds in by_error.items()]
    if failed:
        lines += ["", "## Failed runs", "", *failed]
    from msa_toolkit.models import list_models

    missing = [m for m in list_models() if m not in plain["table"]]
    if missing:
        lines += ["", "## Registered models not in this report", "",
                  f"{', '.join(missing)}: no finished runs in `{args.plain.name}/` when this report was written "
                  "(the passes of `robustness_mosi.sh` had not reached them); run the script again to add them."]
    raw = args.out.with_suffix("")  # results/<bench>/ holds the raw JSON and the chart (benchmarks/README.md)
    raw.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    (raw / f"{raw.name}.json").write_text(json.dumps({"models": entries}, indent=1))
    curves = {name: {p: {"per_rate": [{"rate": row["rate"],
                                       "metrics": {k: s["mean"] for k, s in row["metrics"].items()},
                                       "std": {k: s.get("std") for k, s in row["metrics"].items()}}
                                      for row in v["per_rate"]]}
                     for p, v in e.get("robustness", {}).items()} for name, e in entries.items()}
    plot_curves(curves, raw / f"{raw.name}.png")
    print(f"wrote {args.out}, {raw}/{raw.name}.json and .png")


if __name__ == "__main__":
    main()
