"""``msa tune``: hyper-parameter search on the validation split with Optuna; parallel, resumable, never on test.

    import msa_toolkit as msa
    study = msa.tune("tfn", data="ds", out_dir="tune/tfn", trials=30, preset="mosi", jobs=2, final_seeds=(1, 2, 3))
    study.best_value, study.best_params          # the best trial on valid
    study.final.summary["test"]["mae"]            # {"mean", "std", "n", "values"} over the final seeds

What a study does:

* **Space.** The model's registered search space (``SEARCH_SPACE`` beside its config, :mod:`msa_toolkit.space`),
  keys ``model.<field>``, changed by a ``--space`` YAML file (its keys replace the model's, ``null`` removes one;
  ``space_only`` searches the file's keys alone). A key fixed by ``--set`` is never searched. A model setting a
  recipe or config overrides in the trainer (``trainer.lr`` over ``model.lr``) is searched in the trainer.
* **Objective.** A validation metric (``metric``; default the trainer's ``monitor``, the model's selection
  metric), its direction from the metric's name. A trial trains one run (the first seed of the settings) and
  scores the valid ``metric`` of the epoch its checkpoint keeps (chosen on ``monitor``, as ``msa train`` does).
* **Test withheld.** Every trial trains on the dataset opened without its test split
  (:func:`msa_toolkit.data.withheld.without_test`): no trial can read it; asking for it raises. The test split
  is read only by the final re-training (``final_seeds``), after the study.
* **Pruning.** Each epoch's valid ``metric`` is reported to Optuna through the trainer's epoch-end callback; the
  median pruner (``pruner="median"``) stops a trial whose best value so far is worse than the median of earlier
  trials at the same epoch (after :data:`PRUNER_STARTUP_TRIALS` trials and :data:`PRUNER_WARMUP_EPOCHS`
  epochs). ``pruner="none"`` turns it off.
* **Storage.** Any database URL Optuna accepts (``storage``); default a SQLite file ``out_dir/study.db``. The
  study is created once and loaded by every later process, so a killed study resumes where it was and several
  processes (``jobs`` here, or ``msa tune`` on several machines sharing a PostgreSQL URL and ``study_name``)
  share it. ``trials`` is the study's total: finished (complete, pruned or failed as non-finite) and running
  trials count; a trial whose process died does not, and is marked failed (at once on this machine, after
  :data:`HEARTBEAT_GRACE_S` seconds without heartbeat elsewhere), so a restarted study runs a new trial in
  its place and never repeats a finished one. The study records what it is (model, preset, recipe, metric,
  space, fixed settings, data); a process with another command is refused.
* **Runs.** Trial ``n`` is a normal run folder ``out_dir/trials/trial_<n>/`` (config.yaml, seed_<s>/ with its
  fingerprint, log.jsonl, best.safetensors), trained with no test split.

Files (``out_dir``): ``study.db`` (default storage), ``study.json`` (what the study is), ``space.yaml`` (the
searched space), ``trials/``, ``trials.csv``, ``optimization_history.png``, ``param_importances.png``,
``best_config.yaml`` (the best trial's configuration; ``msa train -c`` takes it), ``final/`` (the re-training
with ``final_seeds``: a normal ``msa train`` run folder) and ``result.json`` (the best trial, the final test
mean ± std and the protocol). :mod:`.tune_report` writes the last five.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..errors import MSAError, NonFiniteError
from .tune_storage import HEARTBEAT_GRACE_S, HEARTBEAT_INTERVAL_S
from .tune_storage import claimed as _claimed
from .tune_storage import counts as _counts
from .tune_storage import fail_dead_trials as _fail_dead_trials
from .tune_storage import open_storage as _storage
from .tune_storage import owner as _owner
from .tune_report import (COUNTED_ATTR, ERROR_ATTR, OVER_ATTR, OWNER_ATTR, PRUNED_ATTR, RUN_ATTR, TuneResult,
                          finish_study, public_url)

__all__ = ["tune", "TuneResult", "StudySpec", "study_space", "DEFAULT_STUDY_FILE", "TRIALS_DIR",
           "PRUNER_STARTUP_TRIALS", "PRUNER_WARMUP_EPOCHS", "HEARTBEAT_INTERVAL_S", "HEARTBEAT_GRACE_S"]

#: the default storage: a SQLite file in the output directory
DEFAULT_STUDY_FILE = "study.db"
#: what the study is (model, metric, space, ...): written once, compared on every later start
STUDY_FILE = "study.json"
#: the searched space in the YAML form of --space
SPACE_FILE = "space.yaml"
#: the trials' run folders: out_dir/trials/trial_<n>/
TRIALS_DIR = "trials"
#: the median pruner prunes nothing before this many trials have finished
PRUNER_STARTUP_TRIALS = 5
#: nor in a trial's first epochs (valid curves are noisy at the start)
PRUNER_WARMUP_EPOCHS = 2
#: the study's user attribute that records what it is
IDENTITY_ATTR = "msa_study"
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker process needs to run trials of one study (picklable)."""

    # the registered model, its preset and recipe (None: the config's / toolkit)
    model: str
    preset: str | None
    recipe: str | None
    # the config source (YAML path, dict or TrainConfig) and the fixed overrides (dotted key -> value)
    config: Any
    overrides: dict[str, Any]
    # the dataset directory (opened without its test split in each worker)
    data: str
    out_dir: str
    # Optuna storage URL and study name
    storage: str
    study_name: str
    # total trials of the study (see the module docstring)
    trials: int
    # the objective: a valid metric and "maximize"/"minimize"
    metric: str
    direction: str
    # dotted key -> msa_toolkit.space range
    space: dict[str, Any]
    # "median" | "none"
    pruner: str
    # the seed every trial trains with, and the sampler's base seed
    seed: int
    sampler_seed: int
    # print one line per finished trial on stderr
    progress: bool = False
    # this worker's index (sampler seed and progress lines)
    worker: int = 0


