"""What ``msa train`` will run, resolved and checked before anything is written.

Configuration precedence: TrainConfig defaults <- a recipe <- ``config`` (a TrainConfig, a YAML file or a dict
with ``trainer:`` and ``model:`` sections; on resume, the run's own ``config.yaml``) <- ``overrides``
(``"trainer.epochs=3"``, ``"model.d_model=32"``; a bare key means the trainer when it is a TrainConfig field,
else the model). :func:`plan_runs` resolves the model, preset, recipe and settings, builds the model for the
data's dims on the meta device (sizes and constraints checked) and gives each run its fingerprint;
:func:`check_run_dir` then decides whether a run folder may be trained into.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import MSAError
from .config import TrainConfig, check_settings, coerce_field, setting
from .metrics import require_unique

CONFIG_FILE = "config.yaml"


def seed_dir(out_dir: str | os.PathLike, seed: int) -> Path:
    """The run folder of one seed: ``out_dir/seed_<s>/``, whatever the number of seeds."""
    return Path(out_dir) / f"seed_{int(seed)}"


def check_layout(out_dir: Path) -> None:
    """MSAError (one line) when ``out_dir`` holds a run written with the layout before seed folders (``last.pt``
    straight in ``out_dir``, one seed): training or resuming into it would start over beside it."""
    from .checkpoint import RESUME_FILE

    if not (out_dir / RESUME_FILE).is_file():
        return
    seed = "<s>"
    try:  # the run's seed: its fingerprint's, else its config.yaml's
        from .fingerprint import read_fingerprint

        fp = read_fingerprint(out_dir)
        seed = str(int(fp["seed"] if fp else resolve_run_config(out_dir / CONFIG_FILE)[0].seed))
    except Exception:  # noqa: BLE001 - the message then names the folder as seed_<s>
        pass
    raise MSAError(f"{out_dir} holds a run written with the old layout ({RESUME_FILE} straight in it); to continue "
                   f"it, move every file but {CONFIG_FILE} into {out_dir / f'seed_{seed}'}/ and pass --resume, or "
                   "train into another --out")


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


def check_run_dir(run_dir: Path, fingerprint: Mapping[str, Any], resume: bool, reporter: Any) -> None:
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


def open_data(data: Any):
    from ..data.native import load_dataset

    if isinstance(data, (str, os.PathLike)):
        return load_dataset(data)
    return data


def data_module(data: Any, batch_size: int, tc: TrainConfig, seed: int,
                 max_lengths: Mapping[str, int | None] | None = None):
    from ..data.module import DataModule

    if isinstance(data, DataModule):
        return data
    return DataModule(data, batch_size=batch_size, max_lengths=max_lengths if max_lengths is not None
                      else tc.max_lengths, normalize=tc.normalize, num_workers=tc.num_workers, seed=seed,
                      drop_last=tc.drop_last)


def unimodal_label_gaps(dataset: Any) -> dict[str, list[str]]:
    """Per split of ``dataset`` (an MSADataset, or a DataModule over one), the unimodal labels (``label_T``,
    ``label_A``, ``label_V``) that some of its samples lack; empty when every sample has all three."""
    from ..data.batch import UNIMODAL_TASKS

    ds = getattr(dataset, "dataset", dataset)
    gaps: dict[str, list[str]] = {}
    for split in getattr(ds, "splits", ()):
        sp = ds.split(split)
        lacking = []
        for t in UNIMODAL_TASKS:
            values = sp.field(f"label_{t}") if hasattr(sp, "field") else None
            if values is None or any(v is None for v in values):
                lacking.append(f"label_{t}")
        if lacking:
            gaps[split] = lacking
    return gaps


def check_unimodal_labels(model: str, dataset: Any) -> None:
    """MSAError, before anything is written, when ``model`` (a multi-task model: ``needs_unimodal_labels``)
    would train on a dataset some of whose samples lack a unimodal label; the message names the dataset, the
    splits and the labels."""
    gaps = unimodal_label_gaps(dataset)
    if not gaps:
        return
    ds = getattr(dataset, "dataset", dataset)
    where = getattr(ds, "path", None) or type(ds).__name__
    lacks = "; ".join(f"{split}: {', '.join(fields)}" for split, fields in gaps.items())
    raise MSAError(f"model {model!r} trains on the unimodal labels label_T, label_A, label_V (multi-task), but "
                   f"dataset {where} lacks them ({lacks}); use a dataset that has them for every sample, e.g. an "
                   "MMSA CH-SIMS pickle (regression_labels_T/A/V) imported with `msa dataset import`, or a label "
                   "file with label_T, label_A, label_V columns")


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
    # the seeds are the recipe's (neither given nor in the config): the console says so before training
    seeds_from_recipe: bool = False


def plan_runs(model: str | None, data: Any, out_dir: str | os.PathLike, preset: str | None = None,
              config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (),
              seeds: Sequence[int] | None = None, resume: bool = False, recipe: str | None = None) -> RunPlan:
    """Resolve and check the runs :func:`train` would do (arguments as there), reading but writing nothing:
    the model, preset, recipe and settings, the model built for the data's dims (size and constraints checked),
    and each run's fingerprint (``fingerprint.py``)."""
    from ..models import dims_from_spec, get_entry, resolve_config
    from ..models._registry import check_size
    from .fingerprint import run_fingerprint
    from .recipes import frozen_text_deviation

    out_dir = Path(out_dir)
    check_layout(out_dir)
    if resume and config is None and (out_dir / CONFIG_FILE).is_file():
        config = out_dir / CONFIG_FILE
    s = resolve_settings(model, preset, config, overrides, seeds, recipe, resume_dir=out_dir if resume else None)
    name, preset, rec, tc, model_over, seeds = s.name, s.preset, s.recipe, s.trainer, s.model_overrides, s.seeds
    batch_size = setting(tc, s.model_config, "batch_size", None)
    frozen_text_deviation(name, rec, tc, s.model_config)  # refuses before any data is read or file written
    dataset = open_data(data)
    first = data_module(dataset, batch_size, tc.replace(seed=seeds[0]), seeds[0])
    lens = {f"{m}_len": int(v) for m, v in first.max_lengths.items() if v is not None}
    kwargs = {**dims_from_spec(first.spec), **lens, **model_over}
    try:
        cfg = resolve_config(name, preset, **kwargs)
        check_size(get_entry(name), cfg)
    except ValueError as e:  # sizes or constraints that only the data's dims reveal
        raise MSAError(f"model {name!r}: {e}") from None
    if getattr(get_entry(name).builder, "needs_unimodal_labels", False):
        check_unimodal_labels(name, dataset)
    runs = []
    for seed in seeds:
        tcs = tc.replace(seed=seed)
        runs.append((seed, seed_dir(out_dir, seed), tcs,
                     run_fingerprint(first, name, preset, rec.name, cfg.to_dict(), tcs.to_dict(), seed)))
    return RunPlan(name, preset, rec, tc, model_over, dataset, batch_size, kwargs, runs, s.seeds_from_recipe)


