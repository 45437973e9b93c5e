"""``msa benchmark``: every model x seed on one dataset, then one cross-model table.

    from msa_toolkit.training.benchmark import run_benchmark
    bench = run_benchmark(["dlf", "almt", "text_only"], "ds", "bench/", seeds=(1, 2, 3), recipe="reference")
    bench.table["almt"]["test"]["mae"]          # {"mean", "std" (None for one seed), "n"}

Layout of ``out_dir``::

    runs/<model>/seed_<s>/   one single-seed run each: train(out_dir=runs/<model>, seeds=[s])'s seed folder
    runs.csv                 one row per model x seed: status, error, params, s/epoch, device, metrics
    results.{csv,json,md}    one row per model: mean ± std over the seeds that finished
    results_wide.csv, .tex   MMSA's wide table (mean ± std cells) and a booktabs LaTeX table (training/tables.py)
    significance.csv         with a baseline: paired t-test over seeds, bootstrap interval (training/significance.py)
    results.png              bar chart with error bars (test metrics of the valid-selected checkpoints)

Resumable: a run whose ``metrics.json`` exists is read back, not trained again; an interrupted
one continues from its ``last.pt``. A run that fails becomes a row with its error and the
others go on. The main figures are the test metrics of the checkpoint chosen on valid; runs
whose recipe evaluates test every epoch also report ``test_at_best_test_epoch`` (selected on
the TEST split, as the authors' code prints it), always in its own, labelled columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from .fingerprint import fingerprint_id
from ..errors import MSAError
from .metrics import MMSA_NAMES as _MMSA
from .metrics import require_unique, seed_stats
from .selection import BEST_TEST_KEY
from .tables import auilc_label, robustness_columns

RUNS_DIR = "runs"
#: seeds of a model whose recipe names none, when the caller asks for the recipes' seeds
DEFAULT_SEEDS = (1, 2, 3)
RUN_INFO = "bench_run.json"
#: metrics shown in the table and chart, in order (the others stay in the JSON)
TABLE_METRICS = ("acc2_non0", "f1_non0", "acc2_has0", "f1_has0", "acc7", "acc5", "mae", "corr")
SIMS_METRICS = ("acc2", "f1", "acc3", "acc5", "mae", "corr")
#: the toolkit's metric names -> MMSA's (``MetricsTop``) names, both metric sets (they agree where they overlap)
MMSA_NAMES = {**_MMSA["standard"], **_MMSA["sims"]}
#: fractions shown x100 when ``percent`` (MAE and Corr stay as they are, as the papers print them)
PERCENT_METRICS = frozenset({"acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc2", "acc3", "acc5", "acc7", "f1"})
#: the published CMU-MOSI numbers of the seed models, for reproduce.sh (percent / raw)
PAPER_MOSI = {"almt": {"acc2": 86.43, "mae": 0.683, "corr": 0.805, "source": "Zhang et al., EMNLP 2023"},
              "dlf": {"acc2": 85.06, "mae": 0.731, "corr": 0.781, "source": "Wang et al., AAAI 2025"},
              "mind": {"acc2": 86.0, "mae": 0.711, "corr": 0.791, "source": "MInD paper"},
              "mmcl": {"acc2": 87.3, "source": "MMCL paper (non-0 Acc-2)"}}


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns."""

    # the output directory
    out_dir: Path
    # one dict per model x seed (see runs.csv)
    runs: list[dict[str, Any]]
    # model -> {"recipe", "preset", "ok", "seeds", "params", "seconds_per_epoch", "device",
    #           "test": {metric: {"mean", "std", "n"}}, "valid": ..., BEST_TEST_KEY: ...}
    table: dict[str, dict[str, Any]] = field(default_factory=dict)


def _scoped_overrides(overrides: Iterable[str], model: str) -> list[str]:
    """``key=value`` applies to every model, ``model:key=value`` only to that model."""
    out = []
    for item in overrides:
        head, eq, _ = item.partition("=")
        scope, colon, key = head.partition(":")
        if colon and eq:
            if scope == model:
                out.append(item.split(":", 1)[1])
        else:
            out.append(item)
    return out


