"""``msa robustness``: a checkpoint's metrics under missing and noisy modalities, per protocol and rate.

    import msa_toolkit as msa
    res = msa.robustness("runs/almt/seed_1/best.safetensors", data="ds", out_dir="rob/")
    res.protocols["A"]["auilc"]["acc2_non0"]       # area under the non-0 Acc-2 curve of protocol A
    res.protocols["B"]["per_rate"][3]["metrics"]   # metrics with 30 % of the (sample, modality) entries removed

Protocols (the perturbations are in :mod:`msa_toolkit.data.missing`; definitions and sources in
``docs/robustness.md``):

* ``A``: frame/token dropping at rate r (MMSA ``data_missing``, TFR-Net, EMT-DLFR, LNLN), r = 0, 0.1, ..., 0.9;
* ``B``: whole modalities missing, a fraction r of the (sample, modality) entries (GCNet, IMDer), r = 0 ... 0.7;
* ``noise``: Gaussian noise of standard deviation p on the standardised audio and vision features, p = 0 ... 0.9,
  and word-level typos/omissions at probability p on the raw transcripts when the dataset keeps them and the
  model reads token ids (``protocols["noise"]["text"]`` says what was done to text).

Per protocol and rate: the standard metrics (:func:`.metrics.score`), averaged over the mask seeds (and their
std); per metric the AUILC, the trapezoid area under the metric-vs-rate curve over the rates evaluated, not
normalised (``auilc``), and the same divided by the width of the rate range (``auilc_mean``: the metric's mean
level over the range, comparable between protocols of different ranges). Rate 0 is the unperturbed loader, so
its metrics equal :func:`.api.evaluate`'s exactly.

Files in ``out_dir``: ``robustness.json`` (``protocols`` keyed A, B, noise), ``robustness.csv`` (one row per
protocol, rate and metric) and ``robustness.png`` (the curves of non-0 Acc-2 / Acc-2 and MAE per protocol).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..data.missing import DEFAULT_MASK_SEED
from ..errors import MSAError
from ..spec import MODALITIES
from .metrics import seed_stats

__all__ = ["PROTOCOLS", "DEFAULT_RATES", "RobustnessResult", "robustness", "auilc", "resolve_checkpoints",
           "ROBUSTNESS_JSON", "ROBUSTNESS_CSV", "ROBUSTNESS_PNG", "run_robustness", "robustness_table"]

PROTOCOLS = ("A", "B", "noise")
#: the rates each protocol is evaluated at by default (step 0.1)
DEFAULT_RATES: Mapping[str, tuple[float, ...]] = {
    "A": tuple(round(0.1 * i, 1) for i in range(10)),
    "B": tuple(round(0.1 * i, 1) for i in range(8)),
    "noise": tuple(round(0.1 * i, 1) for i in range(10)),
}
ABOUT = {"A": "frame/token dropping: each valid step kept iff a uniform draw > r (MMSA data_missing)",
         "B": "whole modalities missing: a fraction r of the (sample, modality) entries, >= 1 kept per sample",
         "noise": "Gaussian noise of std p on the standardised audio and vision features (and word-level noise "
                  "at probability p on raw transcripts, for a model that reads token ids)"}
ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_PNG = "robustness.png"
#: the metrics drawn in the PNG, per metric set (the first one present)
PLOT_METRICS = (("acc2_non0", "acc2"), ("mae",))


@dataclass
class RobustnessResult:
    """What :func:`robustness` returns (also the content of ``robustness.json``)."""

    # the checkpoints evaluated (one, or every seed of a run folder)
    checkpoints: list[str]
    # protocol -> {"about", "rates", "per_rate": [{"rate", "metrics", "std", ...}], "auilc", "auilc_mean"}
    protocols: dict[str, dict[str, Any]] = field(default_factory=dict)
    # split, mask seeds, modalities, unk id, ... (what the numbers were computed with)
    settings: dict[str, Any] = field(default_factory=dict)
    # per checkpoint, its own protocols (only with several checkpoints)
    per_checkpoint: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoints": self.checkpoints, **self.settings, "protocols": self.protocols,
                "per_checkpoint": self.per_checkpoint}


def auilc(rates: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """``(area, mean level)``: the trapezoid area under ``values`` over ``rates`` (sorted), and the area divided
    by the width of the rate range (the value itself for a single rate). NaN when a value is NaN."""
    r = np.asarray(rates, float)
    v = np.asarray(values, float)
    order = np.argsort(r)
    r, v = r[order], v[order]
    if len(r) < 2:
        return 0.0, float(v[0]) if len(v) else float("nan")
    area = float(np.sum((r[1:] - r[:-1]) * (v[1:] + v[:-1]) / 2.0))
    return area, area / float(r[-1] - r[0])


def resolve_checkpoints(path: str | os.PathLike) -> list[Path]:
    """A checkpoint file; a run folder's ``best.safetensors``; or every ``seed_*/best.safetensors`` of a
    multi-seed run folder."""
    from .trainer import BEST_FILE

    p = Path(path)
    if p.is_file():
        return [p]
    if (p / BEST_FILE).is_file():
        return [p / BEST_FILE]
    seeds = sorted(p.glob(f"seed_*/{BEST_FILE}"))
    if p.is_dir() and seeds:
        return seeds
    raise MSAError(f"{path}: not a checkpoint, nor a run folder holding {BEST_FILE} or seed_*/{BEST_FILE}")


def _check_rates(protocol: str, rates: Sequence[float]) -> list[float]:
    bad = [r for r in rates if not 0.0 <= float(r) <= 1.0]
    if bad or not rates:
        raise MSAError(f"--rates for protocol {protocol}: rates must lie in [0, 1] (got {list(rates)})")
    return sorted({round(float(r), 6) for r in rates})


def _transform(protocol: str, rate: float, seed: int, modalities: Sequence[str], unk_id: int | None,
               plan: Mapping[str, frozenset[str]] | None, noise_scale: Mapping[str, Any] | None,
               words: tuple[Mapping[str, str | None], Any] | None) -> Callable:
    from ..data import missing as X

    if protocol == "A":
        return lambda b: X.drop_steps(b, rate, seed, modalities, unk_id)
    if protocol == "B":
        return lambda b: X.remove_modalities(b, plan or {})
    noisy = [m for m in modalities if m in X.NOISE_MODALITIES]
    if words is None:
        return lambda b: X.add_noise(b, rate, seed, noise_scale, noisy)
    return lambda b: X.add_word_noise(X.add_noise(b, rate, seed, noise_scale, noisy), rate, words[0], words[1], seed)


def _word_noise(model: Any, split: Any, modalities: Sequence[str]) -> tuple[Any, str]:
    """``((id -> transcript, tokenizer) or None, what the noise protocol does to text)``: word-level noise
    needs the raw transcripts and a model that reads token ids (re-extracting text features is out of scope)."""
    from ..data.missing import load_tokenizer

    name = getattr(getattr(model, "config", None), "text_encoder", None)
    texts = split.field("text") if hasattr(split, "field") else None
    if "text" not in modalities:
        return None, "not perturbed (--modalities)"
    if not texts or all(t is None for t in texts):
        return None, "not perturbed: the dataset keeps no raw transcripts"
    if not name:
        return None, "not perturbed: the model reads precomputed text features (word noise would need them re-extracted)"
    return (dict(zip(split.ids, texts)), load_tokenizer(name)), "word-level typos and omissions at probability p, re-tokenised"


def _one_checkpoint(checkpoint: Path, data: Any, split: str, protocols: Mapping[str, Sequence[float]],
                    seeds: Sequence[int], modalities: Sequence[str] | None, device: str, batch_size: int | None,
                    unk_id: int | None, advance: Callable[[], None]) -> dict[str, Any]:
    """Protocol -> per-rate metrics (mean and std over ``seeds``) of one checkpoint."""
    from ..data.missing import model_unk_id, plan_removal
    from .api import evaluation_setup
    from .metrics import score

    trainer, ck = evaluation_setup(checkpoint, data, (), device, batch_size)
    dm = trainer.data
    used = [m for m in (ck.spec.modalities if ck.spec is not None else MODALITIES)]
    mods = [m for m in (modalities or used) if m in used]
    if modalities and not mods:
        raise MSAError(f"--modalities {', '.join(modalities)}: the checkpoint uses none of them "
                       f"(its modalities: {', '.join(used)})")
    unk = model_unk_id(ck.model, unk_id)
    normalised = bool(dm.collator.stats) if hasattr(dm, "collator") else False
    noise_scale = None
    if not normalised:  # raw units: noise of p training-split standard deviations
        noise_scale = {m: np.asarray(std, np.float32) for m, (_, std) in dm.stats.items()}
    ids = list(dm.split(split).ids)
    words, text_noise = _word_noise(ck.model, dm.split(split), mods) if "noise" in protocols else (None, None)
    metric_set = trainer._resolve_metric_set()
    out: dict[str, Any] = {}
    for proto, rates in protocols.items():
        per_rate = []
        for rate in rates:
            runs, effective = [], []
            for seed in (seeds if rate > 0 else seeds[:1]):  # rate 0: the plain loader, the same for every seed
                plan = None
                if proto == "B":
                    plan, eff = plan_removal(ids, mods, rate, seed)
                    effective.append(eff)
                if rate > 0:
                    f = _transform(proto, rate, seed, mods, unk, plan, noise_scale, words)
                    loader: Any = (f(b) for b in dm.loader(split))
                else:
                    loader = split
                p = trainer.predict(loader)
                m = dict(score(p.prediction, p.label, metric_set))
                m["loss"] = p.loss.get("total", float("nan"))
                runs.append(m)
                advance()
            entry = {"rate": rate, **_mean_std(runs)}
            if proto == "B":
                entry["effective_rate"] = float(np.mean(effective)) if effective else 0.0
            per_rate.append(entry)
        out[proto] = {"per_rate": per_rate}
    if "noise" in out:
        out["noise"]["text"] = text_noise
    return {"checkpoint": str(checkpoint), "model": ck.model_name, "modalities": mods, "unk_id": unk,
            "normalised": normalised, "protocols": out}


def _mean_std(runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """``{"metrics": mean, "std": sample std (None for one run)}`` over runs' metric dicts."""
    names = list(runs[0])
    mean = {k: float(np.mean([r[k] for r in runs])) for k in names}
    std = {k: (float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else None) for k in names}
    return {"metrics": mean, "std": std, "n": len(runs)}


