"""Side-by-side speed of each seed model and the authors' implementation (samples/s, toolkit ÷ reference).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/reference_speed.py \\
        --reference-dir almt=/path/ALMT dlf=/path/DLF mind=/path/MInD mmcl=/path/MMCL [--rounds 3] [--device cpu|cuda] [--threads N]
        [--precision fp32|bf16]

The authors' code is imported from the given checkouts (never copied into this repository;
BERT bypassed: both sides take 768-d text features). For each setting both models are built
at the same shapes and batch, fed the same tensors, in one process with the same thread
count; each round times ``--steps`` training steps (forward + the full loss + backward +
optimiser step: the toolkit config's optimiser class and settings on both sides, built by the
toolkit's trainer on its side (fused kernels) and as plain ``torch.optim`` on the reference's;
MMCL's reference runs its ``train.py`` step with three optimisers) and ``--steps``
inference steps (eval mode, no grad) of one side, then of the other, the order alternating
between rounds. Reported: samples/s per side (median over rounds) and the median over rounds
of the per-round toolkit ÷ reference ratio. Both sides run with their published dropout and
masking settings (the reference DLF with its causal mask and unpadded k = 5 convolutions).
Inputs have no padding (the references take none). ``--precision bf16`` runs every step of both
sides under ``torch.autocast(device, bfloat16)`` (the toolkit trainer's ``precision=bf16``; the
reference code has no mixed precision of its own, so it gets the same autocast), on CUDA or on a
CPU with bf16 instructions.

``OMP_WAIT_POLICY=PASSIVE`` is set before torch is imported unless the environment sets it:
on a shared machine OpenMP's spin-waiting makes identical steps vary by 10x. ``--malloc tuned``
(default) applies ``msa train``'s glibc malloc settings (``msa_toolkit/allocator.py``: freed memory
kept for reuse) to the process, so both sides run with them; ``--malloc default`` keeps glibc's.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see the module docstring)

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "parity"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from parity_common import check_reference_dir, reference_commit  # noqa: E402

#: input widths text / audio / vision: the ALMT/DLF MOSI features (MMSA pickles)
DIMS = {"text": 768, "audio": 5, "vision": 20}
#: MInD / MMCL MOSI inputs (BERT 768, COVAREP 74, FACET 47; the toolkit presets' MOSI_ALIGNED_INPUTS)
ALIGNED_DIMS = {"text": 768, "audio": 74, "vision": 47}


@dataclass(frozen=True)
class Setting:
    """One measured configuration."""

    # seed model (registry name) and the reference checkout key
    model: str
    # label shown in the table
    label: str
    # sequence lengths text / audio / vision
    lengths: tuple[int, int, int]
    # batch size
    batch: int
    # input widths text / audio / vision
    dims: tuple[int, int, int] = tuple(DIMS.values())
    # toolkit model-config overrides on top of the "mosi" preset, as (field, value) pairs
    overrides: tuple[tuple[str, object], ...] = ()


SETTINGS = (
    Setting("almt", "unaligned 50/375/500", (50, 375, 500), 64),
    Setting("dlf", "aligned 50/50/50", (50, 50, 50), 16),
    Setting("dlf", "aligned 50/50/50", (50, 50, 50), 64),
    Setting("dlf", "unaligned 50/375/500", (50, 375, 500), 16),
    # the MOSI run scripts' batches: MInD run_mosi.sh 32, MMCL train.py 128 (aligned 50-step inputs)
    Setting("mind", "aligned 50/50/50", (50, 50, 50), 32, tuple(ALIGNED_DIMS.values())),
    Setting("mmcl", "aligned 50/50/50", (50, 50, 50), 128, tuple(ALIGNED_DIMS.values())),
    # the same with the authors' attention-only common block (the reference recipe's): equal architecture
    Setting("mmcl", "aligned 50/50/50, common_block=attention", (50, 50, 50), 128, tuple(ALIGNED_DIMS.values()),
            (("common_block", "attention"),)),
)


@dataclass
class Side:
    """One side of a comparison: a model and its train / inference step on fixed tensors."""

    model: torch.nn.Module
    # forward + loss on the fixed batch -> scalar loss
    loss: Callable[[], torch.Tensor]
    # forward only (called under no_grad, eval mode)
    infer: Callable[[], object]
    optimizer: torch.optim.Optimizer | None = None
    # a whole training step of its own (several optimisers / backward passes), replacing the default one
    step: Callable[[], None] | None = None
    # after the optimiser step (the toolkit trainer's ``objective.after_step``)
    after_step: Callable[[], None] | None = None

    def train_step(self) -> None:
        if self.step is not None:
            self.step()
            return
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step()

    def infer_step(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.infer()


def _inputs(s: Setting, device: torch.device, seed: int = 0):
    """Same random tensors for both sides: dict of [B, L, D] features, masks (all valid), labels."""
    from msa_toolkit.data.batch import Batch

    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(s.batch, L, D, generator=g).to(device) for m, L, D in zip(DIMS, s.lengths, s.dims)}
    label = torch.empty(s.batch).uniform_(-3, 3, generator=g).to(device)
    masks = {f"{m}_mask": torch.ones(s.batch, L, dtype=torch.bool, device=device) for m, L in zip(DIMS, s.lengths)}
    return x, label, Batch(label=label, **x, **masks)


def _toolkit_side(name: str, s: Setting, batch, device: torch.device) -> Side:
    from msa_toolkit.models import create_model

    L = dict(zip(DIMS, s.lengths))
    lengths = {} if name in ("mind", "mmcl") else dict(text_len=L["text"], audio_len=L["audio"],
                                                       vision_len=L["vision"])
    model = create_model(name, "mosi", **lengths, **dict(s.overrides)).to(device)

    def loss():
        return model.objective(model(batch), batch).total

    # inference: MSAModel.predict, what `msa predict` runs (DLF skips the objective-only reconstructions there)
    return Side(model, loss, lambda: model.predict(batch), after_step=lambda: model.objective.after_step(model))


def _optimizer(tk: torch.nn.Module, params) -> torch.optim.Optimizer:
    """The toolkit config's optimiser class and settings as the reference code builds it (plain torch)."""
    c = tk.config
    cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=c.lr, weight_decay=c.weight_decay)