@dataclass
class Settings:
    """A run's model, preset, recipe, seeds and settings, resolved without its data (:func:`resolve_settings`)."""

    # the registered model name, its preset and the recipe applied
    name: str
    preset: str | None
    recipe: Any
    # the resolved trainer settings (before the per-seed seed) and the coerced model-config overrides
    trainer: TrainConfig
    model_overrides: dict[str, Any]
    # the seeds to train and whether they are the recipe's (neither given nor in the config)
    seeds: list[int]
    seeds_from_recipe: bool
    # the model config from the preset and overrides (input dims from the preset: a dataset's replace them)
    model_config: Any


def resolve_settings(model: str | None, preset: str | None = None, config: Any = None,
                     overrides: Iterable[str] | Mapping[str, Any] = (), seeds: Sequence[int] | None = None,
                     recipe: str | None = None, resume_dir: Path | None = None) -> Settings:
    """The model, preset, recipe, seeds and settings of a run (arguments as :func:`plan_runs`), checked without
    reading data; ``resume_dir``: the run being resumed (its model and preset must be the command's)."""
    from ..models import get_entry, resolve_config
    from ..models._registry import check_size

    tc, model_over, meta = resolve_run_config(config, overrides)
    name = model or meta.get("name")
    if not name:
        raise MSAError("no model given (pass a model name or set model.name in the config)")
    rec = _recipe(name, recipe if recipe is not None else meta.get("recipe", "toolkit"))
    if rec.trainer or rec.model:  # again, with the recipe's settings below the config and overrides
        tc, model_over, meta = resolve_run_config(config, overrides, rec)
    preset = preset if preset is not None else meta.get("preset")
    if resume_dir is not None:
        _check_same_model(resume_dir, name, preset)
    from_recipe = seeds is None and not meta.get("seeds") and bool(rec.seeds)
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
    return Settings(name, preset, rec, tc, model_over, seeds, from_recipe, base_cfg)


def _recipe(model: str, name: str):
    """The named recipe of ``model`` (MSAError when it has none)."""
    from .recipes import get_recipe

    try:
        return get_recipe(model, str(name))
    except KeyError as e:
        raise MSAError(str(e.args[0])) from None
