"""Minor page faults per "training step" with glibc's malloc defaults and with msa_toolkit's settings.

A step here allocates, writes and frees the same three large tensors (40, 64 and 90 MiB, above glibc's
32 MiB mmap ceiling), as a training step does with its activations. With the defaults each is a fresh
mmap whose pages fault in when written (about 50 k faults per step with 4 KiB pages); with
``allocator.keep_freed_memory()`` freed blocks are reused from the heap and, once it has grown, a step
faults in no new page. Each mode runs in a fresh process (the settings are per process).

This used to be a test with fault-count thresholds (tests/test_allocator.py); the test now checks glibc's
own accounting (mallinfo2) and the measurement lives here.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/page_faults.py [--steps 20] [--write]

``--write`` records the table in benchmarks/results/page_faults.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    from msa_toolkit.allocator import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
    mib = 2 ** 18  # float32 elements per MiB
    faults, seconds = [], []
    for step in range(int(sys.argv[2])):
        before, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        xs = [torch.empty(k * mib).fill_(1.0) for k in (40, 64, 90)]
        del xs
        seconds.append(time.perf_counter() - t)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"applied": applied, "faults": faults, "seconds": seconds}))
""")


def run(mode: str, steps: int) -> dict:
    from msa_toolkit import allocator

    env = {k: v for k, v in os.environ.items()
           if k not in allocator.USER_MALLOC_VARS and k not in ("MSA_MALLOC", "GLIBC_TUNABLES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(steps)], capture_output=True, text=True,
                         env=env, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict]) -> str:
    lines = ["| malloc | applied | faults, step 1 | faults, steps 2-5 (median) | faults, later steps (median) | "
             "ms per later step (median) |", "|---|---|---|---|---|---|"]
    med = lambda xs: sorted(xs)[len(xs) // 2] if xs else float("nan")  # noqa: E731
    for mode, r in results.items():
        f, s = r["faults"], r["seconds"]
        lines.append(f"| {mode} | {r['applied']} | {f[0]} | {med(f[1:5])} | {med(f[5:])} | "
                     f"{1000 * med(s[5:]):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="record the table in benchmarks/results/page_faults.md")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = {mode: run(mode, args.steps) for mode in ("default", "tuned")}
    md = table(results)
    print(md)
    if args.write:
        cmd = "OMP_WAIT_POLICY=PASSIVE python benchmarks/page_faults.py" + (
            f" --steps {args.steps}" if args.steps != 20 else "") + " --write"
        RESULTS.joinpath("page_faults.md").write_text(
            f"# Page faults per step: glibc defaults vs keep_freed_memory()\n\nMeasured "
            f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'} "
            f"({os.cpu_count()} CPUs), {args.steps} steps of 40 + 64 + 90 MiB tensors allocated, written "
            f"and freed, one fresh process per mode.\n\n```\n{cmd}\n```\n\n{md}\n\n"
            f"Raw: `{json.dumps(results)}`\n")


if __name__ == "__main__":
    main()
