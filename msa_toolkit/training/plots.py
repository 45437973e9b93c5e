"""PNG plots written with each run (matplotlib, Agg backend; no display needed).

* ``loss_curves.png`` — every named training loss component per epoch (plus the
  validation loss and the monitored metric when logged);
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


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """One line per training loss component (log scale when all positive); valid loss dashed."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    comps = list(dict.fromkeys(k for r in history for k in r.get("train", {})))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for c in comps:
        ax.plot(epochs, [r["train"].get(c, np.nan) for r in history], marker="o", ms=3, label=f"train {c}",
                lw=2 if c == "total" else 1)
    if any("loss" in r.get("valid", {}) for r in history):
        ax.plot(epochs, [r.get("valid", {}).get("loss", np.nan) for r in history], "k--", label="valid total")
    vals = np.array([v for r in history for v in list(r.get("train", {}).values())
                     + [r.get("valid", {}).get("loss", 1.0)]], dtype=float)
    if vals.size and np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss components")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
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
                    true: np.ndarray | None) -> list[Path]:
    """All of a run's plots; returns the written paths."""
    run_dir = Path(run_dir)
    out = []
    if history:
        out.append(plot_loss_curves(history, run_dir / "loss_curves.png"))
    if pred is not None and true is not None and len(true):
        out.append(plot_scatter(pred, true, run_dir / "scatter_test.png"))
        out.append(plot_confusion(pred, true, run_dir / "confusion_acc7.png"))
    return out
