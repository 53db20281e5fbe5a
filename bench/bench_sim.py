"""Simulator benchmarks: prints figures and writes bench/results/sim.json.

1. SDSC-SP2 end to end (read, filter, simulate EASY, metrics); target <= 2 s.
2. A 1 M-job synthetic Lublin-Feitelson-style trace (generate, simulate EASY, metrics);
   target <= 60 s and <= 2 GiB peak memory. It runs in a fresh subprocess so that the peak
   resident set size (``ru_maxrss``) is its own.

Usage: ``python bench/bench_sim.py [--jobs N]``; the shared traces are found through
``$AIF_SHARED_DIR`` or ``shared/`` beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AIF_SHARED_DIR", ROOT.parent / "shared"))
SDSC = SHARED / "data" / "traces" / "swf" / "SDSC-SP2-1998-4.2-cln.swf.gz"


def bench_sdsc(repeats: int = 3) -> dict[str, Any]:
    from aifactory.sim.runner import load_trace, run_trace

    times = []
    overall: dict[str, Any] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        trace = load_trace(SDSC)
        t1 = time.perf_counter()
        overall = run_trace(trace, "easy").metrics["overall"]
        t2 = time.perf_counter()
        times.append((t2 - t0, t1 - t0, t2 - t1))
    best = min(times)
    return {
        "jobs": overall["jobs"],
        "seconds_end_to_end_first": round(times[0][0], 3),
        "seconds_end_to_end_best": round(best[0], 3),
        "seconds_read_filter": round(best[1], 3),
        "seconds_simulate_metrics": round(best[2], 3),
        "mean_bounded_slowdown": round(overall["mean_bounded_slowdown"], 3),
        "mean_response_s": round(overall["mean_response_s"], 1),
        "published_bounded_slowdown": 87.87,
        "published_response_s": 27850.9,
        "target_seconds": 2.0,
    }


def bench_million(n: int) -> dict[str, Any]:
    from aifactory.sim.runner import run_trace
    from aifactory.sim.synthetic import WorkloadModel, generate

    t0 = time.perf_counter()
    trace = generate(n, WorkloadModel(machine=256, load=0.75), seed=1)
    t1 = time.perf_counter()
    overall = run_trace(trace, "easy").metrics["overall"]
    t2 = time.perf_counter()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "jobs": n,
        "seconds_total": round(t2 - t0, 2),
        "seconds_generate": round(t1 - t0, 2),
        "seconds_simulate_metrics": round(t2 - t1, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "utilization": round(overall["utilization"], 3),
        "mean_bounded_slowdown": round(overall["mean_bounded_slowdown"], 2),
        "target_seconds": 60,
        "target_peak_mib": 2048,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(bench_million(args.jobs)))
        return
    sdsc = bench_sdsc()
    print(f"SDSC-SP2 EASY end to end: {sdsc['seconds_end_to_end_best']} s best "
          f"({sdsc['seconds_end_to_end_first']} s first run), {sdsc['jobs']} jobs, "
          f"bsld {sdsc['mean_bounded_slowdown']} (published 87.87), "
          f"response {sdsc['mean_response_s']} s (published 27850.9)")  # fmt: skip
    child = subprocess.run(
        [sys.executable, __file__, "--child", "--jobs", str(args.jobs)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    million = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"synthetic {million['jobs']:,} jobs EASY: {million['seconds_total']} s "
        f"(generate {million['seconds_generate']} s), peak RSS {million['peak_rss_mib']} MiB"
    )
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "sdsc_sp2_easy": sdsc,
        "synthetic_easy": million,
    }
    out = ROOT / "bench" / "results" / "sim.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