# -- the space ---------------------------------------------------------------------------------------------------

def _shared_fields() -> frozenset[str]:
    """Fields both TrainConfig and ModelConfig have (a set trainer value overrides the model's)."""
    from ..models.base import ModelConfig
    from .config import TrainConfig

    return frozenset(f.name for f in dataclasses.fields(TrainConfig)) & {f.name for f in dataclasses.fields(
        ModelConfig)}


def _dotted(key: str) -> str:
    """An override key as ``model.<field>`` / ``trainer.<field>`` (a bare trainer field is the trainer's)."""
    from .config import TrainConfig

    section, _, name = key.partition(".")
    if section in ("trainer", "train") and name:
        return f"trainer.{name}"
    if section == "model" and name:
        return key
    return f"trainer.{key}" if key in {f.name for f in dataclasses.fields(TrainConfig)} else f"model.{key}"


def study_space(model: str, trainer: Any, fixed: Iterable[str], file: Mapping[str, Any] | None = None,
                space_only: bool = False) -> dict[str, Any]:
    """The searched space (module docstring): the model's registered space (``model.<field>``) changed by
    ``file`` (key -> range, or None to drop), with a shared field the resolved ``trainer`` sets moved to the
    trainer, and every ``fixed`` key (dotted, as ``--set`` gives them) left out. MSAError for a key that names
    no field, and for an empty space."""
    from ..models import get_entry
    from .config import TrainConfig

    entry = get_entry(model)
    space: dict[str, Any] = {} if space_only else {f"model.{k}": p for k, p in entry.search_space.items()}
    for key, param in (file or {}).items():
        if param is None:
            space.pop(key, None)
        else:
            space[key] = param
    shared = _shared_fields()
    for key in list(space):
        section, _, name = key.partition(".")
        if section == "model" and name in shared and getattr(trainer, name) is not None:
            space[f"trainer.{name}"] = space.pop(key)
    fixed = {_dotted(k) for k in fixed}
    fixed |= {f"{s}.{k.partition('.')[2]}" for k in fixed for s in ("model", "trainer") if k.partition(".")[2]
              in shared}
    space = {k: p for k, p in space.items() if k not in fixed}
    fields = {"model": {f.name for f in dataclasses.fields(entry.config_cls)},
              "trainer": {f.name for f in dataclasses.fields(TrainConfig)}}
    bad = sorted(k for k in space if k.partition(".")[2] not in fields.get(k.partition(".")[0], ()))
    if bad:
        raise MSAError(f"search space: {', '.join(bad)} name(s) no field of model {model!r} / the trainer")
    if not space:
        raise MSAError(f"nothing to search for model {model!r}: every key of its space is fixed (--set) or removed "
                       "(--space); give ranges with --space FILE")
    return space


# -- the study ---------------------------------------------------------------------------------------------------

def _pruner(name: str):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    # steps are 1-based epochs and Optuna prunes from step n_warmup_steps on: the first PRUNER_WARMUP_EPOCHS are exempt
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                       n_warmup_steps=PRUNER_WARMUP_EPOCHS + 1)


