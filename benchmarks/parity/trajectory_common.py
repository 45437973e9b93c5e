"""Shared machinery of the training-trajectory parity scripts (issue 38): ``trajectory_<model>.py``.

A trajectory run trains two models that start from the same weights (a parity script's
``weight_map()``) on the same batches in the same order:

- the toolkit side is the real :class:`msa_toolkit.training.trainer.Trainer` with the model's
  ``reference`` recipe (``training/recipes.py``), fed by :class:`ListData`, a tiny in-memory data
  module that hands the trainer a fixed list of batches;
- the reference side is the authors' own training loop, imported from their checkout with its data
  loader, logger, ``.cuda()`` and pretrained-BERT loading monkeypatched by the model's script.

:class:`Lockstep` runs the reference loop in a second thread and pauses each side after every
optimiser step (a global ``torch.optim`` step post-hook) until the other side has taken the same
step; the two models are then compared through the weight map (:func:`mapped_diffs`) together with
the learning rates of the step. Only one copy of each model exists, so models of any size can be
followed for as many steps as asked.

Runs are in float64 by default: over tens of Adam steps, fp32 rounding of two differently ordered
but equal computations is amplified by the optimiser's normalisation (an element whose exact gradient
is ~0 gets a step of ~lr with a random sign), which float64 pushes far below Adam's epsilon.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from parity_common import Diffs, ParamMap, ParityReport, diff_and_scale, finish

#: default tolerance of the float64 trajectory (max abs parameter difference; relative above 1)
TOLERANCE_F64 = 1e-9
#: default tolerance of an fp32 trajectory (informational runs with --dtype float32)
TOLERANCE_F32 = 1e-4
#: tolerance on learning rates (both sides compute them in Python floats)
LR_TOLERANCE = 1e-12
#: seconds one side waits for the other to reach the same optimiser step
STEP_TIMEOUT = 900.0

#: tiny BERT of both sides: hidden 32, 2 layers, 2 heads, no dropout
TINY_BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0)


def tiny_bert(folder: str | Path, seed: int = 0, **changes: Any) -> Path:
    """Save a small randomly initialised BERT (:data:`TINY_BERT` with ``changes``, e.g. ``hidden_size=768``
    for a reference that hard-codes BERT-base's width) with a word-piece vocabulary in ``folder``.

    Both sides load this folder with ``from_pretrained``, so the encoders are identical to the bit.
    """
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    BertModel(BertConfig(**{**TINY_BERT, **changes})).save_pretrained(folder)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = special + [f"w{i}" for i in range(TINY_BERT["vocab_size"] - len(special))]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


def token_ids(batch: int, length: int, generator: torch.Generator, vocab: int = TINY_BERT["vocab_size"]
              ) -> torch.Tensor:
    """[batch, length] ids: [CLS] (2), random word ids, [SEP] (3) at the end; no padding."""
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3
    return ids


# --------------------------------------------------------------------------- toolkit data


class EpochBatches:
    """A train loader whose e-th pass yields ``epochs[e]`` (the last list again after the end).

    A shuffling loader hands out another order every epoch; this one hands out a fixed, chosen sequence
    per epoch, the same on both sides (each side iterates its own instance). ``len()`` is the batch count
    of the first epoch (every epoch must have the same count).
    """

    def __init__(self, epochs: Sequence[Sequence[Any]]):
        if not epochs or len({len(e) for e in epochs}) != 1:
            raise ValueError("EpochBatches needs at least one epoch and the same batch count in every epoch")
        self.epochs = [list(e) for e in epochs]
        self.passes = 0

    def __len__(self) -> int:
        return len(self.epochs[0])

    def __iter__(self) -> Iterator[Any]:
        batches = self.epochs[min(self.passes, len(self.epochs) - 1)]
        self.passes += 1
        return iter(batches)


class ListData:
    """The smallest data module the Trainer accepts: fixed lists of batches per split, in a fixed order.

    ``train`` is a list of batches (the same every epoch) or a list of such lists, one per epoch
    (:class:`EpochBatches`). ``train_loader()`` ignores the trainer's loader options (no shuffling, no
    bucketing), so the reference side can be fed exactly the same sequence.
    """

    split_names = ("train", "valid", "test")

    def __init__(self, train: Sequence[Any], valid: Sequence[Any], test: Sequence[Any], spec: Any = None,
                 per_epoch: bool = False):
        self.epochs = [list(e) for e in train] if per_epoch else [list(train)]
        self.splits = {"train": self.epochs[0], "valid": list(valid), "test": list(test)}
        self.spec = spec

    def train_loader(self, distributed: bool = False, **options: Any) -> EpochBatches:
        if distributed:
            raise ValueError("ListData is for a single process")
        return EpochBatches(self.epochs)

    def loader(self, split: str) -> list[Any]:
        return list(self.splits[split])


# --------------------------------------------------------------------------- comparison


#: toolkit parameter names whose elements (all, or the key third of a fused q/k/v bias) have an exactly zero
#: gradient: a bias added to every key shifts all of a query's scores alike, which the softmax ignores
KEY_BIAS_SUFFIXES = ("attention.self.key.bias",)
FUSED_QKV_BIAS_SUFFIX = "attn.qkv.bias"


def key_bias_mask(name: str, value: torch.Tensor) -> torch.Tensor | None:
    """bool mask of the elements of toolkit parameter ``name`` that are attention key biases, or None."""
    if name.endswith(KEY_BIAS_SUFFIXES):
        return torch.ones_like(value, dtype=torch.bool)
    if name.endswith(FUSED_QKV_BIAS_SUFFIX) and value.shape[0] % 3 == 0:
        n = value.shape[0] // 3
        mask = torch.zeros_like(value, dtype=torch.bool)
        mask[n:2 * n] = True
        return mask
    return None


@torch.no_grad()
def mapped_diffs(maps: Sequence[ParamMap], ref: nn.Module, tk: nn.Module) -> tuple[Diffs, Diffs]:
    """Per elementwise mapping entry (named by its toolkit names): (max |load(reference) - toolkit|, max |ref|).

    Two dicts: every element but the attention key biases (:func:`key_bias_mask`), and the key biases. A key
    bias has an exactly zero gradient, so Adam turns each side's rounding noise g into a step lr * g / eps
    (eps 1e-8): the two sides drift apart by lr * noise / eps per step, whatever the precision; it changes
    nothing downstream (the softmax ignores it), so it is reported apart as information.
    """
    rp, tp = dict(ref.named_parameters()), dict(tk.named_parameters())
    out: Diffs = {}
    keys: Diffs = {}
    for m in maps:
        if not m.elementwise:
            continue
        values = m.load([rp[n] for n in m.ref])
        pairs, key_pairs = [], []
        for n, v in zip(m.tk, values):
            mask = key_bias_mask(n, v)
            if mask is None:
                pairs.append(diff_and_scale(v, tp[n]))
                continue
            key_pairs.append(diff_and_scale(v[mask], tp[n][mask]))
            if (~mask).any():
                pairs.append(diff_and_scale(v[~mask], tp[n][~mask]))
        name = ",".join(m.tk)
        if pairs:
            out[name] = (max(p[0] for p in pairs), max(p[1] for p in pairs))
        if key_pairs:
            keys[name] = (max(p[0] for p in key_pairs), max(p[1] for p in key_pairs))
    return out, keys


def worst(diffs: Diffs) -> tuple[str, float, float]:
    """(entry, diff, scale) of the entry with the largest diff relative to max(1, scale)."""
    if not diffs:
        return "", 0.0, 0.0
    name = max(diffs, key=lambda k: diffs[k][0] / max(1.0, diffs[k][1]))
    return name, diffs[name][0], diffs[name][1]


@dataclass
class StepRow:
    """One optimiser step of both sides."""

    # 1-based optimiser step
    step: int
    # learning rates of the step, per parameter group
    lr_reference: list[float]
    lr_toolkit: list[float]
    # worst mapped parameter entry after the step
    worst_entry: str
    max_abs_diff: float
    scale: float
    # free-form events of the step (e.g. "clip", "epoch end")
    events: list[str] = field(default_factory=list)
    # max difference of the attention key biases (information: see mapped_diffs)
    key_bias_diff: float = 0.0


def lr_diff(ref: Sequence[float], tk: Sequence[float]) -> float:
    """max |ref - tk| over the groups both have; inf when the group counts differ."""
    if len(ref) != len(tk):
        return float("inf")
    return max((abs(a - b) for a, b in zip(ref, tk)), default=0.0)


def step_row(step: int, lr_ref: list[float], lr_tk: list[float], maps: Sequence[ParamMap], ref: nn.Module,
             tk: nn.Module, events: Sequence[str] = ()) -> StepRow:
    """The comparison of both models after optimiser step ``step``."""
    diffs, keys = mapped_diffs(maps, ref, tk)
    name, d, s = worst(diffs)
    return StepRow(step, list(lr_ref), list(lr_tk), name, d, s, list(events), max((v[0] for v in keys.values()),
                                                                                  default=0.0))


def record_step(report: ParityReport, row: StepRow, tolerance: float, lr_tolerance: float = LR_TOLERANCE) -> None:
    """Two checks per step: the parameters (worst entry) and the learning rate (a progress line on stderr)."""
    print(f"step {row.step}: max param diff {row.max_abs_diff:.2e} ({row.worst_entry}), lr {row.lr_reference[0]:.4g}"
          f" / {row.lr_toolkit[0]:.4g} {' '.join(row.events)}", file=sys.stderr, flush=True)
    events = f" [{', '.join(row.events)}]" if row.events else ""
    keys = f"; key biases (info) {row.key_bias_diff:.1e}" if row.key_bias_diff else ""
    report.add(f"step {row.step}: parameters", row.max_abs_diff, tolerance,
               f"worst: {row.worst_entry}{events}{keys}", row.scale)
    report.add(f"step {row.step}: lr", lr_diff(row.lr_reference, row.lr_toolkit), lr_tolerance,
               f"reference {row.lr_reference[0]:.6g}, toolkit {row.lr_toolkit[0]:.6g}", max(row.lr_reference))


# --------------------------------------------------------------------------- lock-step driver


class _Stop(Exception):
    """Ends the reference thread when the toolkit side failed."""


class Lockstep:
    """Run a reference training loop (second thread) and a toolkit one (this thread) one optimiser step apart.

    Every ``torch.optim`` step (a global post-hook) of an optimiser over the reference model's
    parameters waits until the toolkit's optimiser took the same step; then ``on_step(step,
    reference lrs, toolkit lrs)`` runs, with both models frozen, and the reference goes on.
    Steps one side takes and the other does not are counted (``extra_reference``, ``extra_toolkit``).
    """

    def __init__(self, ref: nn.Module, tk: nn.Module, on_step: Callable[[int, list[float], list[float]], None],
                 timeout: float = STEP_TIMEOUT):
        self.ref_ids = {id(p) for p in ref.parameters()}
        self.tk_ids = {id(p) for p in tk.parameters()}
        self.on_step = on_step
        self.timeout = timeout
        self.steps = 0
        self.extra_reference = 0
        self.extra_toolkit = 0
        self.reference_error: BaseException | None = None
        self._to_tk: queue.Queue = queue.Queue()
        self._to_ref: queue.Queue = queue.Queue()
        self._ref_done = False

    def _side(self, opt: torch.optim.Optimizer) -> str | None:
        ids = {id(p) for g in opt.param_groups for p in g["params"]}
        if ids & self.ref_ids:
            return "reference"
        if ids & self.tk_ids:
            return "toolkit"
        return None

    def _hook(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        side = self._side(opt)
        lrs = [float(g["lr"]) for g in opt.param_groups]
        if side == "reference":
            self._to_tk.put(("step", lrs))
            if self._to_ref.get(timeout=self.timeout) == "stop":
                raise _Stop()
        elif side == "toolkit":
            item = self._next_reference()
            if item is None:
                self.extra_toolkit += 1
                return
            self.steps += 1
            try:
                self.on_step(self.steps, item, lrs)
            except BaseException:
                self._to_ref.put("stop")
                raise
            self._to_ref.put("go")

    def _next_reference(self) -> list[float] | None:
        """The next reference step's lrs, or None when the reference loop has ended."""
        if self._ref_done:
            return None
        kind, value = self._to_tk.get(timeout=self.timeout)
        if kind == "done":
            self._ref_done = True
            self.reference_error = value
            return None
        return value

    def run(self, reference_loop: Callable[[], Any], toolkit_loop: Callable[[], Any]) -> Any:
        """Run both loops; the toolkit loop's return value. A reference exception is re-raised here."""
        from torch.optim.optimizer import register_optimizer_step_post_hook

        def reference() -> None:
            error = None
            try:
                reference_loop()
            except _Stop:
                pass
            except BaseException as e:  # handed to the main thread
                error = e
            self._to_tk.put(("done", error))

        handle = register_optimizer_step_post_hook(self._hook)
        thread = threading.Thread(target=reference, name="reference-loop", daemon=True)
        try:
            thread.start()
            try:
                result = toolkit_loop()
            except BaseException:
                self._to_ref.put("stop")
                raise
            while self._next_reference() is not None:  # reference steps the toolkit did not take
                self.extra_reference += 1
                self._to_ref.put("go")
            thread.join(self.timeout)
        finally:
            handle.remove()
        if self.reference_error is not None:
            raise RuntimeError(f"the reference loop failed: {self.reference_error!r}") from self.reference_error
        return result


