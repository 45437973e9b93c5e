"""Shared helpers of the parity scripts: importing a reference checkout, mapping weights, comparing.

The authors' reference code is never copied into this repository: each script takes
``--reference-dir PATH`` (a checkout of the authors' repository) and imports from it at
run time with :func:`import_reference`, which removes the checkout's modules from
``sys.modules`` afterwards so two checkouts with the same top-level package names
(``models``, ``utils``) can be imported one after the other in one process.

Weight mapping is data: a list of :class:`ParamMap` per model, kept in one table in each
script. An entry says which reference parameters feed which toolkit parameters, how
(``load``), and how the gradients of the two sides relate (``grads``), so the same table
drives loading, gradient comparison and the after-step parameter comparison.

Comparison results are :class:`Check` rows collected in a :class:`ParityReport`, which
prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

#: default tolerance on max abs differences (fp32, CPU), as the issue asks; relative for values above 1
TOLERANCE = 1e-5
#: a gradient tensor whose reference values are all at most this is treated as zero in exact arithmetic
ZERO_GRAD = 1e-7

Tensors = list[torch.Tensor]


# --------------------------------------------------------------------------- reference import


class ReferenceMissing(SystemExit):
    """Raised (exits) when the reference checkout is missing or is not the expected repository."""


def check_reference_dir(path: str | os.PathLike | None, expected: Sequence[str], repo: str) -> Path:
    """The reference checkout as a Path, or exit with a clear message.

    ``expected`` are files (relative paths) the checkout must contain; ``repo`` is the
    GitHub ``owner/name`` shown in the message.
    """
    hint = (f"pass --reference-dir PATH, a checkout of https://github.com/{repo} "
            f"(e.g. git clone https://github.com/{repo} /tmp/{repo.split('/')[1]}); "
            "the reference code is never copied into this repository")
    if not path:
        raise ReferenceMissing(f"error: no reference checkout given: {hint}")
    p = Path(path).expanduser().resolve()
    if not p.is_dir():
        raise ReferenceMissing(f"error: --reference-dir {path} is not a directory: {hint}")
    missing = [f for f in expected if not (p / f).is_file()]
    if missing:
        raise ReferenceMissing(f"error: --reference-dir {path} does not look like {repo} "
                              f"(missing {', '.join(missing)}): {hint}")
    return p


def import_reference(ref_dir: Path, module: str, before: Callable[[], None] | None = None) -> Any:
    """Import ``module`` from the checkout ``ref_dir`` and return it.

    ``ref_dir`` is put first on ``sys.path`` for the import only; afterwards every module
    loaded from the checkout is dropped from ``sys.modules`` (the returned module and the
    classes it holds stay alive), so another checkout with the same package names can be
    imported next. ``before`` runs after the path insertion (e.g. to stub a sub-module).
    """
    ref = str(ref_dir)
    old_path, old_mods = list(sys.path), set(sys.modules)
    sys.path.insert(0, ref)
    try:
        if before is not None:
            before()
        return importlib.import_module(module)
    except ImportError as e:
        raise ReferenceMissing(f"error: importing {module} from {ref_dir} failed: {e}. "
                              "Install the reference's Python dependencies (e.g. einops) in this "
                              "environment or on PYTHONPATH.") from e
    finally:
        sys.path[:] = old_path
        drop = [name for name in set(sys.modules) - old_mods if _loaded_from(sys.modules[name], ref)]
        for name in drop:
            del sys.modules[name]


@contextlib.contextmanager
def stubbed_modules(stubs: Mapping[str, Any]) -> Iterator[None]:
    """Put ``stubs`` (module name -> stand-in module) in ``sys.modules`` for the block (e.g. around an
    :func:`import_reference` whose checkout imports packages the comparison does not need); the real ones
    (or their absence) are restored afterwards."""
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def _loaded_from(mod: Any, folder: str) -> bool:
    """Whether a module's file or package path lies under ``folder``."""
    try:
        places = [getattr(mod, "__file__", None) or "", *map(str, getattr(mod, "__path__", None) or [])]
    except (KeyError, TypeError):  # a namespace package whose parent is already gone
        places = []
    return any(p.startswith(folder) for p in places)


