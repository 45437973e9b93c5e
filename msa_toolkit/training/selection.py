"""Which epoch is best, and what a run reports besides the valid-selected figures.

Generic pieces the reference recipes need (no model-specific code):

* :func:`resolve_mode` / :func:`improved`: a selection metric with a direction ("max"/"min",
  "auto" from the metric's name) and an optional ">=" tie rule (MInD and MMCL keep the later
  of two equal epochs);
* :func:`epoch_cosine_factor`: the epoch-level linear warm-up + cosine decay of ALMT's code;
* :func:`should_roll_back` / :func:`roll_back`: MInD's "roll back to the best weights and
  halve the learning rate on a plateau";
* :func:`best_test_figures`: the "best test epoch" figures the authors' code prints when the
  test split is evaluated after every epoch (``TrainConfig.test_every_epoch``). They select on
  the test split, so they are always stored under their own, labelled keys
  (:data:`BEST_TEST_KEY`, :data:`BEST_PER_METRIC_KEY`) next to the valid-selected ``test``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

from ..errors import MSAError
from .metrics import higher_is_better

#: metrics.json / summary key of the test metrics of the epoch that was best on the *test* split
BEST_TEST_KEY = "test_at_best_test_epoch"
#: metrics.json / summary key of each test metric's best value over epochs (a different epoch per metric)
BEST_PER_METRIC_KEY = "test_best_per_metric"
#: the protocol notes written next to those figures
BEST_TEST_PROTOCOL = ("test metrics of the epoch with the best test {metric} ({mode}{ties}); selected on the "
                      "TEST split as the authors' code prints it, not comparable with valid-selected figures")
BEST_PER_METRIC_PROTOCOL = ("each test metric's best value over all epochs (a different epoch per metric), as "
                            "ALMT's 'Best Test Results across All Epochs'; selected on the TEST split")


def resolve_mode(metric: str, mode: str = "auto") -> str:
    """"max" or "min" for ``metric``; "auto" = max for accuracies/F1/corr, min for MAE and losses."""
    if mode in ("max", "min"):
        return mode
    if mode != "auto":
        raise MSAError(f"monitor_mode must be auto|max|min, got {mode!r}")
    return "max" if higher_is_better(metric) else "min"


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0, ties: bool = False) -> bool:
    """Whether ``value`` improves on ``best`` (None = nothing yet) in direction ``mode``.

    With ``ties`` an equal value (within ``min_delta``) counts too: ``>=`` instead of ``>``.
    """
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    if mode == "max":
        return value >= best + min_delta if ties else value > best + min_delta
    return value <= best - min_delta if ties else value < best - min_delta


def epoch_cosine_factor(epoch: int, warmup_epochs: int, cosine_epochs: int, hold_epochs: int = 0) -> float:
    """LR multiplier of 0-based ``epoch``: ``epoch / warmup_epochs`` during the warm-up (0 in the
    first epoch, as the reference), 1 in epoch ``warmup_epochs`` and the ``hold_epochs`` after it, then
    ``0.5 (1 + cos(pi t / cosine_epochs))``, t = epochs since the peak (held at 0 after ``cosine_epochs``).

    ALMT's ``GradualWarmupScheduler`` hands over to its cosine one epoch late (``hold_epochs=1``): the
    epoch after the warm-up reads the cosine's still unstepped LR, the peak."""
    if epoch < warmup_epochs:
        return epoch / warmup_epochs
    t = max(0, epoch - warmup_epochs - max(0, hold_epochs)) / max(1, cosine_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def should_roll_back(bad_epochs_since: int, patience: int) -> bool:
    """Whether a plateau of ``bad_epochs_since`` epochs triggers a roll-back (``patience`` 0 = never)."""
    return patience > 0 and bad_epochs_since >= patience


def snapshot_optimizer(optimizer: Any) -> dict[str, Any]:
    """A CPU deep copy of the optimiser state (kept with the best weights for a later roll-back)."""
    import torch

    def to_cpu(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", copy=True)
        if isinstance(x, dict):
            return {k: to_cpu(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_cpu(v) for v in x)
        return copy.deepcopy(x)

    return to_cpu(optimizer.state_dict())


def rollback_kept_keys(model: Any) -> set[str]:
    """State-dict keys a roll-back leaves as they are: the buffers each submodule lists in its
    ``rollback_keep`` attribute (e.g. a step counter that drives a schedule)."""
    keys = set()
    for name, mod in model.named_modules():
        for buf in getattr(mod, "rollback_keep", ()):
            keys.add(f"{name}.{buf}" if name else buf)
    return keys


def roll_back(model: Any, optimizer: Any, weights: Mapping[str, Any], optimizer_state: Mapping[str, Any] | None,
              factor: float) -> list[float]:
    """Load the best ``weights`` (and the optimiser state saved with them, when there is one), then
    multiply every group's LR by ``factor``; the new LRs.

    As MInD's code: the optimiser state (moments and LR) returns to the best epoch's, and the
    LR halves from there. Buffers a module names in ``rollback_keep`` (MInD's step counter, as the
    reference's global step) keep counting: :func:`rollback_kept_keys`.
    """
    device = next((p.device for p in model.parameters()), None)
    keep = rollback_kept_keys(model)
    model.load_state_dict({k: v.to(device) for k, v in weights.items() if k not in keep}, strict=False)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    for g in optimizer.param_groups:
        g["lr"] = g["lr"] * factor
    return [g["lr"] for g in optimizer.param_groups]


def best_test_figures(history: Sequence[Mapping[str, Any]], metric: str, mode: str = "auto",
                      ties: bool = False) -> dict[str, Any]:
    """The labelled "best test epoch" figures from epoch records that carry ``"test"`` metrics.

    Returns ``{}`` when no epoch was tested, else ``{BEST_TEST_KEY: {"epoch", "metric", "mode",
    "metrics", "protocol"}, BEST_PER_METRIC_KEY: {"metrics", "epochs", "protocol"}}``.
    """
    tested = [r for r in history if r.get("test")]
    if not tested:
        return {}
    if metric not in tested[0]["test"]:
        raise MSAError(f"test_select {metric!r} is not a test metric; choose from {sorted(tested[0]['test'])}")
    direction = resolve_mode(metric, mode)
    best, best_rec = None, None
    for r in tested:
        if improved(r["test"][metric], best, direction, ties=ties):
            best, best_rec = r["test"][metric], r
    if best_rec is None:
        best_rec = tested[-1]
    per_metric: dict[str, float] = {}
    per_epoch: dict[str, int] = {}
    for k in tested[0]["test"]:
        d = resolve_mode(k, "auto")
        for r in tested:
            v = r["test"].get(k)
            if v is not None and improved(v, per_metric.get(k), d):
                per_metric[k], per_epoch[k] = v, r["epoch"]
    return {
        BEST_TEST_KEY: {"epoch": best_rec["epoch"], "metric": metric, "mode": direction,
                        "metrics": dict(best_rec["test"]),
                        "protocol": BEST_TEST_PROTOCOL.format(metric=metric, mode=direction,
                                                              ties=", ties to the later epoch" if ties else "")},
        BEST_PER_METRIC_KEY: {"metrics": per_metric, "epochs": per_epoch, "protocol": BEST_PER_METRIC_PROTOCOL},
    }


def maybe_roll_back(model: Any, optimizer: Any, run: Any, tc: Any) -> dict[str, Any] | None:
    """The trainer's plateau step (``run`` a RunState, ``tc`` a TrainConfig): after
    ``tc.rollback_patience`` epochs without improvement, roll back (:func:`roll_back`) and return
    ``{"to_epoch", "lr", "last"}``. The plateau after ``tc.rollback_limit`` roll-backs rolls back once more
    and marks the run stopped (``"last": True``), as MInD's code loads the best checkpoint on its final
    plateau before the epoch's test and the stop."""
    if not should_roll_back(run.plateau_epochs, tc.rollback_patience) or run.best_weights is None:
        return None
    run.plateau_epochs = 0
    last = run.rollbacks >= tc.rollback_limit
    if last:
        run.stopped_early = True
    else:
        run.rollbacks += 1
    lrs = roll_back(model, optimizer, run.best_weights, run.best_optimizer, tc.rollback_factor)
    return {"to_epoch": run.best_epoch, "lr": lrs[0], "last": last}


#: reasons of :func:`~.metrics.undefined_metrics` that depend on the predictions (another epoch may have a value)
PREDICTION_REASONS = frozenset({"constant predictions"})


def monitored_value(valid: Any, monitor: str, split: str, epoch: int) -> tuple[float, str | None]:
    """The monitored value of an epoch's validation metrics (a :class:`~.metrics.Metrics`) and a notice when it
    is undefined by this epoch's predictions (the epoch then cannot be the best one: NaN never improves).
    MSAError when ``monitor`` is no metric, or when the labels leave it undefined in every epoch."""
    from ..errors import MSAError

    value = valid.get(monitor)
    if value is None:
        raise MSAError(f"monitor {monitor!r} is not a validation metric; choose from {sorted(valid)}")
    why = getattr(valid, "undefined", {}).get(monitor)
    if why is None:
        return value, None
    if why not in PREDICTION_REASONS:
        raise MSAError(f"monitor {monitor!r} is undefined on split {split!r} ({why}); choose another with "
                       "--set trainer.monitor=... (e.g. mae)")
    return value, f"epoch {epoch}: {monitor} is undefined ({why}); this epoch cannot be the best one"
