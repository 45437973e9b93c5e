"""Library entry points behind ``msa train`` and ``msa evaluate``.

    import msa_toolkit as msa
    run = msa.train("almt", data="ds", out_dir="runs/almt", seeds=(1, 2, 3),
                    overrides=["trainer.epochs=20", "model.dropout=0.2"])
    run.summary["test"]["mae"]            # {"mean", "std" (None for one seed), "n", "values"}
    msa.evaluate("runs/almt/seed_1/best.safetensors", data="ds", drop=("audio",))

Run directory layout, whatever the number of seeds: ``out_dir/config.yaml`` (the command's resolved
configuration; ``--resume`` reads it) and ``out_dir/summary.{json,csv}`` (mean ± std per metric over the seeds),
and one folder ``out_dir/seed_<s>/`` per seed holding::

    config.yaml          resolved configuration (model name/preset/overrides/resolved config, trainer, data, seeds)
    best.safetensors     self-describing checkpoint of the best validation epoch (+ valid/test metrics)
    last.pt              resume state (optimizer, scheduler, epoch, RNG, early stopping)
    log.jsonl            one record per epoch: every train loss component, valid metrics, lr
    metrics.json         best epoch, valid and test metrics
    predictions_test.csv id,label,prediction on the test split
    *.png                loss curves, predicted-vs-true scatter, Acc-7 confusion matrix
    fingerprint.json     what the run computed from (data by content, model, settings, seed, version)

How a configuration is resolved and checked before anything is written: :mod:`.plan`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..errors import MSAError
from .config import TrainConfig
from .metrics import UNITS, seed_stats
from .plan import CONFIG_FILE, check_run_dir, data_module, open_data, plan_runs
from .state import FitResult

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"


@dataclass
class RunResult:
    """What :func:`train` returns."""

    # the output directory
    out_dir: Path
    # registry name of the trained model
    model: str
    # seeds, one sub-run each
    seeds: list[int]
    # one FitResult per seed, in seed order
    runs: list[FitResult]
    # split ("valid"/"test") -> metric -> {"mean", "std" (None below 2 seeds), "n", "values"}
    summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # the console shows MMSA's metric names (the files keep the toolkit's)
    mmsa_names: bool = False

    @property
    def checkpoint(self) -> Path | None:
        """Checkpoint of the first seed's run."""
        return self.runs[0].checkpoint if self.runs else None

    @property
    def test(self) -> dict[str, float]:
        """Mean test metric over seeds."""
        return {k: v["mean"] for k, v in self.summary.get("test", {}).items()}


# -- configuration -----------------------------------------------------------------------------

def _yaml_dump(obj: Any) -> str:
    import yaml

    from .checkpoint import _jsonable

    return yaml.safe_dump(_jsonable(obj), sort_keys=False)


def _data_extra(dm: Any) -> dict[str, Any]:
    """What inference needs from the data side: normalisation statistics and truncation lengths."""
    norm = {m: {"mean": mean, "std": std} for m, (mean, std) in dm.stats.items()} if dm.normalize else {}
    return {"normalization": norm, "max_lengths": dm.max_lengths, "normalize": bool(dm.normalize)}


# -- train -------------------------------------------------------------------------------------

def train(model: str | None, data: Any, out_dir: str | os.PathLike, preset: str | None = None,
          config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (), seeds: Sequence[int] | None = None,
          resume: bool = False, callbacks: Sequence[Any] = (), recipe: str | None = None,
          progress: bool | None = False, allow_frozen_text: bool = False) -> RunResult:
    """Train a registered model on a dataset, once per seed; see the module docstring.

    ``progress``: show progress bars, epoch lines and the summary tables on stderr (``msa train`` without
    ``-q``); False (the default) shows none of them, only warnings about the run and the line announcing a
    recipe's seeds; None leaves it to the config's ``trainer.progress``. A ``trainer.progress`` override wins.

    ``data`` is a native dataset directory, an opened dataset or a DataModule
    (a DataModule is used as given for every seed, so its shuffling seed is fixed).
    ``seeds`` None means the config's ``seeds`` (on resume: the run's own), else
    ``[trainer.seed]``. ``resume=True`` continues interrupted sub-runs from their
    ``last.pt`` and skips finished ones (a finished run given more epochs is extended); it refuses a run
    whose fingerprint (data, model, settings) differs. ``recipe`` names a training recipe
    (``training/recipes.py``: "toolkit", the default, or "reference" = the authors' protocol); None means the
    config's (on resume: the run's own). Every check runs before anything is written.
    ``allow_frozen_text``: run a recipe whose reference fine-tunes BERT (DLF, ALMT, MInD ``reference``) without
    ``model.text_encoder`` (= ``trainer.allow_frozen_text``); config.yaml and metrics.json record ``frozen_text``.
    """
    if allow_frozen_text:  # = trainer.allow_frozen_text=true, below the overrides given
        overrides = ({"trainer.allow_frozen_text": True, **overrides} if isinstance(overrides, Mapping)
                     else ["trainer.allow_frozen_text=true", *overrides])
    return _train(model, data, out_dir, preset, config, overrides, seeds, resume, callbacks, recipe, progress)


