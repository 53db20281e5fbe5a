"""Accepted -> ``sbatch`` done on a real slurmctld, through ``aif serve`` with a Slurm site.

Needs the project's Slurm harness (``bash scripts/slurm/harness.sh up``, root). One run prints:

(a) raw ``sbatch --parsable --hold`` rate into the same cluster (factory1) with 1 and 8
    clients, as root and through ``runuser -u <login>`` (what per-person identity adds);
(b) hand-over (a job's ``created_at`` -> its ``submitted`` transition, both written by the
    server) p50/p95/p99 at 10 and 20 submissions/s offered through the REST API of
    ``aif serve``, whose LUMI AIF site is factory1 through the local transport, as
    docs/slurm.md configures a site (a ``sites.yaml``; jobs run as their owner's own login,
    mapped through the API);
(c) the sustained hand-over rate: a burst of ``--burst`` jobs sent as fast as 8 clients can,
    and ``submitted`` transitions per second from the first to the last.

The jobs go to a partition this benchmark creates on factory1 with ``State=DOWN`` (``scontrol
create``, deleted afterwards): Slurm accepts and queues them but never runs them, so 2 cores
measure hand-overs, not fake jobs starting. Each phase gets a fresh ``aif serve`` (scratch
SQLite, or PostgreSQL with ``--backend postgresql``); its jobs are cancelled afterwards
(Slurm keeps them ``MinJobAge``, 300 s, so later phases poll a fuller controller: the count
is printed). Writes ``bench/results/slurm-<backend>.json``.

    .venv/bin/python bench/bench_slurm.py                       # about 3 minutes
    .venv/bin/python bench/bench_slurm.py --seconds 10 --burst 300 --profile
    .venv/bin/python bench/bench_slurm.py --backend postgresql --phases burst
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, RESULTS, ROOT, _frame, machine_info, percentile
from bench_handover import (
    Sent,
    aif_serve,
    cpu_sample,
    cpu_used,
    figures,
    job_spec,
    open_loop,
    scratch,
    server_times,
    setup_people,
    wait_handed,
)

from aifactory.db.engine import Database

HARNESS = ["bash", str(ROOT / "scripts" / "slurm" / "harness.sh")]
FACTORY = "LUMI AIF"
PARTITION = "aifbench"  # created DOWN on factory1 for the run: jobs queue, never start
JOB_NAME = "aif-bench-raw"
TARGET_P95_S, TARGET_RATE = 1.0, 50.0


def harness_facts() -> dict[str, str]:
    subprocess.run([*HARNESS, "up"], check=True, capture_output=True, timeout=600)
    out = subprocess.run([*HARNESS, "info"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def slurm(conf: str, *argv: str, check: bool = True) -> str:
    env = {**os.environ, "SLURM_CONF": conf}
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=check)
    return proc.stdout


@contextmanager
def bench_partition(conf: str) -> Iterator[None]:
    """A DOWN partition over factory1's nodes for the run; its jobs cancelled, then removed."""
    slurm(conf, "scontrol", "delete", f"PartitionName={PARTITION}", check=False)
    slurm(conf, "scontrol", "create", f"PartitionName={PARTITION}", "Nodes=ALL", "State=DOWN")
    try:
        yield
    finally:
        slurm(conf, "scancel", "--partition", PARTITION, check=False)
        slurm(conf, "scontrol", "delete", f"PartitionName={PARTITION}", check=False)


def controller_jobs(conf: str) -> int:
    """Jobs slurmctld holds (finished ones until MinJobAge): what every poll reads."""
    return len(slurm(conf, "squeue", "--noheader", "--states=all", "--format=%A").split())


# --- (a) raw sbatch ---------------------------------------------------------------------------