def _identity(spec: StudySpec, content_id: str) -> dict[str, Any]:
    """What the study is: two processes with the same identity may share it."""
    from ..space import space_to_yaml
    from .fingerprint import DISPLAY_SETTINGS, fingerprint_id

    config = spec.config
    if isinstance(config, (str, os.PathLike)):
        import yaml

        config = yaml.safe_load(Path(config).read_text())
    elif dataclasses.is_dataclass(config):
        config = config.to_dict()
    return {"model": spec.model, "preset": spec.preset, "recipe": spec.recipe, "metric": spec.metric,
            "direction": spec.direction, "space": space_to_yaml(spec.space), "trials_seed": spec.seed,
            "fixed": {k: spec.overrides[k] for k in sorted(spec.overrides)  # not --threads, --device, -q, ...
                      if not (k.startswith("trainer.") and k.partition(".")[2] in DISPLAY_SETTINGS)},
            "config": fingerprint_id({"config": config}) if config else None, "dataset": content_id}


def _open_study(spec: StudySpec, identity: Mapping[str, Any]):
    """Create the study (or load it), and refuse one that is another study (its recorded identity differs)."""
    import optuna

    from .fingerprint import differences

    storage = _storage(spec.storage)
    try:
        study = optuna.create_study(storage=storage, study_name=spec.study_name, direction=spec.direction,
                                    load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # created by another process in between
        study = optuna.load_study(study_name=spec.study_name, storage=storage)
    saved = study.user_attrs.get(IDENTITY_ATTR)
    if saved is None:
        study.set_user_attr(IDENTITY_ATTR, dict(identity))
        return study
    diff = differences(saved, identity)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise MSAError(f"study {spec.study_name!r} in {public_url(spec.storage)} was started with another command "
                       f"({shown}); rerun it with its own settings, or use another --out / --study-name")
    return study


class _OverBudget(Exception):
    """A trial created after the study's budget was reached by others (a race between processes): not run."""


# -- one trial ---------------------------------------------------------------------------------------------------

class PruningCallback:
    """The trainer's epoch-end callback of a trial: reports the epoch's valid ``metric`` to Optuna and raises
    ``optuna.TrialPruned`` when the pruner says so (the run stops after that epoch)."""

    def __init__(self, trial: Any, metric: str):
        # the Optuna trial
        self.trial = trial
        # the valid metric reported
        self.metric = metric

    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        import math

        import optuna

        value = record.get("valid", {}).get(self.metric)
        if value is None or not math.isfinite(value):
            return
        epoch = int(record["epoch"])
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_ATTR, epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch} (valid {self.metric} {value:.4g})")


def trial_dir(out_dir: str | os.PathLike, number: int) -> Path:
    """The run folder of trial ``number``."""
    return Path(out_dir) / TRIALS_DIR / f"trial_{number:04d}"


def _objective(spec: StudySpec, dataset: Any):
    from ..space import suggest
    from .api import _train

    def objective(trial: Any) -> float:
        trial.set_user_attr(OWNER_ATTR, _owner())
        study = trial.study
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and _counts(t)]
        if len(before) >= spec.trials:
            trial.set_user_attr(OVER_ATTR, True)
            raise _OverBudget()
        sampled = {key: suggest(trial, key, param) for key, param in spec.space.items()}
        run_dir = trial_dir(spec.out_dir, trial.number)
        trial.set_user_attr(RUN_ATTR, str(run_dir))
        try:
            result = _train(spec.model, dataset, run_dir, spec.preset, spec.config, {**spec.overrides, **sampled},
                            seeds=[spec.seed], callbacks=[PruningCallback(trial, spec.metric)], recipe=spec.recipe,
                            progress=False)
        except NonFiniteError as e:  # a diverging configuration is a result of the search, not a crash
            trial.set_user_attr(COUNTED_ATTR, True)
            trial.set_user_attr(ERROR_ATTR, str(e)[:500])
            raise
        run = result.runs[0]
        trial.set_user_attr("best_epoch", run.best_epoch)
        trial.set_user_attr("epochs_run", len(run.history))
        value = run.valid.get(spec.metric)
        if value is None:
            raise MSAError(f"trial {trial.number}: the run recorded no valid {spec.metric!r}")
        return float(value)

    return objective