def _train(model: str | None, data: Any, out_dir: str | os.PathLike, preset: str | None = None,
           config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (), seeds: Sequence[int] | None = None,
           resume: bool = False, callbacks: Sequence[Any] = (), recipe: str | None = None,
           progress: bool | None = False, top_files: bool = True) -> RunResult:
    """:func:`train`; ``top_files`` False writes only the seed folders, not ``out_dir``'s config.yaml and
    summary (``msa benchmark`` trains one seed at a time into ``runs/<model>/`` and tabulates them itself)."""
    from ..models import create_model
    from . import distributed as D
    from .fingerprint import write_fingerprint
    from .optim import short_schedule_warning
    from .report import Reporter
    from .recipes import frozen_text_deviation
    from .rng import seed_everything
    from .trainer import RESULT_FILE, Trainer

    out_dir = Path(out_dir)
    overrides = with_progress(overrides, progress)
    plan = plan_runs(model, data, out_dir, preset, config, overrides, seeds, resume, recipe)
    name, preset, rec, tc, model_over, kwargs = (plan.name, plan.preset, plan.recipe, plan.trainer,
                                                 plan.model_overrides, plan.model_kwargs)
    seeds = [seed for seed, *_ in plan.runs]
    reporter = Reporter(tc.progress, main=os.environ.get("RANK", "0") == "0")
    for _, run_dir, _, fp in plan.runs:
        check_run_dir(run_dir, fp, resume, reporter)
    if plan.seeds_from_recipe:  # a recipe's seeds multiply the run time: say so before the first one
        reporter.notice(recipe_seeds_line(rec.name, seeds), style="bold")

    ctx = D.setup(tc.device)
    try:
        runs: list[FitResult] = []
        for seed, run_dir, tcs, fp in plan.runs:
            seed_everything(seed)
            dm = data_module(plan.dataset, plan.batch_size, tcs, seed)
            net = create_model(name, preset, **kwargs)
            deviation = frozen_text_deviation(name, rec, tcs, net.config)
            if ctx.is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
                doc = {"model": {"name": name, "preset": preset, "overrides": model_over,
                                 "resolved": net.config.to_dict()},
                       "trainer": tcs.to_dict(), "data": str(data) if isinstance(data, (str, os.PathLike)) else None,
                       "seeds": seeds, "recipe": {"name": rec.name, "source": rec.source, **deviation}}
                atomic_write_text(run_dir / CONFIG_FILE, _yaml_dump(doc))
                write_fingerprint(run_dir, fp)
                if top_files:
                    atomic_write_text(out_dir / CONFIG_FILE, _yaml_dump({**doc, "trainer": tc.to_dict()}))
            trainer = Trainer(net, dm, tcs, run_dir, spec=dm.spec, extra=_data_extra(dm), ctx=ctx,
                              callbacks=callbacks)
            trainer.reporter.print(f"[bold]{name}[/bold] seed {seed}: {net.num_parameters():,} parameters, "
                                   f"device {ctx.device}, world size {ctx.world_size} -> {run_dir}")
            if seed == seeds[0] and (short := short_schedule_warning(tcs, net.config)):
                trainer.reporter.notice(short)
            runs.append(trainer.fit(resume=resume))
            if deviation and ctx.is_main:  # metrics.json says the run deviates from its recipe
                record_deviation(run_dir / RESULT_FILE, deviation)
        summary = summarize(runs)
        result = RunResult(out_dir, name, seeds, runs, summary, mmsa_names=tc.mmsa_names)
        if ctx.is_main:
            if top_files:
                write_summary(result, out_dir)
            if tc.progress:
                print_summary(result)
        return result
    finally:
        D.teardown(ctx)