def raw_sbatch(conf: str, clients: int, n: int, login: str | None) -> dict[str, Any]:
    """``n`` held submissions from ``clients`` threads, back to back: jobs/s and call wall."""
    argv = ["sbatch", "--parsable", "--hold", f"--partition={PARTITION}", f"--job-name={JOB_NAME}"]
    argv += ["--output=/dev/null", "--wrap=true"]
    if login is not None:
        argv = ["runuser", "-u", login, "--", *argv]
    env = {**os.environ, "SLURM_CONF": conf}
    walls: list[float] = []
    failures: list[str] = []

    def one(_: int) -> None:
        t = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd="/")
        walls.append(time.perf_counter() - t)
        if proc.returncode != 0 or not proc.stdout.strip().isdigit():
            failures.append(proc.stderr.strip()[:200])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    span = time.perf_counter() - t0
    slurm(conf, "scancel", f"--name={JOB_NAME}", check=False)
    return {
        "clients": clients,
        "as": login or "root",
        "jobs": n,
        "jobs_per_s": round((n - len(failures)) / span, 1),
        "call_p50_ms": round(1000 * percentile(walls, 50), 1),
        "call_p95_ms": round(1000 * percentile(walls, 95), 1),
        "failures": failures[:3],
    }


# --- (b) and (c) through `aif serve` ------------------------------------------------------------


def sites_yaml(folder: Path, h: dict[str, str]) -> Path:
    """The site as an operator writes it (docs/slurm.md): factory1 through the local transport."""
    options = {
        "cluster": "factory1",
        "transport": "local",
        "slurm_conf": h["FACTORY1_CONF"],
        "job_root": h["JOB_ROOT"],
        "partitions": {"gpu": PARTITION},
        "default_partition": PARTITION,
        "accounting": False,
        "command_timeout_s": 30.0,
    }
    path = folder / "sites.yaml"
    site = {"factory": FACTORY, "executor": "slurm", "capacity_gpus": None, "options": options}
    path.write_text(yaml.safe_dump({"sites": [site]}))
    return path


