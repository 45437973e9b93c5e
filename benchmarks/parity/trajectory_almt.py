"""Training-trajectory parity of ALMT: the toolkit's ``--recipe reference`` Trainer against the authors' train.py.

    python benchmarks/parity/trajectory_almt.py --reference-dir /path/to/ALMT [--json PATH]

Writes benchmarks/results/parity/parity_almt_trajectory.json unless ``--json`` says otherwise.

Both sides start from the same weights (``parity_almt.weight_map``, plus the BERT encoder, which both
load from one tiny random BERT folder, :func:`trajectory_common.tiny_bert`) and see the same batches
in the same order. The reference side is ``train.py``'s own ``main()`` (its epoch loop, ``train()``,
``evaluate()``, AdamW and ``core/scheduler.py``'s warm-up + cosine), imported from the checkout with
its YAML config written here (the MOSI config with the epochs scaled 200 -> 20, so the 10 % warm-up is
2 epochs and the cosine 18, and the input lengths shortened), its data loader replaced by the fixed
batches, ``build_model`` by the prepared model, tensorboardX by a stub and ``print`` silenced. The
toolkit side is :class:`msa_toolkit.training.trainer.Trainer` with ALMT's reference recipe, epochs and
warm-up / cosine epochs scaled alike. Parameters (through the weight map) and the LR are compared after
every optimiser step; float64 by default (``--dtype float32`` for an fp32 run).
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_almt import EXPECTED_FILES, REPO, weight_map  # noqa: E402
from parity_common import (Namespace, ParityReport, base_parser, check_coverage, check_reference_dir,  # noqa: E402
                           import_reference, load_mapped, reference_commit, same)
from trajectory_common import (TOLERANCE_F32, TOLERANCE_F64, ListData, Lockstep, StepRow, add_movement,  # noqa: E402
                               finish_trajectory, mapped_diffs, patched, record_step, snapshot, step_row, tiny_bert,
                               token_ids, worst, write_report)

#: scaled schedule: the reference's 200 epochs -> 20 (warm-up 0.1 x epochs = 2, cosine 0.9 x epochs = 18)
EPOCHS = 20
#: batches per epoch and samples per batch (2 x 20 = 40 optimiser steps)
TRAIN_BATCHES, BATCH = 2, 4
#: sequence lengths (shortened from 50/375/500 to keep the run small) and the MOSI feature dims
LENGTHS = {"text": 12, "audio": 20, "vision": 24}
DIMS = {"audio": 5, "vision": 20}


def bert_maps(ref_prefix: str, tk_prefix: str, names: list[str]) -> list:
    """One-to-one entries for the BERT parameters ``names`` (relative to the encoders)."""
    return [same(f"{ref_prefix}.{n}", f"{tk_prefix}.{n}") for n in names]


def make_batches(n: int, g: torch.Generator, dtype: torch.dtype) -> list:
    """``n`` toolkit Batches of :data:`BATCH` samples, no padding."""
    from msa_toolkit.data.batch import Batch

    out = []
    for i in range(n):
        x = {"audio": torch.randn(BATCH, LENGTHS["audio"], DIMS["audio"], generator=g, dtype=dtype),
             "vision": torch.randn(BATCH, LENGTHS["vision"], DIMS["vision"], generator=g, dtype=dtype)}
        tokens = token_ids(BATCH, LENGTHS["text"], g)
        masks = {m: torch.ones(BATCH, LENGTHS[m], dtype=torch.bool) for m in LENGTHS}
        label = torch.empty(BATCH, dtype=dtype).uniform_(-3, 3, generator=g)
        out.append(Batch(text=torch.zeros(BATCH, LENGTHS["text"], 1, dtype=dtype), text_mask=masks["text"],
                         audio=x["audio"], audio_mask=masks["audio"], vision=x["vision"],
                         vision_mask=masks["vision"], label=label, text_tokens=tokens,
                         ids=[f"b{i}s{j}" for j in range(BATCH)]))
    return out


def reference_batch(b) -> dict:
    """The reference loader's dict for a toolkit Batch: text as (B, 3, L) ids / mask / segment ids."""
    ids = b.text_tokens.to(b.audio.dtype)
    text = torch.stack([ids, b.text_mask.to(ids.dtype), torch.zeros_like(ids)], 1)
    return {"vision": b.vision, "audio": b.audio, "text": text, "labels": {"M": b.label.view(-1, 1)}}


