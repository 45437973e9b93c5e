"""Speed of the "mediapipe_face" visual extractor on this machine.

Measures, single stream:

- per stage (full-range detection, mesh on the crop, FER expression, geometry) in ms/frame;
- end-to-end ms/frame on a 512x512 photo, the 320x240 test clips and a 1280x720 frame;
- the real-time factor (wall time / media duration) of decoding + extraction on ~12 s of the
  committed face clips at several ``fps`` settings.

Wall and process-CPU times are both reported (MediaPipe runs its graphs on worker threads).
Run: ``python benchmarks/visual_speed.py [--repeats N] [--out benchmarks/results/visual_speed.md]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msa_toolkit.extractors import vision as visual  # noqa: E402
from msa_toolkit.extractors.vision import MediaPipeFaceExtractor  # noqa: E402

ASSETS = ROOT / "tests" / "assets"
CLIPS = ("speech_positive.mp4", "speech_negative.mp4")


@dataclass(frozen=True)
class Timing:
    """Median time of one measured operation."""

    # what was measured
    label: str
    # median wall-clock milliseconds per call
    wall_ms: float
    # median process CPU milliseconds per call (all threads)
    cpu_ms: float


@dataclass(frozen=True)
class FrameStub:
    """Minimal ``media.Frame`` for the benchmark."""

    # seconds
    time: float
    # frame number
    index: int
    # HxWx3 uint8 RGB
    image: np.ndarray


def measure(label: str, fn, repeats: int) -> Timing:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return Timing(label, 1000 * statistics.median(walls), 1000 * statistics.median(cpus))


def decode(path: Path, fps: float | None):
    """Frames through msa_toolkit.media when present, else every frame via PyAV."""
    try:
        from msa_toolkit.media import iter_frames
    except ImportError:
        iter_frames = None
    if iter_frames is not None:
        return list(iter_frames(path, fps=fps))
    import av

    with av.open(str(path)) as c:
        return [FrameStub(float(f.time), i, f.to_ndarray(format="rgb24")) for i, f in enumerate(c.decode(video=0))]


def media_duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.duration) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "visual_speed.md")
    args = ap.parse_args()

    from skimage import data

    photo = np.ascontiguousarray(data.astronaut())
    hd = np.full((720, 1280, 3), 110, np.uint8)
    hd[100:100 + 512, 400:912] = photo
    ex = MediaPipeFaceExtractor()
    t0 = time.perf_counter()
    ex.load()
    load_s = time.perf_counter() - t0

    def one(img):
        ex.reset()
        return ex.analyze(img)

    res = one(photo)
    box, lms = res.box, res.landmarks
    stages = [
        measure("detection (full-range, 512x512)", lambda: ex.detect(photo), args.repeats),
        measure("mesh on the crop (478 points)", lambda: ex.mesh(photo, box), args.repeats),
        measure("head pose fit + geometry + 68 landmarks",
                lambda: visual.geometric_features(lms, visual.estimate_head_pose(lms), box, photo.shape[:2]),
                args.repeats),
        measure("FER2013 expression (crop + tflite)", lambda: ex.expression(photo, lms), args.repeats),
    ]
    clip_frame = decode(ASSETS / CLIPS[0], None)[0].image if (ASSETS / CLIPS[0]).is_file() else photo[:240, :320]
    blank = np.zeros((240, 320, 3), np.uint8)
    totals = [
        measure("512x512 photo, one face", lambda: one(photo), args.repeats),
        measure(f"{clip_frame.shape[1]}x{clip_frame.shape[0]} test clip frame, one face", lambda: one(clip_frame),
                args.repeats),
        measure("1280x720 frame, one face (detector sees 640x360)", lambda: one(hd), args.repeats),
        measure("320x240 frame, no face (both detectors run)", lambda: one(blank), args.repeats),
    ]

    rtf_rows = []
    clips = [ASSETS / c for c in CLIPS if (ASSETS / c).is_file()]
    if clips:
        duration = sum(media_duration(c) for c in clips)
        for fps in (5.0, 10.0, 15.0):
            e = MediaPipeFaceExtractor(fps=fps)
            e.load()
            w0 = time.perf_counter()
            for c in clips:
                decode(c, fps)
            decode_s = time.perf_counter() - w0
            w0, c0 = time.perf_counter(), time.process_time()
            n = sum(e.extract(decode(c, fps)).length for c in clips)  # one extract per clip, as the pipeline
            total_s, cpu_s = time.perf_counter() - w0, time.process_time() - c0
            rtf_rows.append((fps, n, duration, decode_s, total_s - decode_s, total_s / duration, cpu_s / duration))
            e.close()

    load_avg = os.getloadavg()
    lines = [
        "# Visual extractor speed (`mediapipe_face`)",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/visual_speed.py`"
        f" on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, single stream;"
        f" load average during the run {load_avg[0]:.1f} / {load_avg[1]:.1f} (the machine is shared, so"
        " numbers are noisy; medians of"
        f" {args.repeats} runs). Model load: {load_s:.2f} s.",
        "",
        "## Per stage (512x512 photo)",
        "",
        "| stage | wall ms | CPU ms |",
        "|---|---:|---:|",
        *[f"| {t.label} | {t.wall_ms:.1f} | {t.cpu_ms:.1f} |" for t in stages],
        "",
        "## Per frame, end to end (`analyze`)",
        "",
        "| input | wall ms/frame | CPU ms/frame |",
        "|---|---:|---:|",
        *[f"| {t.label} | {t.wall_ms:.1f} | {t.cpu_ms:.1f} |" for t in totals],
        "",
    ]
    if rtf_rows:
        lines += [
            "## Real-time factor on the test clips (decode + extract)",
            "",
            f"{' + '.join(c.name for c in clips)}; RTF = wall time / media duration."
            " Decoding uses `msa_toolkit.media.iter_frames` when present (else PyAV, every frame).",
            "",
            "| fps | frames | media s | decode s | extract s | RTF (wall) | CPU s per media s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *[f"| {fps:g} | {n} | {dur:.1f} | {d:.2f} | {x:.2f} | {rtf:.3f} | {crtf:.3f} |"
              for fps, n, dur, d, x, rtf, crtf in rtf_rows],
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = args.out.read_text() if args.out.is_file() else ""
    notes_marker = "## Notes"
    notes = existing[existing.index(notes_marker):] if notes_marker in existing else ""
    args.out.write_text("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
