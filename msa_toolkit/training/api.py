"""Library entry points behind ``msa train`` and ``msa evaluate``.

    import msa_toolkit as msa
    run = msa.train("almt", data="ds", out_dir="runs/almt", seeds=(1, 2, 3),
                    overrides=["trainer.epochs=20", "model.dropout=0.2"])
    run.summary["test"]["mae"]            # {"mean", "std" (None for one seed), "n", "values"}
    msa.evaluate("runs/almt/seed_1/best.safetensors", data="ds", drop=("audio",))

Run directory layout (one seed writes straight into ``out_dir``; several seeds
write ``out_dir/seed_<s>/`` each and the summary into ``out_dir``)::

    config.yaml          resolved configuration (model name/preset/overrides/resolved config, trainer, data, seeds)
    best.safetensors     self-describing checkpoint of the best validation epoch (+ valid/test metrics)
    last.pt              resume state (optimizer, scheduler, epoch, RNG, early stopping)
    log.jsonl            one record per epoch: every train loss component, valid metrics, lr
    metrics.json         best epoch, valid and test metrics
    predictions_test.csv id,label,prediction on the test split
    *.png                loss curves, predicted-vs-true scatter, Acc-7 confusion matrix
    summary.{json,csv}   mean ± std per metric over seeds

Configuration precedence: TrainConfig defaults <- ``config`` (a TrainConfig, a
YAML file or a dict with ``trainer:`` and ``model:`` sections; on resume, the
run's own ``config.yaml``) <- ``overrides`` (``"trainer.epochs=3"``,
``"model.d_model=32"``; a bare key means the trainer when it is a TrainConfig
field, else the model).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..errors import MSAError
from .config import TrainConfig, check_settings, coerce_field, setting
from .metrics import UNITS, require_unique, seed_stats
from .state import FitResult

CONFIG_FILE = "config.yaml"
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

def _parse_value(text: str) -> Any:
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(v)
        except ValueError:
            return v
    return v


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``["trainer.epochs=3", "model.d_model=32"]`` (or a mapping) -> [(dotted key, value)]."""
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    out = []
    for item in overrides:
        if "=" not in item:
            raise MSAError(f"override {item!r} is not key=value (e.g. trainer.epochs=3 or model.dropout=0.2)")
        k, v = item.split("=", 1)
        out.append((k.strip(), _parse_value(v.strip())))
    return out


def _load_config_source(config: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer settings, model section) from a TrainConfig / YAML path / dict / None."""
    if config is None:
        return {}, {}
    if isinstance(config, TrainConfig):
        return config.to_dict(), {}
    if isinstance(config, (str, os.PathLike)):
        import yaml

        p = Path(config)
        if not p.is_file():
            raise MSAError(f"config file {p} not found")
        try:
            config = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise MSAError(f"{p}: invalid YAML ({e})") from e
        if not isinstance(config, Mapping):
            raise MSAError(f"{p}: expected a mapping with 'trainer:' and/or 'model:' sections")
    config = dict(config)
    if "trainer" in config or "model" in config:
        unknown = sorted(set(config) - {"trainer", "model", "data", "seeds", "recipe"})
        if unknown:
            raise MSAError(f"config has unknown section(s) {unknown}; expected trainer, model (data, seeds, recipe)")
        model = config.get("model") or {}
        if isinstance(model, str):
            model = {"name": model}
        model = dict(model)
        if config.get("seeds"):
            model["seeds"] = [int(s) for s in config["seeds"]]
        if config.get("recipe"):  # a name, or a run's config.yaml record {"name", "source"}
            rec = config["recipe"]
            model["recipe"] = str(rec.get("name") if isinstance(rec, Mapping) else rec)
        return dict(config.get("trainer") or {}), model
    return config, {}


def resolve_run_config(config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (),
                       recipe: Any = None) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """(TrainConfig, model overrides, meta {"name", "preset", "seeds", "recipe"} where given) from config +
    overrides, on top of a :class:`~msa_toolkit.training.recipes.Recipe`'s settings when one is given."""
    trainer, model = _load_config_source(config)
    trainer = {**(recipe.trainer if recipe is not None else {}), **trainer}
    meta = {k: model.pop(k) for k in ("name", "preset", "seeds", "recipe") if k in model}
    model.pop("resolved", None)
    model_over = dict(recipe.model) if recipe is not None else {}
    model_over.update(model.pop("overrides", None) or {})
    model_over.update(model)
    tfields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in parse_overrides(overrides):
        section, _, name = key.partition(".")
        if section in ("trainer", "train") and name:
            trainer[name] = value
        elif section == "model" and name:
            if name in ("name", "preset"):
                meta[name] = value
            else:
                model_over[name] = value
        elif "." not in key:
            (trainer if key in tfields else model_over)[key] = value
        else:
            raise MSAError(f"override {key!r}: the section must be 'trainer' or 'model'")
    return TrainConfig.from_dict(trainer), model_over, meta


