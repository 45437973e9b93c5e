"""The field's evaluation metrics for sentiment regression.

Definitions follow the MMSA reference evaluation (``MetricsTop``), which the
DLF, ALMT, MMCL and MInD papers report:

Labels in [-3, 3] (CMU-MOSI, CMU-MOSEI) — :func:`mosi_metrics`
    * ``acc2_has0`` / ``f1_has0``: negative (< 0) vs non-negative (>= 0) over all samples;
    * ``acc2_non0`` / ``f1_non0``: samples whose label is exactly 0 are excluded,
      then label > 0 vs prediction > 0 (a prediction of exactly 0 counts as negative);
    * ``acc3``: clip both to [-1, 1], round; ``acc5``: clip to [-2, 2], round;
      ``acc7``: clip to [-3, 3], round (``numpy.round``: halves to even, as the reference);
    * ``mae``: mean absolute error of the unclipped values; ``corr``: Pearson correlation.

Labels in [-1, 1] (CH-SIMS) — :func:`sims_metrics`
    Both values are clipped to [-1, 1], then binned by the usual thresholds:
    * ``acc2``: [-1, 0] vs (0, 1];
    * ``acc3``: [-1, -0.1], (-0.1, 0.1], (0.1, 1];
    * ``acc5``: [-1, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1];
    * ``f1``: weighted F1 of the Acc-2 classes; ``mae`` and ``corr`` on the clipped values.

F1 is the support-weighted mean of per-class F1 (sklearn's ``average='weighted'``),
implemented here.

Undefined metrics (:func:`undefined_metrics`): the non-0 Acc-2/F1 of a split without a non-zero
label, the correlation when predictions or labels are constant (or fewer than 2 samples), every
metric of an empty split. :func:`score` (and ``compute_metrics(..., undefined="nan")``) reports them
as NaN with the reason — ``null`` in JSON (``_io``), ``n/a`` on the console (:func:`format_value`) —
never as a number: selection (``selection.improved``) never picks a NaN, and mean ± std over seeds
(:func:`seed_stats`) leaves it out. ``compute_metrics``' default (``undefined="zero"``) still gives
0.0 there, for callers that cannot take a NaN yet (the trainer's validation refuses non-finite
metrics).
Accuracies and F1 are fractions in [0, 1], everywhere: in the files a run writes and on the
console (:data:`UNITS`).

Non-finite predictions or labels are refused (:class:`NonFiniteError`), never scored: a NaN
prediction would otherwise count as "negative" in every accuracy.

MMSA's names (``--mmsa-names``): :data:`MMSA_NAMES` maps each toolkit name to the key MMSA's
``MetricsTop`` uses for the same quantity (:func:`mmsa_names` renames a result dict).

Multi-task models (CH-SIMS): each unimodal prediction is scored against its unimodal label with the same
metric set, under the metric's name plus ``_T`` / ``_A`` / ``_V`` (:func:`score_unimodal`: ``mae_T``,
``acc2_T``; MMSA's names ``MAE_T``, ``Mult_acc_2_T``). MMSA's multi-task trainers log each task's metrics
against the multimodal label instead (they append ``labels['M']`` for every task); the toolkit scores a
unimodal head against the label it is trained on.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import MSAError, NonFiniteError

#: metrics where larger is better (everything else, MAE and losses, is smaller-is-better)
HIGHER_IS_BETTER = frozenset({
    "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc2", "acc3", "acc5", "acc7", "f1", "corr",
})

#: the metric sets
METRIC_SETS = ("standard", "sims")
#: how accuracies and F1 are reported in files and on the console
UNITS = "fraction"
#: the words every console table/line uses to say so
UNITS_NOTE = "accuracies/F1 as fractions in [0, 1]"

#: toolkit metric name -> MMSA's name, per metric set (MMSA ``MetricsTop``; ``loss`` is kept)
MMSA_NAMES: Mapping[str, Mapping[str, str]] = {
    "standard": {"acc2_has0": "Has0_acc_2", "f1_has0": "Has0_F1_score", "acc2_non0": "Non0_acc_2",
                 "f1_non0": "Non0_F1_score", "acc3": "Mult_acc_3", "acc5": "Mult_acc_5", "acc7": "Mult_acc_7",
                 "mae": "MAE", "corr": "Corr"},
    "sims": {"acc2": "Mult_acc_2", "acc3": "Mult_acc_3", "acc5": "Mult_acc_5", "f1": "F1_score",
             "mae": "MAE", "corr": "Corr"},
}


def seed_stats(values) -> dict[str, float | int | None]:
    """Mean, sample std (n - 1) and n over the finite values (None/NaN/inf are left out) of one metric across
    seeds; ``std`` is None when fewer than two values are finite (one seed has no spread), the mean NaN when
    none is. The one rule behind ``msa train``'s seed summary and ``msa benchmark``'s tables."""
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    return {"mean": float(a.mean()) if a.size else float("nan"),
            "std": float(a.std(ddof=1)) if a.size > 1 else None, "n": int(a.size)}


def require_unique(what: str, items, noun: str = "one") -> None:
    """MSAError when ``items`` repeats one (a repeated seed or model is the same run read back twice)."""
    items = list(items)
    if len(set(items)) < len(items):
        raise MSAError(f"{what}: each {noun} once, got {items} (a repeat is the same run, not another one)")


def mmsa_names(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` with MMSA's names (:data:`MMSA_NAMES`); keys without an MMSA name are kept."""
    sims = "f1" in metrics or ("acc2" in metrics and "acc2_has0" not in metrics)
    names = MMSA_NAMES["sims" if sims else "standard"]
    return {_mmsa_name(k, names): v for k, v in metrics.items()}


