"""Is a model better than a baseline? Paired tests over seeds and bootstrap intervals over test samples.

For each model against the baseline of ``msa benchmark --baseline`` (:func:`compare`), and each of
:data:`SIG_METRICS` the runs have:

* ``t``, ``p``: ``scipy.stats.ttest_rel`` of the model's per-seed test metric against the baseline's, over
  the seeds both finished with a value (``n_seeds``); None below two paired seeds (or when every
  difference is the same, where the test has no answer);
* ``diff``, ``ci``: the difference model - baseline of the metric on the test split, with a percentile
  bootstrap interval (:data:`LEVEL`, :data:`RESAMPLES` resamples of the test samples, generator seed
  :data:`BOOTSTRAP_SEED`). Each run's ``predictions_test.csv`` (``id,label,prediction``) gives a per-sample
  value (absolute error for ``mae``; 1 when the polarity is right, over the samples with a non-zero label,
  for ``acc2_non0`` / ``acc2``); the values are averaged over the paired seeds and paired by id between
  model and baseline (``n_samples`` ids in both), and the difference of those means is resampled;
* ``marked``: ``p < 0.05`` and the interval excludes 0 (shown as :data:`MARK` in the tables).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


#: metrics tested, when the runs have them (``acc2`` is CH-SIMS' binary accuracy)
SIG_METRICS = ("mae", "acc2_non0", "acc2")
LEVEL = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
MARK = "†"
PREDICTIONS = "predictions_test.csv"


def _per_sample(path: Path, metric: str) -> dict[str, float]:
    """id -> the sample's share of ``metric`` from one run's predictions (samples that do not count: left out)."""
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            y, p = float(row["label"]), float(row["prediction"])
            if metric == "mae":
                out[row["id"]] = abs(p - y)
            elif y != 0:  # acc2_non0 / acc2: polarity right, on non-zero labels
                out[row["id"]] = float((p > 0) == (y > 0))
    return out


def _seed_mean(files: Sequence[Path], metric: str) -> dict[str, float]:
    """id -> mean over the runs (seeds) of the per-sample value, for the ids every run has."""
    per = [_per_sample(f, metric) for f in files]
    ids = [i for i in per[0] if all(i in p for p in per[1:])]
    return {i: float(np.mean([p[i] for p in per])) for i in ids}


def bootstrap_ci(diffs: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` over ``resamples`` resamplings with replacement."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, diffs.size, (resamples, diffs.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _paired_t(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    from scipy.stats import ttest_rel

    if len(a) < 2:
        return None, None
    res = ttest_rel(a, b)
    t, p = float(res.statistic), float(res.pvalue)
    return (t, p) if math.isfinite(p) else (None, None)


def compare(runs: Sequence[Mapping[str, Any]], baseline: str) -> dict[str, dict[str, dict[str, Any]]]:
    """model -> metric -> {"n_seeds", "t", "p", "diff", "ci", "n_samples", "marked"} against ``baseline``
    (module docstring); ``runs`` are benchmark rows (``model``, ``seed``, ``status``, ``test``, ``run_dir``).
    Empty when the baseline has no finished run."""
    ok = [r for r in runs if r.get("status") == "ok"]
    base = {r["seed"]: r for r in ok if r["model"] == baseline}
    if not base:  # the baseline failed every seed: nothing to compare with
        return {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for model in dict.fromkeys(r["model"] for r in ok if r["model"] != baseline):
        mine = {r["seed"]: r for r in ok if r["model"] == model}
        out[model] = {}
        for metric in SIG_METRICS:
            seeds = [s for s in mine if s in base and mine[s].get("test", {}).get(metric) is not None
                     and base[s].get("test", {}).get(metric) is not None]
            if not seeds:
                continue
            t, p = _paired_t([mine[s]["test"][metric] for s in seeds], [base[s]["test"][metric] for s in seeds])
            entry: dict[str, Any] = {"n_seeds": len(seeds), "t": t, "p": p, "diff": None, "ci": None, "n_samples": 0}
            files = [(Path(mine[s]["run_dir"]) / PREDICTIONS, Path(base[s]["run_dir"]) / PREDICTIONS) for s in seeds]
            if all(a.is_file() and b.is_file() for a, b in files):
                a = _seed_mean([f for f, _ in files], metric)
                b = _seed_mean([f for _, f in files], metric)
                ids = [i for i in a if i in b]
                if ids:
                    d = np.array([a[i] - b[i] for i in ids])
                    entry.update(diff=float(d.mean()), ci=list(bootstrap_ci(d)), n_samples=len(ids))
            entry["marked"] = bool(p is not None and p < ALPHA and entry["ci"] is not None
                                   and (entry["ci"][0] > 0 or entry["ci"][1] < 0))
            out[model][metric] = entry
    return out


def significance_rows(sig: Mapping[str, Mapping[str, Mapping[str, Any]]], baseline: str,
                      names: Mapping[str, str] | None = None) -> list[list[Any]]:
    """The rows of ``significance.csv`` (header first); a value that does not apply is an empty cell."""
    names = names or {}
    rows: list[list[Any]] = [["model", "baseline", "metric", "n_seeds", "t", "p", "diff", "ci_low", "ci_high",
                              "n_samples", "marked"]]
    for model, per in sig.items():
        for metric, e in per.items():
            ci = e["ci"] or ("", "")
            rows.append([model, baseline, names.get(metric, metric), e["n_seeds"], _cell(e["t"]), _cell(e["p"]),
                         _cell(e["diff"]), _cell(ci[0]), _cell(ci[1]), e["n_samples"], int(e["marked"])])
    return rows


def _cell(v: Any) -> Any:
    return "" if v is None else v


def describe(sig: Mapping[str, Mapping[str, Mapping[str, Any]]], baseline: str,
             names: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines: one per model and metric, ``n/a`` where a figure cannot be computed."""
    names = names or {}
    lines = [f"## Against the baseline {baseline} (paired t-test over seeds; {LEVEL:.0%} bootstrap interval of "
             f"the test difference, {RESAMPLES} resamples; {MARK}: p < {ALPHA} and the interval excludes 0)", "",
             "| model | metric | seeds | t | p | diff | interval | |", "|---|---|---:|---:|---:|---:|---|---|"]
    for model, per in sig.items():
        for metric, e in per.items():
            t = "n/a" if e["t"] is None else f"{e['t']:.3f}"
            p = "n/a" if e["p"] is None else f"{e['p']:.3g}"
            diff = "n/a" if e["diff"] is None else f"{e['diff']:+.4f}"
            ci = "n/a" if e["ci"] is None else f"[{e['ci'][0]:+.4f}, {e['ci'][1]:+.4f}]"
            lines.append(f"| {model} | {names.get(metric, metric)} | {e['n_seeds']} | {t} | {p} | {diff} | {ci} | "
                         f"{MARK if e['marked'] else ''} |")
    return lines