# --------------------------------------------------------------------------- noise drawn inside forward


class ThreadNoise:
    """``torch.randn_like`` per thread: the k-th training forward of each side gets ``draws(k)`` in that
    side's order (the threads run the two sides' forwards interleaved, so one global queue cannot work).

    ``sides`` maps a thread name to (modality order, ``training()`` -> bool); within a training forward
    the i-th call returns ``draws(k)[order[i]]``. Calls from other threads or in eval mode get the real
    ``randn_like`` (the reference draws noise in eval too; predictions do not depend on it).
    """

    def __init__(self, draws: Callable[[int], dict[str, torch.Tensor]],
                 sides: dict[str, tuple[Sequence[str], Callable[[], bool]]]):
        self.draws, self.sides = draws, sides
        self.calls = {name: 0 for name in sides}
        self._original = torch.randn_like

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        name = threading.current_thread().name
        side = self.sides.get(name)
        if side is None or not side[1]():
            return self._original(x, *args, **kwargs)
        order, _ = side
        i = self.calls[name]
        self.calls[name] += 1
        g = self.draws(i // len(order))[order[i % len(order)]]
        if g.shape != x.shape:
            raise ValueError(f"injected noise of shape {tuple(g.shape)} for randn_like of {tuple(x.shape)}")
        return g.to(dtype=x.dtype, device=x.device).clone()

    @contextlib.contextmanager
    def active(self) -> Iterator["ThreadNoise"]:
        torch.randn_like = self
        try:
            yield self
        finally:
            torch.randn_like = self._original


# --------------------------------------------------------------------------- monkeypatching


@contextlib.contextmanager
def patched(*triples: tuple[Any, str, Any]) -> Iterator[None]:
    """Set ``setattr(obj, name, value)`` for each (obj, name, value), restore the old values afterwards."""
    missing = object()
    saved = [(obj, name, getattr(obj, name, missing)) for obj, name, _ in triples]
    try:
        for obj, name, value in triples:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


def wide_reference_float(thread: str = "reference-loop") -> tuple[Any, str, Any]:
    """``torch.Tensor.float`` keeps a float64 tensor float64 in the reference thread (for a float64 run).

    The references' fairseq attention computes its softmax as ``softmax(w.float()).type_as(w)``: in a float64
    run that one float32 step would hold the whole comparison to fp32 rounding. Other threads and other
    dtypes get the real ``float()``.
    """
    original = torch.Tensor.float

    def float_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.dtype == torch.float64 and threading.current_thread().name == thread:
            return self
        return original(self, *args, **kwargs)

    return (torch.Tensor, "float", float_)


def no_cuda() -> tuple[Any, str, Any]:
    """``torch.Tensor.cuda`` -> the tensor itself (the references call ``.cuda()`` on batches)."""
    return (torch.Tensor, "cuda", lambda self, *a, **k: self)


def finish_trajectory(report: ParityReport, lock: Lockstep, min_steps: int, rows: Sequence[StepRow] = ()) -> None:
    """Add the step-count checks (both sides took the same steps, at least ``min_steps``) and the largest
    key-bias difference of ``rows`` (information)."""
    if rows:
        report.add("attention key biases, max over the steps (zero exact gradient: Adam steps lr * noise / eps)",
                   max(r.key_bias_diff for r in rows), None, "information; see trajectory_common.mapped_diffs")
    report.add("optimiser steps taken by one side only", float(lock.extra_reference + lock.extra_toolkit), 0.0,
               f"reference only {lock.extra_reference}, toolkit only {lock.extra_toolkit}")
    report.add(f"optimiser steps compared (>= {min_steps})", 0.0 if lock.steps >= min_steps else float(lock.steps),
               0.0, f"{lock.steps} steps")


#: what no trajectory script compares (appended to each report's not-compared list)
COMMON_NOT_COMPARED = ("padding masks: every sequence is full (the references have no key masks)",
                       "BERT's pooler (frozen in the toolkit; no gradient in the reference, so its optimiser skips it: "
                       "equal throughout)")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's parameters (to measure how far training moved them)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def add_movement(report: ParityReport, start: dict[str, torch.Tensor], model: nn.Module) -> float:
    """An information row: the largest change of a toolkit parameter over the run (the comparison is not
    vacuous: the trajectories compared moved by this much)."""
    moved = max(float((p.detach() - start[n]).abs().max()) for n, p in model.named_parameters())
    report.add("training moved the parameters by (max abs change, toolkit; information)", moved, None)
    return moved


def write_report(report: ParityReport, json_path: str | None, dtype: torch.dtype, unused: Sequence[str] = ()) -> int:
    """Print and write the report (``parity_<model>_trajectory[_fp32].json`` by default); the exit status.
    ``unused``: reference layers used in neither loss nor prediction (listed as not compared)."""
    report.not_compared += list(COMMON_NOT_COMPARED)
    if unused:
        report.not_compared.append("reference layers used in neither loss nor prediction: " + ", ".join(unused))
    return finish(report, json_path, tag="trajectory" + ("" if dtype == torch.float64 else "_fp32"))