def _toolkit_optimizer(tk: torch.nn.Module) -> torch.optim.Optimizer:
    """What the toolkit's trainer builds for this model (same class and settings; fused kernels)."""
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.optim import build_optimizer

    return build_optimizer(tk, TrainConfig())


def build_almt(ref_dir: Path, s: Setting, device: torch.device) -> tuple[Side, Side]:
    import parity_almt

    x, label, batch = _inputs(s, device)
    tk = _toolkit_side("almt", s, batch, device)
    ref_model, _ = parity_almt.build_reference(ref_dir)
    ref_model.to(device)

    def loss():
        return F.mse_loss(ref_model(x["vision"], x["audio"], x["text"]), label.view(-1, 1))

    return Side(ref_model, loss, lambda: ref_model(x["vision"], x["audio"], x["text"])), tk


def build_dlf(ref_dir: Path, s: Setting, device: torch.device) -> tuple[Side, Side]:
    import parity_dlf

    x, label, batch = _inputs(s, device)
    tk = _toolkit_side("dlf", s, batch, device)
    model_mod, hinge_mod, cfg = parity_dlf.import_reference_modules(ref_dir)
    aligned = s.lengths[1] == s.lengths[0]
    mosi = cfg["DLF"]["datasetParams"]["mosi"]
    args = parity_dlf.reference_args(cfg, aligned=aligned, kernel=mosi["conv1d_kernel_size_l"], attn_mask=True,
                                     dims=tuple(DIMS.values()), keep_dropout=True)
    ref_model = model_mod.DLF(args).to(device)
    hinge, num = hinge_mod.HingeLoss(), mosi["dst_feature_dim_nheads"][0]

    def loss():
        out = ref_model(x["text"], x["audio"], x["vision"])
        return parity_dlf.reference_loss(out, label, hinge, num)["total"]

    return Side(ref_model, loss, lambda: ref_model(x["text"], x["audio"], x["vision"])), tk