@contextmanager
def slurm_serve(args: argparse.Namespace, h: dict[str, str]) -> Iterator[dict[str, Any]]:
    """``aif serve`` with the Slurm site, a member whose jobs run as ``h["JOB_USER"]``."""
    with scratch(args.backend, args.keep) as (folder, aif_env, db_url):
        env = {"AIF_SITES_FILE": str(sites_yaml(folder, h)), **args.serve_env}
        with aif_serve(folder, aif_env, env) as server:
            project, token, admin = setup_people(db_url, server["url"])
            path = f"{API}/users/bench-user/site-accounts/{FACTORY}"
            r = httpx.put(server["url"] + path, json={"login": h["JOB_USER"]},
                          headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
            r.raise_for_status()
            yield {**server, "project": project, "token": token, "db_url": db_url,
                   "folder": folder}  # fmt: skip


def measured(
    args: argparse.Namespace,
    h: dict[str, str],
    name: str,
    load: Callable[..., list[Sent]],
    every_job: bool = False,
) -> dict[str, Any]:
    """One phase: a fresh server, ``load(url, token, body)``, then every hand-over read back."""
    conf = h["FACTORY1_CONF"]
    loadavg = [round(x, 2) for x in os.getloadavg()]
    before = {"loadavg": loadavg, "slurm_jobs": controller_jobs(conf)}
    with slurm_serve(args, h) as server:
        body = job_spec(server["project"], ["true"], 1, 60)
        pid = server["proc"].pid
        spy = start_spy(pid, server["folder"]) if args.profile and name != "10/s" else None
        cpu0 = cpu_sample(pid)
        sends = load(server["url"], server["token"], body)
        db = Database(server["db_url"])
        try:
            ids = {s.job_id for s in sends if s.job_id is not None}
            if every_job:  # an array: one answer, every task a job of its own
                ids = set(server_times(db)[0])
                sends = [dataclasses.replace(sends[0], job_id=i) for i in sorted(ids)]
            wait_handed(db, ids, args.grace)
            deadline, cpu = time.time(), cpu_used(cpu0, cpu_sample(pid))
            created, firsts, states = server_times(db)
        finally:
            db.dispose()
        profile = stop_spy(spy, f"slurm-{args.backend}-{name.replace('/', '')}") if spy else None
    slurm(conf, "scancel", "--partition", PARTITION, check=False)
    firsts["submitted"] = {i: t for i, t in firsts["submitted"].items() if t <= deadline}
    result = figures(sends, created, firsts, ids)
    handed = sorted(firsts["submitted"][i] for i in ids if i in firsts["submitted"])
    span = handed[-1] - handed[0] if len(handed) > 1 else 0.0
    result.update(before=before, cpu=cpu, final_states=dict(states),
                  handed_per_s=round((len(handed) - 1) / span, 1) if span else None)  # fmt: skip
    if profile is not None:
        result["profile"] = profile
    return result


def burst(n: int, clients: int) -> Callable[[str, str, bytes], list[Sent]]:
    """``n`` submissions, ``clients`` at a time, back to back (a closed loop)."""

    def load(url: str, token: str, body: bytes) -> list[Sent]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        sends = [Sent(due=0.0) for _ in range(n)]
        todo = iter(sends)
        lock = threading.Lock()

        def worker() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                while True:
                    with lock:
                        item = next(todo, None)
                    if item is None:
                        return
                    item.due = item.sent = time.perf_counter()
                    r = client.post(f"{API}/jobs", content=body)
                    item.status, item.done, item.answered_wall = (
                        r.status_code, time.perf_counter(), time.time())  # fmt: skip
                    item.job_id = int(r.json()["id"]) if r.status_code == 201 else None

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sends

    return load


def array(n: int) -> Callable[[str, str, bytes], list[Sent]]:
    """One submission of an ``n``-task array: ``n`` placed jobs at once, no API in the way."""

    def load(url: str, token: str, body: bytes) -> list[Sent]:
        spec = {**json.loads(body), "array": f"0-{n - 1}"}
        item = Sent(due=time.perf_counter())
        item.sent = item.due
        r = httpx.post(f"{url}{API}/jobs", json=spec, timeout=120,
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        item.status, item.done, item.answered_wall = r.status_code, time.perf_counter(), time.time()
        item.job_id = int(r.json()["id"]) if r.status_code == 201 else None
        return [item]

    return load


def paced(rate: float, seconds: float, threads: int) -> Callable[[str, str, bytes], list[Sent]]:
    return lambda url, token, body: open_loop(url, token, body, rate, seconds, threads)


# --- where the site agent's time goes (py-spy, wall clock) ---------------------------------------


def start_spy(pid: int, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy on `aif serve`, idle samples included: a site agent mostly waits on Slurm."""
    out = folder / "spy.txt"
    spy = str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(pid), "--idle", "--format", "raw", "--rate", "200"]
    argv += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def stop_spy(spy: tuple[subprocess.Popen[bytes], Path], name: str) -> dict[str, Any]:
    """Inclusive shares of the site agent's wall time (its loop's stacks only), by function.

    Worker threads of the hand-over pool are counted apart (their stacks start in the pool,
    not the loop), as a share of the same number of samples.
    """
    proc, out = spy
    proc.send_signal(2)  # SIGINT: py-spy writes what it has
    proc.wait(timeout=60)
    RESULTS.mkdir(parents=True, exist_ok=True)
    loop: dict[str, int] = {}
    pool: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines() if out.exists() else []:
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";")]
        if any("._site_loop " in f for f in frames):
            target, total = loop, total + int(count)
        elif any(f.startswith("HandOver._submit ") for f in frames):
            target = pool
        else:
            continue
        for f in set(frames):
            target[f] = target.get(f, 0) + int(count)
    (RESULTS / f"{name}-spy.txt").write_text(out.read_text() if out.exists() else "")

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:22]
        return [(k, round(100 * v / max(total, 1), 1)) for k, v in ranked]

    return {"loop_samples": total, "loop_pct": top(loop), "pool_pct_of_loop": top(pool)}


def print_spy(p: dict[str, Any]) -> None:
    print(f"    site agent loop, {p['loop_samples']} samples (wall); inclusive %:")
    for name, pct in p["loop_pct"]:
        print(f"      {pct:5.1f}  {name}")
    print("    hand-over workers (summed over threads), % of the loop's samples:")
    for name, pct in p["pool_pct_of_loop"][:12]:
        print(f"      {pct:5.1f}  {name}")


# --- printing -----------------------------------------------------------------------------------


def print_phase(name: str, r: dict[str, Any]) -> None:
    h, b = r["handover_s"], r["before"]
    accepted = r["offered"]["achieved_rate_per_s"] or "-"
    p95 = h.get("p95_s")
    p95_ok = p95 is not None and p95 <= TARGET_P95_S and not r["never_handed_over"]
    print(
        f"  {name:>9}: {r['handed_over'] + r['never_handed_over']:4} accepted ({accepted}/s sent), "
        f"{r['handed_over']} handed over, {r['never_handed_over']} never; hand-over "
        f"p50 {h.get('p50_s')} p95 {h.get('p95_s')} p99 {h.get('p99_s')} max {h.get('max_s')} s"
        f" ({'PASS' if p95_ok else 'MISS'} p95 <= 1 s); {r['handed_per_s']} submitted/s; "
        f"serve {r['cpu'].get('serve_cores')} cores; "
        f"load {b['loadavg']}, {b['slurm_jobs']} jobs in slurmctld before"
    )
    if "profile" in r:
        print_spy(r["profile"])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    h = harness_facts()
    out: dict[str, Any] = {"benchmark": "slurm_handover", "machine": machine_info(args.backend)}
    with bench_partition(h["FACTORY1_CONF"]):
        if "raw" in args.phases:
            print("(a) raw sbatch --hold into factory1, back to back")
            out["raw_sbatch"] = []
            for clients, login in ((1, None), (8, None), (1, h["JOB_USER"]), (8, h["JOB_USER"])):
                row = raw_sbatch(h["FACTORY1_CONF"], clients, args.raw_jobs, login)
                out["raw_sbatch"].append(row)
                print(f"  {clients} client(s) as {row['as']:7}: {row['jobs_per_s']:6} jobs/s, "
                      f"call p50 {row['call_p50_ms']} ms p95 {row['call_p95_ms']} ms "
                      f"{row['failures'] or ''}")  # fmt: skip
        print(f"(b, c) accepted -> submitted through `aif serve` ({args.backend})")
        for rate in args.rates if "paced" in args.phases else []:
            name = f"{rate:g}/s"
            out[name] = measured(args, h, name, paced(rate, args.seconds, args.threads))
            print_phase(name, out[name])
        if "burst" in args.phases:
            out["burst"] = measured(args, h, "burst", burst(args.burst, 8))
            print_phase("burst", out["burst"])
        if "array" in args.phases:
            out["array"] = measured(args, h, "array", array(args.burst), every_job=True)
            print_phase("array", out["array"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"slurm-{args.backend}.json"
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--phases", default="raw,paced,burst,array", help="of raw,paced,burst,array")
    ap.add_argument("--rates", default="10,20", help="paced submissions/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of each paced phase")
    ap.add_argument("--burst", type=int, default=500, help="jobs in the burst")
    ap.add_argument("--raw-jobs", type=int, default=200, help="sbatch calls per raw figure")
    ap.add_argument("--threads", type=int, default=32, help="most client threads (paced)")
    ap.add_argument("--grace", type=float, default=60.0, help="s to wait for hand-overs")
    ap.add_argument("--serve-env", action="append", default=[], metavar="AIF_NAME=VALUE")
    ap.add_argument("--keep", action="store_true", help="keep data dirs, logs and databases")
    ap.add_argument("--profile", action="store_true", help="py-spy on `aif serve` (20/s, burst)")
    args = ap.parse_args(argv)
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.serve_env = dict(item.split("=", 1) for item in args.serve_env)
    return args


if __name__ == "__main__":
    main()