def reference_commit(ref_dir: Path) -> str:
    """The checkout's git commit, or the content of a ``REFERENCE_COMMIT`` file, or "unknown"."""
    marker = ref_dir / "REFERENCE_COMMIT"
    if marker.is_file():
        return marker.read_text().strip()
    try:
        out = subprocess.run(["git", "-C", str(ref_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class Namespace(argparse.Namespace):
    """An attribute bag built from a dict (the reference models read ``args.x``)."""

    def __init__(self, values: Mapping[str, Any]):
        super().__init__(**dict(values))


# --------------------------------------------------------------------------- weight mapping


@dataclass(frozen=True)
class ParamMap:
    """How reference parameters ``ref`` correspond to toolkit parameters ``tk``.

    ``load(ref tensors) -> tk tensors`` gives the toolkit values from the reference ones.
    ``grads(ref grads, tk grads) -> (expected, actual)`` gives two tensors that must be equal
    when the models agree. ``elementwise`` is False when an optimiser step on both sides does
    not keep the mapping (e.g. one reference tensor tied to two toolkit tensors); such
    entries are re-synchronised (``load`` again) before comparing after a step.
    """

    # reference parameter names (state_dict keys)
    ref: tuple[str, ...]
    # toolkit parameter names (state_dict keys)
    tk: tuple[str, ...]
    # reference values -> toolkit values
    load: Callable[[Tensors], Tensors]
    # (reference grads, toolkit grads) -> (expected, actual)
    grads: Callable[[Tensors, Tensors], tuple[torch.Tensor, torch.Tensor]]
    # whether an elementwise optimiser step on both sides keeps the mapping exact
    elementwise: bool = True
    # free text shown in the report (why the entry is not one-to-one)
    note: str = ""
    # rewrites the reference values before loading (and re-synchronising) so that the
    # reference sits in the subspace the toolkit can represent; None = leave them as they are
    prepare: Callable[[Tensors], Tensors] | None = None


def same(ref: str, tk: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ParamMap:
    """One-to-one, optionally through a shape-only ``transform`` (reshape / squeeze / permute)."""
    t = transform or (lambda x: x)
    return ParamMap((ref,), (tk,), lambda r: [t(r[0]).clone()], lambda rg, tg: (t(rg[0]), tg[0]))


def split(ref: str, tks: Sequence[str], dim: int = 0) -> ParamMap:
    """One fused reference tensor (e.g. an in-projection) cut into equal chunks along ``dim``."""
    n = len(tks)
    return ParamMap((ref,), tuple(tks), lambda r: [c.clone() for c in r[0].chunk(n, dim)],
                    lambda rg, tg: (rg[0], torch.cat(tg, dim)), note=f"fused reference tensor split in {n}")


def fused(refs: Sequence[str], tk: str, dim: int = 0) -> ParamMap:
    """Several reference tensors (e.g. separate q/k/v projections) concatenated along ``dim`` into one
    toolkit tensor (e.g. a fused ``qkv``); the inverse of :func:`split`."""
    n = len(refs)
    return ParamMap(tuple(refs), (tk,), lambda r: [torch.cat(list(r), dim).clone()],
                    lambda rg, tg: (torch.cat(list(rg), dim), tg[0]), note=f"{n} reference tensors fused in one")


def tied(ref: str, tks: Sequence[str]) -> ParamMap:
    """One reference tensor used in several places where the toolkit has separate tensors.

    Equal at load; the reference gradient is the sum of the toolkit gradients; an optimiser
    step unties them, so they are re-synchronised before after-step comparisons.
    """
    return ParamMap((ref,), tuple(tks), lambda r: [r[0].clone() for _ in tks],
                    lambda rg, tg: (rg[0], torch.stack(tg).sum(0)), elementwise=False,
                    note=f"reference tensor shared by {len(tks)} toolkit tensors (grad = sum)")


def _named(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def check_coverage(maps: Sequence[ParamMap], ref: nn.Module, tk: nn.Module,
                   ref_unused: Iterable[str] = (), tk_unused: Iterable[str] = ()) -> None:
    """Raise if a mapped name does not exist, a name is mapped twice, or a parameter is left out.

    ``ref_unused`` / ``tk_unused`` are parameters deliberately outside the comparison
    (layers one side builds but never uses), given as exact names or prefixes ending in ".".
    """
    rp, tp = _named(ref), _named(tk)

    def skip(name: str, unused: Iterable[str]) -> bool:
        return any(name == u or (u.endswith(".") and name.startswith(u)) for u in unused)

    problems: list[str] = []
    for side, params, names_of, unused in (("reference", rp, lambda m: m.ref, ref_unused),
                                           ("toolkit", tp, lambda m: m.tk, tk_unused)):
        seen: dict[str, int] = {}
        for m in maps:
            for n in names_of(m):
                seen[n] = seen.get(n, 0) + 1
                if n not in params:
                    problems.append(f"{side} parameter {n!r} named in the mapping does not exist")
        problems += [f"{side} parameter {n!r} mapped {c} times" for n, c in seen.items() if c > 1]
        problems += [f"{side} parameter {n!r} is not mapped" for n in params
                     if n not in seen and not skip(n, unused)]
    if problems:
        raise ValueError("weight mapping does not match the models (parameter names changed?):\n  "
                         + "\n  ".join(problems))


@torch.no_grad()
def load_mapped(maps: Sequence[ParamMap], ref: nn.Module, tk: nn.Module, only_tied: bool = False) -> None:
    """Copy reference values into the toolkit model through ``maps`` (shapes are checked).

    Entries with ``prepare`` first rewrite the reference values in place. ``only_tied``
    re-synchronises only the entries an optimiser step does not keep exact.
    """
    rp, tp = _named(ref), _named(tk)
    for m in maps:
        if only_tied and m.elementwise:
            continue
        if m.prepare is not None:
            for n, v in zip(m.ref, m.prepare([rp[n] for n in m.ref])):
                rp[n].copy_(v)
        values = m.load([rp[n] for n in m.ref])
        for n, v in zip(m.tk, values):
            if tp[n].shape != v.shape:
                raise ValueError(f"shape mismatch mapping {m.ref} -> {n}: toolkit {tuple(tp[n].shape)}, "
                                 f"mapped {tuple(v.shape)}")
            tp[n].copy_(v)


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| (shapes must agree after squeezing size-1 dims)."""
    return diff_and_scale(a, b)[0]


def diff_and_scale(expected: torch.Tensor, actual: torch.Tensor) -> tuple[float, float]:
    """(max |expected - actual|, max |expected|); shapes must agree after squeezing size-1 dims."""
    a, b = expected.detach().float(), actual.detach().float()
    if a.shape != b.shape:
        if a.squeeze().shape != b.squeeze().shape:
            raise ValueError(f"cannot compare shapes {tuple(a.shape)} and {tuple(b.shape)}")
        a, b = a.squeeze(), b.squeeze()
    if not a.numel():
        return 0.0, 0.0
    return float((a - b).abs().max()), float(a.abs().max())


def grad_diffs(maps: Sequence[ParamMap], ref: nn.Module, tk: nn.Module) -> dict[str, tuple[float, float]]:
    """Per mapping entry (named by its toolkit names), (max abs difference, scale) of the related gradients."""
    rp, tp = _named(ref), _named(tk)

    def g(p: torch.Tensor) -> torch.Tensor:
        return p.grad if p.grad is not None else torch.zeros_like(p)

    out = {}
    for m in maps:
        expected, actual = m.grads([g(rp[n]) for n in m.ref], [g(tp[n]) for n in m.tk])
        out[",".join(m.tk)] = diff_and_scale(expected, actual)
    return out


Diffs = dict[str, tuple[float, float]]


@torch.no_grad()
def param_diffs(maps: Sequence[ParamMap], ref: nn.Module, tk: nn.Module,
                floor: Mapping[str, float] | None = None) -> tuple[Diffs, Diffs]:
    """(max abs difference, scale) of ``load(reference)`` and the toolkit values, per elementwise entry.

    Returns two dicts: elements whose reference gradient is above :data:`ZERO_GRAD`, and
    elements whose reference gradient is zero in exact arithmetic (an adaptive optimiser
    turns their rounding noise into an update of size ~lr with a random sign, e.g. a key
    bias under softmax); the second is informational. The gradients of the step must still
    be in ``.grad``. ``floor`` (entry name -> value, e.g. the measured gradient difference of
    that entry from :func:`grad_diffs`) raises the threshold per entry: an element whose reference
    gradient is not above the two sides' measured gradient disagreement has no defined sign either.
    """
    rp, tp = _named(ref), _named(tk)
    real: Diffs = {}
    noise: Diffs = {}
    for m in maps:
        if not m.elementwise:
            continue
        values = m.load([rp[n] for n in m.ref])
        limit = max(ZERO_GRAD, (floor or {}).get(",".join(m.tk), 0.0))
        live = m.load([(rp[n].grad.abs() > limit).float() if rp[n].grad is not None
                       else torch.zeros_like(rp[n]) for n in m.ref])
        for out, keep in ((real, True), (noise, False)):
            pairs = [diff_and_scale(v[(k > 0.5) == keep], tp[n][(k > 0.5) == keep])
                     for n, v, k in zip(m.tk, values, live)]
            if any(((k > 0.5) == keep).any() for k in live):
                out[",".join(m.tk)] = (max(p[0] for p in pairs), max(p[1] for p in pairs))
    return real, noise


# --------------------------------------------------------------------------- report


@dataclass
class Check:
    """One comparison row."""

    # what was compared, e.g. "forward: prediction"
    name: str
    # max abs difference (None when not comparable)
    max_abs_diff: float | None
    # tolerance it is held to (None: informational, not pass/fail)
    tolerance: float | None = TOLERANCE
    # free text (why not comparable, which layer, ...)
    note: str = ""
    # max |reference value|: the tolerance is tolerance * max(1, scale) (absolute below 1, relative above)
    scale: float = 0.0

    @property
    def status(self) -> str:
        if self.max_abs_diff is None:
            return "n/a"
        if self.tolerance is None:
            return "info"
        return "pass" if self.max_abs_diff <= self.tolerance * max(1.0, self.scale) else "FAIL"


@dataclass
class ParityReport:
    """Rows of one model's parity run plus what identifies it."""

    # toolkit model name
    model: str
    # reference repository (owner/name) and commit
    reference_repo: str
    reference_commit: str
    # configuration used on both sides (free-form, for the record)
    setting: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    # what could not be compared and why
    not_compared: list[str] = field(default_factory=list)

    def add(self, name: str, diff: float | None, tolerance: float | None = TOLERANCE, note: str = "",
            scale: float = 0.0) -> Check:
        c = Check(name, diff, tolerance, note, scale)
        self.checks.append(c)
        return c

    def add_group(self, prefix: str, diffs: Mapping[str, tuple[float, float]],
                  tolerance: float | None = TOLERANCE, note: str = "") -> None:
        """One summary row (the worst entry relative to its tolerance) for per-parameter (diff, scale) pairs."""
        if not diffs:
            return
        worst = max(diffs, key=lambda k: diffs[k][0] / max(1.0, diffs[k][1]))
        d, s = diffs[worst]
        self.add(f"{prefix} ({len(diffs)} tensors)", d, tolerance, (note + "; " if note else "") + f"worst: {worst}",
                 s)

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    def table(self) -> str:
        rows = [("check", "max abs diff", "max |ref|", "status", "note")]
        for c in self.checks:
            d = "-" if c.max_abs_diff is None else f"{c.max_abs_diff:.3e}"
            rows.append((c.name, d, f"{c.scale:.3g}", c.status, c.note))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + ("  " + r[4] if r[4] else "") for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = f"{self.model} vs {self.reference_repo}@{self.reference_commit[:12]}: " + \
            ("PASS" if self.passed else "FAIL")
        tail = [f"not compared: {x}" for x in self.not_compared]
        return "\n".join([head, *lines, *tail])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, row in zip(self.checks, d["checks"]):
            row["status"] = c.status
        d["passed"] = self.passed
        return d

    def write_json(self, path: str | os.PathLike) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every parity script takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--reference-dir", help="checkout of the authors' repository (never copied here)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and random inputs")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--tolerance", type=float, default=TOLERANCE)
    ap.add_argument("--json", help="write the report as JSON here (default: benchmarks/results/parity/"
                    "parity_<model>.json; '' writes none)")
    return ap


#: where a parity run's JSON goes unless ``--json`` says otherwise (``benchmarks/results/parity.md`` beside it)
RESULTS = Path(__file__).resolve().parents[1] / "results" / "parity"


def default_json(model: str, tag: str = "") -> Path:
    """``benchmarks/results/parity/parity_<model>[_<tag>].json``."""
    return RESULTS / f"parity_{model}{'_' + tag if tag else ''}.json"


def finish(report: ParityReport, json_path: str | None, tag: str = "") -> int:
    """Print the table and write the JSON (``json_path``; None: :func:`default_json`, '': none); exit
    status 0 when every pass/fail check passed."""
    print(report.table())
    if json_path is None:
        json_path = default_json(report.model, tag)
    if json_path:
        report.write_json(json_path)
        print(f"wrote {json_path}")
    return 0 if report.passed else 1


# --------------------------------------------------------------------------- diagnosis modules


class ReferencePositions(nn.Module):
    """A reference's fairseq ``SinusoidalPositionalEmbedding`` (class ``table_cls``) in place of a
    toolkit position module: ``forward(x [B, L, D]) -> [L, D]`` (the first row's table; fairseq
    gives the padding index 0 to a step whose first feature is 0). Diagnosis only, in memory."""

    def __init__(self, table_cls: type, dim: int):
        super().__init__()
        self.table = table_cls(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x[:, :, 0])[0].to(x.dtype)


# --------------------------------------------------------------------------- noise drawn inside forward


@contextlib.contextmanager
def injected_noise(draws: Sequence[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Make ``torch.randn_like`` return ``draws`` in order (for a model that draws noise in forward).

    Two implementations that draw the same Gaussian inputs in a different order (e.g. per
    modality v, a, t against t, a, v) get the same values when each side's forward runs under
    this context with the draws listed in its own order. Shapes are checked; a call beyond the
    list, or a list not used up, raises. Yields the list of tensors handed out.
    """
    queue, given, original = list(draws), [], torch.randn_like

    def fake(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not queue:
            raise RuntimeError(f"torch.randn_like called more than the {len(draws)} injected draws")
        g = queue.pop(0)
        if g.shape != x.shape:
            raise ValueError(f"injected noise of shape {tuple(g.shape)} for randn_like of {tuple(x.shape)}")
        given.append(g)
        return g.to(dtype=x.dtype, device=x.device).clone()

    torch.randn_like = fake
    try:
        yield given
    finally:
        torch.randn_like = original
    if queue:
        raise RuntimeError(f"{len(queue)} injected noise draws were not used")


# --------------------------------------------------------------------------- training-step comparison

#: step outputs: named tensors (outputs and loss terms); must hold "total", the loss to back-propagate
StepFn = Callable[[], dict[str, torch.Tensor]]


def compare_training(report: ParityReport, ref: nn.Module, tk: nn.Module, maps: Sequence[ParamMap],
                     ref_fn: StepFn, tk_fn: StepFn, pairs: Sequence[tuple[str, str, str]],
                     make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
                     steps: int = 2, seed: int = 0, tolerance: float = TOLERANCE,
                     measured_floor: bool = False, resync: bool = False) -> None:
    """Run ``steps`` training steps on both models and record every comparison in ``report``.

    Each step: the same RNG seed before each side's forward (for models that draw noise in
    forward), outputs and loss terms compared through ``pairs`` (label, reference key,
    toolkit key), both totals back-propagated, gradients compared through ``maps``, one
    optimiser step on each side (same optimiser), non-elementwise entries re-synchronised,
    parameters compared. Step 0 compares the freshly mapped models; step 1 compares the
    models after one optimiser step.

    ``measured_floor``: elements whose reference gradient is not above the measured gradient
    difference of their entry count as zero-gradient elements (see :func:`param_diffs`).
    ``resync``: after each step's comparison every entry is loaded again from the reference, so
    the next step starts from equal parameters (the optimiser states stay each side's own) and a
    rounding-level sign flip of an adaptive step is not compounded into the next forward.
    """
    opt_r, opt_t = make_optimizer(ref.parameters()), make_optimizer(tk.parameters())
    for step in range(steps):
        opt_r.zero_grad(set_to_none=True)
        opt_t.zero_grad(set_to_none=True)
        torch.manual_seed(seed + step)
        r = ref_fn()
        torch.manual_seed(seed + step)
        t = tk_fn()
        for label, rk, tkk in pairs:
            d, s = diff_and_scale(r[rk], t[tkk])
            report.add(f"step {step}: {label}", d, tolerance, scale=s)
        r["total"].backward()
        t["total"].backward()
        grads = grad_diffs(maps, ref, tk)
        report.add_group(f"step {step}: gradients", grads, tolerance)
        opt_r.step()
        opt_t.step()
        load_mapped(maps, ref, tk, only_tied=True)
        real, noise = param_diffs(maps, ref, tk, {k: v[0] for k, v in grads.items()} if measured_floor else None)
        report.add_group(f"step {step}: parameters after the optimiser step", real, tolerance)
        report.add_group(f"step {step}: parameters after the step, zero-gradient elements", noise, None,
                         f"reference |grad| <= {'max(1e-7, measured grad difference)' if measured_floor else ZERO_GRAD}"
                         ": rounding noise normalised by the optimiser; informational")
        if resync:
            with torch.no_grad():
                load_mapped(maps, ref, tk)
    if resync:
        report.not_compared.append("compounding over steps: every step after the first starts from the reference's "
                                   "parameters copied into the toolkit model (resync)")
    untied = [",".join(m.tk) for m in maps if not m.elementwise]
    if untied:
        report.not_compared.append(
            "after-step values of tied entries (re-synchronised from the reference before the next step): "
            + "; ".join(untied))


def after_step_as_info(report: ParityReport, why: str) -> None:
    """Make the fp32 "parameters after the optimiser step" rows informational, with ``why`` in their note (for a
    script whose ``--float64`` run holds that check to the tolerance: Adam's step g / (|g| + eps) turns the
    gradients' fp32 rounding into step differences on elements with tiny gradients)."""
    for check in report.checks:
        if "parameters after the optimiser step" in check.name:
            check.tolerance = None
            check.note += f"; informational in fp32: {why}; pass/fail in the --float64 run"
