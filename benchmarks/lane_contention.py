"""Do the two extraction lanes slow each other down, and is it the GIL? (issue 18)

    OMP_WAIT_POLICY=PASSIVE python benchmarks/lane_contention.py [--rounds 3]

On the 10 s benchmark clip (``extract_speed.build_clip``) with the default extractors and the
two-lane thread plan (one thread per lane), times Whisper (``transcribe``) and the visual
extractor (``run_vision``) alone, then both at once in two ways: the visual extractor in a
second *thread* of this process (what ``msa extract`` does) and in a second *process* (no shared
GIL). If both ways slow the two stages by the same amount, the contention is not the GIL but the
cores' shared resources. Prints one line per run; nothing is written.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _loaded():
    from msa_toolkit.extraction import ExtractConfig, load_extractors
    from msa_toolkit.extraction.lanes import ThreadPlan
    from msa_toolkit.extraction.runner import apply_thread_plan

    le = load_extractors(ExtractConfig())
    le.load()
    apply_thread_plan(le.extractors, ThreadPlan.for_cores(2))
    return le


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _vision_process(clip: Path, start, done) -> None:
    from msa_toolkit.extraction.runner import run_vision

    vis = _loaded().extractors["vision"]
    run_vision(vis, clip)  # warm-up
    done.put("ready")
    while start.get() is not None:
        done.put(_timed(lambda: run_vision(vis, clip)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clip", type=Path, default=Path("/tmp/msa_lane_contention/clip_10s.mp4"))
    a = ap.parse_args(argv)
    import extract_speed

    from msa_toolkit.extraction.runner import run_vision
    from msa_toolkit.media import load_audio

    clip = extract_speed.build_clip(extract_speed.SHORT, a.clip)
    le = _loaded()
    asr, vis = le.extractors["asr"], le.extractors["vision"]
    wave = load_audio(clip)
    asr_alone = lambda: asr.transcribe(wave, 16000)  # noqa: E731
    vis_alone = lambda: run_vision(vis, clip)  # noqa: E731
    asr_alone(), vis_alone()  # warm-up
    ctx = mp.get_context("spawn")
    start, done = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_vision_process, args=(clip, start, done))
    proc.start()
    done.get()
    res: dict[str, list[float]] = {}
    for r in range(a.rounds):
        res.setdefault("asr alone", []).append(_timed(asr_alone))
        res.setdefault("vision alone", []).append(_timed(vis_alone))
        out: dict[str, float] = {}
        th = threading.Thread(target=lambda: out.__setitem__("v", _timed(vis_alone)))
        th.start()
        res.setdefault("asr | vision thread", []).append(_timed(asr_alone))
        th.join()
        res.setdefault("vision thread | asr", []).append(out["v"])
        start.put(1)
        res.setdefault("asr | vision process", []).append(_timed(asr_alone))
        res.setdefault("vision process | asr", []).append(done.get())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in res.items()), flush=True)
    start.put(None)
    proc.join()
    print("medians: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
