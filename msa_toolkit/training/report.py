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
from ..errors import RunNotice
from .metrics import UNITS_NOTE, format_metrics, format_value, mmsa_names
from .selection import BEST_TEST_KEY

#: validation metrics shown on each epoch line (besides the monitored one)
EPOCH_LINE_METRICS = ("loss", "acc2_non0", "acc2", "corr", "mae")
#: seconds between two readings of the loss shown on the progress bar (reading it syncs the device)
LOSS_REFRESH_SECONDS = 1.0


class Reporter:
    """Console output of one process; silent unless ``enabled``."""

    def __init__(self, enabled: bool, main: bool | None = None, mmsa: bool = False):
        # print at all (progress on and the main process)
        self.enabled = enabled
        # the main process: warnings and notices print here even when progress is off
        self.main = enabled if main is None else main
        # show metrics with MMSA's names (files keep the toolkit's names)
        self.mmsa = mmsa
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

    def notice(self, message: str, style: str = "yellow") -> None:
        """A line that matters even without progress output (a warning, what a resume runs): main process only.

        With progress on it is printed; without, it is a :class:`RunNotice` warning, so a library caller sees it
        the way Python shows warnings (and can filter it) while ``msa ... -q`` prints it as a plain line."""
        if not self.main:
            return
        if self.enabled:
            self.print(f"[{style}]{message}")
            return
        import warnings

        warnings.warn(message, RunNotice, stacklevel=2)

    def names(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """``metrics`` with the names the console shows (MMSA's with ``mmsa``)."""
        return mmsa_names(metrics) if self.mmsa else dict(metrics)

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
        star = " *" if record["best_epoch"] == record["epoch"] else ""
        if "valid" not in record:
            self.print(f"epoch {record['epoch']:>3}  train {train}  |  no valid split{star}")
            return
        valid = format_metrics(self.names({k: v for k, v in record["valid"].items() if k in shown}))
        self.print(f"epoch {record['epoch']:>3}  train {train}  |  valid {valid}{star}")

    def run_summary(self, history: Sequence[Mapping[str, Any]], test: Mapping[str, float], monitor: str) -> None:
        """A table of the epochs (mean loss components, monitored valid metric) and the test metrics."""
        if not self.enabled or not history:
            return
        from rich.table import Table

        comps = list(history[-1]["train"])
        with_valid = any("valid" in r for r in history)
        table = Table(title="training (mean loss components per epoch)")
        table.add_column("epoch", justify="right")
        for c in comps:
            table.add_column(f"train {c}", justify="right")
        if with_valid:
            table.add_column(f"valid {next(iter(self.names({monitor: 0})))}", justify="right")
        for r in history:
            valid = [format_value(r["valid"][monitor]) if monitor in r.get("valid", {}) else "-"] if with_valid else []
            table.add_row(str(r["epoch"]) + (" *" if r["epoch"] == r["best_epoch"] else ""),
                          *[f"{r['train'][c]:.4f}" if c in r["train"] else "-" for c in comps], *valid)
        self.print(table)
        if test:
            self.print(f"[bold]test[/bold] (weights of the best valid epoch) {format_metrics(self.names(test))}"
                       f"  ({UNITS_NOTE})")
        tested = [r for r in history if r.get("test")]
        if tested:
            self.print(f"[dim]test evaluated every epoch ({len(tested)}); the labelled best-TEST-epoch figures are "
                       f"in metrics.json ({BEST_TEST_KEY})[/dim]")


def print_seed_summary(model: str, seeds: Sequence[int], summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
                       mmsa: bool = False) -> None:
    """The mean ± std table over seeds (fractions, as in the files), as :func:`.api.summarize` computes it;
    ``mmsa`` shows MMSA's metric names."""
    from rich.console import Console
    from rich.table import Table

    what = f"seed {seeds[0]} (one seed: no spread)" if len(seeds) == 1 else f"mean ± std over seeds {list(seeds)}"
    table = Table(title=f"{model}: {what} ({UNITS_NOTE})")
    table.add_column("metric")
    splits = [s for s in ("valid", "test", BEST_TEST_KEY) if s in summary]
    for s in splits:  # the test-selected column is labelled so it is never read as the valid-selected one
        table.add_column(s if s != BEST_TEST_KEY else "test at best TEST epoch (test-selected)", justify="right")
    keys = list(dict.fromkeys(k for s in splits for k in summary[s]))
    shown = mmsa_names({k: k for k in keys}) if mmsa else {k: k for k in keys}
    for name, k in shown.items():
        table.add_row(name, *[_cell(summary[s][k], len(seeds)) if k in summary[s] else "" for s in splits])
    Console(stderr=True).print(table)


def _cell(stat: Mapping[str, Any], n_seeds: int) -> str:
    """``mean ± std``, or the mean alone when fewer than two seeds gave a finite value; ``(n=k)`` when some
    seeds gave none; ``n/a`` when no seed did (an undefined metric)."""
    n = stat.get("n", n_seeds)
    text = format_value(stat["mean"]) + ("" if stat.get("std") is None else f" ± {format_value(stat['std'])}")
    return text + (f" (n={n})" if n != n_seeds else "")