def build_mind(ref_dir: Path, s: Setting, device: torch.device) -> tuple[Side, Side]:
    """MInD at its MOSI run script (dropouts as published, the backbones' Conv1d padding as published)."""
    import parity_mind

    x, label, batch = _inputs(s, device)
    tk = _toolkit_side("mind", s, batch, device)
    model_mod, utils_mod = parity_mind.import_reference_modules(ref_dir)
    flags = parity_mind.run_script_flags(ref_dir)
    coef = {k: float(flags[k]) for k in parity_mind.COEFFS}
    cfg = parity_mind.reference_configs(flags, parity_mind.ramp(parity_mind.GRL_STEP))
    cfg.enc_dropout, cfg.clf_dropout = float(flags["enc_dropout"]), float(flags["clf_dropout"])
    cfg.indim_a, cfg.indim_v = s.dims[1], s.dims[2]
    ref_model = model_mod.MyModel(cfg).to(device)
    fns = (utils_mod.DJSLoss(), utils_mod.BTLoss(cfg), utils_mod.HSICLoss())
    ones = torch.ones(s.batch, s.lengths[0], device=device)

    def forward():
        return ref_model(x["vision"], x["audio"], x["text"], None, ones)

    def loss():
        return parity_mind.reference_losses(ref_model, forward(), label, fns, coef)["total"]

    return Side(ref_model, loss, forward), tk


def build_mmcl(ref_dir: Path, s: Setting, device: torch.device) -> tuple[Side, Side]:
    """MMCL: the reference's train.py step (model + actor on the classification loss, then the critic's TD
    loss and the actor's -Q loss on the batch's transition, three Adam optimisers, soft target updates)
    against the toolkit's single step; the reference's IEMOCAP head (8 logits, cross-entropy) is kept."""
    import copy

    import parity_mmcl
    from parity_common import import_reference

    x, label, batch = _inputs(s, device)
    tk = _toolkit_side("mmcl", s, batch, device)
    network = import_reference(ref_dir, "network")
    c = tk.model.config
    args = parity_mmcl.reference_args(c.d_model, c.seq_len, c.num_heads, dict(zip(DIMS, s.dims)))
    args.dropout, args.atten_dropout = 0.5, 0.0  # train.py defaults
    nets = torch.nn.ModuleDict({"model": network.Model(args), "actor": network.Actor(args),
                                "critic": network.Critic(args)}).to(device)
    actor_t, critic_t = copy.deepcopy(nets["actor"]), copy.deepcopy(nets["critic"])
    opts = {k: torch.optim.Adam(nets[k].parameters(), lr=c.lr) for k in nets}
    g = torch.Generator().manual_seed(1)
    cls_label = torch.randint(0, 2, (s.batch * 4,), generator=g).to(device)  # 4 binary emotion labels per sample
    ce, l1, w1, w2, tau = torch.nn.CrossEntropyLoss(reduction="none"), torch.nn.L1Loss(), 7, 13.0, 0.01
    model, actor, critic = nets["model"], nets["actor"], nets["critic"]

    def step():
        nets.train()
        opts["model"].zero_grad(), opts["actor"].zero_grad()
        shared, diff = model(x["text"], x["audio"], x["vision"])
        state = diff.detach()
        action = actor(state)
        pred = actor.predictor(shared, actor.update_state(diff, action)).view(-1, 2)
        (ce(pred, cls_label).mean() * w1).backward()
        opts["model"].step(), opts["actor"].step()
        r = torch.gather(torch.softmax(pred, 1), 1, cls_label.view(-1, 4)).sum(1).detach()
        a1 = action.detach()
        s2 = actor.update_state(state, a1)
        opts["critic"].zero_grad()
        target = critic_t(s2, actor_t(s2)) * 0.5 + r
        (torch.mean(l1(critic(state, a1), target)) * w2).backward()
        opts["critic"].step()
        opts["actor"].zero_grad()
        (-1 * torch.mean(critic(state, actor(state))) * w2).backward()
        opts["actor"].step()
        with torch.no_grad():
            for tgt, src in ((critic_t, critic), (actor_t, actor)):
                for tp, p in zip(tgt.parameters(), src.parameters()):
                    tp.data.copy_(tp.data * (1.0 - tau) + p.data * tau)

    def infer():
        shared, diff = model(x["text"], x["audio"], x["vision"])
        return actor.predictor(shared, actor.update_state(diff, actor(diff)))

    return Side(nets, lambda: None, infer, step=step), tk


