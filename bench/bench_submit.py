"""Submissions against ``sbatch`` in the same run: throughput, latency, saturation and arrays.

Issue 14, targets 1 and 2 (DESIGN.md §7), each printed beside its comparison:

1. ``sbatch`` into the test cluster (factory1 of ``scripts/slurm/harness.sh``, jobs held so
   only submission is timed) with 1 and 8 clients, closed loop, for ``--seconds``.
2. aifactory's REST submit (token check, budget reservation, placement, durable write) with
   the same clients, closed loop, on each backend: jobs/s, latency p50/p99 (p99 at
   saturation: target <= 250 ms), and the CPU the server spent per accepted job.
3. A paced ``--rate`` (50/s) open loop: latency from the scheduled send, p99 target <= 50 ms.
4. One request carrying a 1,000-task array: all tasks placed (every one reserves budget), and
   all but a few waiting (a full site); target <= 1 s each.

The server is ``bench/_server.py`` (the composition ``aif serve`` runs, controllers off so
only the API is measured); ``--workers N`` runs N uvicorn worker processes (PostgreSQL).
Clients are ``http.client`` connections with keep-alive, one per thread, lighter than
``httpx`` so that on a 2-core machine the load generator takes less of the CPU the server
needs (``sbatch`` is a C program). Results: ``bench/results/submit-<backend>.json``.

    .venv/bin/python bench/bench_submit.py                        # both backends, ~3 min
    .venv/bin/python bench/bench_submit.py --backend postgresql --workers 2 --seconds 20
    .venv/bin/python bench/bench_submit.py --no-sbatch --clients 8 --profile
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    API,
    ROOT,
    ServerProcess,
    environment,
    job_body,
    latency_summary,
    print_profile,
    summarize_profile,
    write_result,
)

TARGETS = {"per_s": 500, "p99_paced_ms": 50, "p99_saturated_ms": 250, "array_s": 1.0}
SBATCH_NAME = "aif-bench-sbatch"

# --- the process tree's CPU ---------------------------------------------------------------


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# --- load -----------------------------------------------------------------------------------


class Poster:
    """One keep-alive HTTP connection that POSTs a fixed body."""

    def __init__(self, url: str, token: str, body: bytes) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.body = body
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(self) -> tuple[int, bytes]:
        self.conn.request("POST", f"{API}/jobs", self.body, self.headers)
        r = self.conn.getresponse()
        return r.status, r.read()


def closed_loop(
    clients: int, seconds: float, send: Callable[[], Callable[[], int]]
) -> dict[str, Any]:
    """``clients`` threads calling their sender back to back for ``seconds``."""
    stop = threading.Event()
    done: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        one, local = send(), []
        while not stop.is_set():
            t0 = time.perf_counter()
            status = one()
            t1 = time.perf_counter()
            local.append((t1, t1 - t0, status))
        with lock:
            done.extend(local)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    end = max((d[0] for d in done), default=start + seconds)
    ok = [d for d in done if d[2] in (0, 201)]
    return {
        "clients": clients,
        "accepted": len(ok),
        "errors": dict(Counter(d[2] for d in done if d[2] not in (0, 201))),
        "seconds": round(end - start, 2),
        "per_s": round(len(ok) / (end - start), 1),
        "latency": latency_summary([d[1] for d in ok]),
        "client_cpu_ms_per_job": round((time.process_time() - cpu0) * 1000 / max(len(ok), 1), 2),
    }


def sbatch_sender(conf: str) -> Callable[[], Callable[[], int]]:
    argv = ["sbatch", "--hold", "--parsable", "-J", SBATCH_NAME, "-o", "/dev/null", "--wrap=true"]
    env = {**os.environ, "SLURM_CONF": conf}

    def make() -> Callable[[], int]:
        return lambda: subprocess.run(argv, env=env, capture_output=True, check=False).returncode

    return make


def slurm_conf(start: bool) -> str | None:
    """factory1's slurm.conf when its slurmctld answers (started first with ``start``)."""
    harness = ROOT / "scripts" / "slurm" / "harness.sh"
    if start:
        subprocess.run(["bash", str(harness), "up"], check=False)
    info = subprocess.run(["bash", str(harness), "info"], capture_output=True, text=True)
    facts = dict(line.split("=", 1) for line in info.stdout.split() if "=" in line)
    conf = facts.get("FACTORY1_CONF")
    if not conf or not Path(conf).exists():
        return None
    ping = subprocess.run(
        ["scontrol", "ping"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True
    )
    return conf if "is UP" in ping.stdout else None


def bench_sbatch(args: argparse.Namespace) -> dict[str, Any]:
    conf = slurm_conf(args.slurm_up)
    if conf is None:
        print("  sbatch: factory1 does not answer (--slurm-up starts the harness); skipped")
        return {}
    out = {}
    for n in args.clients:
        run = closed_loop(n, args.seconds, sbatch_sender(conf))
        subprocess.run(["scancel", "-n", SBATCH_NAME], env={**os.environ, "SLURM_CONF": conf})
        out[n] = run
        print(f"  sbatch, {n} client(s): {run['per_s']}/s, p50 {run['latency'].get('p50_ms')} ms")
    return out


# --- aifactory --------------------------------------------------------------------------------


def _profiled(server: ServerProcess, args: argparse.Namespace, name: str) -> Path | None:
    if not args.profile:
        return None
    out = Path(ROOT / "bench" / "results" / f"{name}.collapsed.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    server.start_profile(out, args.seconds)
    return out


def submit_runs(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    result: dict[str, Any] = {"workers": args.workers, "closed": {}}
    with environment(backend, big_factory="LUMI AIF") as env:
        body = json.dumps(job_body(env.projects[0])).encode()

        def poster() -> Callable[[], int]:
            return lambda p=Poster(server.url, env.member.token, body): p.post()[0]

        with ServerProcess(env, workers=args.workers) as server:
            closed_loop(max(args.clients), 2.0, poster)  # warm-up: caches, pools, JIT of plans
            for n in args.clients:
                cpu0, prof = tree_cpu_s(server.pid), _profiled(server, args, f"submit-{n}")
                run = closed_loop(n, args.seconds, poster)
                run["server_cpu_ms_per_job"] = round(
                    (tree_cpu_s(server.pid) - cpu0) * 1000 / max(run["accepted"], 1), 2
                )
                if prof is not None:
                    server.wait_profile()
                    run["profile"] = summarize_profile(prof)
                    print_profile(run["profile"])
                result["closed"][n] = run
                _print_run(f"aifactory {backend}, {n} client(s)", run)
            result["paced"] = paced(server.url, env.member.token, body, args.rate, args.seconds)
            lat = result["paced"]["latency_from_schedule"]
            print(
                f"  aifactory {backend}, paced {args.rate:g}/s: p50 {lat.get('p50_ms')} ms, "
                f"p99 {lat.get('p99_ms')} ms (target <= {TARGETS['p99_paced_ms']} ms)"
            )
    result["arrays"] = arrays(backend, args.array, args.workers)
    return result


def _print_run(label: str, run: dict[str, Any]) -> None:
    lat = run["latency"]
    print(
        f"  {label}: {run['per_s']}/s, p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, "
        f"server {run['server_cpu_ms_per_job']} CPU-ms/job, client "
        f"{run['client_cpu_ms_per_job']} CPU-ms/job, errors {run['errors']}"
    )


def paced(url: str, token: str, body: bytes, rate: float, seconds: float) -> dict[str, Any]:
    """Submissions due at ``t0 + i / rate``, sent then by a pool of 32 threads."""
    local = threading.local()
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def send(due: float) -> None:
        if not hasattr(local, "poster"):
            local.poster = Poster(url, token, body)
        t0 = time.perf_counter()
        status, _ = local.poster.post()
        t1 = time.perf_counter()
        with lock:
            results.append((t1 - due, t1 - t0, status))

    with ThreadPoolExecutor(32) as pool:
        start = time.perf_counter() + 0.05
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, start + i / rate)
    ok = [r for r in results if r[2] == 201]
    return {
        "rate_per_s": rate,
        "accepted": len(ok),
        "errors": dict(Counter(r[2] for r in results if r[2] != 201)),
        "latency_from_schedule": latency_summary([r[0] for r in ok]),
        "latency_from_send": latency_summary([r[1] for r in ok]),
    }


def arrays(backend: str, tasks: int, workers: int, repeat: int = 3) -> dict[str, Any]:
    """One POST of a ``tasks``-task array: all placed, then on a full site (all but 8 wait)."""
    out: dict[str, Any] = {}
    for case, big in (("all_placed", "LUMI AIF"), ("site_full", None)):
        with (
            environment(backend, big_factory=big) as env,
            ServerProcess(env, workers=workers) as srv,
        ):
            body = job_body(env.projects[0], name="array")
            body["array"] = f"0-{tasks - 1}"
            poster = Poster(srv.url, env.member.token, json.dumps(body).encode())
            seconds, states = [], Counter()
            for _ in range(repeat):
                t0 = time.perf_counter()
                status, answer = poster.post()
                seconds.append(time.perf_counter() - t0)
                if status != 201:
                    raise SystemExit(f"array refused: {status} {answer[:300]!r}")
                states[json.loads(answer)["state"]] += 1
            out[case] = {"tasks": tasks, "seconds": [round(s, 3) for s in seconds]}
            print(
                f"  aifactory {backend}, one {tasks}-task array, {case}: "
                f"{', '.join(f'{s:.3f}' for s in seconds)} s (target <= {TARGETS['array_s']} s)"
            )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    ap.add_argument("--rate", type=float, default=50.0, help="paced run: submissions/s")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--array", type=int, default=1000, help="tasks in the array request")
    ap.add_argument("--sbatch", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--slurm-up", action="store_true", help="start the Slurm harness first")
    ap.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    args = ap.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    print(f"== submissions, {args.seconds:g} s per run, load average {os.getloadavg()[0]:.2f} ==")
    sbatch = bench_sbatch(args) if args.sbatch else {}
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        load = os.getloadavg()[0]
        ours = submit_runs(args, backend)
        for n, run in ours["closed"].items():
            if n in sbatch:
                ratio = run["per_s"] / max(sbatch[n]["per_s"], 0.1)
                print(f"  {backend}, {n} client(s): {ratio:.2f}x sbatch's rate")
        data = {"load_before": load, "sbatch": sbatch, "targets": TARGETS, **ours}
        name = "submit" if args.workers == 1 else f"submit-{args.workers}workers"
        write_result(name, backend, data)


if __name__ == "__main__":
    main()