#: suffixes of the unimodal metrics of multi-task models (:func:`score_unimodal`)
UNIMODAL_SUFFIXES = ("_T", "_A", "_V")


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` are better (:data:`HIGHER_IS_BETTER`; a unimodal metric such as
    ``acc2_T`` as its base metric)."""
    if metric.endswith(UNIMODAL_SUFFIXES):
        metric = metric[:-2]
    return metric in HIGHER_IS_BETTER


def _mmsa_name(key: str, names: Mapping[str, str]) -> str:
    """MMSA's name of ``key``; a unimodal metric keeps its suffix (``mae_T`` -> ``MAE_T``)."""
    if key in names:
        return names[key]
    if key.endswith(UNIMODAL_SUFFIXES) and key[:-2] in names:
        return names[key[:-2]] + key[-2:]
    return key


def score_unimodal(metrics: "Metrics", unimodal: Mapping[str, tuple[Any, Any]], metric_set: str) -> "Metrics":
    """``metrics`` plus, per unimodal task t with (predictions, labels) in ``unimodal``, every metric of
    ``metric_set`` named ``<metric>_<t>`` (undefined ones NaN, with their reasons); returns ``metrics``."""
    for t, (pred, true) in unimodal.items():
        s = score(pred, true, metric_set)
        metrics.update({f"{k}_{t}": v for k, v in s.items()})
        metrics.undefined.update({f"{k}_{t}": why for k, why in s.undefined.items()})
    return metrics


def check_finite(pred, true, what: str = "predictions") -> None:
    """Raise :class:`NonFiniteError` when a prediction or label is NaN/inf (counts, first positions)."""
    for name, a in (("predictions", _as_1d(pred)), ("labels", _as_1d(true))):
        bad = np.nonzero(~np.isfinite(a))[0]
        if bad.size:
            label = what if name == "predictions" else f"labels of {what}"
            raise NonFiniteError(f"{bad.size} of {a.size} {label} are NaN/inf (positions "
                                 f"{', '.join(map(str, bad[:5].tolist()))}{', ...' if bad.size > 5 else ''}); "
                                 "they cannot be scored")


def _as_1d(x) -> np.ndarray:
    a = np.asarray(x.detach().cpu().float().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    return a.reshape(-1)


def accuracy(pred_cls, true_cls) -> float:
    """Fraction of equal entries (0.0 for empty input)."""
    p, t = np.asarray(pred_cls), np.asarray(true_cls)
    return float(np.mean(p == t)) if t.size else 0.0


def weighted_f1(true_cls, pred_cls) -> float:
    """Support-weighted mean of per-class F1 over the classes present in either array.

    Matches ``sklearn.metrics.f1_score(true, pred, average='weighted')``: classes
    that never occur in ``true`` get weight 0; a class never predicted has F1 0.
    """
    t, p = np.asarray(true_cls).reshape(-1), np.asarray(pred_cls).reshape(-1)
    if t.size == 0:
        return 0.0
    total = 0.0
    for c in np.unique(np.concatenate([t, p])):
        support = int(np.sum(t == c))
        if support == 0:
            continue
        tp = int(np.sum((t == c) & (p == c)))
        fp = int(np.sum((t != c) & (p == c)))
        fn = support - tp
        denom = 2 * tp + fp + fn
        total += support * (2 * tp / denom if denom else 0.0)
    return float(total / t.size)


def pearson(pred, true) -> float:
    """Pearson correlation; 0.0 when either side is constant or there are < 2 samples."""
    p, t = _as_1d(pred), _as_1d(true)
    if p.size < 2:
        return 0.0
    p, t = p - p.mean(), t - t.mean()
    denom = np.sqrt(np.sum(p * p) * np.sum(t * t))
    if not np.isfinite(denom) or denom <= 1e-12:
        return 0.0
    return float(np.clip(np.sum(p * t) / denom, -1.0, 1.0))


def multiclass_acc(pred, true, bound: float) -> float:
    """Clip both to [-bound, bound], round to integers, compare (Acc-3/5/7)."""
    p = np.round(np.clip(_as_1d(pred), -bound, bound))
    t = np.round(np.clip(_as_1d(true), -bound, bound))
    return accuracy(p, t)


def mosi_metrics(pred, true) -> dict[str, float]:
    """Standard metrics for labels in [-3, 3] (see module docstring)."""
    p, t = _as_1d(pred), _as_1d(true)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} differ in shape")
    nz = t != 0
    out = {
        "acc2_has0": accuracy(p >= 0, t >= 0),
        "f1_has0": weighted_f1(t >= 0, p >= 0),
        "acc2_non0": accuracy(p[nz] > 0, t[nz] > 0),
        "f1_non0": weighted_f1(t[nz] > 0, p[nz] > 0),
        "acc3": multiclass_acc(p, t, 1.0),
        "acc5": multiclass_acc(p, t, 2.0),
        "acc7": multiclass_acc(p, t, 3.0),
        "mae": float(np.mean(np.abs(p - t))) if t.size else 0.0,
        "corr": pearson(p, t),
    }
    return out


def _bin(x: np.ndarray, edges: list[float]) -> np.ndarray:
    """Class index i where edges[i] < x <= edges[i+1] (right-closed bins, as the reference)."""
    return np.searchsorted(np.asarray(edges[1:-1]), x, side="left")


def sims_metrics(pred, true) -> dict[str, float]:
    """CH-SIMS metrics for labels in [-1, 1] (see module docstring)."""
    p = np.clip(_as_1d(pred), -1.0, 1.0)
    t = np.clip(_as_1d(true), -1.0, 1.0)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and labels {t.shape} differ in shape")
    e2, e3, e5 = [-1.01, 0.0, 1.01], [-1.01, -0.1, 0.1, 1.01], [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]
    p2, t2 = _bin(p, e2), _bin(t, e2)
    return {
        "acc2": accuracy(p2, t2),
        "acc3": accuracy(_bin(p, e3), _bin(t, e3)),
        "acc5": accuracy(_bin(p, e5), _bin(t, e5)),
        "f1": weighted_f1(t2, p2),
        "mae": float(np.mean(np.abs(p - t))) if t.size else 0.0,
        "corr": pearson(p, t),
    }


def infer_metric_set(labels) -> str:
    """"sims" when every label lies in [-1, 1] and some are fractional, else "standard"."""
    t = _as_1d(labels)
    if t.size and np.all(np.abs(t) <= 1.0) and np.any((t != np.round(t))):
        return "sims"
    return "standard"


def compute_metrics(pred, true, metric_set: str = "standard", undefined: str = "zero") -> dict[str, float]:
    """Metrics of ``metric_set`` ("standard" for [-3, 3] labels, "sims" for [-1, 1]); ``undefined``:
    "nan" gives the metrics :func:`undefined_metrics` names NaN, "zero" (the default) the old 0.0.

    Raises :class:`NonFiniteError` when a prediction or label is NaN/inf.
    """
    check_finite(pred, true)
    if metric_set == "standard":
        out = mosi_metrics(pred, true)
    elif metric_set == "sims":
        out = sims_metrics(pred, true)
    else:
        raise ValueError(f"unknown metric set {metric_set!r}; expected one of {METRIC_SETS}")
    if undefined == "nan":
        out.update(dict.fromkeys(undefined_metrics(pred, true, metric_set), float("nan")))
    elif undefined != "zero":
        raise ValueError(f"undefined must be 'nan' or 'zero', got {undefined!r}")
    return out


def undefined_metrics(pred, true, metric_set: str = "standard") -> dict[str, str]:
    """The metrics of ``metric_set`` that have no value on these predictions and labels, with the reason."""
    p, t = _as_1d(pred), _as_1d(true)
    names = MMSA_NAMES["sims" if metric_set == "sims" else "standard"]
    if t.size == 0:
        return dict.fromkeys(names, "no samples")
    out: dict[str, str] = {}
    if metric_set != "sims" and not np.any(t != 0):
        out["acc2_non0"] = out["f1_non0"] = "no non-zero labels"
    if metric_set == "sims":  # its correlation is taken on the clipped values
        p, t = np.clip(p, -1.0, 1.0), np.clip(t, -1.0, 1.0)
    if t.size < 2:
        out["corr"] = "fewer than 2 samples"
    elif np.all(p == p[0]):
        out["corr"] = "constant predictions"
    elif np.all(t == t[0]):
        out["corr"] = "constant labels"
    return out


class Metrics(dict):
    """A metrics dict (NaN where undefined) with ``undefined``: metric -> why it has no value."""

    def __init__(self, values: Mapping[str, float] = (), undefined: Mapping[str, str] | None = None):
        super().__init__(values)
        self.undefined: dict[str, str] = dict(undefined or {})


def score(pred, true, metric_set: str = "standard") -> Metrics:
    """:func:`compute_metrics` with undefined metrics as NaN and their reasons in ``.undefined``."""
    return Metrics(compute_metrics(pred, true, metric_set, undefined="nan"),
                   undefined_metrics(pred, true, metric_set))


def describe_undefined(undefined: Mapping[str, str], names: Mapping[str, str] | None = None) -> str:
    """One line: ``corr n/a (constant predictions); acc2_non0, f1_non0 n/a (no non-zero labels)``; ``names``
    renames the metrics (e.g. MMSA's)."""
    by_reason: dict[str, list[str]] = {}
    for k, why in undefined.items():
        by_reason.setdefault(why, []).append((names or {}).get(k, k))
    return "; ".join(f"{', '.join(ks)} n/a ({why})" for why, ks in by_reason.items())


def format_value(v, digits: int = 4) -> str:
    """``v`` with ``digits`` decimals; ``n/a`` for None/NaN/inf (an undefined metric, never 0)."""
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


def is_better(metric: str, new: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``new`` improves on ``best`` for ``metric`` (None = nothing yet)."""
    if best is None:
        return bool(np.isfinite(new))
    if higher_is_better(metric):
        return new > best + min_delta
    return new < best - min_delta


def format_metrics(metrics: Mapping[str, float], percent: bool = False) -> str:
    """One line; accuracies/F1 as fractions (:data:`UNITS`, as in the files) unless ``percent``."""
    parts = []
    for k, v in metrics.items():
        if not isinstance(v, (int, float)):
            continue
        if percent and higher_is_better(k) and not k.startswith("corr"):
            parts.append(f"{k}={format_value(100 * v, 2)}")
        else:
            parts.append(f"{k}={format_value(v)}")
    return " ".join(parts)


def metric_set_of(data: Any) -> str:
    """The metric set of a data module from its labels' range (:func:`infer_metric_set`): the labels of every
    split where the splits expose them (no features read), else the train loader's."""
    names = tuple(getattr(data, "split_names", ()))
    labels = None
    if hasattr(data, "split") and names:
        parts = [getattr(data.split(s), "labels", None) for s in names]
        if all(p is not None for p in parts):
            labels = np.concatenate([np.asarray(p, np.float64) for p in parts])
    if labels is None:
        if "train" not in names:
            return "standard"
        labels = np.concatenate([b.label.numpy() for b in data.loader("train")])
    return infer_metric_set(labels[np.isfinite(labels)])
