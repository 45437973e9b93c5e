#!/usr/bin/env python
"""Prediction speed and memory of `msa predict` with the bundled default model.

Measures (recorded, never asserted in tests):
- cold start: wall time of a fresh `msa predict CLIP` process, from process start to the printed
  result, cache empty (target <= 8 s);
- warm prediction: `predict()` on a new 10 s clip with the checkpoint and models already loaded in
  the process, cache empty for that clip (target <= 1.5 s);
- cached re-prediction: the same clip again (features come from the cache);
- peak memory (max RSS) of the cold process (target <= 2 GB).

Usage: python benchmarks/predict_speed.py [--runs 3] [--out benchmarks/results/predict_speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: targets from the issue (seconds, MB)
WARM_TARGET_S, COLD_TARGET_S, MEMORY_TARGET_MB = 1.5, 8.0, 2048


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "predict_speed.md")
    args = ap.parse_args()

    from extract_speed import build_clip, machine  # the 10 s clip builder of the extraction benchmark

    work = Path(tempfile.mkdtemp(prefix="msa_predict_bench_"))
    clips = [build_clip(10.0, work / f"clip10_{i}.mp4") for i in range(args.runs + 1)]
    # make each clip's bytes distinct so the content-addressed cache cannot serve a copy
    for i, c in enumerate(clips):
        with open(c, "ab") as f:
            f.write(b"\0" * (i + 1))
    msa = shutil.which("msa", path=str(Path(sys.executable).parent)) or "msa"

    # cold: fresh processes, fresh caches
    cold, rss = [], []
    for i in range(args.runs):
        env = {**os.environ, "MSA_CACHE_DIR": str(work / f"cold_cache_{i}")}
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", msa, "predict", "-q", "--json", str(work / f"cold{i}.json"),
                            str(clips[i])], env=env, capture_output=True, text=True)
        cold.append(time.perf_counter() - t)
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            raise SystemExit(f"msa predict failed with {p.returncode}")
        rss.append(int(p.stderr.strip().splitlines()[-1]) / 1024)

    # warm: one process, models loaded once
    os.environ["MSA_CACHE_DIR"] = str(work / "warm_cache")
    from msa_toolkit.prediction import Predictor, predict

    t = time.perf_counter()
    predictor = Predictor.load()
    load_s = time.perf_counter() - t
    predict(clips[-1], predictor=predictor)  # warm-up: loads Whisper, MiniLM
    warm, cached = [], []
    for c in clips[: args.runs]:
        t = time.perf_counter()
        r = predict(c, predictor=predictor)
        warm.append(time.perf_counter() - t)
        assert r[0].ok, r[0].error
        t = time.perf_counter()
        predict(c, predictor=predictor)
        cached.append(time.perf_counter() - t)
    report = {
        "command": "python benchmarks/predict_speed.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": os.getloadavg(),
        "cold_start_s": cold, "cold_peak_rss_mb": rss, "checkpoint_load_s": load_s,
        "warm_10s_clip_s": warm, "cached_10s_clip_s": cached,
        "peak_rss_warm_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = args.out.parent / args.out.stem / f"{args.out.stem}.json"  # results/predict_speed/predict_speed.json
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(report, indent=2))
    med = statistics.median
    args.out.write_text(f"""# Prediction speed (`msa predict`, bundled default model)

Command: `{report['command']}`
Date: {report['date']}
Machine: {report['machine']}; load average at the end {tuple(round(x, 2) for x in report['load_average'])}
(the machine is shared with other work, so wall times are upper bounds)

The default model needs Whisper tiny.en (ASR) + all-MiniLM-L6-v2 (text) only: its FeatureSpec has no
acoustic or visual extractor, so `predict` runs neither. Clips: 10 s of the committed speech fixtures,
built by `benchmarks/extract_speed.py:build_clip`, each with distinct bytes (no cache sharing).

| measure | runs (s) | median | target | met |
|---|---|---|---|---|
| cold start: fresh `msa predict CLIP` process to result, empty cache | {', '.join(f'{x:.2f}' for x in cold)} | {med(cold):.2f} s | <= {COLD_TARGET_S} s | {'yes' if med(cold) <= COLD_TARGET_S else 'no'} |
| warm: `predict()` on a new 10 s clip, models loaded | {', '.join(f'{x:.2f}' for x in warm)} | {med(warm):.2f} s | <= {WARM_TARGET_S} s | {'yes' if med(warm) <= WARM_TARGET_S else 'no'} |
| cached: the same clip again | {', '.join(f'{x:.3f}' for x in cached)} | {med(cached):.3f} s | - | - |
| peak memory of the cold process (max RSS) | {', '.join(f'{x:.0f}' for x in rss)} MB | {med(rss):.0f} MB | <= {MEMORY_TARGET_MB} MB | {'yes' if max(rss) <= MEMORY_TARGET_MB else 'no'} |

Checkpoint load (`Predictor.load()`, imports included): {load_s:.2f} s.
""")
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