BUILDERS = {"almt": build_almt, "dlf": build_dlf, "mind": build_mind, "mmcl": build_mmcl}
REPOS = {"almt": "Haoyu-ha/ALMT", "dlf": "pwang322/DLF", "mind": "WeeeicheN/MInD", "mmcl": "smwanghhh/MMCL"}
EXPECTED = {"almt": ("models/almt.py",), "dlf": ("trains/singleTask/model/DLF.py",), "mind": ("models/model.py",),
            "mmcl": ("network.py",)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], steps: int, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - t0


def _autocast(fn: Callable[[], None], device: torch.device, precision: str) -> Callable[[], None]:
    """``fn`` under bf16 autocast (``precision == "bf16"``), or ``fn`` itself (fp32)."""
    if precision == "fp32":
        return fn

    def run() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            fn()
    return run


def measure(ref: Side, tk: Side, s: Setting, rounds: int, steps: int, device: torch.device,
            precision: str = "fp32") -> dict:
    """Alternating rounds; returns per-phase samples/s lists and ratios."""
    ref.optimizer = _optimizer(tk.model, ref.model.parameters())
    tk.optimizer = _toolkit_optimizer(tk.model)
    train = {"reference": _autocast(ref.train_step, device, precision),
             "toolkit": _autocast(tk.train_step, device, precision)}
    infer = {"reference": _autocast(ref.infer_step, device, precision),
             "toolkit": _autocast(tk.infer_step, device, precision)}
    for who in train:  # warm-up: one untimed step of each kind
        train[who]()
        infer[who]()
    res: dict[str, dict[str, list[float]]] = {p: {"toolkit": [], "reference": [], "ratio": []}
                                              for p in ("train", "inference")}
    for r in range(rounds):
        order = (("reference", ref), ("toolkit", tk)) if r % 2 == 0 else (("toolkit", tk), ("reference", ref))
        per: dict[str, dict[str, float]] = {"train": {}, "inference": {}}
        for who, _ in order:
            per["train"][who] = steps * s.batch / _time(train[who], steps, device)
            per["inference"][who] = steps * s.batch / _time(infer[who], steps, device)
        for phase, v in per.items():
            res[phase]["toolkit"].append(v["toolkit"])
            res[phase]["reference"].append(v["reference"])
            res[phase]["ratio"].append(v["toolkit"] / v["reference"])
        print(f"  round {r + 1}: train tk {per['train']['toolkit']:.1f} ref {per['train']['reference']:.1f}  "
              f"infer tk {per['inference']['toolkit']:.1f} ref {per['inference']['reference']:.1f} samples/s",
              flush=True)
    return res


#: profiler op names counted as matrix-multiply work (self CPU time): GEMMs, convolutions and the fused
#: attention kernels (two GEMMs and a softmax each)
GEMM_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm",
                      "aten::mkldnn_convolution", "aten::convolution_backward",
                      "aten::_scaled_dot_product_flash_attention_for_cpu",
                      "aten::_scaled_dot_product_flash_attention_for_cpu_backward"})


