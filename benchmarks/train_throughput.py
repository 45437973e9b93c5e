"""Training and inference throughput (samples/s) of every registered model on MOSI-shaped batches.

Batches are random, partially padded, with the MOSI unaligned shapes: lengths
text 50 / audio 375 / vision 500 and dims 768 / 5 / 20 (``synthetic_batch``).
Each model is built with its ``mosi`` preset (the published configuration)
when it has one. A training step is exactly what the Trainer does: forward,
objective, backward, gradient clipping from the config, optimiser step,
``objective.after_step``. Reported: median over ``--steps`` timed steps after
``--warmup`` untimed ones.

Run: ``python benchmarks/train_throughput.py [--device cpu|cuda] [--batch-size 32] [--steps 5]
[--models a,b] [--precision fp32|bf16|fp16] [--threads N] [--compile] [--out benchmarks/results/train_throughput.md]``.
``--compile`` runs the training step (model + objective) through ``torch.compile``, as ``msa train --compile``
does; the first warm-up step (compilation) is reported apart as ``first step s``. The process gets
``msa train``'s glibc malloc settings (``msa_toolkit/allocator.py``) unless ``--malloc default``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from msa_toolkit.data.batch import synthetic_batch  # noqa: E402
from msa_toolkit.models import create_model, get_entry, list_models  # noqa: E402
from msa_toolkit.training.config import TrainConfig  # noqa: E402
from msa_toolkit.training.optim import build_optimizer, resolve_precision  # noqa: E402
from msa_toolkit.training.step import TrainStep  # noqa: E402

LENGTHS = (50, 375, 500)
DIMS = (768, 5, 20)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name: str, device: torch.device, batch_size: int, steps: int, warmup: int, precision: str,
            compile_step: bool = False) -> dict:
    preset = "mosi" if "mosi" in get_entry(name).presets else None
    torch.manual_seed(0)
    model = create_model(name, preset, text_dim=DIMS[0], audio_dim=DIMS[1], vision_dim=DIMS[2],
                         text_len=LENGTHS[0], audio_len=LENGTHS[1], vision_len=LENGTHS[2]).to(device)
    step = TrainStep(model)
    if compile_step:
        step = torch.compile(step)
    opt = build_optimizer(model, TrainConfig())
    amp = resolve_precision(precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    clip = float(getattr(model.config, "grad_clip_norm", 0.0) or 0.0)
    clipv = float(getattr(model.config, "grad_clip_value", 0.0) or 0.0)
    batches = [synthetic_batch(batch_size, LENGTHS, DIMS, seed=i).to(device) for i in range(2)]

    def ctx():
        return torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast(device.type,
                                                                                               enabled=False)

    def train_step(b):
        model.train()
        with ctx():
            _, total, _ = step(b)
        (scaler.scale(total.float()) if scaler else total.float()).backward()
        if scaler:
            scaler.unscale_(opt)
        params = [p for p in model.parameters() if p.grad is not None]
        if clipv:
            torch.nn.utils.clip_grad_value_(params, clipv)
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.objective.after_step(model)

    @torch.no_grad()
    def infer_step(b):
        model.eval()
        with ctx():
            model(b)

    out = {"model": name, "preset": preset or "-", "params": model.num_parameters()}
    for kind, fn in (("train", train_step), ("infer", infer_step)):
        for i in range(warmup):
            t0 = time.perf_counter()
            fn(batches[i % 2])
            _sync(device)
            if i == 0 and kind == "train":
                out["first_step_s"] = time.perf_counter() - t0  # includes compilation with --compile
        _sync(device)
        times = []
        for i in range(steps):
            t0 = time.perf_counter()
            fn(batches[i % 2])
            _sync(device)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[f"{kind}_ms"] = 1000 * med
        out[f"{kind}_sps"] = batch_size / med
    if device.type == "cuda":
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", default="", help="comma-separated subset (default: every registered model)")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 | auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training step (msa train --compile)")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="tuned: msa train's glibc malloc settings (freed memory kept for reuse); default: glibc's")
    ap.add_argument("--out", type=Path, default=None, help="write a markdown table (default: print only)")
    args = ap.parse_args(argv)
    from benchmarks.malloc_choice import apply_choice

    malloc = apply_choice(args.malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "cuda" else "cuda:0")
    names = [m for m in args.models.split(",") if m] or list_models()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for name in names:
        r = measure(name, device, args.batch_size, args.steps, args.warmup, args.precision, args.compile)
        rows.append(r)
        print(f"{name:12s} train {r['train_sps']:8.1f} samples/s ({r['train_ms']:.0f} ms/step)   "
              f"infer {r['infer_sps']:8.1f} samples/s   params {r['params']:,}", flush=True)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                                  or platform.machine())
    header = [
        "# Training throughput on MOSI-shaped batches",
        "",
        f"Command: `python benchmarks/train_throughput.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
        f"device {device} ({dev_name}); CPU threads {torch.get_num_threads()} of {os.cpu_count()} cores",
        f"- batch {args.batch_size}; lengths text/audio/vision {LENGTHS}; dims {DIMS}; precision {args.precision}; "
        f"median of {args.steps} steps after {args.warmup} warm-up"
        + ("; training step compiled (torch.compile)" if args.compile else "") + f"; glibc malloc {malloc}",
        "- a train step = forward + objective + backward + clipping + optimiser step + after_step",
        f"- 1-min load average at start: {load:.1f} (other processes on a shared machine lower these numbers)",
        "",
        "| model | preset | trainable params | train samples/s | train ms/step | inference samples/s | first step s |"
        + (" peak MiB |" if device.type == "cuda" else ""),
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|" if device.type == "cuda" else ""),
    ]
    lines = [f"| {r['model']} | {r['preset']} | {r['params']:,} | {r['train_sps']:.1f} | {r['train_ms']:.0f} | "
             f"{r['infer_sps']:.1f} | {r.get('first_step_s', float('nan')):.1f} |"
             + (f" {r['peak_mem_mib']:.0f} |" if device.type == "cuda" else "")
             for r in rows]
    text = "\n".join(header + lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)  # the current result only; earlier ones live in git
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
