"""Training-trajectory parity of DLF: the toolkit's ``--recipe reference`` Trainer against the authors' DLF.do_train.

    python benchmarks/parity/trajectory_dlf.py --reference-dir /path/to/DLF [--json PATH]

Writes benchmarks/results/parity/parity_dlf_trajectory.json unless ``--json`` says otherwise.

The reference side is ``trains/singleTask/DLF.py``'s own ``DLF.do_train`` (Adam, 10-batch accumulation of
the summed batch losses with ``clip_grad_value_(0.6)`` after every backward, the trailing partial
accumulation dropped, ReduceLROnPlateau 0.5 / 5 on the valid loss, early stop after 10 epochs), with its
``tqdm`` silenced, ``.cuda()`` -> CPU, ``torch.save`` of its per-epoch files skipped, and
``ReduceLROnPlateau(verbose=True)`` accepted on torch versions that dropped ``verbose``. The toolkit side
is :class:`msa_toolkit.training.trainer.Trainer` with DLF's reference recipe (``grad_accum`` 10,
``grad_accum_sum``, ``clip_each_backward``, ``drop_partial_accum``, plateau 0.5 / 5, patience 10).

Both sides start from the same weights (``parity_dlf.weight_map`` plus the BERT, both loading one tiny
random BERT folder) with the model bridges of ``parity_dlf.py`` (kernels 1, no causal mask, dropouts 0).
Every batch has one label for all its samples, so the triplet loss has no (positive, negative) pair and is
0 on both sides: the reference's flattened-sequence triplet projections (``Linear(L*d, d)``, a documented
model deviation from the toolkit's mean-pool + ``Linear(d, d)``) then get no gradient and stay equal to
the toolkit's for the whole run. The validation labels oppose the training labels, so the valid loss
rises after the first epoch: a plateau halves the LR and the early stop ends the run.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (ParityReport, base_parser, check_coverage, check_reference_dir,  # noqa: E402
                           import_reference, load_mapped, reference_commit, same)
from parity_dlf import (EXPECTED_FILES, REF_UNUSED, REPO, TK_ZERO_DROPOUT, _stub_gpu_utils,  # noqa: E402
                        import_reference_modules, patch_positions, reference_args, weight_map)
from trajectory_common import (TINY_BERT, TOLERANCE_F32, TOLERANCE_F64, ListData, Lockstep, StepRow,  # noqa: E402
                               add_movement, finish_trajectory, no_cuda, patched, record_step, snapshot, step_row,
                               tiny_bert, token_ids, wide_reference_float, write_report)

#: the reference hard-codes 50 steps per modality for aligned MOSI
LENGTH = 50
#: batches per epoch (3 accumulations of 10 and a dropped partial one of 4) and samples per batch
TRAIN_BATCHES, BATCH = 34, 2
#: epochs the toolkit may run (the early stop ends both sides earlier)
MAX_EPOCHS = 30
#: MOSI audio / vision dims of the reference config
DIMS = {"audio": 5, "vision": 20}
#: training and validation labels (one value per batch: no triplet pair)
TRAIN_LABEL, VALID_LABEL = 2.0, -1.5


class _Quiet:
    """``tqdm(iterable)`` as a context manager that only iterates."""

    def __init__(self, iterable, *args, **kwargs):
        self.iterable = iterable

    def __enter__(self):
        return self.iterable

    def __exit__(self, *exc) -> None:
        return None


class ClipCounter:
    """Counts, per thread, the ``clip_grad_value_`` calls that changed a gradient (a clipping event)."""

    def __init__(self):
        import threading

        self._threading = threading
        self.original = torch.nn.utils.clip_grad_value_
        self.events: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, parameters, clip_value, *args, **kwargs):
        params = [p for p in (parameters if isinstance(parameters, (list, tuple)) else list(parameters))]
        name = self._threading.current_thread().name
        over = any(p.grad is not None and bool((p.grad.abs() > clip_value).any()) for p in params)
        self.calls[name] = self.calls.get(name, 0) + 1
        self.events[name] = self.events.get(name, 0) + int(over)
        return self.original(params, clip_value, *args, **kwargs)


def make_batches(n: int, label: float, g: torch.Generator, dtype: torch.dtype, tag: str) -> list:
    from msa_toolkit.data.batch import Batch

    full = torch.ones(BATCH, LENGTH, dtype=torch.bool)
    return [Batch(text=torch.zeros(BATCH, LENGTH, 1, dtype=dtype), text_mask=full,
                  audio=torch.randn(BATCH, LENGTH, DIMS["audio"], generator=g, dtype=dtype), audio_mask=full,
                  vision=torch.randn(BATCH, LENGTH, DIMS["vision"], generator=g, dtype=dtype), vision_mask=full,
                  label=torch.full((BATCH,), label, dtype=dtype), text_tokens=token_ids(BATCH, LENGTH, g),
                  ids=[f"{tag}{i}_{j}" for j in range(BATCH)]) for i in range(n)]


def reference_batch(b) -> dict:
    """The reference loader's dict (MMSA layout): text as (B, 3, L) ids / mask / segment ids."""
    ids = b.text_tokens.to(b.audio.dtype)
    text = torch.stack([ids, b.text_mask.to(ids.dtype), torch.zeros_like(ids)], 1)
    return {"vision": b.vision, "audio": b.audio, "text": text, "labels": {"M": b.label}}


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    a = ap.parse_args(argv)
    ref_dir = check_reference_dir(a.reference_dir, (*EXPECTED_FILES, "trains/singleTask/DLF.py"), REPO)
    import json

    from msa_toolkit.models import create_model
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.recipes import get_recipe
    from msa_toolkit.training.trainer import Trainer

    dtype = getattr(torch, a.dtype)
    tolerance = a.tolerance if a.tolerance != base_parser("").get_default("tolerance") else \
        (TOLERANCE_F64 if dtype == torch.float64 else TOLERANCE_F32)
    tmp = Path(tempfile.mkdtemp(prefix="traj_dlf_"))
    bert = tiny_bert(tmp / "bert", a.seed)
    cfg = json.loads((ref_dir / "config" / "config.json").read_text())
    mosi = cfg["DLF"]["datasetParams"]["mosi"]
    d = mosi["dst_feature_dim_nheads"][0]
    loop_mod = import_reference(ref_dir, "trains.singleTask.DLF", _stub_gpu_utils)
    model_mod, _, _ = import_reference_modules(ref_dir)

    args = reference_args(cfg, aligned=True, kernel=1, attn_mask=False, dims=(TINY_BERT["hidden_size"], DIMS["audio"],
                                                                               DIMS["vision"]))
    for k, v in dict(use_bert=True, use_finetune=True, transformers="bert", pretrained=str(bert), device="cpu",
                     train_mode="regression", KeyEval="Loss", model_name="dlf", cur_seed=a.seed,
                     early_stop=cfg["DLF"]["commonParams"]["early_stop"]).items():
        setattr(args, k, v)
    torch.manual_seed(a.seed)
    ref = model_mod.DLF(args).to(dtype)
    recipe = get_recipe("dlf", "reference")
    tk = create_model("dlf", "mosi", text_len=LENGTH, audio_len=LENGTH, vision_len=LENGTH, kernel_text=1,
                      kernel_audio=1, kernel_vision=1, **TK_ZERO_DROPOUT, text_encoder=str(bert)).to(dtype)
    c = tk.config
    bert_names = [n for n, _ in ref.text_model.model.named_parameters()]
    L = {"text": LENGTH, "audio": LENGTH, "vision": LENGTH}
    maps = weight_map(d, L, c.layers, c.mem_layers) + \
        [same(f"text_model.model.{n}", f"text_encoder.model.{n}") for n in bert_names]
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED)
    load_mapped(maps, ref, tk)
    start = snapshot(tk)
    # both sides compute their sinusoidal tables in float32 with different formulas (equal to fp32 rounding,
    # parity_dlf.py): this instance reads the reference's table so a float64 run is not held to fp32 rounding
    n_pos = patch_positions(tk, sys.modules["_dlf_ref_pos"].SinusoidalPositionalEmbedding)
    tied = [m for m in maps if not m.elementwise]

    g = torch.Generator().manual_seed(a.seed + 1)
    train_b = make_batches(TRAIN_BATCHES, TRAIN_LABEL, g, dtype, "t")
    valid_b = make_batches(2, VALID_LABEL, g, dtype, "v")
    test_b = make_batches(1, VALID_LABEL, g, dtype, "s")
    loaders = {"train": [reference_batch(b) for b in train_b], "valid": [reference_batch(b) for b in valid_b],
               "test": [reference_batch(b) for b in test_b]}

    tc = TrainConfig(**{**recipe.trainer, "epochs": MAX_EPOCHS, "batch_size": BATCH, "device": "cpu",
                        "progress": False, "seed": a.seed})
    trainer = Trainer(tk, ListData(train_b, valid_b, test_b), tc)
    report = ParityReport("dlf", REPO, reference_commit(ref_dir), {
        "kind": "training trajectory", "dtype": a.dtype, "recipe": "reference", "trainer": tc.to_dict(),
        "reference_args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))},
        "length": LENGTH, "batches_per_epoch": TRAIN_BATCHES, "batch_size": BATCH,
        "labels": {"train": TRAIN_LABEL, "valid": VALID_LABEL},
        "bert": "tiny random BertConfig (trajectory_common.TINY_BERT), both sides"})
    rows: list[StepRow] = []
    clips = ClipCounter()

    def on_step(step: int, lr_ref: list[float], lr_tk: list[float]) -> None:
        events = ["epoch end"] if step % (TRAIN_BATCHES // 10) == 0 else []
        if rows and lr_tk[0] != rows[-1].lr_toolkit[0]:
            events.append("lr changed (plateau)")
        row = step_row(step, lr_ref, lr_tk, maps, ref, tk, events)
        rows.append(row)
        record_step(report, row, tolerance)

    def plateau(*args, verbose=None, **kwargs):  # torch >= 2.7 has no ``verbose``
        return torch.optim.lr_scheduler.ReduceLROnPlateau(*args, **kwargs)

    def reference_loop() -> None:
        with patched((loop_mod, "tqdm", _Quiet), (loop_mod, "ReduceLROnPlateau", plateau)):
            loop_mod.DLF(args).do_train([ref], loaders)

    lock = Lockstep(ref, tk, on_step)
    wide = [wide_reference_float()] if dtype == torch.float64 else []
    with patched(no_cuda(), (torch, "save", lambda *x, **k: None), (torch.nn.utils, "clip_grad_value_", clips),
                 *wide):
        result = lock.run(reference_loop, trainer.fit)
    finish_trajectory(report, lock, 30, rows)
    add_movement(report, start, tk)
    # the toolkit's _finish restores its best weights; the reference keeps its last ones (it reloads the best
    # from its saved file only in run.py, for testing): compare the last step's weights, logged above
    with torch.no_grad():
        tp = dict(tk.named_parameters())
        rp = dict(ref.named_parameters())
        for m in tied:
            v = m.load([rp[n] for n in m.ref])
            report.add(f"end of training: {m.tk[0]} (flattened-sequence Linear, no gradient: unchanged)",
                       float((v[0] - tp[m.tk[0]]).abs().max()), tolerance, scale=float(v[0].abs().max()))
    ref_clip = clips.events.get("reference-loop", 0)
    tk_clip = clips.events.get("MainThread", 0)
    report.add("clipping events (backward passes with a clipped gradient): reference vs toolkit",
               float(abs(ref_clip - tk_clip)), 0.0, f"reference {ref_clip} of {clips.calls.get('reference-loop', 0)}"
               f" calls, toolkit {tk_clip} of {clips.calls.get('MainThread', 0)}")
    report.add("clipping happened (>= 1 event)", 0.0 if ref_clip > 0 else 1.0, 0.0)
    report.add("epochs run: reference early stop vs toolkit", 0.0 if len(result.history) * (TRAIN_BATCHES // 10)
               == lock.steps else 1.0, 0.0, f"toolkit {len(result.history)} epochs, {lock.steps} steps compared")
    report.setting["events"] = {"lrs": sorted({r.lr_reference[0] for r in rows}), "toolkit_best_epoch":
                                result.best_epoch, "clip_events": {"reference": ref_clip, "toolkit": tk_clip}}
    report.not_compared += [
        "the triplet loss (0 on both sides: one label per batch; checked by the single-step parity_dlf.py)",
        "kernel-5 convolutions and the causal attention mask (model deviations bridged as in parity_dlf.py)",
        "the reference attention's float32 softmax (softmax(w.float())): kept in float64 in a float64 run",
        f"the toolkit's sinusoidal position table: its {n_pos} encoders read the reference's table in this run "
        "(the two are equal to fp32 rounding, checked by parity_dlf.py)",
        "the plateau's input: the reference steps on its valid L1 loss rounded to 4 decimals, the toolkit on the "
        "valid MAE (equal here up to the rounding; a rounding-level tie could decide differently)",
        "the weights after training: the toolkit restores the best epoch's, the reference's do_train keeps the last "
        "(its run.py reloads the best file for the test)"]
    return write_report(report, a.json, dtype, REF_UNUSED)


if __name__ == "__main__":
    sys.exit(main())