def data_label(data: Any) -> str:
    """What a run row records as its data: the dataset directory (``""`` for an in-memory dataset)."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    path = getattr(data, "path", None)
    return str(path) if path is not None else ""


def _run_one(model: str, data: Any, run_dir: Path, seed: int, recipe: str, preset: str | None,
             overrides: list[str], protocol: str) -> dict[str, Any]:
    """Train (or read back) one model x seed; the row (raises on failure).

    A finished run is read back only when its fingerprint is this command's (same data by content, model,
    settings, seed, toolkit version); a run made with anything else is trained again, and the console says why.
    """
    from .recipes import get_recipe
    from .api import _train
    from .plan import plan_runs
    from .checkpoint import load_checkpoint
    from .distributed import resolve_device
    from .fingerprint import differences, read_fingerprint

    used = get_recipe(model, recipe, strict=False).name
    planned = plan_runs(model, data, run_dir.parent, preset=preset, overrides=overrides, seeds=[seed],
                        recipe=used).runs[0]  # train() puts the run in runs/<model>/seed_<s>/ = run_dir
    assert planned[1] == run_dir, (planned[1], run_dir)
    fingerprint = planned[3]
    info_path = run_dir / RUN_INFO
    saved = read_fingerprint(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and saved != fingerprint:
        why = "; ".join(differences(saved, fingerprint)[:3]) if saved else "it records no fingerprint"
        print(f"{model} seed {seed}: the run in {run_dir} was made with other data or settings ({why}); "
              "training it again", file=sys.stderr)
        shutil.rmtree(run_dir)
    elif (run_dir / "metrics.json").is_file() and info_path.is_file():
        row = json.loads(info_path.read_text())
        row["resumed"] = "skipped (finished)"
        return row
    t0 = time.time()
    res = _train(model, data, run_dir.parent, preset=preset, overrides=overrides, seeds=[seed], recipe=used,
                 resume=(run_dir / "last.pt").is_file(), top_files=False)
    fit = res.runs[0]
    ck = load_checkpoint(fit.checkpoint)
    secs = [float(r.get("seconds", 0.0)) for r in fit.history]
    tc_device = (ck.train_config or {}).get("device", "auto")
    device = resolve_device(tc_device)
    if device.type == "cuda":
        import torch

        device_name = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        device_name = "cpu"
    row = {"model": model, "seed": seed, "recipe": used, "preset": preset or "-", "status": "ok", "error": "",
           "params": int(ck.model.num_parameters()), "epochs_run": len(fit.history), "best_epoch": fit.best_epoch,
           "seconds_per_epoch": float(np.mean(secs)) if secs else float("nan"),
           "wall_seconds": round(time.time() - t0, 1), "device": device_name, "run_dir": str(run_dir),
           "data": data_label(data), "dataset_id": fingerprint["dataset"], "protocol": protocol,
           "fingerprint": fingerprint_id(fingerprint),
           "valid": fit.valid, "test": fit.test,
           BEST_TEST_KEY: fit.best_test.get(BEST_TEST_KEY, {}).get("metrics", {})}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row.update({k: metrics[k] for k in ("frozen_text", "deviation") if k in metrics})
    atomic_write_json(info_path, row, indent=1)
    return row


def run_benchmark(models: Sequence[str], data: Any, out_dir: str | Path, seeds: Sequence[int] | None = (1, 2, 3),
                  recipe: str = "toolkit", preset: str | None = None, overrides: Iterable[str] = (),
                  mmsa_names: bool = False, percent: bool = False, paper: Mapping[str, Mapping[str, Any]] | None = None,
                  plot: bool = True, baseline: str | None = None, robustness: Sequence[str] = ()) -> BenchmarkResult:
    """Train every model x seed on ``data`` (resumable) and write the cross-model tables (module docstring).

    ``robustness`` (protocols of :mod:`.robustness`, e.g. ``("A", "B")``) scores each finished run's checkpoint
    under them (``runs/<model>/seed_<s>/robustness.json``, read back when it holds those protocols) and adds
    each model's AUILC (mean ± std over seeds) to the tables.

    ``recipe`` applies to every model that has it (the others use "toolkit"; the table says
    which); ``seeds`` None means each model's recipe seeds (else :data:`DEFAULT_SEEDS`).
    ``preset`` is used by the models that define it. ``overrides`` are ``--set`` items;
    ``"<model>:key=value"`` scopes one to a model. ``paper`` adds a table of published numbers.
    ``baseline`` (one of ``models``) compares every other model with it (:mod:`.significance`).
    """
    from ..models import get_entry, list_models

    out_dir = Path(out_dir)
    known = set(list_models())
    unknown = [m for m in models if m not in known]
    if unknown:
        raise MSAError(f"unknown model(s) {unknown}; registered: {sorted(known)}")
    if not models or (seeds is not None and not seeds):
        raise MSAError("benchmark needs at least one model and one seed")
    require_unique("--models", models)
    if baseline is not None and baseline not in models:
        raise MSAError(f"--baseline {baseline} is not one of --models ({', '.join(models)})")
    require_unique("--seeds", [int(s) for s in seeds or ()])
    from .recipes import get_recipe

    overrides = list(overrides)
    _refuse_frozen_text(models, recipe, preset, overrides)
    label = data_label(data)
    protocol = _protocol(data, recipe, overrides)
    rows: list[dict[str, Any]] = []
    for model in models:
        p = preset if preset is not None and preset in get_entry(model).presets else None
        for seed in seeds if seeds is not None else (get_recipe(model, recipe, strict=False).seeds or DEFAULT_SEEDS):
            run_dir = out_dir / RUNS_DIR / model / f"seed_{seed}"
            try:
                rows.append(_run_one(model, data, run_dir, int(seed), recipe, p, _scoped_overrides(overrides, model),
                                     protocol))
                rows[-1].setdefault("data", label)  # runs finished before rows recorded it
            except Exception as e:  # noqa: BLE001 - a failed run becomes a row; the others go on
                msg = f"{type(e).__name__}: {e}".strip()
                rows.append({"model": model, "seed": int(seed), "recipe": recipe, "preset": p or "-",
                             "status": "failed", "error": msg.splitlines()[0][:500],
                             "traceback": traceback.format_exc(limit=8), "run_dir": str(run_dir),
                             "data": label})
    rows += _earlier_rows(out_dir, protocol, {(r["model"], r["seed"]) for r in rows})
    if robustness:
        from .robustness import run_robustness

        for r in rows:
            if r["status"] == "ok":
                r["robustness"] = run_robustness(Path(r["run_dir"]), data, robustness)
    result = BenchmarkResult(out_dir, rows, aggregate(rows))
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes the tables
        write_results(result, mmsa_names=mmsa_names, percent=percent, paper=paper, plot=plot, baseline=baseline)
    return result


def _refuse_frozen_text(models: Sequence[str], recipe: str, preset: str | None, overrides: list[str]) -> None:
    """One MSAError, before any run starts, naming every model whose recipe fine-tunes BERT but would train on
    frozen text features without ``allow_frozen_text`` (the question is the user's, not a failed row's)."""
    from ..models import get_entry
    from .plan import resolve_settings
    from .recipes import get_recipe, refuses_frozen_text

    refused = []
    for model in models:
        if not get_recipe(model, recipe, strict=False).fine_tunes_text:
            continue
        p = preset if preset is not None and preset in get_entry(model).presets else None
        try:
            s = resolve_settings(model, p, None, _scoped_overrides(overrides, model), None, recipe)
        except Exception:  # noqa: BLE001 - any other problem is that run's failed row, as before
            continue
        if refuses_frozen_text(s.recipe, s.trainer, s.model_config):
            refused.append(model)
    if refused:
        raise MSAError(f"the {recipe} recipe of {', '.join(refused)} fine-tunes BERT inside the model: pass "
                       "--set model.text_encoder=PATH (scoped as <model>:model.text_encoder=PATH where needed), or "
                       "--allow-frozen-text to train on the dataset's frozen text features (recorded as a deviation)")


def _protocol(data: Any, recipe: str, overrides: Sequence[str]) -> str:
    """The id of a benchmark command's protocol: the dataset by content, the recipe and the ``--set`` items.
    Finished runs of other models made under the same protocol (an earlier command into the same ``-o``) join
    the results tables; runs made under another protocol never do."""
    from .plan import open_data
    from .fingerprint import dataset_id, fingerprint_id

    return fingerprint_id({"dataset": dataset_id(open_data(data)), "recipe": recipe, "overrides": sorted(overrides)})


def _earlier_rows(out_dir: Path, protocol: str, have: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Finished runs in ``out_dir/runs`` of the same protocol that this command did not run (other models)."""
    rows = []
    for info in sorted((out_dir / RUNS_DIR).glob(f"*/seed_*/{RUN_INFO}")):
        try:
            row = json.loads(info.read_text())
        except (OSError, ValueError):
            continue
        if row.get("protocol") == protocol and (row.get("model"), row.get("seed")) not in have:
            rows.append({**row, "resumed": "skipped (finished, earlier command)"})
    return rows


