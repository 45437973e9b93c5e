"""PNG plots written with each run (matplotlib, Agg backend; no display needed).

* ``loss_curves.png`` — every named training loss component per epoch (plus the
  validation loss), beside the validation metrics per epoch (MMSA's names with ``mmsa_names``);
* ``scatter_test.png`` — predicted vs true scores on the test split;
* ``confusion_acc7.png`` — the Acc-7 confusion matrix (both clipped to [-3, 3], rounded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def loss_figure(history: Sequence[Mapping[str, Any]], mmsa_names: bool = False):
    """The figure of ``loss_curves.png``: training loss components (log scale when all positive, valid loss
    dashed) on the left, the validation metrics per epoch (log.jsonl's ``valid``; null = undefined, a gap) on
    the right, named as MMSA does with ``mmsa_names``; whole epochs on both x axes. The caller closes it."""
    from matplotlib.ticker import MaxNLocator

    from .metrics import mmsa_names as rename

    plt = _plt()
    epochs = [r["epoch"] for r in history]
    comps = list(dict.fromkeys(k for r in history for k in r.get("train", {})))
    metrics = list(dict.fromkeys(k for r in history for k in r.get("valid", {}) if k != "loss"))
    names = dict(zip(metrics, rename(dict.fromkeys(metrics)))) if mmsa_names else {k: k for k in metrics}
    fig, (ax, mx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for c in comps:
        ax.plot(epochs, [r["train"].get(c, np.nan) for r in history], marker="o", ms=3, label=f"train {c}",
                lw=2 if c == "total" else 1)
    if any("loss" in r.get("valid", {}) for r in history):
        ax.plot(epochs, [r.get("valid", {}).get("loss", np.nan) for r in history], "k--", label="valid total")
    vals = np.array([v for r in history for v in list(r.get("train", {}).values())
                     + [r.get("valid", {}).get("loss", 1.0)]], dtype=float)
    if vals.size and np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    for k in metrics:
        mx.plot(epochs, [np.nan if r.get("valid", {}).get(k) is None else r["valid"][k] for r in history],
                marker="o", ms=3, label=names[k])
    for a, ylabel, title in ((ax, "loss", "loss components"), (mx, "metric", "validation metrics")):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.set_ylabel(ylabel)
        a.set_title(title)
        if a.get_lines():
            a.legend(fontsize=7, loc="best")
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: str | Path, mmsa_names: bool = False) -> Path:
    """``loss_curves.png``: :func:`loss_figure` saved."""
    fig = loss_figure(history, mmsa_names)
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return Path(path)


def plot_scatter(pred: np.ndarray, true: np.ndarray, path: str | Path, title: str = "test") -> Path:
    plt = _plt()
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=8, alpha=0.5)
    lo = float(min(true.min(initial=-1), pred.min(initial=-1)))
    hi = float(max(true.max(initial=1), pred.max(initial=1)))
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"{title}: predicted vs true (n={true.size})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def confusion_acc7(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """int [7, 7] counts; rows = true class -3..3, columns = predicted class."""
    p = np.round(np.clip(np.asarray(pred, float), -3, 3)).astype(int) + 3
    t = np.round(np.clip(np.asarray(true, float), -3, 3)).astype(int) + 3
    cm = np.zeros((7, 7), dtype=int)
    np.add.at(cm, (t, p), 1)
    return cm


def plot_confusion(pred: np.ndarray, true: np.ndarray, path: str | Path) -> Path:
    plt = _plt()
    cm = confusion_acc7(pred, true)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    im = ax.imshow(cm, cmap="Blues")
    ticks = list(range(7))
    ax.set_xticks(ticks, [str(i - 3) for i in ticks])
    ax.set_yticks(ticks, [str(i - 3) for i in ticks])
    for i in range(7):
        for j in range(7):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Acc-7 confusion (acc {np.trace(cm) / max(1, cm.sum()):.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_run_plots(run_dir: str | Path, history: Sequence[Mapping[str, Any]], pred: np.ndarray | None,
                    true: np.ndarray | None, mmsa_names: bool = False) -> list[Path]:
    """All of a run's plots; returns the written paths."""
    run_dir = Path(run_dir)
    out = []
    if history:
        out.append(plot_loss_curves(history, run_dir / "loss_curves.png", mmsa_names))
    if pred is not None and true is not None and len(true):
        out.append(plot_scatter(pred, true, run_dir / "scatter_test.png"))
        out.append(plot_confusion(pred, true, run_dir / "confusion_acc7.png"))
    return out
