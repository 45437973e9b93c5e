"""What a training run prints: progress bars, per-epoch lines and summary tables, all on stderr.

Files are written by :mod:`.trainer` and :mod:`.api`; this module only talks to the console, so
stdout stays clean. A :class:`Reporter` that is not enabled (``progress=False``, or a process
other than rank 0) prints nothing and never touches rich.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

from .._io import progress_bar
from .metrics import HIGHER_IS_BETTER, format_metrics

#: validation metrics shown on each epoch line (besides the monitored one)
EPOCH_LINE_METRICS = ("loss", "acc2_non0", "acc2", "corr", "mae")
#: seconds between two readings of the loss shown on the progress bar (reading it syncs the device)
LOSS_REFRESH_SECONDS = 1.0


class Reporter:
    """Console output of one process; silent unless ``enabled``."""

    def __init__(self, enabled: bool):
        # print at all (progress on and the main process)
        self.enabled = enabled
        # the stderr console, made on first use
        self._console = None
        # the progress bar of the epoch being trained, while it is live (messages go through it)
        self._bar = None

    def print(self, *args: Any) -> None:
        """Print rich renderables / markup (nothing when disabled)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(*args)
            return
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        self._console.print(*args)

    @contextlib.contextmanager
    def epoch_bar(self, epoch: int, epochs: int, batches: int) -> Iterator[Callable[[Any], None]]:
        """A progress bar over one epoch's batches; yields ``advance(loss)`` to call after each batch.

        The loss (a device tensor) is read at most every :data:`LOSS_REFRESH_SECONDS`, so the bar
        does not synchronise the host with the device on every step.
        """
        if not self.enabled:
            yield lambda loss: None
            return
        bar = progress_bar(True, current=True, transient=True)
        task = bar.add_task(f"epoch {epoch}/{epochs}", total=batches, current="")
        shown = [float("-inf")]  # when the loss was last read

        def advance(loss: Any) -> None:
            now = time.monotonic()
            if now - shown[0] < LOSS_REFRESH_SECONDS:
                bar.update(task, advance=1)
                return
            shown[0] = now
            bar.update(task, advance=1, current=f"loss {float(loss):.4f}")

        with bar:
            self._bar = bar
            try:
                yield advance
            finally:
                self._bar = None

    def epoch(self, record: Mapping[str, Any], monitor: str) -> None:
        """One line per epoch: train loss components, main validation metrics, ``*`` on a new best."""
        if not self.enabled:
            return
        train = " ".join(f"{k}={v:.4f}" for k, v in record["train"].items())
        shown = (monitor, *EPOCH_LINE_METRICS)
        valid = format_metrics({k: v for k, v in record.get("valid", {}).items() if k in shown})
        star = " *" if record["best_epoch"] == record["epoch"] else ""
        self.print(f"epoch {record['epoch']:>3}  train {train}  |  valid {valid}{star}")

    def run_summary(self, history: Sequence[Mapping[str, Any]], test: Mapping[str, float], monitor: str) -> None:
        """A table of the epochs (mean loss components, monitored valid metric) and the test metrics."""
        if not self.enabled or not history:
            return
        from rich.table import Table

        comps = list(history[-1]["train"])
        table = Table(title="training (mean loss components per epoch)")
        table.add_column("epoch", justify="right")
        for c in comps:
            table.add_column(f"train {c}", justify="right")
        table.add_column(f"valid {monitor}", justify="right")
        for r in history:
            table.add_row(str(r["epoch"]) + (" *" if r["epoch"] == r["best_epoch"] else ""),
                          *[f"{r['train'].get(c, float('nan')):.4f}" for c in comps],
                          f"{r.get('valid', {}).get(monitor, float('nan')):.4f}")
        self.print(table)
        if test:
            self.print(f"[bold]test[/bold] {format_metrics(test)}")


def _mean_std(metric: str, mean: float, std: float) -> str:
    if metric in HIGHER_IS_BETTER and metric != "corr":
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{mean:.4f} ± {std:.4f}"


def print_seed_summary(model: str, seeds: Sequence[int], summary: Mapping[str, Mapping[str, Mapping[str, Any]]]
                       ) -> None:
    """The mean ± std table over seeds (accuracies/F1 in %), as :func:`.api.summarize` computes it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model}: mean ± std over seeds {list(seeds)} (accuracies/F1 in %)")
    table.add_column("metric")
    splits = [s for s in ("valid", "test") if s in summary]
    for s in splits:
        table.add_column(s, justify="right")
    keys = list(dict.fromkeys(k for s in splits for k in summary[s]))
    for k in keys:
        table.add_row(k, *[_mean_std(k, summary[s][k]["mean"], summary[s][k]["std"])
                           if k in summary[s] else "" for s in splits])
    Console(stderr=True).print(table)
