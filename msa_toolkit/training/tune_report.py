"""The end of a study (``msa tune``): trials.csv, the plots, best_config.yaml, the final re-training, result.json.

* ``trials.csv`` — one row per trial: number, state, the valid value, epochs run (the epoch a pruned trial
  stopped after), seconds, the sampled values (one column per searched key), the run folder and the reason a trial
  failed;
* ``optimization_history.png`` and ``param_importances.png`` — Optuna's matplotlib plots (fANOVA importances,
  seeded); drawn when the study has enough complete trials (two, and a searched value that varies);
* ``best_config.yaml`` — the best trial's run configuration (its ``config.yaml``: model, preset, every override
  including the sampled values, recipe, trainer settings without the display/machine ones, the seeds):
  ``msa train -c best_config.yaml -d DATA -o OUT`` trains that configuration again;
* ``final_trial_<n>/`` — with ``final_seeds``: ``msa train`` of best_config.yaml with those seeds on the full
  dataset, its checkpoints chosen on valid and its test split scored once per seed (resumed when it exists);
* ``result.json`` — the counts, the best trial, the final test mean ± std per metric, and the protocol in words.

Also here, shared with :mod:`.tune` (which imports this module, never the reverse): :class:`TuneResult`, the
trial user-attribute names and :func:`public_url`.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._io import atomic_write_json, atomic_write_text
from ..errors import MSAError, RunNotice

__all__ = ["TuneResult", "public_url", "finish_study", "write_trials_csv", "write_plots", "write_best_config", "protocol", "BEST_CONFIG",
           "TRIALS_CSV", "RESULT_JSON", "HISTORY_PNG", "IMPORTANCE_PNG"]

#: the user attributes of a trial: its process (host, pid, start), run folder, counted against the budget though
#: failed (non-finite), why it failed, created past the budget (not run), the epoch it was pruned after
OWNER_ATTR, RUN_ATTR, COUNTED_ATTR, ERROR_ATTR, OVER_ATTR, PRUNED_ATTR = (
    "owner", "run_dir", "counted", "error", "over_budget", "pruned_at_epoch")
BEST_CONFIG = "best_config.yaml"
TRIALS_CSV = "trials.csv"
RESULT_JSON = "result.json"
HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"
#: trials.csv's reason for a failed trial that recorded none: its process ended while it ran (a replacement ran)
INTERRUPTED = "its process ended while it ran (killed or interrupted); not counted, another trial ran instead"
#: the seed of the fANOVA forest behind param_importances.png
IMPORTANCE_SEED = 0


@dataclass
class TuneResult:
    """What :func:`tune` returns."""

    # the output directory and the Optuna study name / storage (password hidden)
    out_dir: Path
    study_name: str
    storage: str
    # the objective
    metric: str
    direction: str
    # trial counts by state ("COMPLETE", "PRUNED", "FAIL", ...)
    counts: dict[str, int] = field(default_factory=dict)
    # the best trial: number, valid value, sampled values (dotted key -> value), run folder
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_run: Path | None = None
    # out_dir/best_config.yaml (None without a complete trial)
    best_config: Path | None = None
    # the re-training with final_seeds (a training.api.RunResult), None without final_seeds
    final: Any = None
    # the files written (trials.csv, plots, result.json, ...)
    files: dict[str, Path] = field(default_factory=dict)


def public_url(url: str) -> str:
    """The storage URL with its password hidden (for files and messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy parses: say nothing of it
        return "(storage URL)"


def _study_trials(study: Any) -> list[Any]:
    """The trials of the study that were run (not the ones created past the budget by a race)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(OVER_ATTR)]


def write_trials_csv(study: Any, keys: Sequence[str], path: Path) -> Path:
    """trials.csv (module docstring)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["number", "state", "value", "epochs_run", "pruned_at_epoch", "seconds", *keys, "run_dir", "error"])
    for t in _study_trials(study):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        epochs = t.user_attrs.get("epochs_run", len(t.intermediate_values) or "")
        w.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6g}", epochs,
                    t.user_attrs.get(PRUNED_ATTR, ""), "" if seconds is None else f"{seconds:.1f}",
                    *[t.params.get(k, "") for k in keys], t.user_attrs.get(RUN_ATTR, ""),
                    t.user_attrs.get(ERROR_ATTR, INTERRUPTED if t.state.name == "FAIL" else "")])
    atomic_write_text(path, buf.getvalue())
    return path