def _with_auilc(proto: Mapping[str, Any]) -> dict[str, Any]:
    rows = proto["per_rate"]
    rates = [r["rate"] for r in rows]
    names = list(rows[0]["metrics"]) if rows else []
    areas = {k: auilc(rates, [r["metrics"][k] for r in rows]) for k in names if k != "loss"}
    return {**proto, "rates": rates, "auilc": {k: a for k, (a, _) in areas.items()},
            "auilc_mean": {k: m for k, (_, m) in areas.items()}}


def robustness(checkpoint: str | os.PathLike, data: Any, split: str = "test",
               protocols: Iterable[str] = PROTOCOLS, rates: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
               mask_seeds: Sequence[int] = (DEFAULT_MASK_SEED,), modalities: Sequence[str] | None = None, device: str = "auto",
               batch_size: int | None = None, out_dir: str | os.PathLike | None = None,
               json_path: str | os.PathLike | None = None, unk_id: int | None = None,
               progress: bool = False) -> RobustnessResult:
    """Evaluate a checkpoint (or every seed of a run folder) under the robustness protocols (module docstring).

    ``rates``: one list for every protocol, or protocol -> list; None = :data:`DEFAULT_RATES`. ``mask_seeds``:
    every rate is evaluated once per seed and the metrics averaged. ``modalities``: the modalities perturbed
    (default: all the checkpoint uses; noise touches only audio and vision). ``unk_id``: the token id dropped
    text tokens become (default: the unknown token of the model's text encoder; a model without one reads no
    token ids). ``out_dir`` writes robustness.json/.csv/.png, ``json_path`` the JSON alone.
    With several checkpoints, ``protocols`` holds the mean (and the std over checkpoints) of each metric and
    AUILC, and ``per_checkpoint`` every checkpoint's own.
    """
    protos = list(dict.fromkeys(protocols))
    bad = [p for p in protos if p not in PROTOCOLS]
    if bad or not protos:
        raise MSAError(f"--protocols: unknown protocol(s) {bad}; use a subset of {', '.join(PROTOCOLS)}")
    if modalities:
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown:
            raise MSAError(f"--modalities: unknown modality {unknown}; expected {', '.join(MODALITIES)}")
    seeds = [int(s) for s in mask_seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise MSAError(f"--mask-seed: give one or more distinct seeds (got {list(mask_seeds)})")
    if rates is None or isinstance(rates, Mapping):
        given = dict(rates or {})
        plan = {p: _check_rates(p, given.get(p, DEFAULT_RATES[p])) for p in protos}
    else:
        plan = {p: _check_rates(p, rates) for p in protos}
    ckpts = resolve_checkpoints(checkpoint)
    from .plan import open_data

    dataset = open_data(data)
    if split not in getattr(dataset, "splits", (split,)):
        raise MSAError(f"--split {split}: the dataset has no such split (its splits: "
                       f"{', '.join(getattr(dataset, 'splits', ()))})")
    total = len(ckpts) * sum(1 if r == 0 else len(seeds) for rs in plan.values() for r in rs)
    from contextlib import nullcontext

    bar = _bar(total) if progress else nullcontext(lambda: None)
    with bar as advance:
        results = [_one_checkpoint(c, dataset, split, plan, seeds, modalities, device, batch_size, unk_id, advance)
                   for c in ckpts]
    for r in results:
        r["protocols"] = {p: _with_auilc(v) for p, v in r["protocols"].items()}
    combined = results[0]["protocols"] if len(results) == 1 else _over_checkpoints(results)
    for p, v in combined.items():
        v["about"] = ABOUT[p]
    settings = {"model": results[0]["model"], "data": str(data) if isinstance(data, (str, os.PathLike)) else None,
                "split": split, "mask_seeds": seeds, "modalities": results[0]["modalities"],
                "unk_id": results[0]["unk_id"], "normalised_inputs": results[0]["normalised"],
                "units": "fraction", "auilc": "trapezoid area under metric-vs-rate over the rates evaluated "
                                              "(not normalised); auilc_mean = auilc / (max rate - min rate)"}
    result = RobustnessResult([str(c) for c in ckpts], combined, settings,
                              results if len(results) > 1 else [])
    if out_dir is not None:
        write_outputs(result, Path(out_dir))
    if json_path is not None:
        atomic_write_json(Path(json_path), result.to_dict(), indent=1)
    return result


def _bar(total: int):
    from contextlib import contextmanager

    @contextmanager
    def bar():
        from rich.progress import Progress

        with Progress(transient=True) as p:
            task = p.add_task("robustness", total=total)
            yield lambda: p.advance(task)

    return bar()


def _over_checkpoints(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over checkpoints (seeds of a run) of each rate's metrics and of each AUILC."""
    out: dict[str, Any] = {}
    for p in results[0]["protocols"]:
        per = [r["protocols"][p] for r in results]
        rows = []
        for i, row in enumerate(per[0]["per_rate"]):
            st = _mean_std([q["per_rate"][i]["metrics"] for q in per])
            rows.append({"rate": row["rate"], **st, **({"effective_rate": row["effective_rate"]}
                                                       if "effective_rate" in row else {})})
        out[p] = {"per_rate": rows, "rates": per[0]["rates"], **({"text": per[0]["text"]} if "text" in per[0] else {})}
        for key in ("auilc", "auilc_mean"):
            st = _mean_std([q[key] for q in per])
            out[p][key], out[p][f"{key}_std"] = st["metrics"], st["std"]
    return out


def write_outputs(result: RobustnessResult, out_dir: Path) -> None:
    """robustness.json, robustness.csv and robustness.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / ROBUSTNESS_JSON, result.to_dict(), indent=1)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["protocol", "rate", "metric", "value", "std", "n"])
    for p, v in result.protocols.items():
        for row in v["per_rate"]:
            for k, x in row["metrics"].items():
                s = row["std"].get(k)
                w.writerow([p, row["rate"], k, f"{x:.6g}", "" if s is None else f"{s:.6g}", row["n"]])
        for k, x in v["auilc"].items():
            w.writerow([p, "auilc", k, f"{x:.6g}", "", ""])
    atomic_write_text(out_dir / ROBUSTNESS_CSV, buf.getvalue())
    plot_curves({result.settings.get("model", "model"): result.protocols}, out_dir / ROBUSTNESS_PNG)


def plot_curves(curves: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """One panel per protocol and plotted metric, one line per entry of ``curves`` (label -> protocols)."""
    from .plots import _plt

    plt = _plt()
    protos = list(dict.fromkeys(p for c in curves.values() for p in c))
    found = {k for c in curves.values() for v in c.values() for row in v["per_rate"] for k in row["metrics"]}
    metrics = [next((m for m in group if m in found), group[0]) for group in PLOT_METRICS]
    fig, axes = plt.subplots(len(metrics), len(protos), figsize=(3.6 * len(protos), 2.8 * len(metrics)),
                             squeeze=False)
    # a distinct (colour, line style) per entry: tab10's colours, then again dashed, then dotted
    colours, styles = plt.get_cmap("tab10").colors, ("-", "--", ":", "-.")
    look = {label: (colours[k % 10], styles[(k // 10) % 4]) for k, label in enumerate(curves)}
    for j, p in enumerate(protos):
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            for label, c in curves.items():
                if p not in c:
                    continue
                rows = c[p]["per_rate"]
                x = [r["rate"] for r in rows]
                y = np.array([r["metrics"].get(metric, np.nan) for r in rows])
                s = np.array([r["std"].get(metric) or 0.0 for r in rows])
                colour, style = look[label]
                ax.plot(x, y, marker="o", ms=3, label=label, color=colour, linestyle=style)
                ax.fill_between(x, y - s, y + s, alpha=0.15, color=colour)
            ax.set_title(f"protocol {p}: {metric}", fontsize=9)
            ax.set_xlabel("rate" if p != "noise" else "noise std", fontsize=8)
            ax.grid(alpha=0.3)
    # the legend beside the panels (inside one it hid the curves once there were more than a few models)
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7,
               ncol=1 + len(labels) // 30)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- msa benchmark --robustness


def run_robustness(run_dir: Path, data: Any, protocols: Sequence[str]) -> dict[str, Any]:
    """Protocol -> {"auilc", "per_rate": [{"rate", "metrics"}]} of one run's best checkpoint at the default rates
    and mask seed; read back from ``run_dir/robustness.json`` when it holds every protocol asked, scored that way."""
    from .trainer import BEST_FILE

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise MSAError(f"--robustness: unknown protocol(s) {bad}; use a subset of {', '.join(PROTOCOLS)}")
    path = run_dir / ROBUSTNESS_JSON
    doc = json.loads(path.read_text()) if path.is_file() else {}
    have = doc.get("protocols", {}) if doc.get("mask_seeds") == [DEFAULT_MASK_SEED] else {}
    if not all(list(have.get(p, {}).get("rates", ())) == list(DEFAULT_RATES[p]) for p in protocols):
        doc = robustness(run_dir / BEST_FILE, data, protocols=protocols, out_dir=run_dir).to_dict()
    return {p: {"auilc": doc["protocols"][p]["auilc"],
                "per_rate": [{"rate": r["rate"], "metrics": r["metrics"]} for r in doc["protocols"][p]["per_rate"]]}
            for p in protocols}


def robustness_table(ok: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Protocol -> {"auilc": metric -> seed stats, "per_rate": [{"rate", "metrics": metric -> seed stats}]}."""
    rob = [r["robustness"] for r in ok if r.get("robustness")]
    out: dict[str, Any] = {}
    for p in (rob[0] if rob else {}):
        runs = [x[p] for x in rob if p in x]
        out[p] = {"auilc": {k: seed_stats([x["auilc"].get(k) for x in runs]) for k in runs[0]["auilc"]},
                  "per_rate": [{"rate": row["rate"],
                                "metrics": {k: seed_stats([x["per_rate"][i]["metrics"].get(k) for x in runs])
                                            for k in row["metrics"]}}
                               for i, row in enumerate(runs[0]["per_rate"])]}
    return out