def _trial_line(study: Any, t: Any, spec: StudySpec) -> None:
    """One stderr line per finished trial (progress)."""
    from optuna.trial import TrialState

    if t.user_attrs.get(OVER_ATTR):
        return
    if t.state == TrialState.COMPLETE:
        what = f"valid {spec.metric} {t.value:.4f}"
    elif t.state == TrialState.PRUNED:
        what = f"pruned after epoch {t.user_attrs.get(PRUNED_ATTR, '?')}"
    else:
        what = f"failed ({t.user_attrs.get(ERROR_ATTR, 'see the traceback above')})"
    try:
        best = f"; best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = ""
    print(f"trial {t.number}: {what}{best}", file=sys.stderr, flush=True)


def run_worker(spec: StudySpec) -> None:
    """Run trials of the study until it has ``spec.trials`` of them (one process; ``jobs`` start several)."""
    import warnings

    import optuna

    from ..data.withheld import without_test
    from ..errors import RunNotice
    from ..threads import set_threads

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = spec.overrides.get("trainer.threads")
    if threads:
        set_threads(int(threads))
    dataset = without_test(spec.data)
    study = optuna.load_study(study_name=spec.study_name, storage=_storage(spec.storage),
                              pruner=_pruner(spec.pruner), sampler=_sampler(spec, 0))
    objective = _objective(spec, dataset)
    callbacks = [lambda s, t: _trial_line(s, t, spec)] if spec.progress else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunNotice)  # per-trial notices: the study's lines say enough
        while True:
            _fail_dead_trials(study)
            if _claimed(study) >= spec.trials:
                return
            # a fresh sampler seed per trial: a resumed study does not replay the random start-up configurations
            study.sampler = _sampler(spec, len(study.get_trials(deepcopy=False)))
            study.optimize(objective, n_trials=1, catch=(NonFiniteError, _OverBudget), callbacks=callbacks)


def _sampler(spec: StudySpec, done: int):
    """TPE seeded from the base seed, the worker and the trials so far; constant liar: a running trial counts as
    a poor result, so parallel workers do not all sample next to the same best point."""
    import hashlib

    import optuna

    key = f"{spec.sampler_seed}/{spec.worker}/{done}".encode()
    return optuna.samplers.TPESampler(seed=int.from_bytes(hashlib.sha256(key).digest()[:4], "little"),
                                      constant_liar=True)


def _run_workers(spec: StudySpec, jobs: int) -> None:
    """``jobs`` worker processes on the study (this process when 1); MSAError when one of them fails."""
    if jobs == 1:
        run_worker(spec)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(dataclasses.replace(spec, worker=i),), daemon=False)
             for i in range(jobs)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    bad = [f"worker {i} (exit status {p.exitcode})" for i, p in enumerate(procs) if p.exitcode != 0]
    if bad:
        raise MSAError(f"{', '.join(bad)} failed; their error is printed above. Finished trials are kept: run the "
                       "same command again to continue the study")


# -- tune ----------------------------------------------------------------------------------------------------------