def write_plots(study: Any, out: Path, metric: str) -> dict[str, str]:
    """optimization_history.png and param_importances.png; file name -> "written" or why it was not drawn."""
    import optuna
    from optuna.visualization import matplotlib as vis

    from .plots import _plt

    plt = _plt()
    notes: dict[str, str] = {}
    complete = [t for t in _study_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    target = f"valid {metric}"
    importance = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    drawings = ((HISTORY_PNG, lambda: vis.plot_optimization_history(study, target_name=target), 1),
                (IMPORTANCE_PNG, lambda: vis.plot_param_importances(study, evaluator=importance, target_name=target), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw, need in drawings:
            if len(complete) < need:
                notes[name] = f"not drawn: {len(complete)} complete trial(s), {need} needed"
                continue
            try:
                ax = draw()
            except (ValueError, RuntimeError, ImportError) as e:  # e.g. no searched value varied yet
                notes[name] = f"not drawn: {e}"
                continue
            fig = ax.figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            notes[name] = "written"
    return notes


def write_best_config(run_dir: Path, path: Path, seeds: Sequence[int], header: Sequence[str]) -> Path:
    """best_config.yaml from the best trial's run configuration (module docstring)."""
    import yaml

    from .fingerprint import DISPLAY_SETTINGS
    from .plan import CONFIG_FILE

    doc = yaml.safe_load((run_dir / CONFIG_FILE).read_text())
    doc.pop("data", None)
    doc["trainer"] = {k: v for k, v in doc.get("trainer", {}).items() if k not in DISPLAY_SETTINGS}
    doc["seeds"] = [int(s) for s in seeds]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(doc, sort_keys=False)
    atomic_write_text(path, text)
    return path


def protocol(spec: Any, n_run: int, final_seeds: Sequence[int] | None) -> str:
    """The protocol of the reported figures, in words."""
    text = (f"{n_run} trials of {spec.model} (Optuna TPE, {spec.pruner} pruner) searched {len(spec.space)} "
            f"hyper-parameters on the validation split ({spec.direction} valid {spec.metric}, each trial one run with "
            f"seed {spec.seed}, its epoch chosen on valid); the test split was withheld from every trial (not "
            "opened).")
    if final_seeds:
        text += (f" The best trial's configuration (best_config.yaml) was re-trained with seeds "
                 f"{','.join(map(str, final_seeds))} on the full dataset, each checkpoint chosen on valid, and the "
                 "test split scored once per seed; test figures are mean ± sample std over those seeds.")
    return text


def finish_study(study: Any, spec: Any, final_seeds: Sequence[int] | None, progress: bool):
    """Write the study's files, re-train the best configuration with ``final_seeds``; the TuneResult."""
    import optuna

    from .api import train
    from .plan import CONFIG_FILE

    out = Path(spec.out_dir)
    keys = list(spec.space)
    trials = _study_trials(study)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    result = TuneResult(out, spec.study_name, public_url(spec.storage), spec.metric, spec.direction, counts)
    result.files["trials_csv"] = write_trials_csv(study, keys, out / TRIALS_CSV)
    plots = write_plots(study, out, spec.metric)
    for name, state in plots.items():
        if state != "written":
            warnings.warn(f"{name} {state}", RunNotice, stacklevel=2)
    result.files.update({n: out / n for n, state in plots.items() if state == "written"})
    # trials with a run folder (a trial added to the study by other means has none to re-train)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get(RUN_ATTR)]
    doc: dict[str, Any] = {"study_name": spec.study_name, "storage": result.storage, "model": spec.model,
                           "preset": spec.preset, "metric": spec.metric, "direction": spec.direction,
                           "trials": spec.trials, "counts": counts, "space": keys, "plots": plots}
    if complete:
        best = (min if spec.direction == "minimize" else max)(complete, key=lambda t: t.value)
        result.best_trial, result.best_value, result.best_params = best.number, best.value, dict(best.params)
        result.best_run = Path(best.user_attrs[RUN_ATTR])
        doc["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                       "run_dir": str(result.best_run), "best_epoch": best.user_attrs.get("best_epoch")}
    if complete and not (result.best_run / CONFIG_FILE).is_file():  # run on another machine (no shared disk)
        doc["best"]["best_config"] = "not written: the best trial's run folder is not on this machine"
        if final_seeds:
            raise MSAError(f"the best trial's run folder {result.best_run} is not on this machine; run --final-seeds "
                           "where it is (docs/scaling.md)")
    elif complete:
        header = [f"msa tune: the best of {len(trials)} trials of study {spec.study_name!r} (trial {best.number}: "
                  f"valid {spec.metric} {best.value:.6g}, {spec.direction})",
                  f"its run: {result.best_run}",
                  f"train it again: msa train -c {out / BEST_CONFIG} -d DATA -o OUT"]
        result.best_config = write_best_config(result.best_run, out / BEST_CONFIG, final_seeds or [spec.seed],
                                               header)
        result.files["best_config"] = result.best_config
    if not complete and final_seeds:
        raise MSAError(f"study {spec.study_name!r} has no complete trial: nothing to re-train with --final-seeds")
    if final_seeds and result.best_config is not None:
        final_dir = out / f"final_trial_{result.best_trial:04d}"
        if progress:
            print(f"re-training trial {result.best_trial} with seeds {','.join(map(str, final_seeds))} -> {final_dir}",
                  flush=True)
        with warnings.catch_warnings():
            if not progress:
                warnings.simplefilter("ignore", RunNotice)
            result.final = train(None, spec.data, final_dir, config=result.best_config, seeds=list(final_seeds),
                                 resume=(final_dir / "config.yaml").is_file(), progress=progress)
        doc["final"] = {"run_dir": str(final_dir), "seeds": list(final_seeds),
                        "test": {k: _stat(v) for k, v in result.final.summary.get("test", {}).items()},
                        "valid": {k: _stat(v) for k, v in result.final.summary.get("valid", {}).items()}}
    doc["protocol"] = protocol(spec, len(trials), final_seeds if result.final is not None else None)
    atomic_write_json(out / RESULT_JSON, doc, indent=2)
    result.files["result"] = out / RESULT_JSON
    return result


def _stat(v: Mapping[str, Any]) -> dict[str, Any]:
    """mean/std/n/values with NaN as null."""
    def clean(x: Any) -> Any:
        return None if isinstance(x, float) and not math.isfinite(x) else x

    return {"mean": clean(v["mean"]), "std": clean(v["std"]), "n": v["n"], "values": [clean(x) for x in v["values"]]}
