"""Simulator benchmarks: prints every figure and writes bench/results/sim.json.

1. ``engine``: the engine (``simulate``, EASY, one machine) against a plain EASY event loop
   (``bench/_easy_reference.py``) on the same jobs in this process, alternating, ``--repeats``
   times each; both must give every job the same start time. Target: engine >= 2x faster.
2. ``cli``: ``aif sim run --trace SDSC-SP2... --policy easy`` as a subprocess, as a user runs
   it (start, imports, read, filter, simulate, metrics, table); target <= 1 s wall.
3. ``scale``: synthetic Lublin-Feitelson-style traces of 300,000 and 1,000,000 jobs (generate,
   simulate EASY, check, metrics), each in a fresh subprocess so its peak RSS is its own;
   targets <= 5 s (300k) and <= 60 s, <= 2 GiB (1 M).
4. ``sweep``: 16 what-if scenarios on SDSC-SP2 (2 policies x 4 machine sizes x 2 loads)
   through ``aifactory.sim.sweep.run_scenarios`` with 1 and with 2 worker processes; the
   results must be identical; the CPU time of the workers shows whether both cores worked.

Usage: ``python bench/bench_sim.py [--parts engine,cli,scale,sweep] [--repeats 5]``; the shared
traces are found through ``$AIF_SHARED_DIR`` or ``shared/`` beside the repository. Timings on a
shared 2-core machine are noisy: best and median are printed, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AIF_SHARED_DIR", ROOT.parent / "shared"))
SWF = SHARED / "data" / "traces" / "swf"
SDSC = SWF / "SDSC-SP2-1998-4.2-cln.swf.gz"
ENGINE_TRACES = ("SDSC-SP2-1998-4.2-cln.swf.gz", "KTH-SP2-1996-2.1-cln.swf.gz",
                 "CTC-SP2-1996-3.1-cln.swf.gz", "HPC2N-2002-2.2-cln.swf.gz")  # fmt: skip
AIF = Path(sys.executable).parent / "aif"


def _stats(seconds: list[float]) -> dict[str, float]:
    return {"best_s": round(min(seconds), 3), "median_s": round(statistics.median(seconds), 3)}


def bench_engine(repeats: int) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from _easy_reference import easy_reference

    from aifactory.sim.engine import make_sites, simulate
    from aifactory.sim.model import SiteSpec
    from aifactory.sim.runner import load_trace

    out: dict[str, Any] = {}
    for name in ENGINE_TRACES:
        trace = load_trace(SWF / name)
        capacity = trace.capacity or 0
        rows = [(j.submit, j.run, j.req, j.width) for j in trace.jobs]
        wall: dict[str, list[float]] = {"engine": [], "reference": []}
        cpu: dict[str, list[float]] = {"engine": [], "reference": []}
        same = True
        for _ in range(repeats):  # alternating, so both see the same background load
            w0, c0 = time.perf_counter(), time.process_time()
            reference = easy_reference(rows, capacity)
            w1, c1 = time.perf_counter(), time.process_time()
            sites = make_sites([SiteSpec("m", capacity)], "easy")
            result = simulate(trace.jobs, sites, check=False)
            w2, c2 = time.perf_counter(), time.process_time()
            wall["reference"].append(w1 - w0)
            wall["engine"].append(w2 - w1)
            cpu["reference"].append(c1 - c0)
            cpu["engine"].append(c2 - c1)
            same = same and reference == [j.start for j in result.jobs]
        entry: dict[str, Any] = {"jobs": len(rows), "same_start_times": same, "target_ratio": 2.0}
        for clock, series in (("wall", wall), ("cpu", cpu)):
            ref, eng = series["reference"], series["engine"]
            entry[clock] = {
                "engine": _stats(eng),
                "reference": _stats(ref),
                "ratio_best": round(min(ref) / min(eng), 2),
                "ratio_median": round(statistics.median(ref) / statistics.median(eng), 2),
            }
        out[name] = entry
        print(f"engine vs plain EASY loop, {name} ({len(rows):,} jobs), start times "
              f"{'identical' if same else 'DIFFERENT'}:")  # fmt: skip
        for clock in ("wall", "cpu"):
            e = entry[clock]
            print(f"  {clock:4}: engine best {e['engine']['best_s']} s / median "
                  f"{e['engine']['median_s']} s; reference best {e['reference']['best_s']} s / "
                  f"median {e['reference']['median_s']} s: {e['ratio_best']}x best, "
                  f"{e['ratio_median']}x median (target >= 2x)")  # fmt: skip
    return out


def bench_cli(repeats: int) -> dict[str, Any]:
    def timed(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        return time.perf_counter() - t0

    run = [str(AIF), "sim", "run", "--trace", str(SDSC), "--policy", "easy"]
    run_s = [timed(run) for _ in range(repeats)]
    help_s = [timed([str(AIF), "sim", "run", "--help"]) for _ in range(repeats)]
    entry = {
        "command": " ".join(run[1:]),
        "run": _stats(run_s),
        "startup_sim_run_help": _stats(help_s),
    }
    entry["target_seconds"] = 1.0
    print(f"CLI aif sim run SDSC-SP2 EASY end to end: best {entry['run']['best_s']} s, median "
          f"{entry['run']['median_s']} s (of which start-up, as `aif sim run --help`: best "
          f"{entry['startup_sim_run_help']['best_s']} s); target <= 1 s")  # fmt: skip
    return entry


def synthetic_child(n: int) -> dict[str, Any]:
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
        "seconds_simulate_check_metrics": round(t2 - t1, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "utilization": round(overall["utilization"], 3),
        "mean_bounded_slowdown": round(overall["mean_bounded_slowdown"], 2),
    }


def bench_scale(sizes: list[int]) -> dict[str, Any]:
    targets = {300_000: (5, None), 1_000_000: (60, 2048)}
    out: dict[str, Any] = {}
    for n in sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        entry = json.loads(child.stdout.strip().splitlines()[-1])
        entry["target_seconds"], entry["target_peak_mib"] = targets.get(n, (None, None))
        out[str(n)] = entry
        print(f"synthetic {n:,} jobs EASY: {entry['seconds_total']} s (generate "
              f"{entry['seconds_generate']} s, simulate+check+metrics "
              f"{entry['seconds_simulate_check_metrics']} s), peak RSS "
              f"{entry['peak_rss_mib']} MiB")  # fmt: skip
    return out


def bench_sweep(repeats: int) -> dict[str, Any]:
    from aifactory.sim.runner import load_trace
    from aifactory.sim.sweep import Scenario, run_scenarios

    trace = load_trace(SDSC)
    scenarios = [
        Scenario(f"{p} cap={c} load={x:g}", p, c, x)
        for p in ("easy", "fcfs")
        for c in (128, 160, 192, 256)
        for x in (1.0, 1.2)
    ]
    out: dict[str, Any] = {"scenarios": len(scenarios), "trace": SDSC.name}
    metrics: dict[int, list[dict[str, Any]]] = {}
    for workers in (1, 2):
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(max(1, repeats // 2)):
            before = os.times()
            t0 = time.perf_counter()
            results = run_scenarios(trace, scenarios, workers=workers)
            wall.append(time.perf_counter() - t0)
            after = os.times()
            spent = sum(after[:4]) - sum(before[:4])  # this process and its reaped workers
            cpu.append(spent)
        metrics[workers] = [r.metrics for r in results]
        out[f"workers_{workers}"] = {**_stats(wall), "cpu_s_per_wall_s": round(cpu[0] / wall[0], 2)}
    out["identical"] = metrics[1] == metrics[2]
    out["speedup_best"] = round(out["workers_1"]["best_s"] / out["workers_2"]["best_s"], 2)
    print(f"sweep of {len(scenarios)} scenarios on SDSC-SP2: 1 process best "
          f"{out['workers_1']['best_s']} s, 2 processes best {out['workers_2']['best_s']} s "
          f"({out['speedup_best']}x; {out['workers_2']['cpu_s_per_wall_s']} CPU-s per s); "
          f"results {'identical' if out['identical'] else 'DIFFERENT'}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="engine,cli,scale,sweep")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="300000,1000000", help="synthetic trace sizes")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(synthetic_child(args.child)))
        return
    parts = args.parts.split(",")
    result: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": os.getloadavg(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"load average before: {result['machine']['load_average_before']}")
    if "engine" in parts:
        result["engine_vs_reference"] = bench_engine(args.repeats)
    if "cli" in parts:
        result["cli_sdsc_sp2_easy"] = bench_cli(args.repeats)
    if "scale" in parts:
        result["synthetic_easy"] = bench_scale([int(n) for n in args.sizes.split(",")])
    if "sweep" in parts:
        result["sweep"] = bench_sweep(args.repeats)
    result["machine"]["load_average_after"] = os.getloadavg()
    out = ROOT / "bench" / "results" / "sim.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