def _check_same_model(out_dir: Path, name: str, preset: str | None) -> None:
    """On resume: MSAError when ``name``/``preset`` differ from the run's own config.yaml (its checkpoints
    hold that model's weights)."""
    path = out_dir / CONFIG_FILE
    if not path.is_file():
        return
    _, _, saved = resolve_run_config(path)
    was = (saved.get("name"), saved.get("preset"))
    if was != (name, preset):
        raise MSAError(f"--resume: {out_dir} holds a run of model {was[0]!r} (preset {was[1]!r}), not {name!r} "
                       f"(preset {preset!r}); resume it without --model/--preset, or train into another --out")


def _check_run_dir(run_dir: Path, fingerprint: Mapping[str, Any], resume: bool, reporter: Any) -> None:
    """Before anything is written: a folder holding a run is trained into only with ``resume``, and only when the
    run's fingerprint is the command's (``epochs`` may grow: a finished run is extended); MSAError naming what
    differs otherwise. Resuming a folder with no run says so (a notice) and trains from scratch."""
    from .checkpoint import RESUME_FILE
    from .fingerprint import differences, read_fingerprint

    has_run = (run_dir / RESUME_FILE).is_file()
    if has_run and not resume:
        raise MSAError(f"{run_dir} already holds a run ({RESUME_FILE}); pass --resume to continue it or choose "
                       "another output directory")
    if not resume:
        return
    if not has_run:
        reporter.notice(f"--resume: {run_dir} holds no run to resume (no {RESUME_FILE}); training from scratch")
        return
    saved = read_fingerprint(run_dir)
    if saved is None:
        return  # a run from before fingerprints: the model check above is all there is
    diff = differences(saved, fingerprint, ignore=("trainer.epochs",))
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise MSAError(f"--resume: {run_dir} holds a run with other data or settings ({shown}); resume it with "
                       "its own settings, or train into another --out")