def benchmark(models: Sequence[str], data: Any, out_dir: str | os.PathLike, seeds: Sequence[int] | None = (1, 2, 3),
              recipe: str = "toolkit", preset: str | None = None, overrides: Iterable[str] = (),
              progress: bool = False, **options: Any) -> BenchmarkResult:
    """``msa benchmark`` with its defaults: every model x seed on one dataset (finished runs are read back when
    their fingerprint matches) and the cross-model tables written to ``out_dir`` (results.md/csv/json/png);
    returns the :class:`BenchmarkResult`.

    ``seeds`` None means each model's recipe seeds; ``recipe`` applies to the models that have it;
    ``overrides`` are ``--set`` items (``"dlf:model.dim=32"`` scopes one to a model); ``progress`` shows each
    run's progress (``--verbose``); ``options``: ``mmsa_names``, ``percent``, ``paper``, ``plot`` of
    :func:`run_benchmark`."""
    from .api import with_progress

    return run_benchmark(list(models), data, out_dir, seeds=seeds, recipe=recipe, preset=preset,
                         overrides=with_progress(overrides, progress), **options)


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """model -> mean ± std (sample std over the seeds that finished) of every metric, and run facts."""
    table: dict[str, dict[str, Any]] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        ok = [r for r in mine if r["status"] == "ok"]
        entry: dict[str, Any] = {"recipe": mine[0]["recipe"], "preset": mine[0]["preset"], "ok": len(ok),
                                 "seeds": [r["seed"] for r in mine],
                                 "errors": [f"seed {r['seed']}: {r['error']}" for r in mine if r["status"] != "ok"],
                                 "data": ", ".join(dict.fromkeys(r["data"] for r in mine if r.get("data"))),
                                 "dataset_id": ", ".join(dict.fromkeys(r["dataset_id"] for r in mine
                                                                       if r.get("dataset_id")))}
        if ok:
            entry.update(recipe=ok[0]["recipe"], params=ok[0]["params"], device=ok[0]["device"],
                         seconds_per_epoch=seed_stats([r["seconds_per_epoch"] for r in ok])["mean"],
                         epochs_run=[r["epochs_run"] for r in ok])
            if any(r.get("robustness") for r in ok):
                from .robustness import robustness_table

                entry["robustness"] = robustness_table(ok)
            for split in ("test", "valid", BEST_TEST_KEY):
                names = list(dict.fromkeys(k for r in ok for k in r.get(split, {})))
                if names:
                    entry[split] = {k: seed_stats([r[split].get(k) for r in ok]) for k in names}
        table[model] = entry
    return table


