"""MMCL on one-step (utterance-level) features: the grid capped at the input length vs the 50-slot grid.

Before the cap, MMCL resampled every modality onto ``seq_len`` = 50 slots even when each utterance has one
feature vector per modality (the MOSI utterance release), so every layer ran on 50 copies of one step. Both
sides here train the same model (default config, dims 100/73/100 as the MOSI utterance features) from the same
weights on the same batch of 128; the full-grid side sets ``model.grid = seq_len`` as the code did before the
cap. Training steps alternate side by side over ``--rounds``; medians are reported, and the two sides'
predictions in eval mode are compared (they must be equal: no positions, so 50 identical slots compute as one).
Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/mmcl_grid.py [--rounds 5] [--out benchmarks/results/mmcl_grid.md]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from msa_toolkit.data.batch import synthetic_batch  # noqa: E402
from msa_toolkit.models import create_model  # noqa: E402

DIMS = dict(text_dim=100, audio_dim=73, vision_dim=100)  # the MOSI utterance features (Poria et al.)
BATCH = 128  # MMCL's default batch size


def build(grid: int | None):
    torch.manual_seed(0)
    model = create_model("mmcl", **DIMS, text_len=1, audio_len=1, vision_len=1)
    if grid is not None:
        model.grid = grid
    return model, torch.optim.Adam(model.parameters(), 3e-4)


def step(model, opt, batch) -> float:
    t = time.perf_counter()
    out = model(batch)
    model.objective(out, batch).total.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batch = synthetic_batch(BATCH, (1, 1, 1), (DIMS["text_dim"], DIMS["audio_dim"], DIMS["vision_dim"]), seed=0)
    capped, full = build(None), build(create_model("mmcl").config.seq_len)
    with torch.no_grad():
        diff = (capped[0].eval()(batch).prediction - full[0].eval()(batch).prediction).abs().max().item()
    capped[0].train(), full[0].train()
    times = {"capped": [], "full": []}
    sides = [("capped", capped), ("full", full)]
    for _ in range(a.rounds):
        for name, (model, opt) in sides:
            times[name].append(step(model, opt, batch))
    med = {k: statistics.median(v) for k, v in times.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [
        "# MMCL on one-step features: grid capped at the input length",
        "",
        "**Method.** `benchmarks/mmcl_grid.py`: MMCL's default config on one-step inputs of the MOSI utterance "
        "dims (100/73/100), batch 128; one side with the grid capped at the input length (1 slot, the code now), "
        "the other with the 50-slot grid the code used before; training steps alternate in one process, medians.",
        "",
        f"- Command: `OMP_WAIT_POLICY=PASSIVE python benchmarks/mmcl_grid.py --rounds {a.rounds} --threads "
        f"{a.threads} --out benchmarks/results/mmcl_grid.md`",
        f"- Measured: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit.strip()}`; "
        f"{platform.machine()} CPU, torch {torch.__version__}, {a.threads} thread(s)",
        "",
        "| grid | s per training step (median) |",
        "|---|---:|",
        f"| 50 slots (before) | {med['full']:.3f} |",
        f"| 1 slot (capped) | {med['capped']:.3f} |",
        "",
        f"Speed-up: **{med['full'] / med['capped']:.1f}x**; largest difference between the two sides' eval "
        f"predictions: {diff:.1e}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
