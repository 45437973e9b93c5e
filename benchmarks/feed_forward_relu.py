"""A ReLU feed-forward block with its first linear and ReLU fused in oneDNN, against linear then ReLU.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/feed_forward_relu.py [--rounds 20] [--threads 2] [--out PATH]

``transformer.FeedForward`` with ``act="relu"`` computes its hidden layer with ``linear.linear_relu`` (the ReLU
as the oneDNN product's post-op; ReLU's backward on the saved output). This times the block both ways in one
process, the two sides alternating every round (the order swapping between rounds), at the shapes of the seed
models' feed-forwards that take oneDNN: MMCL's critic [128, 50, 260] -> 2048, MMCL's temporal encoders [128, 50,
256] -> 2048, MInD's backbone [32, 50, 512] -> 2048 (its first layer; the last one computes one step). Phases:
forward + backward in train mode (dropout 0.1) with input and weight gradients, and the forward in eval mode
without gradients. ``msa train``'s malloc settings apply. Reported: median times and the median over rounds of
the per-round ratio unfused / fused (> 1: the fused block is faster). Writes ``--out``.md and .json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see benchmarks/omp_wait.py)

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

#: (batch, length, width, hidden) of the feed-forwards measured (see the module docstring)
SHAPES = ((128, 50, 260, 2048), (128, 50, 256, 2048), (32, 50, 512, 2048))


def measure(rounds: int) -> list[dict]:
    from msa_toolkit.models import linear as lin
    from msa_toolkit.models import transformer

    fused = transformer.linear_relu
    sides = {"fused": fused, "unfused": lambda x, w, b: F.relu(lin.linear(x, w, b))}
    rows = []
    try:
        for B, L, d, hidden in SHAPES:
            torch.manual_seed(0)
            ff = transformer.FeedForward(d, hidden, dropout=0.1)
            x = torch.randn(B, L, d, requires_grad=True)
            g = torch.randn(B, L, d)

            def train() -> None:
                ff.train()
                ff.zero_grad(set_to_none=True)
                x.grad = None
                ff(x).backward(g)

            def infer() -> None:
                ff.eval()
                with torch.no_grad():
                    ff(x)

            for phase, fn in (("forward + backward", train), ("no-grad forward", infer)):
                times: dict[str, list[float]] = {k: [] for k in sides}
                for name in sides:  # warm-up, both sides
                    transformer.linear_relu = sides[name]
                    fn()
                for r in range(rounds):
                    for name in (("fused", "unfused") if r % 2 == 0 else ("unfused", "fused")):
                        transformer.linear_relu = sides[name]
                        t0 = time.perf_counter()
                        fn()
                        times[name].append(time.perf_counter() - t0)
                ratios = [u / f for u, f in zip(times["unfused"], times["fused"])]
                rows.append({"shape": [B, L, d, hidden], "phase": phase,
                             "fused_s": statistics.median(times["fused"]),
                             "unfused_s": statistics.median(times["unfused"]),
                             "speedup": statistics.median(ratios), "ratios": ratios})
                print(f"[{B}, {L}, {d}] -> {hidden} {phase}: {rows[-1]['speedup']:.3f}x", flush=True)
    finally:
        transformer.linear_relu = fused
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = ["# ReLU feed-forward: linear + ReLU fused in oneDNN vs linear then ReLU", "",
             f"Measured {meta['date']} on {meta['machine']}, {meta['threads']} thread(s), "
             f"OMP_WAIT_POLICY={meta['omp_wait_policy']}, torch {meta['torch']}, oneDNN linear "
             f"{'on' if meta['onednn'] else 'OFF (both sides the same)'}; {meta['rounds']} rounds, sides alternating.",
             "", "```", meta["command"], "```", "",
             "| input [B, L, d] -> hidden | phase | unfused ms | fused ms | unfused / fused (median of rounds) "
             "| range over rounds |", "|---|---|---|---|---|---|"]
    for r in rows:
        B, L, d, h = r["shape"]
        lines.append(f"| [{B}, {L}, {d}] -> {h} | {r['phase']} | {1e3 * r['unfused_s']:.1f} | {1e3 * r['fused_s']:.1f}"
                     f" | **{r['speedup']:.3f}x** | {min(r['ratios']):.3f}-{max(r['ratios']):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "feed_forward_relu"),
                    help="output path without extension (.md and .json are written)")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error("--rounds must be >= 1")
    from msa_toolkit.allocator import apply_choice
    from msa_toolkit.models.linear import onednn_linear_available

    apply_choice("tuned")
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = measure(a.rounds)
    meta = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPU(s)", "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "torch": torch.__version__,
            "onednn": onednn_linear_available(), "rounds": a.rounds,
            "command": "python benchmarks/feed_forward_relu.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
