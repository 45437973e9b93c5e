"""Extraction speed benchmark: real-time factor per extractor and in total, cached re-run, peak memory.

Builds 10 s and 60 s test clips (and a 30-minute one with ``--long``) by looping
the committed speech fixtures with PyAV (H.264 + AAC, 320x240, 25 fps), then
measures each clip in a fresh child process (so peak memory is per clip):

- model loading time (all default extractors);
- per-stage wall time from one warm run of the pipeline (decode, ASR, text,
  audio, vision) and the real-time factor RTF = wall time / clip duration;
- ``extract()`` end to end with one worker into an empty cache (models loaded
  inside, as a user's first run), then again on the warm cache (the cached
  re-run ratio);
- peak resident memory (``ru_maxrss``) of the child.

Targets (recorded, never asserted): total RTF <= 0.3 on a 10 s clip with one
worker (warm models), cached re-run <= 2 % of the first run, peak memory <= 2 GB
and flat with video length.

    python benchmarks/extract_speed.py            # 10 s and 60 s clips
    python benchmarks/extract_speed.py --long     # also a 30-minute clip (slow)

Results go to benchmarks/results/extract_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "tests" / "assets"
RESULTS = ROOT / "benchmarks" / "results"
#: fixtures looped to build the clips (face + speech)
SOURCES = ("speech_positive.mp4", "speech_negative.mp4", "noface.mp4")
#: clip lengths in seconds
SHORT, MEDIUM, LONG = 10.0, 60.0, 1800.0
#: output video/audio settings of the generated clips
FPS, AUDIO_RATE = 25, 22050
#: targets (recorded only)
TARGET_RTF, TARGET_CACHED, TARGET_MEM_MB = 0.3, 0.02, 2048


def build_clip(seconds: float, out: Path) -> Path:
    """Loop the source fixtures into one ``seconds`` long H.264/AAC mp4 (video and audio re-encoded)."""
    import av

    if out.is_file():
        return out
    frames: list[list[np.ndarray]] = []
    audios: list[np.ndarray] = []
    for name in SOURCES:
        with av.open(str(ASSETS / name)) as c:
            frames.append([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        with av.open(str(ASSETS / name)) as c:
            res = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            chunks = [g.to_ndarray().reshape(-1) for f in c.decode(audio=0) for g in res.resample(f)]
            chunks += [g.to_ndarray().reshape(-1) for g in res.resample(None)]
            a = np.concatenate(chunks)
        # pad/trim the audio of each source to its video length so the loop stays in sync
        n = int(round(len(frames[-1]) / FPS * AUDIO_RATE))
        audios.append(np.pad(a, (0, max(0, n - len(a))))[:n])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as oc:
        vs = oc.add_stream("libx264", rate=FPS)
        h, w = frames[0][0].shape[:2]
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "28"}
        as_ = oc.add_stream("aac", rate=AUDIO_RATE)
        as_.layout = "mono"
        total_frames = int(seconds * FPS)
        vi = 0
        apos = 0
        src = 0
        while vi < total_frames:
            fr, au = frames[src % len(SOURCES)], audios[src % len(SOURCES)]
            take = min(len(fr), total_frames - vi)
            for k in range(take):
                vf = av.VideoFrame.from_ndarray(fr[k], format="rgb24")
                vf.pts, vf.time_base = vi, Fraction(1, FPS)
                for p in vs.encode(vf):
                    oc.mux(p)
                vi += 1
            seg = au[: int(round(take / FPS * AUDIO_RATE))]
            for s in range(0, len(seg), 1024):
                block = seg[s:s + 1024]
                af = av.AudioFrame.from_ndarray(block[None, :], format="s16", layout="mono")
                af.sample_rate, af.pts, af.time_base = AUDIO_RATE, apos, Fraction(1, AUDIO_RATE)
                apos += len(block)
                for p in as_.encode(af):
                    oc.mux(p)
            src += 1
        for st in (vs, as_):
            for p in st.encode(None):
                oc.mux(p)
    os.replace(tmp, out)
    return out


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(clip: Path, warm_runs: int) -> dict:
    """Run in a child process: load, warm per-stage runs (best of ``warm_runs``), cold and cached extract()."""
    from msa_toolkit import extraction
    from msa_toolkit.media import probe

    info = probe(clip)
    dur = float(info.duration)
    out: dict = {"clip": clip.name, "duration_s": round(dur, 3), "warm_runs": warm_runs}
    cfg = extraction.ExtractConfig()
    if warm_runs:
        t = time.perf_counter()
        runner = extraction.LoadedExtractors(cfg)
        runner.load()
        out["model_load_s"] = round(time.perf_counter() - t, 3)
        # warm-up on a short fixture so one-off initialisation is not charged to the clip
        runner.run(ASSETS / "speech_positive.mp4")
        best = None
        for _ in range(warm_runs):
            t, c = time.perf_counter(), time.process_time()
            bundle = runner.run(clip)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if best is None or wall < best[0]:
                best = (wall, cpu, bundle.meta["timings"])
        wall, cpu, timings = best
        out["stages_s"] = {k: round(v, 3) for k, v in timings.items() if k != "total"}
        out["rtf"] = {k: round(v / dur, 4) for k, v in out["stages_s"].items()}
        out["warm_total_s"] = round(wall, 3)
        out["rtf_total_warm"] = round(wall / dur, 4)
        # CPU seconds of all threads / duration: less sensitive to other processes on a shared machine
        out["cpu_s_per_media_s"] = round(cpu / dur, 4)
        out["n_words"] = bundle.meta["n_words"]
        out["face_ratio"] = bundle.meta.get("face_ratio")
        out["shapes"] = {m: list(s.values.shape) for m, s in bundle.sequences.items()}
        del bundle, runner
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as od:
        t = time.perf_counter()
        res = extraction.extract(clip, out_dir=od, config=cfg, cache_dir=cache, progress=False)
        first = time.perf_counter() - t
        assert not res.failures, res.failures
        if not warm_runs:
            b = res.items[0].load()
            out["stages_s"] = {k: round(v, 3) for k, v in b.meta["timings"].items() if k != "total"}
            out["rtf"] = {k: round(v / dur, 4) for k, v in out["stages_s"].items()}
            out["shapes"] = {m: list(s.values.shape) for m, s in b.sequences.items()}
            out["n_words"] = b.meta["n_words"]
        t = time.perf_counter()
        res2 = extraction.extract(clip, out_dir=od, config=cfg, cache_dir=cache, progress=False)
        again = time.perf_counter() - t
        assert res2.n_cached == 1
    out["extract_first_s"] = round(first, 3)
    out["rtf_total_cold"] = round(first / dur, 4)
    out["extract_cached_s"] = round(again, 4)
    out["cached_ratio"] = round(again / first, 5)
    out["peak_rss_mb"] = round(_maxrss_mb(), 1)
    return out


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def write_md(report: dict, path: Path) -> None:
    lines = ["# Extraction speed", "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}  ",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
             f"{report['machine']['memory_gib']} GiB RAM, {report['machine']['platform']}, "
             f"torch {report['machine']['torch']} ({report['machine']['torch_threads']} threads); "
             f"load average at start {report['machine']['load_average_at_start']} "
             "(the machine is shared, so wall times are upper bounds)", "",
             "Default configuration: Whisper tiny.en (int8, VAD) + all-MiniLM-L6-v2 + openSMILE eGeMAPSv02 LLD + "
             "mediapipe_face, one worker. RTF = wall time / clip duration (lower is faster).", "",
             "Columns: *load models* = creating and loading every extractor in a fresh process (imports "
             "included); *decode* ... *vision* and *total RTF (warm)* = the fastest of the warm runs "
             "(models loaded, one warm-up file before); *CPU s / media s* = process CPU time of that run per "
             "second of media (all threads; less sensitive to other load on the shared machine); "
             "*first extract()* = `msa_toolkit.extract()` into an empty cache, building and loading its own "
             "extractors (for the 10 s / 60 s clips after the warm runs, so Python imports are not included; "
             "for the 30-minute clip in a fresh process, imports included); *cached re-run* = the same call "
             "again (hash the file, find the bundle, nothing recomputed). Long clips get no warm run.", "",
             "| clip | duration s | load models s | decode | asr | text | audio | vision | total RTF (warm) | "
             "CPU s / media s | first extract() RTF (cold) | cached re-run s | cached / first | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["clips"]:
        rt = r["rtf"]
        fmt = lambda key, spec=".3f": format(r[key], spec) if key in r else "-"  # noqa: E731
        lines.append(
            f"| {r['clip']} | {r['duration_s']:.1f} | {fmt('model_load_s', '.2f')} | {rt.get('decode', 0):.3f} | "
            f"{rt.get('asr', 0):.3f} | {rt.get('text', 0):.3f} | {rt.get('audio', 0):.3f} | "
            f"{rt.get('vision', 0):.3f} | **{fmt('rtf_total_warm')}** | {fmt('cpu_s_per_media_s')} | "
            f"{r['rtf_total_cold']:.3f} | "
            f"{r['extract_cached_s']:.3f} | {100 * r['cached_ratio']:.2f} % | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Per-stage columns are RTFs. Targets (recorded, not asserted): total RTF <= "
              f"{TARGET_RTF} on the 10 s clip with one worker; cached re-run <= {100 * TARGET_CACHED:.0f} % of the "
              f"first; peak memory <= {TARGET_MEM_MB} MB and flat with duration.", ""]
    short = next((r for r in report["clips"] if r["duration_s"] <= SHORT + 1 and "rtf_total_warm" in r), None)
    if short:
        lines += ["Against the targets (10 s clip):", "",
                  f"- total RTF (warm models): {short['rtf_total_warm']:.3f} "
                  f"({'met' if short['rtf_total_warm'] <= TARGET_RTF else 'NOT met'}); "
                  f"first extract() call including extractor set-up: {short['rtf_total_cold']:.3f}",
                  f"- cached re-run: {100 * short['cached_ratio']:.2f} % of the first "
                  f"({'met' if short['cached_ratio'] <= TARGET_CACHED else 'NOT met'})"]
    peak = max(r["peak_rss_mb"] for r in report["clips"])
    lines += [f"- peak memory over all clips: {peak:.0f} MB ({'met' if peak <= TARGET_MEM_MB else 'NOT met'}); "
              "per clip: " + ", ".join(f"{r['duration_s']:.0f} s -> {r['peak_rss_mb']:.0f} MB" for r in report["clips"]),
              ""]
    lines += ["Notes:", "",
              "- Memory stays flat because no stage holds more than a few minutes of audio-derived arrays: "
              "Whisper transcribes pieces of <= 120 s cut at quiet points (`chunk_seconds`), openSMILE runs on "
              "300 s chunks with 1 s of context either side (output identical to one call), frames are streamed "
              "to the visual extractor. Before this, the 30-minute clip peaked at 2672 MB "
              "(openSMILE alone +930 MB, Whisper's whole-file spectrogram about +1 GB per 10 minutes).",
              "- ASR dominates the time; the default decodes greedily (`beam_size=1`); `beam_size=5` cost "
              "about 20 % more ASR time in a quick, noisy comparison on the 10 s clip.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="also measure a long clip (memory flatness; slow)")
    ap.add_argument("--long-seconds", type=float, default=LONG, help="length of the --long clip (default 30 min)")
    ap.add_argument("--warm-runs", type=int, default=3, help="warm runs per short clip (the fastest is kept)")
    ap.add_argument("--clips-dir", type=Path, default=Path(tempfile.gettempdir()) / "msa_bench_clips")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite extract_speed.md from the saved extract_speed.json (no measuring)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "msa_numba_cache"))
    if args.child:
        print("RESULT=" + json.dumps(measure(args.child, args.warm_runs)))
        return
    if args.markdown_only:
        write_md(json.loads((args.out / "extract_speed.json").read_text()), args.out / "extract_speed.md")
        return
    args.clips_dir.mkdir(parents=True, exist_ok=True)
    lengths = [SHORT, MEDIUM] + ([args.long_seconds] if args.long else [])
    report = {"command": "python " + " ".join(["benchmarks/extract_speed.py", *sys.argv[1:]]),
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "clips": []}
    for sec in lengths:
        clip = build_clip(sec, args.clips_dir / f"clip_{int(sec)}s.mp4")
        print(f"measuring {clip.name} ...", flush=True)
        # long clips: one cold extract() only (a warm run would double an already long measurement)
        runs = args.warm_runs if sec <= MEDIUM else 0
        proc = subprocess.run([sys.executable, __file__, "--child", str(clip), "--warm-runs", str(runs)],
                              capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT=")]
        if proc.returncode != 0 or not line:
            sys.exit(f"child failed on {clip}:\n{proc.stderr[-3000:]}")
        r = json.loads(line[0][len("RESULT="):])
        print(json.dumps(r), flush=True)
        report["clips"].append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extract_speed.json").write_text(json.dumps(report, indent=1))
    write_md(report, args.out / "extract_speed.md")
    print((args.out / "extract_speed.md").read_text())


if __name__ == "__main__":
    main()