def gemm_share(fn: Callable[[], None]) -> dict[str, float]:
    """One profiled call of ``fn`` (CPU): total self CPU time and the part in :data:`GEMM_OPS`, in seconds."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / 1e6
    return {"total_s": total, "gemm_s": gemm, "share": gemm / total if total else 0.0}


def gemm_bound(ref: Side, tk: Side, device: torch.device, precision: str) -> dict[str, dict]:
    """Per phase, each side's matrix-multiply share of one profiled step, and the ceiling of the ratio with
    the toolkit's arithmetic: reference step time / toolkit GEMM time (what toolkit ÷ reference would be if
    the toolkit's step were its matrix multiplications and nothing else)."""
    out = {}
    for phase, attr in (("train", "train_step"), ("inference", "infer_step")):
        r = gemm_share(_autocast(getattr(ref, attr), device, precision))
        t = gemm_share(_autocast(getattr(tk, attr), device, precision))
        out[phase] = {"reference": r, "toolkit": t,
                      "ceiling": r["total_s"] / t["gemm_s"] if t["gemm_s"] else float("inf")}
    return out


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# Toolkit vs the authors' code: samples/s side by side", "",
             f"Measured {meta['date']} on {meta['machine']}, device `{meta['device']}`, {meta['threads']} "
             f"thread(s), OMP_WAIT_POLICY={meta['omp_wait_policy']}, torch {meta['torch']}, "
             f"precision {meta.get('precision', 'fp32')} on both sides, glibc malloc "
             f"{meta.get('malloc', 'default')} for the process; "
             f"{meta['rounds']} rounds × {meta['steps']} step(s) per phase, sides alternating in one process.", "",
             "Command:", "", "```", meta["command"], "```", "",
             "References (BERT bypassed, 768-d text features on both sides):", ""]
    lines += [f"- {k}: `{v['repo']}` @ `{v['commit']}`" for k, v in meta["references"].items()]
    lines += ["", "| model | setting | B | phase | toolkit samples/s | reference samples/s | toolkit ÷ reference |"
              " params tk / ref |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['setting']} | {r['batch']} | — | — | — | error: {r['error']} | — |")
            continue
        for phase in ("train", "inference"):
            p = r[phase]
            lines.append(f"| {r['model']} | {r['setting']} | {r['batch']} | {phase} | {p['toolkit']:.1f} | "
                         f"{p['reference']:.1f} | **{p['ratio']:.2f}×** | {r['params_toolkit']:,} / "
                         f"{r['params_reference']:,} |")
    bound = [r for r in rows if "gemm" in r]
    if bound:
        lines += ["", "Matrix-multiply share of one profiled step per side (self CPU time in GEMMs, convolutions "
                  "and fused attention kernels: `GEMM_OPS`), and the ceiling of toolkit ÷ reference with the "
                  "toolkit's matrix multiplications (reference step time ÷ toolkit GEMM time: the ratio if the "
                  "toolkit's step were its GEMMs alone):", "",
                  "| model | setting | B | phase | reference: GEMM s / step s (share) | toolkit: GEMM s / step s "
                  "(share) | ceiling with the toolkit's GEMMs |", "|---|---|---|---|---|---|---|"]
        for r in bound:
            for phase in ("train", "inference"):
                g = r["gemm"][phase]
                ref_g, tk_g = g["reference"], g["toolkit"]
                lines.append(f"| {r['model']} | {r['setting']} | {r['batch']} | {phase} | "
                             f"{ref_g['gemm_s']:.3f} / {ref_g['total_s']:.3f} ({ref_g['share']:.0%}) | "
                             f"{tk_g['gemm_s']:.3f} / {tk_g['total_s']:.3f} ({tk_g['share']:.0%}) | "
                             f"{g['ceiling']:.2f}× |")
    lines += ["", "samples/s: median over rounds; ratio: median over rounds of the per-round ratio.",
              "Train = forward + full loss + backward + optimiser step (the toolkit config's optimiser on both "
              "sides: the trainer's fused one on the toolkit's, plain torch.optim on the reference's); inference = "
              "eval mode without gradients: the toolkit's `model.predict` (what `msa predict` runs; DLF skips "
              "the tensors only its objective reads; DLF's CPU batches over its one-thread limit run as parts on "
              "one intra-op thread each, concurrently), the reference's forward.", ""]
    return "\n".join(lines)