def record_deviation(path: Path, deviation: Mapping[str, Any]) -> None:
    """Add a run's deviation from its recipe (``{"frozen_text": True, "deviation": ...}``) to its metrics.json."""
    if path.is_file():
        atomic_write_json(path, {**json.loads(path.read_text()), **deviation}, indent=2)


def with_progress(overrides: Iterable[str] | Mapping[str, Any], progress: bool | None) -> Any:
    """``overrides`` below a ``trainer.progress`` setting (none when ``progress`` is None): the overrides
    given still win."""
    if progress is None:
        return overrides
    if isinstance(overrides, Mapping):
        return {"trainer.progress": bool(progress), **overrides}
    return [f"trainer.progress={'true' if progress else 'false'}", *overrides]


def recipe_seeds_line(recipe: str, seeds: Sequence[int]) -> str:
    """``recipe reference: seeds 1,2,3 (the authors' protocol)``: the line that announces a recipe's seeds."""
    from .recipes import RECIPE_ABOUT

    about = RECIPE_ABOUT.get(recipe)
    return f"recipe {recipe}: seeds {','.join(str(s) for s in seeds)}" + (f" ({about})" if about else "")


def result_line(result: RunResult) -> str:
    """One line: the run folder and its main test figures (the mean over the seeds), e.g.
    ``runs/x: test MAE 0.912, non-0 Acc-2 0.7813 (mean over 5 seeds)``."""
    from .metrics import format_value

    test = result.test
    shown = [f"{label} {format_value(test[k])}" for k, label in (("mae", "MAE"), ("acc2_non0", "non-0 Acc-2"))
             if k in test]
    if not shown:
        return f"{result.out_dir}: no test split scored"
    n = len(result.seeds)
    over = f"seed {result.seeds[0]}" if n == 1 else f"mean over {n} seeds"
    return f"{result.out_dir}: test {', '.join(shown)} ({over})"


def summarize(runs: Sequence[FitResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """split -> metric -> {"mean", "std", "n", "values"}: mean and sample std (n - 1) over the seeds'
    finite values, ``n`` of them; ``std`` is None when ``n < 2`` (one seed has no spread).

    Splits: "valid", "test" (best valid epoch) and, when the runs evaluated test every epoch,
    ``"test_at_best_test_epoch"`` (selected on test, as the authors' code prints it; labelled)."""
    from .selection import BEST_TEST_KEY

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for split in ("valid", "test", BEST_TEST_KEY):  # the last: labelled test-selected figures, when recorded
        per = [r.best_test.get(split, {}).get("metrics") if split == BEST_TEST_KEY else getattr(r, split)
               for r in runs]
        per = [p for p in per if p]
        if not per:
            continue
        out[split] = {}
        for k in per[0]:
            vals = [float(p[k]) if p.get(k) is not None else np.nan for p in per]  # None: undefined (JSON null)
            out[split][k] = {**seed_stats(vals), "values": vals}
    return out


def write_summary(result: RunResult, out_dir: Path) -> None:
    """summary.json (per-seed runs and mean ± std) and summary.csv (one row per split and metric)."""
    doc = {"model": result.model, "seeds": result.seeds, "units": UNITS, "summary": result.summary,
           "runs": [{"seed": s, "run_dir": str(r.run_dir), "best_epoch": r.best_epoch, "valid": r.valid,
                     "test": r.test, **r.best_test} for s, r in zip(result.seeds, result.runs)]}
    atomic_write_json(out_dir / SUMMARY_JSON, doc, indent=2)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "split", "metric", "mean", "std", "n_seeds", "values"])
    for split, metrics in result.summary.items():
        for k, v in metrics.items():
            std = "" if v["std"] is None else f"{v['std']:.6g}"  # one finite value: no spread to state
            w.writerow([result.model, split, k, f"{v['mean']:.6g}", std, v["n"],
                        " ".join(f"{x:.6g}" for x in v["values"])])
    atomic_write_text(out_dir / SUMMARY_CSV, buf.getvalue())


def print_summary(result: RunResult) -> None:
    """The mean ± std table over seeds on stderr."""
    from .report import print_seed_summary

    print_seed_summary(result.model, result.seeds, result.summary, mmsa=result.mmsa_names)


# -- evaluate ----------------------------------------------------------------------------------