def _label(metric: str, mmsa_names: bool, percent: bool) -> str:
    name = MMSA_NAMES.get(metric, metric) if mmsa_names else metric
    return name + (" %" if percent and metric in PERCENT_METRICS else "")


def _fmt(metric: str, s: Mapping[str, float], percent: bool) -> str:
    if not s:
        return ""
    if not s.get("n"):  # no seed gave a value: undefined on this split (or no finished run)
        return "n/a"
    k = 100.0 if percent and metric in PERCENT_METRICS else 1.0
    digits = 2 if k == 100.0 else 3
    if s.get("std") is None:  # one finished seed: its value, not a spread of 0
        return f"{k * s['mean']:.{digits}f} (n=1)"
    return f"{k * s['mean']:.{digits}f} ± {k * s['std']:.{digits}f}"


def _metrics_of(table: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    found = {k for e in table.values() for k in e.get("test", {})}
    return tuple(m for m in (TABLE_METRICS if "acc2_non0" in found or not found else SIMS_METRICS) if m in found)


def write_results(result: BenchmarkResult, mmsa_names: bool = False, percent: bool = False,
                  paper: Mapping[str, Mapping[str, Any]] | None = None, plot: bool = True,
                  baseline: str | None = None) -> None:
    """runs.csv, results.csv / .json / .md / _wide.csv / .tex, significance.csv (with ``baseline``) and
    results.png in ``result.out_dir``."""
    from .significance import compare, describe
    from .tables import write_tables

    out, table = result.out_dir, result.table
    metrics = _metrics_of(table)
    sig = compare(result.runs, baseline) if baseline is not None else None
    names = MMSA_NAMES if mmsa_names else {}
    # the test-selected columns only when a run's recipe evaluated test every epoch (else they would be empty)
    cols = [(s, m) for s in ("test", BEST_TEST_KEY)[:1 + any(r.get(BEST_TEST_KEY) for r in result.runs)]
            for m in metrics]
    rob = robustness_columns(table)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "seed", "recipe", "preset", "status", "error", "params", "epochs_run", "best_epoch",
                "seconds_per_epoch", "device", "data", *[f"{s}_{m}" for s, m in cols]])
    for r in result.runs:
        w.writerow([r["model"], r["seed"], r["recipe"], r["preset"], r["status"], r["error"], r.get("params", ""),
                    r.get("epochs_run", ""), r.get("best_epoch", ""), r.get("seconds_per_epoch", ""),
                    r.get("device", ""), r.get("data", ""), *[r.get(s, {}).get(m, "") for s, m in cols]])
    atomic_write_text(out / "runs.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "recipe", "preset", "seeds_ok", "seeds", "params", "seconds_per_epoch", "device", "data",
                "errors",
                *[f"{s}_{_label(m, mmsa_names, False)}_{stat}" for s, m in cols for stat in ("mean", "std")],
                *[f"auilc_{p}_{_label(m, mmsa_names, False)}_{stat}" for p, m in rob for stat in ("mean", "std")]])
    for model, e in table.items():
        auilc = e.get("robustness", {})
        w.writerow([model, e["recipe"], e["preset"], e["ok"], len(e["seeds"]), e.get("params", ""),
                    e.get("seconds_per_epoch", ""), e.get("device", ""), e.get("data", ""), " | ".join(e["errors"]),
                    *[_or_empty(e.get(s, {}).get(m, {}).get(stat)) for s, m in cols for stat in ("mean", "std")],
                    *[_or_empty(auilc.get(p, {}).get("auilc", {}).get(m, {}).get(stat)) for p, m in rob
                      for stat in ("mean", "std")]])
    atomic_write_text(out / "results.csv", buf.getvalue())
    atomic_write_json(out / "results.json", {"table": table, "runs": result.runs, "paper": paper or {},
                                              "protocol": {"test": "checkpoint chosen on valid",
                                                           BEST_TEST_KEY: "epoch chosen on the TEST split "
                                                                          "(authors' protocol), labelled"},
                                              "significance": {"baseline": baseline, "models": sig}}, indent=1)
    md = markdown(table, metrics, mmsa_names, percent, paper)
    atomic_write_text(out / "results.md", md + ("\n" + "\n".join(describe(sig, baseline, names)) + "\n"
                                                if sig is not None else ""))
    write_tables(out, table, metrics, lambda m: _label(m, mmsa_names, percent), lambda m, s: _fmt(m, s, percent),
                 sig, baseline, names)
    if plot and any(e.get("test") for e in table.values()):
        plot_results(table, metrics, out / "results.png", percent)


