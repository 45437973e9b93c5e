"""Training-trajectory parity of MInD: the toolkit's ``--recipe reference`` Trainer against the authors' trainer.py.

    python benchmarks/parity/trajectory_mind.py --reference-dir /path/to/MInD [--json PATH]

Writes benchmarks/results/parity/parity_mind_trajectory.json unless ``--json`` says otherwise.

The reference side is ``trainer.py``'s own ``Trainer`` (``build()``, ``train()``, ``valid()`` with its
roll-back, ``test()``), configured from ``tasks/mosi/run_mosi.sh`` (AdamW, ExponentialLR 0.5 stepped on
a roll-back, rollback_patience 2, rollback_num 1, the script's loss coefficients, the ramp
2 / (1 + exp(-10 p)) - 1 over epoch_num x batches) with ``epoch_num`` scaled down; its data loaders are
replaced by the fixed batches, ``get_model`` by the prepared model, the logger by a stub, and its
``BTLoss`` is moved to the run's dtype. The toolkit side is :class:`msa_toolkit.training.trainer.Trainer`
with MInD's reference recipe (epochs scaled alike, the ramp over the same number of steps).

Both sides start from the same weights (``parity_mind.weight_map`` plus the BERT, both loading one tiny
random BERT folder of width 768, which the reference's ``Linear(768, embdim)`` hard-codes) with the
bridges of ``parity_mind.py`` (dropouts 0, the backbones' conv padding 0) and the Gaussian inputs of the
noise branch injected per side (:class:`trajectory_common.ThreadNoise`).

The data is built so the run has a roll-back: the validation samples are the training inputs with the
opposite labels, the training labels oppose the sign of the initial predictions (so epoch 1 is the best
on valid, later epochs are worse: a plateau, a roll-back with the LR halved, a second plateau that
restores the best weights and ends the run).
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParityReport, ReferencePositions, base_parser, check_coverage,  # noqa: E402
                           check_reference_dir, import_reference, load_mapped, reference_commit, same,
                           stubbed_modules)
from parity_mind import (COEFFS, EXPECTED_FILES, REF_BACKBONE, REF_ORDER, REF_UNUSED, REPO,  # noqa: E402
                         TK_ORDER, TK_ZERO_DROPOUT, run_script_flags, weight_map, zero_backbone_dropout)
from trajectory_common import (TOLERANCE_F32, TOLERANCE_F64, EpochBatches, ListData, Lockstep, StepRow,  # noqa: E402
                               ThreadNoise, add_movement, finish_trajectory, mapped_diffs, patched, record_step,
                               snapshot, step_row, tiny_bert, token_ids, wide_reference_float, worst, write_report)

#: scaled schedule: 12 epochs of 5 batches of 4 (the run stops earlier, after the second plateau)
EPOCHS, TRAIN_BATCHES, BATCH = 12, 5, 4
#: labels: epoch 1 trains towards the validation labels' sign, later epochs away from it
TOWARD, VALID = 2.0, 1.5
#: sequence length of every modality (50 in the MOSI script; shortened to keep the run small)
LENGTH = 12
#: MOSI feature dims of the reference (run_mosi.py MOSI_Configs)
DIMS = {"audio": 74, "vision": 47}
#: the reference's text head reads BERT-base's width
BERT_WIDTH = 768
#: modules trainer.py imports that the run does not need (the dataset loaders)
LOADER_MODULES = ("dataloaders", "dataloaders.loader_urfunny_v1", "dataloaders.loader_mosi",
                  "dataloaders.loader_mosei")


def _loader_stubs() -> dict[str, types.ModuleType]:
    mods = {}
    for name in LOADER_MODULES:
        mod = types.ModuleType(name)
        for cls in ("URFUNNY_Loader", "MOSI_Loader", "MOSEI_Loader"):
            setattr(mod, cls, type(cls, (), {}))
        mods[name] = mod
    return mods


def import_reference_modules(ref_dir: Path):
    """(trainer, models.model, utils) modules of the checkout; the dataset loaders and torchvision stubbed."""
    with stubbed_modules({**_loader_stubs(), "torchvision": types.ModuleType("torchvision")}):
        trainer_mod = import_reference(ref_dir, "trainer")  # its ``from models.model import *`` brings MyModel
        utils_mod = import_reference(ref_dir, "utils")
    return trainer_mod, trainer_mod.MyModel, utils_mod


def reference_configs(flags: dict[str, str], bert: Path, lr: float, save_dir: Path) -> Namespace:
    """The reference's ``configs`` as run_mosi.py builds them from run_mosi.sh, scaled and bridged."""
    return Namespace({
        "dataset": "MOSI", "device": "cpu", "use_mgpu": False, "use_tsboard": False, "save_checkpoint": True,
        "chkpt_dir": str(save_dir), "embdim": int(flags["embdim"]), "fusedim": int(flags["fusedim"]),
        "bbtf_vhead": 4, "bbtf_ahead": 4, "bbtf_vlayers": 3, "bbtf_alayers": 3, "bertpath": str(bert),
        "enc_dropout": 0.0, "clf_dropout": 0.0, "rev_alpha_type": flags["rev_alpha_type"],
        "activation": flags["activation"], "epoch_num": EPOCHS, "batch_size": BATCH,
        "rollback_num": int(flags["rollback_num"]), "rollback_patience": int(flags["rollback_patience"]),
        **{k: float(flags[k]) for k in COEFFS}, "lr": lr, "clip_grad": flags["clip_grad"] == "True",
        "clip_ts": 1.0, "optimizer": flags["optimizer"], "adam_b1": float(flags["adam_b1"]),
        "adam_b2": float(flags["adam_b2"]), "adam_weight_decay": float(flags["adam_weight_decay"]),
        "scheduler": flags["scheduler"], "explr_gamma": float(flags["explr_gamma"]),
        "ncls": 1, "max_seq_length": LENGTH, "indim_v": DIMS["vision"], "indim_a": DIMS["audio"],
        "indim_t": BERT_WIDTH, "reverse_alpha": 0.0})