def tune(model: str | None, data: Any, out_dir: str | os.PathLike, trials: int, preset: str | None = None,
         config: Any = None, overrides: Iterable[str] | Mapping[str, Any] = (), recipe: str | None = None,
         metric: str | None = None, space: str | os.PathLike | Mapping[str, Any] | None = None,
         space_only: bool = False, pruner: str = "median", storage: str | None = None,
         study_name: str | None = None, jobs: int = 1, final_seeds: Sequence[int] | None = None,
         seed: int = 0, progress: bool = False) -> TuneResult:
    """Tune ``model`` on the validation split of ``data`` (a native dataset directory); see the module docstring.

    ``preset``, ``config``, ``overrides``, ``recipe``: as :func:`msa_toolkit.train` (the base every trial
    starts from; an override key is never searched). ``trials``: the study's total number of trials.
    ``metric``: the valid metric to optimise (default: the trainer's ``monitor``). ``space``: a ``--space`` YAML
    file or a mapping (dotted key -> :mod:`msa_toolkit.space` range or None); ``space_only``: search its keys
    alone. ``pruner``: median | none. ``storage``: an Optuna database URL (default: SQLite ``out_dir/study.db``);
    ``study_name`` (default: ``out_dir``'s name). ``jobs``: worker processes on this machine. ``final_seeds``:
    re-train the best configuration with these seeds on the full dataset and score test once per seed
    (``out_dir/final/``). ``seed``: the sampler's base seed. ``progress``: one line per trial on stderr.
    Every check runs before the study starts.
    """
    from ..data.native import MSADataset
    from ..data.withheld import without_test
    from ..space import read_space_file
    from .metrics import compute_metrics, infer_metric_set
    from .plan import parse_overrides, resolve_settings
    from .selection import resolve_mode

    out = Path(out_dir)
    if trials < 1 or jobs < 1:
        raise MSAError(f"--trials and --jobs must be >= 1 (got {trials} and {jobs})")
    if pruner not in PRUNERS:
        raise MSAError(f"--pruner: expected {' or '.join(PRUNERS)}, got {pruner!r}")
    if isinstance(data, MSADataset):
        data = data.path
    if not isinstance(data, (str, os.PathLike)):
        raise MSAError("tune: data must be a native dataset directory (or an opened dataset)")
    given = dict(parse_overrides(overrides))
    settings = resolve_settings(model, preset, config, given, None, recipe)
    view = without_test(data)
    missing = [s for s in ("train", "valid") if s not in view]
    if missing:
        raise MSAError(f"{data}: a study needs a train and a valid split (missing: {', '.join(missing)}); the test "
                       "split is never used to choose hyper-parameters")
    tc = settings.trainer
    fixed = dict(given)
    if tc.metric_set == "auto":  # decided once from train + valid, so trials and final runs score alike
        labels = np.concatenate([view.split(s).labels for s in view.splits])
        fixed["trainer.metric_set"] = infer_metric_set(labels[np.isfinite(labels)])
    metric_set = fixed.get("trainer.metric_set", tc.metric_set)
    metric = metric or tc.monitor.removeprefix("valid_")
    names = [*compute_metrics(np.array([-1.0, 1.0]), np.array([-1.0, 1.0]), metric_set), "loss"]
    if metric not in names:
        raise MSAError(f"--metric {metric!r}: not a validation metric; choose from {', '.join(names)}")
    mode = resolve_mode(metric, tc.monitor_mode if metric == tc.monitor.removeprefix("valid_") else "auto")
    file = read_space_file(space) if isinstance(space, (str, os.PathLike)) else space
    if isinstance(file, Mapping):
        from ..space import param_from_yaml

        file = {k: (v if v is None or not isinstance(v, (list, dict, tuple)) else param_from_yaml(k, v))
                for k, v in file.items()}
    searched = study_space(settings.name, tc, given, file, space_only)
    base = {"trainer.plots": False, **fixed}  # per-trial plots cost time; the study draws its own
    if jobs > 1 and not tc.threads and "trainer.threads" not in given:  # the cores shared among the workers
        base["trainer.threads"] = max(1, (os.cpu_count() or 1) // jobs)
    url = storage or f"sqlite:///{(out / DEFAULT_STUDY_FILE).resolve()}"
    spec = StudySpec(settings.name, settings.preset, recipe, config, base, str(data), str(out), url,
                     study_name or out.resolve().name, trials, metric, "maximize" if mode == "max" else "minimize",
                     searched, pruner, settings.seeds[0], seed, progress)
    out.mkdir(parents=True, exist_ok=True)
    with _optuna_warnings_only():
        return _run_study(spec, fixed, view.content_id, jobs, final_seeds, progress)


@contextlib.contextmanager
def _optuna_warnings_only():
    """Optuna's INFO lines off while a study runs (the study prints its own), its verbosity restored after."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _run_study(spec: StudySpec, fixed: Mapping[str, Any], content_id: str, jobs: int,
               final_seeds: Sequence[int] | None, progress: bool) -> TuneResult:
    """Open (or create) the study, record what it is, run the workers, write the study's files."""
    import yaml

    from ..space import space_to_yaml

    out, url = Path(spec.out_dir), spec.storage
    identity = _identity(dataclasses.replace(spec, overrides=dict(fixed)), content_id)
    study = _open_study(spec, identity)
    atomic_write_json(out / STUDY_FILE, {**identity, "study_name": spec.study_name,
                                         "storage": public_url(url), "trials": spec.trials}, indent=2)
    atomic_write_text(out / SPACE_FILE, yaml.safe_dump(space_to_yaml(spec.space), sort_keys=False))
    if progress:
        print(f"study {spec.study_name!r} ({public_url(url)}): {spec.model}, {len(spec.space)} hyper-parameters, "
              f"{spec.trials} trials, valid {spec.metric} ({spec.direction}), {jobs} worker(s); test split withheld",
              file=sys.stderr, flush=True)
    _run_workers(spec, jobs)
    return finish_study(study, spec, final_seeds, progress)