def _or_empty(value: Any) -> Any:
    """A CSV cell: an empty one for a missing value or a std that one seed cannot have."""
    return "" if value is None else value


def markdown(table: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], mmsa_names: bool = False,
             percent: bool = False, paper: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The Markdown report: valid-selected table first, then the labelled test-selected one, papers, failures.
    When the models ran on different datasets (e.g. reproduce.sh) a ``data`` column names each one's folder."""
    with_data = len({e.get("data", "") for e in table.values()}) > 1
    head = "| model | recipe | " + ("data | " if with_data else "") + "seeds ok | params | s / epoch | device | " + \
        " | ".join(_label(m, mmsa_names, percent) for m in metrics) + " |"
    rule = "|---|---|" + ("---|" if with_data else "") + "---:|---:|---:|---|" + "---:|" * len(metrics)
    pairs = dict.fromkeys((e.get("data", ""), e.get("dataset_id", "")) for e in table.values())
    # a model that failed before reading its data records no content id: its folder is listed once, with the id
    # another model recorded for it
    datasets = [(d, i) for d, i in pairs if i or not any(d2 == d and i2 for d2, i2 in pairs)]
    lines = [f"# Benchmark ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             "Data: " + "; ".join(f"{d or '(in memory)'} (content id {i[:12] or 'not recorded'})" for d, i in datasets),
             "", "## Test metrics of the checkpoint chosen on valid (mean ± std over seeds)", "", head, rule]

    def row(model: str, e: Mapping[str, Any], split: str) -> str:
        spe = e.get("seconds_per_epoch")
        data = ", ".join(Path(d).name for d in e.get("data", "").split(", ") if d)
        lead = f"| {model} | {e['recipe']} | " + (f"{data} | " if with_data else "")
        return lead + (f"{e['ok']}/{len(e['seeds'])} | {e.get('params', ''):,} | "
                       f"{spe:.2f} | {e.get('device', '')} | " if e["ok"] else f"0/{len(e['seeds'])} | | | | ") + \
            " | ".join(_fmt(m, e.get(split, {}).get(m, {}), percent) for m in metrics) + " |"

    lines += [row(m, e, "test") for m, e in table.items()]
    rob = robustness_columns(table)
    if rob:
        lines += ["", "## Robustness: AUILC of the same checkpoints (trapezoid area under the metric-vs-rate "
                  "curve, not normalised; mean ± std over seeds)", "",
                  "| model | " + " | ".join(auilc_label(p, m, lambda x: _label(x, mmsa_names, percent))
                                           for p, m in rob) + " |", "|---|" + "---:|" * len(rob)]
        lines += [f"| {model} | " + " | ".join(_fmt(m, e.get("robustness", {}).get(p, {}).get("auilc", {}).get(m, {}),
                                                    percent) for p, m in rob) + " |"
                  for model, e in table.items()]
    best = {m: e for m, e in table.items() if e.get(BEST_TEST_KEY)}
    if best:
        lines += ["", "## Test metrics at the best TEST epoch (selected on the test split, as the authors' code "
                  "prints it; not comparable with the table above)", "", head, rule]
        lines += [row(m, e, BEST_TEST_KEY) for m, e in best.items()]
    if paper:
        lines += ["", "## Published CMU-MOSI numbers", "", "| model | Acc-2 % | MAE | Corr | source |",
                  "|---|---:|---:|---:|---|"]
        lines += [f"| {m} | {p.get('acc2', '')} | {p.get('mae', '')} | {p.get('corr', '')} | {p.get('source', '')} |"
                  for m, p in paper.items() if m in table]
    failed = [(m, err) for m, e in table.items() for err in e["errors"]]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {m} {err}" for m, err in failed]
    return "\n".join(lines) + "\n"