def evaluate(checkpoint: str | os.PathLike, data: Any, split: str = "test", drop: Sequence[str] = (),
             device: str = "auto", batch_size: int | None = None,
             predictions: str | os.PathLike | None = None) -> dict[str, float]:
    """Metrics (+ "loss") of a checkpoint on one split of a dataset; ``drop`` ablates modalities.

    ``predictions`` writes a CSV (atomically) with one row per sample: ``id,label,prediction,text,audio,vision``,
    the last three 1 when the sample had that modality as the model saw it (its mask has a valid step;
    a ``drop``ped modality is 0), else 0.

    The data is prepared as in training: the checkpoint's truncation lengths and
    its stored normalisation statistics (not the dataset's). The dataset's
    FeatureSpec must match the checkpoint's (a SpecMismatchError names the
    differences). A checkpoint with NaN/inf weights is refused (CheckpointError), and
    non-finite predictions are never scored (NonFiniteError). A metric undefined on the split
    (:func:`.metrics.undefined_metrics`) is NaN, its reason in the result's ``undefined``.
    """
    from .metrics import score

    trainer, _ = evaluation_setup(checkpoint, data, drop, device, batch_size)
    out = trainer.predict(split, tuple(drop))
    if predictions is not None:
        from .state import write_predictions

        write_predictions(out, Path(predictions), presence=True)
    metrics = score(out.prediction, out.label, trainer._resolve_metric_set())
    metrics["loss"] = out.loss.get("total", float("nan"))
    return metrics


def evaluation_setup(checkpoint: str | os.PathLike, data: Any, drop: Sequence[str] = (), device: str = "auto",
                     batch_size: int | None = None) -> tuple[Any, Any]:
    """``(Trainer, Checkpoint)`` that evaluate a checkpoint on a dataset as :func:`evaluate` does (its checks,
    the checkpoint's truncation lengths and normalisation statistics); ``trainer.data`` is the DataModule."""
    from ..spec import MODALITIES
    from ..errors import CheckpointError
    from .checkpoint import describe_nonfinite, load_checkpoint
    from ..data.stats import CHECKPOINT_FIX, usable_stats
    from .trainer import Trainer

    bad = [m for m in drop if m not in MODALITIES]
    if bad:
        raise MSAError(f"--drop: unknown modality {bad}; expected {', '.join(MODALITIES)}")
    if batch_size is not None and batch_size < 1:
        raise MSAError(f"--batch-size must be >= 1 (got {batch_size})")
    ck = load_checkpoint(checkpoint)
    bad = describe_nonfinite(ck.model.state_dict())
    if bad:
        raise CheckpointError(f"{checkpoint}: {bad}; a broken model is not evaluated")
    unused = [m for m in drop if ck.spec is not None and m not in ck.spec.modalities]
    if unused:
        raise MSAError(f"--drop {', '.join(unused)}: the checkpoint does not use {', '.join(unused)} (its modalities: "
                       f"{', '.join(ck.spec.modalities) or 'none'}); dropping it would report the undropped scores")
    dataset = open_data(data)
    ds_spec = getattr(dataset, "spec", None)
    if ck.spec is not None and ds_spec is not None:
        ck.spec.require_compatible(ds_spec, modalities=ck.spec.modalities, what=f"the features of dataset {data}",
                                   sides=("checkpoint", "dataset"))
    tcd = ck.train_config or {}
    tc = TrainConfig(device=device, progress=False, plots=False, metric_set=ck.extra.get("metric_set", "auto"))
    stored = ck.extra.get("max_lengths") or {}
    lens = {m: int(stored[m]) if stored.get(m) is not None else int(ck.model_config.get(f"{m}_len", 0)) or None
            for m in MODALITIES}
    normalize = bool(ck.extra.get("normalize", tcd.get("normalize", True)))
    dm = data_module(dataset, batch_size or tcd.get("batch_size") or ck.model_config.get("batch_size", 32),
                      tc.replace(normalize=normalize), seed=0, max_lengths=lens)
    norm = ck.extra.get("normalization")
    if normalize and norm and hasattr(dm, "collator"):
        dims = ck.spec.dims if ck.spec is not None else {}
        dm.collator = dataclasses.replace(dm.collator, stats=usable_stats(norm, dims, checkpoint, CHECKPOINT_FIX))
    return Trainer(ck.model, dm, tc, out_dir=None, spec=ck.spec), ck
