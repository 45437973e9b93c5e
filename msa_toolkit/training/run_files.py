"""The files a training run writes in its folder, apart from the Trainer's loop.

``best.safetensors`` (the best weights with their spec, configs and metrics: :func:`save_best`),
``last.pt`` (the resume state: :func:`save_resume`; marked finished with the result by :func:`write_final`),
``log.jsonl`` (one :func:`json_line` per epoch), ``metrics.json`` and ``predictions_test.csv``
(:func:`write_final`). Only rank 0 calls these (``Trainer.writes``); ``trainer`` is the calling
:class:`~.trainer.Trainer` (not imported here: this module is the trainer's, not the other way round).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from .._io import atomic_write_json, dumps_json
from . import distributed as D
from . import selection as S
from .checkpoint import (RESUME_FILE, full_model_state, load_resume_state, model_state_tensors, save_checkpoint,
                         save_resume_state)
from .metrics import UNITS
from .rng import loader_generators, rng_state
from .state import FitResult, RunState, SplitOutputs, TrainingSetup, write_predictions

__all__ = ["BEST_FILE", "LOG_FILE", "RESULT_FILE", "PREDICTIONS_FILE", "json_line", "save_best", "save_resume",
           "write_final", "finished_result"]

BEST_FILE = "best.safetensors"
LOG_FILE = "log.jsonl"
RESULT_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions_test.csv"


def json_line(record: Mapping[str, Any]) -> str:
    """One line of ``log.jsonl``."""
    return dumps_json(record, indent=None) + "\n"


def save_best(trainer: Any, state: Mapping[str, torch.Tensor], metrics: Mapping[str, Any], epoch: int) -> None:
    """``best.safetensors`` with ``state`` as weights, the metrics and what inference needs."""
    extra = dict(trainer.extra)
    extra.update(epoch=epoch, seed=trainer.config.seed, metric_set=trainer.metric_set)
    save_checkpoint(trainer.out_dir / BEST_FILE, trainer.model, trainer.spec, trainer.config.to_dict(), metrics,
                    extra, state=state)


def save_resume(trainer: Any, setup: TrainingSetup, run: RunState) -> None:
    """``last.pt``: weights, optimiser, schedule, scaler, RunState, every rank's RNG and the loader's (the other
    ranks send theirs from the Trainer's epoch loop)."""
    rngs = D.all_gather_objects(trainer.ctx, rng_state())
    save_resume_state(trainer.out_dir / RESUME_FILE, {
        "model": full_model_state(trainer.model),
        "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict() if setup.scheduler is not None else None,
        "scaler": setup.scaler.state_dict() if setup.scaler is not None else None,
        **run.resume_fields(),
        "rng": rngs,
        "loader_generators": [g.get_state() for g in loader_generators(setup.loader)],
        "train_config": trainer.config.to_dict(),
        "finished": False,
    })


def write_final(trainer: Any, run: RunState, test: dict[str, float], outputs: SplitOutputs | None,
                best_test: Mapping[str, Any]) -> None:
    """best.safetensors with test metrics, metrics.json, test predictions, plots; last.pt marked finished."""
    out_dir = trainer.out_dir
    save_best(trainer, model_state_tensors(trainer.model), {"valid": run.best_valid, "test": test}, run.best_epoch)
    summary = {"best_epoch": run.best_epoch, "stopped_early": run.stopped_early, "epochs_run": len(run.history),
               "metric_set": trainer.metric_set, "monitor": trainer.monitor, "units": UNITS, "valid": run.best_valid,
               "test": test, **best_test}
    atomic_write_json(out_dir / RESULT_FILE, summary, indent=2)
    if outputs is not None:
        write_predictions(outputs, out_dir / PREDICTIONS_FILE)
    if trainer.config.plots:
        from .plots import write_run_plots

        write_run_plots(out_dir, run.history, outputs.prediction if outputs is not None else None,
                        outputs.label if outputs is not None else None, mmsa_names=trainer.config.mmsa_names)
    resume_path = out_dir / RESUME_FILE
    st = load_resume_state(resume_path) if resume_path.is_file() else {"history": run.history}
    st.update(finished=True, result=summary)
    save_resume_state(resume_path, st)


def finished_result(out_dir: Any, state: Mapping[str, Any]) -> FitResult:
    """The FitResult stored in a finished run's ``last.pt``."""
    r = state["result"]
    return FitResult(out_dir, r["best_epoch"], r["valid"], r["test"], state["history"], out_dir / BEST_FILE,
                     r["stopped_early"], {k: r[k] for k in (S.BEST_TEST_KEY, S.BEST_PER_METRIC_KEY) if k in r})