def reference_config(ref_dir: Path, bert: Path, run_dir: Path) -> dict:
    """configs/mosi.yaml with the scaled epochs, short lengths, the tiny BERT and a private log folder."""
    import yaml

    cfg = yaml.safe_load((ref_dir / "configs" / "mosi.yaml").read_text())
    cfg["base"].update(n_epochs=EPOCHS, batch_size=BATCH, num_workers=0, project_name=str(run_dir),
                       ckpt_root=str(run_dir))
    cfg["model"].update(bert_pretrained=str(bert), l_input_dim=32, l_input_length=LENGTHS["text"],
                        a_input_length=LENGTHS["audio"], v_input_length=LENGTHS["vision"])
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    a = ap.parse_args(argv)
    ref_dir = check_reference_dir(a.reference_dir, (*EXPECTED_FILES, "train.py", "core/scheduler.py"), REPO)
    import yaml

    from msa_toolkit.models import create_model
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.recipes import get_recipe
    from msa_toolkit.training.trainer import Trainer

    dtype = getattr(torch, a.dtype)
    tolerance = a.tolerance if a.tolerance != base_parser("").get_default("tolerance") else \
        (TOLERANCE_F64 if dtype == torch.float64 else TOLERANCE_F32)
    tmp = Path(tempfile.mkdtemp(prefix="traj_almt_"))
    bert = tiny_bert(tmp / "bert", a.seed)
    cfg = reference_config(ref_dir, bert, tmp / "run")
    cfg_path = tmp / "mosi.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    def stubs() -> None:
        tb = types.ModuleType("tensorboardX")
        tb.SummaryWriter = type("SummaryWriter", (), {"__init__": lambda self, *a, **k: None,
                                                       "add_scalar": lambda self, *a, **k: None,
                                                       "close": lambda self: None})
        sys.modules["tensorboardX"] = tb

    argv_saved = sys.argv
    sys.argv = ["train.py", "--config_file", str(cfg_path)]
    try:
        train_mod = import_reference(ref_dir, "train", before=stubs)
        almt_mod = import_reference(ref_dir, "models.almt")
    finally:
        sys.argv = argv_saved
        sys.modules.pop("tensorboardX", None)

    torch.manual_seed(a.seed)
    ref = almt_mod.ALMT(Namespace({k: Namespace(v) for k, v in cfg.items()})).to(dtype)
    recipe = get_recipe("almt", "reference")
    tk = create_model("almt", "mosi", text_encoder=str(bert), text_len=LENGTHS["text"],
                      audio_len=LENGTHS["audio"], vision_len=LENGTHS["vision"]).to(dtype)
    c = tk.config
    bert_names = [n for n, _ in ref.bertmodel.model.named_parameters()]
    maps = weight_map(c.embed_depth, c.ahl_depth, c.fusion_depth) + \
        bert_maps("bertmodel.model", "text_encoder.model", bert_names)
    maps = [m for m in maps if not m.ref[0].startswith("proj_l.0.")] + \
        [same(f"proj_l.0.{p}", f"input_proj.text.{p}") for p in ("weight", "bias")]
    check_coverage(maps, ref, tk)
    load_mapped(maps, ref, tk)
    start = snapshot(tk)

    g = torch.Generator().manual_seed(a.seed + 1)
    train_b, valid_b, test_b = make_batches(TRAIN_BATCHES, g, dtype), make_batches(1, g, dtype), \
        make_batches(1, g, dtype)
    loaders = {"train": [reference_batch(b) for b in train_b], "valid": [reference_batch(b) for b in valid_b],
               "test": [reference_batch(b) for b in test_b]}

    tc = TrainConfig(**{**recipe.trainer, "epochs": EPOCHS, "warmup_epochs": EPOCHS // 10,
                        "cosine_epochs": EPOCHS - EPOCHS // 10, "batch_size": BATCH, "device": "cpu",
                        "progress": False, "seed": a.seed})
    trainer = Trainer(tk, ListData(train_b, valid_b, test_b), tc)

    report = ParityReport("almt", REPO, reference_commit(ref_dir), {
        "kind": "training trajectory", "dtype": a.dtype, "recipe": "reference", "trainer": tc.to_dict(),
        "reference_config": cfg["base"], "lengths": LENGTHS, "batches_per_epoch": TRAIN_BATCHES,
        "batch_size": BATCH, "bert": "tiny random BertConfig (trajectory_common.TINY_BERT), both sides"})
    rows: list[StepRow] = []

    def on_step(step: int, lr_ref: list[float], lr_tk: list[float]) -> None:
        row = step_row(step, lr_ref, lr_tk, maps, ref, tk, ["epoch end"] if step % TRAIN_BATCHES == 0 else [])
        rows.append(row)
        record_step(report, row, tolerance)

    def reference_loop() -> None:
        with patched((train_mod, "MMDataLoader", lambda args: loaders), (train_mod, "build_model", lambda args: ref),
                     (train_mod, "print", lambda *x, **k: None)):
            train_mod.main()

    lock = Lockstep(ref, tk, on_step)
    lock.run(reference_loop, trainer.fit)
    finish_trajectory(report, lock, 30, rows)
    add_movement(report, start, tk)
    name, d, s = worst(mapped_diffs(maps, ref, tk)[0])
    report.add("end of training: parameters", d, tolerance, f"worst: {name}", s)
    lrs = sorted({r.lr_reference[0] for r in rows})
    report.setting["events"] = {"distinct_reference_lrs": len(lrs), "lr_min": lrs[0], "lr_max": lrs[-1]}
    report.not_compared += [
        "the reference's per-epoch metrics and best-test bookkeeping (no effect on the trajectory)"]
    return write_report(report, a.json, dtype)


if __name__ == "__main__":
    sys.exit(main())