def _coerce_model_overrides(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    from ..models import get_entry

    cls = get_entry(name).config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise MSAError(f"model {name!r} has no config field(s) {unknown}; valid: {sorted(names)}")
    return {k: coerce_field(cls, k, v) for k, v in values.items()}


def _yaml_dump(obj: Any) -> str:
    import yaml

    from .checkpoint import _jsonable

    return yaml.safe_dump(_jsonable(obj), sort_keys=False)


def _open_data(data: Any):
    from ..data.native import load_dataset

    if isinstance(data, (str, os.PathLike)):
        return load_dataset(data)
    return data


def _data_module(data: Any, batch_size: int, tc: TrainConfig, seed: int,
                 max_lengths: Mapping[str, int | None] | None = None):
    from ..data.module import DataModule

    if isinstance(data, DataModule):
        return data
    return DataModule(data, batch_size=batch_size, max_lengths=max_lengths if max_lengths is not None
                      else tc.max_lengths, normalize=tc.normalize, num_workers=tc.num_workers, seed=seed,
                      drop_last=tc.drop_last)


def _data_extra(dm: Any) -> dict[str, Any]:
    """What inference needs from the data side: normalisation statistics and truncation lengths."""
    norm = {m: {"mean": mean, "std": std} for m, (mean, std) in dm.stats.items()} if dm.normalize else {}
    return {"normalization": norm, "max_lengths": dm.max_lengths, "normalize": bool(dm.normalize)}


# -- train -------------------------------------------------------------------------------------

def _run_seeds(given: Sequence[int] | None, default: Sequence[int], fallback: int) -> list[int]:
    """The seeds to train (``given``, else ``default``, else ``[fallback]``); MSAError on a repeated seed, whose
    run directory would be trained over."""
    seeds = [int(s) for s in (given if given is not None else default)] or [fallback]
    require_unique("--seeds", seeds, noun="seed")
    return seeds


@dataclass
class RunPlan:
    """What :func:`train` will run, resolved and checked before anything is written (:func:`plan_runs`)."""

    # the registered model name, its preset and the recipe applied
    name: str
    preset: str | None
    recipe: Any
    # the resolved trainer settings (before the per-seed seed) and the model-config overrides
    trainer: TrainConfig
    model_overrides: dict[str, Any]
    # the opened dataset (or the caller's DataModule) and the batch size
    dataset: Any
    batch_size: int | None
    # create_model keyword arguments: dims and lengths from the data, then the overrides
    model_kwargs: dict[str, Any]
    # one (seed, run directory, trainer settings, fingerprint) per seed
    runs: list[tuple[int, Path, TrainConfig, dict[str, Any]]]


def plan_runs(model: str | None, data: Any, out_dir: str | os.PathLike, preset: str | None = None,
              config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (),
              seeds: Sequence[int] | None = None, resume: bool = False, recipe: str | None = None) -> RunPlan:
    """Resolve and check the runs :func:`train` would do (arguments as there), reading but writing nothing:
    the model, preset, recipe and settings, the model built for the data's dims (size and constraints checked),
    and each run's fingerprint (``fingerprint.py``)."""
    from ..models import dims_from_spec, get_entry, resolve_config
    from ..models._registry import check_size
    from .fingerprint import run_fingerprint

    out_dir = Path(out_dir)
    if resume and config is None and (out_dir / CONFIG_FILE).is_file():
        config = out_dir / CONFIG_FILE
    tc, model_over, meta = resolve_run_config(config, overrides)
    name = model or meta.get("name")
    if not name:
        raise MSAError("no model given (pass a model name or set model.name in the config)")
    rec = _recipe(name, recipe if recipe is not None else meta.get("recipe", "toolkit"))
    if rec.trainer or rec.model:  # again, with the recipe's settings below the config and overrides
        tc, model_over, meta = resolve_run_config(config, overrides, rec)
    preset = preset if preset is not None else meta.get("preset")
    if resume:
        _check_same_model(out_dir, name, preset)
    seeds = _run_seeds(seeds, meta.get("seeds") or rec.seeds or [tc.seed], tc.seed)
    try:  # validates name, preset and overrides before any data is read
        model_over = _coerce_model_overrides(name, model_over)
        base_cfg = resolve_config(name, preset, **model_over)
        check_size(get_entry(name), base_cfg)
    except KeyError as e:
        raise MSAError(str(e.args[0] if e.args else e)) from None
    except (TypeError, ValueError) as e:
        raise MSAError(f"model {name!r}: {e}") from None
    check_settings(tc, base_cfg)
    batch_size = setting(tc, base_cfg, "batch_size", None)
    dataset = _open_data(data)
    first = _data_module(dataset, batch_size, tc.replace(seed=seeds[0]), seeds[0])
    lens = {f"{m}_len": int(v) for m, v in first.max_lengths.items() if v is not None}
    kwargs = {**dims_from_spec(first.spec), **lens, **model_over}
    try:
        cfg = resolve_config(name, preset, **kwargs)
        check_size(get_entry(name), cfg)
    except ValueError as e:  # sizes or constraints that only the data's dims reveal
        raise MSAError(f"model {name!r}: {e}") from None
    runs = []
    for seed in seeds:
        tcs = tc.replace(seed=seed)
        runs.append((seed, out_dir if len(seeds) == 1 else out_dir / f"seed_{seed}", tcs,
                     run_fingerprint(first, name, preset, rec.name, cfg.to_dict(), tcs.to_dict(), seed)))
    return RunPlan(name, preset, rec, tc, model_over, dataset, batch_size, kwargs, runs)


def train(model: str | None, data: Any, out_dir: str | os.PathLike, preset: str | None = None,
          config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (), seeds: Sequence[int] | None = None,
          resume: bool = False, callbacks: Sequence[Any] = (), recipe: str | None = None) -> RunResult:
    """Train a registered model on a dataset, once per seed; see the module docstring.

    ``data`` is a native dataset directory, an opened dataset or a DataModule
    (a DataModule is used as given for every seed, so its shuffling seed is fixed).
    ``seeds`` None means the config's ``seeds`` (on resume: the run's own), else
    ``[trainer.seed]``. ``resume=True`` continues interrupted sub-runs from their
    ``last.pt`` and skips finished ones (a finished run given more epochs is extended); it refuses a run
    whose fingerprint (data, model, settings) differs. ``recipe`` names a training recipe
    (``training/recipes.py``: "toolkit", the default, or "reference" = the authors' protocol); None means the
    config's (on resume: the run's own). Every check runs before anything is written.
    """
    from ..models import create_model
    from . import distributed as D
    from .fingerprint import write_fingerprint
    from .optim import short_schedule_warning
    from .report import Reporter
    from .rng import seed_everything
    from .trainer import Trainer

    out_dir = Path(out_dir)
    plan = plan_runs(model, data, out_dir, preset, config, overrides, seeds, resume, recipe)
    name, preset, rec, tc, model_over, kwargs = (plan.name, plan.preset, plan.recipe, plan.trainer,
                                                 plan.model_overrides, plan.model_kwargs)
    seeds = [seed for seed, *_ in plan.runs]
    for _, run_dir, _, fp in plan.runs:
        _check_run_dir(run_dir, fp, resume, Reporter(tc.progress, main=os.environ.get("RANK", "0") == "0"))

    ctx = D.setup(tc.device)
    try:
        runs: list[FitResult] = []
        for seed, run_dir, tcs, fp in plan.runs:
            seed_everything(seed)
            dm = _data_module(plan.dataset, plan.batch_size, tcs, seed)
            net = create_model(name, preset, **kwargs)
            if ctx.is_main:
                run_dir.mkdir(parents=True, exist_ok=True)
                doc = {"model": {"name": name, "preset": preset, "overrides": model_over,
                                 "resolved": net.config.to_dict()},
                       "trainer": tcs.to_dict(), "data": str(data) if isinstance(data, (str, os.PathLike)) else None,
                       "seeds": seeds, "recipe": {"name": rec.name, "source": rec.source}}
                atomic_write_text(run_dir / CONFIG_FILE, _yaml_dump(doc))
                write_fingerprint(run_dir, fp)
                if run_dir != out_dir:
                    atomic_write_text(out_dir / CONFIG_FILE, _yaml_dump({**doc, "trainer": tc.to_dict()}))
            trainer = Trainer(net, dm, tcs, run_dir, spec=dm.spec, extra=_data_extra(dm), ctx=ctx,
                              callbacks=callbacks)
            trainer.reporter.print(f"[bold]{name}[/bold] seed {seed}: {net.num_parameters():,} parameters, "
                                   f"device {ctx.device}, world size {ctx.world_size} -> {run_dir}")
            if seed == seeds[0] and (short := short_schedule_warning(tcs, net.config)):
                trainer.reporter.notice(short)
            runs.append(trainer.fit(resume=resume))
        summary = summarize(runs)
        result = RunResult(out_dir, name, seeds, runs, summary, mmsa_names=tc.mmsa_names)
        if ctx.is_main:
            write_summary(result, out_dir)
            if tc.progress:
                print_summary(result)
        return result
    finally:
        D.teardown(ctx)


def _recipe(model: str, name: str):
    """The named recipe of ``model`` (MSAError when it has none)."""
    from .recipes import get_recipe

    try:
        return get_recipe(model, str(name))
    except KeyError as e:
        raise MSAError(str(e.args[0])) from None


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
             device: str = "auto", batch_size: int | None = None) -> dict[str, float]:
    """Metrics (+ "loss") of a checkpoint on one split of a dataset; ``drop`` ablates modalities.

    The data is prepared as in training: the checkpoint's truncation lengths and
    its stored normalisation statistics (not the dataset's). The dataset's
    FeatureSpec must match the checkpoint's (a SpecMismatchError names the
    differences). A checkpoint with NaN/inf weights is refused (CheckpointError), and
    non-finite predictions are never scored (NonFiniteError). A metric undefined on the split
    (:func:`.metrics.undefined_metrics`) is NaN, its reason in the result's ``undefined``.
    """
    from ..spec import MODALITIES
    from ..errors import CheckpointError
    from .checkpoint import describe_nonfinite, load_checkpoint
    from ..data.stats import CHECKPOINT_FIX, usable_stats
    from .metrics import score
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
    dataset = _open_data(data)
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
    dm = _data_module(dataset, batch_size or tcd.get("batch_size") or ck.model_config.get("batch_size", 32),
                      tc.replace(normalize=normalize), seed=0, max_lengths=lens)
    norm = ck.extra.get("normalization")
    if normalize and norm and hasattr(dm, "collator"):
        dims = ck.spec.dims if ck.spec is not None else {}
        dm.collator = dataclasses.replace(dm.collator, stats=usable_stats(norm, dims, checkpoint, CHECKPOINT_FIX))
    trainer = Trainer(ck.model, dm, tc, out_dir=None, spec=ck.spec)
    out = trainer.predict(split, tuple(drop))
    metrics = score(out.prediction, out.label, trainer._resolve_metric_set())
    metrics["loss"] = out.loss.get("total", float("nan"))
    return metrics