def parse_refs(items: list[str]) -> dict[str, Path]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"error: --reference-dir takes NAME=PATH (NAME in {sorted(REPOS)}), got {it!r}")
        name, path = it.split("=", 1)
        if name not in REPOS:
            raise SystemExit(f"error: unknown model {name!r} in --reference-dir; expected one of {sorted(REPOS)}")
        out[name] = check_reference_dir(path, EXPECTED[name], REPOS[name])
    if not out:
        raise SystemExit("error: give at least one --reference-dir NAME=PATH (checkouts of "
                         + ", ".join(f"github.com/{r}" for r in REPOS.values()) + ")")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-dir", nargs="+", default=[], metavar="NAME=PATH")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per phase, side and round")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="bf16: both sides under torch.autocast(bfloat16), as the trainer's precision=bf16")
    ap.add_argument("--gemm-share", action="store_true",
                    help="CPU: also profile one step per side and phase and report the matrix-multiply share and "
                         "the ratio's ceiling at equal matrix-multiply work")
    ap.add_argument("--only", default="", help="comma-separated 'model' or 'model:B' filters")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="tuned: msa train's glibc malloc settings for the whole process (both sides); default: glibc's")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reference_speed"),
                    help="output path without extension: OUT.md, and the raw rounds in OUT/<name>.json")
    a = ap.parse_args(argv)
    if a.gemm_share and torch.device(a.device).type != "cpu":
        raise SystemExit("error: --gemm-share profiles CPU self time; run it with --device cpu")
    refs = parse_refs(a.reference_dir)
    from benchmarks.malloc_choice import apply_choice

    malloc = apply_choice(a.malloc)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    only = [x for x in a.only.split(",") if x]
    rows: list[dict] = []
    for s in SETTINGS:
        if s.model not in refs or (only and s.model not in only and f"{s.model}:{s.batch}" not in only):
            continue
        print(f"{s.model} {s.label} B={s.batch}", flush=True)
        row = {"model": s.model, "setting": s.label, "batch": s.batch, "lengths": s.lengths}
        try:
            torch.manual_seed(0)
            ref, tk = BUILDERS[s.model](refs[s.model], s, device)
            res = measure(ref, tk, s, a.rounds, a.steps, device, a.precision)
            for phase, v in res.items():
                row[phase] = {k: statistics.median(x) for k, x in v.items()}
                row[phase]["rounds"] = v
            row.update(params_toolkit=_params(tk.model), params_reference=_params(ref.model))
            if a.gemm_share:
                row["gemm"] = gemm_bound(ref, tk, device, a.precision)
        except Exception as e:  # a failing setting is a row with its error, the others still run
            row["error"] = f"{type(e).__name__}: {e}"
            print(f"  error: {row['error']}", flush=True)
        rows.append(row)
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()} "
            f"{os.cpu_count()} CPU(s)" + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
            "device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "rounds": a.rounds, "steps": a.steps,
            "precision": a.precision, "malloc": malloc,
            "command": "python benchmarks/reference_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "references": {k: {"repo": REPOS[k], "commit": reference_commit(p)} for k, p in refs.items()}}
    out = Path(a.out)
    raw = out / f"{out.name}.json"  # results/reference_speed/reference_speed.json beside results/reference_speed.md
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
