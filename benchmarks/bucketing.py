"""Length-bucketed batching vs plain shuffling: padding and training time per epoch.

The dataset is synthetic with MOSI's length distribution: per-sample text lengths are the
word counts of the real MOSI transcripts (``--labels``, default ``/work/shared/data/mosi/label.csv``;
+2 for BERT's [CLS]/[SEP], capped at 50) and the audio / vision lengths follow the clip length
(words × a per-sample rate drawn around MMSA's frame rates, capped at 375 / 500 as in the MMSA
unaligned pickles), so most clips are far shorter than the caps. Features are random (dims
768 / 5 / 20). Both sides train the same model from the same weights on the same samples;
plain shuffling and bucketing alternate epoch by epoch in one process (``--rounds`` each);
medians are reported. Run:
``python benchmarks/bucketing.py [--models mult,almt] [--preset tiny] [--samples 256] [--batch-size 16]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from msa_toolkit.data.collate import collate_samples  # noqa: E402
from msa_toolkit.data.module import BucketBatchSampler  # noqa: E402
from msa_toolkit.data.native import Sample  # noqa: E402
from msa_toolkit.models import create_model  # noqa: E402
from msa_toolkit.training.config import TrainConfig  # noqa: E402
from msa_toolkit.training.optim import build_optimizer  # noqa: E402

CAPS = {"text": 50, "audio": 375, "vision": 500}
DIMS = {"text": 768, "audio": 5, "vision": 20}
#: mean steps per word (audio, vision) so that the longest clips reach the caps
RATE = {"audio": 9.0, "vision": 12.0}


def mosi_lengths(path: Path, n: int, seed: int) -> list[dict[str, int]]:
    with open(path) as f:
        words = [len(r["text"].split()) for r in csv.DictReader(f)]
    rng = np.random.default_rng(seed)
    picks = rng.choice(words, size=n, replace=True)
    out = []
    for w in picks:
        rate = rng.uniform(0.6, 1.4)
        out.append({"text": int(min(CAPS["text"], w + 2)),
                    **{m: int(min(CAPS[m], max(1, round(w * RATE[m] * rate)))) for m in RATE}})
    return out


def make_samples(lengths: list[dict[str, int]], seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    return [Sample(id=str(i), label=float(rng.uniform(-3, 3)),
                   features={m: rng.standard_normal((L[m], DIMS[m])).astype(np.float32) for m in DIMS})
            for i, L in enumerate(lengths)]


def epoch_batches(samples, lengths, batch_size: int, bucket: bool, epoch: int, seed: int):
    g = torch.Generator().manual_seed(seed + epoch)
    if bucket:
        key = np.array([sum(L.values()) for L in lengths])
        order = BucketBatchSampler(torch.randperm(len(samples), generator=g).tolist(), key, batch_size, generator=g)
        groups = list(order)
    else:
        perm = torch.randperm(len(samples), generator=g).tolist()
        groups = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    return [collate_samples([samples[i] for i in b], DIMS, CAPS) for b in groups]


def padding_ratio(batches) -> float:
    real = sum(int(getattr(b, f"{m}_mask").sum()) for b in batches for m in DIMS)
    padded = sum(getattr(b, f"{m}_mask").numel() for b in batches for m in DIMS)
    return padded / real


def run_model(name: str, preset: str, samples, lengths, args) -> dict:
    torch.manual_seed(0)
    model = create_model(name, preset, text_dim=768, audio_dim=5, vision_dim=20,
                         text_len=CAPS["text"], audio_len=CAPS["audio"], vision_len=CAPS["vision"])
    opt = build_optimizer(model, TrainConfig())
    model.train()
    times: dict[bool, list[float]] = {False: [], True: []}
    ratios: dict[bool, float] = {}
    for r in range(args.rounds):
        for bucket in (False, True):
            batches = epoch_batches(samples, lengths, args.batch_size, bucket, r, args.seed)
            ratios[bucket] = padding_ratio(batches)
            t0 = time.perf_counter()
            for b in batches:
                out = model(b)
                model.objective(out, b).total.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            times[bucket].append(time.perf_counter() - t0)
            print(f"{name} round {r} bucket={bucket}: {times[bucket][-1]:.1f} s", flush=True)
    plain, bucketed = statistics.median(times[False]), statistics.median(times[True])
    return {"model": name, "preset": preset, "plain_s": plain, "bucket_s": bucketed, "speedup": plain / bucketed,
            "pad_plain": ratios[False], "pad_bucket": ratios[True]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, default=Path("/work/shared/data/mosi/label.csv"))
    ap.add_argument("--models", default="mult,almt")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    lengths = mosi_lengths(args.labels, args.samples, args.seed)
    samples = make_samples(lengths, args.seed)
    rows = [run_model(m, args.preset, samples, lengths, args) for m in args.models.split(",") if m]
    q = {m: np.percentile([L[m] for L in lengths], [50, 90, 100]).astype(int).tolist() for m in DIMS}
    lines = [
        f"## {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python benchmarks/bucketing.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"- torch {torch.__version__}, CPU threads {torch.get_num_threads()} of {os.cpu_count()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; {args.samples} samples, batch "
        f"{args.batch_size}, preset {args.preset}; median of {args.rounds} epochs per side, alternating",
        "- lengths (median / p90 / max): " + ", ".join(f"{m} {q[m]}" for m in DIMS),
        "- padding = padded steps ÷ real steps over an epoch (all modalities)",
        "",
        "| model | plain s/epoch | bucketed s/epoch | speed-up | padding plain | padding bucketed |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {r['model']} ({r['preset']}) | {r['plain_s']:.1f} | {r['bucket_s']:.1f} | {r['speedup']:.2f}× | "
          f"{r['pad_plain']:.2f} | {r['pad_bucket']:.2f} |" for r in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:  # the current result only; earlier ones live in git
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Length-bucketed batching\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