class _Logger:
    """The reference's logger, silent."""

    def info(self, *args, **kwargs) -> None:
        pass


def make_inputs(n: int, g: torch.Generator, dtype: torch.dtype) -> list[dict[str, torch.Tensor]]:
    """``n`` batches of inputs (no labels yet), no padding."""
    return [{"audio": torch.randn(BATCH, LENGTH, DIMS["audio"], generator=g, dtype=dtype),
             "vision": torch.randn(BATCH, LENGTH, DIMS["vision"], generator=g, dtype=dtype),
             "tokens": token_ids(BATCH, LENGTH, g)} for _ in range(n)]


def toolkit_batch(x: dict[str, torch.Tensor], label: torch.Tensor, tag: str):
    from msa_toolkit.data.batch import Batch

    full = torch.ones(BATCH, LENGTH, dtype=torch.bool)
    return Batch(text=torch.zeros(BATCH, LENGTH, 1, dtype=x["audio"].dtype), text_mask=full, audio=x["audio"],
                 audio_mask=full, vision=x["vision"], vision_mask=full, label=label, text_tokens=x["tokens"],
                 ids=[f"{tag}{j}" for j in range(BATCH)])


def reference_batch(b) -> tuple:
    """The reference loader's tuple (v, a, y, bert_sent, bert_sent_type, bert_sent_mask)."""
    ids = b.text_tokens
    return (b.vision, b.audio, b.label.view(-1, 1), ids, torch.zeros_like(ids), b.text_mask.long())


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--lr", type=float, default=None, help="learning rate of both sides (default: the MOSI "
                    "script's 3e-5)")
    a = ap.parse_args(argv)
    ref_dir = check_reference_dir(a.reference_dir, (*EXPECTED_FILES, "trainer.py"), REPO)
    from msa_toolkit.models import create_model
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.recipes import get_recipe
    from msa_toolkit.training.trainer import Trainer

    dtype = getattr(torch, a.dtype)
    tolerance = a.tolerance if a.tolerance != base_parser("").get_default("tolerance") else \
        (TOLERANCE_F64 if dtype == torch.float64 else TOLERANCE_F32)
    flags = run_script_flags(ref_dir)
    lr = a.lr if a.lr is not None else float(flags["lr"])
    tmp = Path(tempfile.mkdtemp(prefix="traj_mind_"))
    bert = tiny_bert(tmp / "bert", a.seed, hidden_size=BERT_WIDTH, num_hidden_layers=1)
    trainer_mod, MyModel, utils_mod = import_reference_modules(ref_dir)
    cfg = reference_configs(flags, bert, lr, tmp / "chkpt")
    (tmp / "chkpt").mkdir()
    d = cfg.embdim

    torch.manual_seed(a.seed)
    model_cfg = Namespace({**vars(cfg), "activation": trainer_mod.activations_dict[cfg.activation]})
    ref = MyModel(model_cfg)
    zero_backbone_dropout(ref)
    for name in REF_BACKBONE.values():
        getattr(ref.enc, name).conv.padding = (0,)  # bridged as in parity_mind.py (documented deviation)
    ref.to(dtype)
    recipe = get_recipe("mind", "reference")
    tk = create_model("mind", "mosi", **TK_ZERO_DROPOUT, text_encoder=str(bert), text_len=LENGTH, audio_len=LENGTH,
                      vision_len=LENGTH, grl_warmup_steps=EPOCHS * TRAIN_BATCHES, lr=lr).to(dtype)
    bert_names = [n for n, _ in ref.enc.text_backbone.bertmodel.named_parameters()]
    maps = weight_map(d, tk.config.backbone_layers) + \
        [same(f"enc.text_backbone.bertmodel.{n}", f"text_encoder.model.{n}") for n in bert_names]
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED)
    load_mapped(maps, ref, tk)
    start = snapshot(tk)
    # the backbones' sinusoidal tables: both sides compute them in float32 with different formulas (equal to
    # fp32 rounding, parity_mind.py); this instance reads the reference's so a float64 run is not held to fp32
    table_cls = type(ref.enc.audio_backbone.transformer).__init__.__globals__["SinusoidalPositionalEmbedding"]
    for m in REF_BACKBONE:
        getattr(tk, f"{m}_backbone").pos = ReferencePositions(table_cls, d)

    # data: epoch 1 trains towards the valid labels (the best epoch), later epochs away from them (a plateau)
    g = torch.Generator().manual_seed(a.seed + 1)
    inputs = make_inputs(TRAIN_BATCHES, g, dtype)
    toward = [toolkit_batch(x, torch.full((BATCH,), TOWARD, dtype=dtype), f"t{i}_") for i, x in enumerate(inputs)]
    away = [toolkit_batch(x, torch.full((BATCH,), -TOWARD, dtype=dtype), f"a{i}_") for i, x in enumerate(inputs)]
    epochs = [toward] + [away] * (EPOCHS - 1)
    valid_b = [toolkit_batch(x, torch.full((BATCH,), VALID, dtype=dtype), f"v{i}_") for i, x in enumerate(inputs)]
    test_b = valid_b[:1]
    loader = types.SimpleNamespace(train_dataloader=EpochBatches([[reference_batch(b) for b in e] for e in epochs]),
                                   valid_dataloader=[reference_batch(b) for b in valid_b],
                                   test_dataloader=[reference_batch(b) for b in test_b])

    draws_cache: dict[int, dict[str, torch.Tensor]] = {}

    def draws(k: int) -> dict[str, torch.Tensor]:
        if k not in draws_cache:
            gen = torch.Generator().manual_seed(10_000 + a.seed + k)
            draws_cache[k] = {m: torch.randn(BATCH, d, generator=gen, dtype=dtype) for m in TK_ORDER}
        return draws_cache[k]

    noise = ThreadNoise(draws, {"reference-loop": (REF_ORDER, lambda: ref.training),
                                "MainThread": (TK_ORDER, lambda: tk.training)})

    tc = TrainConfig(**{**recipe.trainer, "epochs": EPOCHS, "batch_size": BATCH, "device": "cpu", "progress": False,
                        "seed": a.seed})
    rollbacks: list[dict] = []
    trainer = Trainer(tk, ListData(epochs, valid_b, test_b, per_epoch=True), tc,
                      callbacks=[lambda t, rec: rollbacks.append({"epoch": rec["epoch"], **rec["rollback"]})
                                 if "rollback" in rec else None])
    report = ParityReport("mind", REPO, reference_commit(ref_dir), {
        "kind": "training trajectory", "dtype": a.dtype, "recipe": "reference", "trainer": tc.to_dict(),
        "reference_configs": {k: v for k, v in vars(cfg).items() if isinstance(v, (int, float, str, bool))},
        "length": LENGTH, "batches_per_epoch": TRAIN_BATCHES, "batch_size": BATCH,
        "bert": f"tiny random BertConfig (trajectory_common.TINY_BERT, hidden {BERT_WIDTH}, 1 layer), both sides"})
    rows: list[StepRow] = []
    grl: list[float] = []

    def on_step(step: int, lr_ref: list[float], lr_tk: list[float]) -> None:
        events = ["epoch end"] if step % TRAIN_BATCHES == 0 else []
        if rows and lr_tk[0] != rows[-1].lr_toolkit[0]:
            events.append("lr changed (roll-back)")
        row = step_row(step, lr_ref, lr_tk, maps, ref, tk, events)
        rows.append(row)
        # the reversal scale this step used: the reference's from (epoch x batches + step), the toolkit's from its
        # objective's counter (advanced in after_step, which runs after this hook)
        grl.append(abs(float(tk.objective.grl_scale()) - float(ref.configs.reverse_alpha)))
        record_step(report, row, tolerance)

    class _BTLoss(utils_mod.BTLoss):  # its BatchNorm buffers in the run's dtype
        def __init__(self, configs):
            super().__init__(configs)
            self.to(dtype)

    reference = trainer_mod.Trainer(cfg, _Logger(), str(tmp / "chkpt"), loader=loader)

    def get_model(self) -> None:
        self.model = ref

    metrics = trainer_mod.Trainer.cal_metrics

    def cal_metrics(self, *args, **kwargs):  # newer scikit-learn returns a float, the loop calls .item() on it
        return np.float64(metrics(self, *args, **kwargs))

    def reference_loop() -> None:
        with patched((trainer_mod.Trainer, "get_model", get_model), (trainer_mod, "BTLoss", _BTLoss),
                     (trainer_mod.Trainer, "cal_metrics", cal_metrics)):
            reference.build()
            reference.train()

    lock = Lockstep(ref, tk, on_step)
    # the reference's HSIC kernel casts to torch.FloatTensor (float32, CPU): in a float64 run, to float64
    # and its fairseq attention's softmax(w.float()): kept in float64 (wide_reference_float)
    wide = [(torch, "FloatTensor", torch.DoubleTensor), wide_reference_float()] if dtype == torch.float64 else []
    # its roll-back reloads its own checkpoint (a numpy float inside) with torch.load's default weights_only=True
    numpy_scalars = [np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]
    with noise.active(), patched(*wide), torch.serialization.safe_globals(numpy_scalars):
        lock.run(reference_loop, trainer.fit)
    finish_trajectory(report, lock, 30, rows)
    add_movement(report, start, tk)
    name, dd, s = worst(mapped_diffs(maps, ref, tk)[0])
    report.add("end of training (best weights restored on both sides): parameters", dd, tolerance,
               f"worst: {name}", s)
    backs = [r for r in rollbacks if not r.get("last")]
    report.add("toolkit: one roll-back, then the final plateau restoring the best weights", 0.0 if len(backs) == 1 and
               len(rollbacks) == 2 else 1.0, 0.0, f"{rollbacks}")
    report.add("gradient-reversal scale used by every step (toolkit counter vs reference epoch x batches + step)",
               max(grl, default=float("inf")), 1e-12, "across the roll-back: the toolkit's counter keeps counting")
    report.setting["events"] = {"rollbacks": rollbacks, "reference_valid_best": reference.valid_best_record,
                                "lrs": sorted({r.lr_reference[0] for r in rows})}
    report.not_compared += [
        "the audio/vision backbones' conv padding (bridged to 0 on the reference, a documented model deviation, "
        "see parity_mind.py)",
        "the toolkit's sinusoidal position table of the audio/vision backbones: they read the reference's table "
        "in this run (the two are equal to fp32 rounding, checked by parity_mind.py)",
        "the reference attention's float32 softmax (softmax(w.float())): kept in float64 in a float64 run",
        "the toolkit objective's step counter after training: the final restore of the best weights brings it "
        "back with them (no step follows; the reference computes its scale from the epoch)",
        "the reference's HSIC kernel in float32: its .type(torch.FloatTensor) (utils.py) is made float64 in a "
        "float64 run (torch.FloatTensor -> torch.DoubleTensor while the loop runs)"]
    return write_report(report, a.json, dtype, REF_UNUSED)


if __name__ == "__main__":
    sys.exit(main())
