"""How OpenMP's waiting policy changes the toolkit's CPU step time, on free and on shared cores.

    python benchmarks/omp_wait.py [--model dlf] [--batch 16] [--rounds 3] [--steps 6] [--busy 0|1]

Each configuration (environment variables for libgomp, torch's OpenMP runtime in the pip wheels) runs
in a fresh process, the configurations alternating over ``--rounds``; a process builds the model at
MOSI aligned shapes (lengths 50/50/50, the ``--preset``, default ``mosi``, the trainer's optimiser and ``msa train``'s
malloc settings), takes 2 untimed training steps, then times ``--steps`` training steps and
``--steps`` inference steps (eval, no grad), and reports wall and CPU seconds per step. ``--busy N``
starts N pure-Python busy loops for the whole run: other work competing for the cores, as on a shared
machine. Results are printed as a markdown table (mean over rounds of the per-process means).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the configurations compared: name -> environment variables set for the child (libgomp reads them at load)
CONFIGS = {
    "PASSIVE (msa's default)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "PASSIVE + GOMP_SPINCOUNT=1000": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
    "PASSIVE + GOMP_SPINCOUNT=10000": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
    "PASSIVE, 1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "MSA_BENCH_THREADS": "1"},
    "unset (libgomp: 300,000 spins)": {},
}

CHILD = r"""
import json, os, resource, sys, time
import torch
sys.path.insert(0, sys.argv[1])
from msa_toolkit.allocator import keep_freed_memory
from msa_toolkit.data.batch import Batch
from msa_toolkit.models import create_model
from msa_toolkit.training.config import TrainConfig
from msa_toolkit.training.optim import build_optimizer
keep_freed_memory()
torch.set_num_threads(int(os.environ.get("MSA_BENCH_THREADS", "2")))
model_name, B, steps, preset = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
model = create_model(model_name, preset, text_len=50, audio_len=50, vision_len=50)
c = model.config
dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
x = {m: torch.randn(B, 50, d) for m, d in dims.items()}
masks = {f"{m}_mask": torch.ones(B, 50, dtype=torch.bool) for m in x}
batch = Batch(label=torch.empty(B).uniform_(-3, 3), **x, **masks)
opt = build_optimizer(model, TrainConfig())
def train():
    model.train(); opt.zero_grad(set_to_none=True)
    model.objective(model(batch), batch).total.backward(); opt.step(); model.objective.after_step(model)
def infer():
    model.eval()
    with torch.no_grad():
        model(batch)
out = {}
for name, f in (("train", train), ("infer", infer)):
    f(); f()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        f()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    out[name] = {"wall": (t1 - t0) / steps, "cpu": cpu / steps}
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dlf")
    ap.add_argument("--preset", default="mosi")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--busy", type=int, default=0, help="pure-Python busy loops competing for the cores")
    a = ap.parse_args(argv)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(a.busy)]
    res: dict[str, list[dict]] = {k: [] for k in CONFIGS}
    try:
        for r in range(a.rounds):
            for name, env in CONFIGS.items():
                child_env = {k: v for k, v in os.environ.items()
                             if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MSA_BENCH_THREADS")}
                child_env.update(env)
                cmd = [sys.executable, "-c", CHILD, str(ROOT), a.model, str(a.batch), str(a.steps), a.preset]
                p = subprocess.run(cmd, env=child_env, capture_output=True, text=True, check=True)
                res[name].append(json.loads(p.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {name}: {res[name][-1]}", flush=True)
    finally:
        for b in busy:
            b.kill()
    load = "free cores" if not a.busy else f"{a.busy} busy loop(s) competing"
    print(f"\n{a.model} ({a.preset}), B = {a.batch}, aligned 50/50/50, {a.rounds} rounds x {a.steps} steps, {load}; "
          f"seconds per step, mean over rounds\n")
    print("| configuration | train wall s | train CPU s | inference wall s | inference CPU s |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in res.items():
        m = {f"{ph}_{k}": statistics.mean(x[ph][k] for x in runs)
             for ph in ("train", "infer") for k in ("wall", "cpu")}
        cells = " | ".join(f"{m[k]:.3f}" for k in ("train_wall", "train_cpu", "infer_wall", "infer_cpu"))
        print(f"| {name} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