def plot_results(table: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], path: Path,
                 percent: bool = False) -> Path:
    """One bar panel per metric, a bar per model with the std over seeds as error bar."""
    from .plots import _plt

    plt = _plt()
    models = [m for m, e in table.items() if e.get("test")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 * len(metrics) + 1, 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        k = 100.0 if percent and metric in PERCENT_METRICS else 1.0
        stats = [table[m]["test"].get(metric, {}) for m in models]
        ax.bar(range(len(models)), [k * s.get("mean", np.nan) for s in stats],
               yerr=[k * (s.get("std") or 0.0) for s in stats], capsize=3, color="tab:blue")
        ax.set_xticks(range(len(models)), models, rotation=60, fontsize=7)
        ax.set_title(_label(metric, False, percent), fontsize=8)
    fig.suptitle("test (checkpoint chosen on valid), mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def combine(dirs: Sequence[str | Path], out_dir: str | Path, mmsa_names: bool = False, percent: bool = False,
            paper: Mapping[str, Mapping[str, Any]] | None = None, plot: bool = True) -> BenchmarkResult:
    """One table from several benchmark directories (e.g. aligned and unaligned data): their runs, re-aggregated."""
    rows: list[dict[str, Any]] = []
    for d in dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            raise MSAError(f"{path} not found (run msa benchmark there first)")
        rows += json.loads(path.read_text())["runs"]
    result = BenchmarkResult(Path(out_dir), rows, aggregate(rows))
    write_results(result, mmsa_names=mmsa_names, percent=percent, paper=paper, plot=plot)
    return result
