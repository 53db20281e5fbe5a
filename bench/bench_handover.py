"""Accepted -> handed to the executor, p95, with the controllers running as `aif serve` runs them.

The real entry point: ``aif serve`` (the venv's ``aif``) in a subprocess on a free port, with a
scratch data dir (SQLite) or a scratch PostgreSQL database, and its own controllers (the broker
reconciler and one site agent per factory, each in its own thread, woken by submissions).
``AIF_LOCAL_GPUS_PER_SITE=1024`` and 1-GPU ``true`` jobs, so no job ever waits for GPUs. An
admin (``services.identity.bootstrap_admin``), a project member and an operator are made on the
database; the award goes through the API (``testing.access.award``, as the tests do). Then an
open loop submits at ``--rate`` (default 20/s) for ``--seconds`` (default 30): submission ``i``
is due at ``t0 + i / rate`` and is sent by a pool of threads that grows when answers are slow
(up to ``--threads``, 32), so a slow server does not lower the offered rate (lateness shows in
the send lag, and in the latency counted from the due time).

Hand-over time of a job = its ``submitted`` transition (``job_transitions.at``) minus its
``created_at``, both written by the server. Jobs not handed over within the run plus
``--grace`` seconds count as never handed over. Target (DESIGN.md section 7): p95 <= 1 s.

Usage::

    .venv/bin/python bench/bench_handover.py                       # both backends, 30 s each
    .venv/bin/python bench/bench_handover.py --backend sqlite --seconds 10
    .venv/bin/python bench/bench_handover.py --serve-env AIF_AGENT_INTERVAL_S=0.2 --profile

Prints a table per backend and a summary, and writes ``bench/results/handover.json`` (one entry
per backend; a run of one backend keeps the other's last entry).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, RESULTS, ROOT, machine_info, percentile, print_profile, summarize_profile

from aifactory.db.engine import Database
from aifactory.db.models import Job, JobTransition
from aifactory.domain.enums import Role
from aifactory.server import free_port
from aifactory.services.identity import bootstrap_admin
from aifactory.testing import databases
from aifactory.testing.people import make_person

TARGET_P95_S = 1.0
LOCAL_GPUS = 1024  # the most Settings allows; 1-GPU jobs never wait for capacity
RESULT = RESULTS / "handover.json"


@dataclass
class Sent:
    """One submission: when it was due, sent and answered (perf_counter), and the answer."""

    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0
    job_id: int | None = None
    answered_wall: float = 0.0  # time.time() at the answer, to compare with server clocks
    error: str = ""  # the client's exception when no answer came


# --- scratch database and the `aif serve` process ---------------------------------------------


@contextmanager
def scratch(backend: str, keep: bool) -> Iterator[tuple[Path, dict[str, str], str]]:
    """A scratch folder (data dir) and database; yields (folder, AIF_* env, database URL)."""
    folder = Path(tempfile.mkdtemp(prefix=f"aif-handover-{backend}-"))
    env = {"AIF_DATA_DIR": str(folder / "data")}
    pg_name = None
    if backend == "postgresql":
        reason = databases.postgres_available()
        if reason:
            raise SystemExit(reason)
        pg_name, url = databases.create_scratch_postgres()
        env["AIF_DATABASE_URL"] = url
    else:
        url = f"sqlite:///{folder / 'data' / 'aifactory.db'}"  # what AIF_DATA_DIR implies
    try:
        yield folder, env, url
    finally:
        if keep:
            print(f"  kept {folder} and database {url}")
        else:
            if pg_name:
                databases.drop_scratch_postgres(pg_name)
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def aif_serve(folder: Path, aif_env: dict[str, str], extra: dict[str, str]) -> Iterator[Any]:
    """``aif serve`` on a free port until health answers; SIGINT (then SIGTERM) on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(aif_env)
    env.update(
        AIF_HOST="127.0.0.1", AIF_PORT=str(port), AIF_LOCAL_GPUS_PER_SITE=str(LOCAL_GPUS), **extra
    )
    log_path = folder / "serve.log"
    aif = str(Path(sys.executable).with_name("aif"))
    with log_path.open("w") as log:
        proc = subprocess.Popen([aif, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    info: dict[str, Any] = {"proc": proc, "url": url, "log": log_path, "argv": [aif, "serve"]}
    try:
        _wait_healthy(proc, url, log_path)
        yield info
    finally:
        info["shutdown"] = _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"aif serve exited {proc.returncode}:\n{_tail(log_path)}")
        with suppress(httpx.TransportError):
            if httpx.get(f"{url}{API}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"aif serve never answered on {url}:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGINT and wait (uvicorn stops, then the controllers); SIGTERM, then kill, if stuck."""
    t0 = time.monotonic()
    for sig, wait_s in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
            return {
                "signal": sig.name,
                "seconds": round(time.monotonic() - t0, 2),
                "returncode": proc.returncode,
            }
        except subprocess.TimeoutExpired:
            continue
    return {"signal": "none worked", "seconds": round(time.monotonic() - t0, 2)}


def _tail(path: Path, lines: int = 30) -> str:
    with suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def setup_people(db_url: str, url: str) -> tuple[str, str, str]:
    """An admin token (bootstrap), and a member's token and project (award through the API).

    Returns (project code, member token, admin token).
    """
    with warnings.catch_warnings():  # it imports FastAPI's TestClient, which warns about httpx
        warnings.simplefilter("ignore")
        from aifactory.testing.access import award, member_of

    db = Database(db_url)
    try:
        with db.session() as s:
            admin_token = bootstrap_admin(s, "bench-admin", 1).token
        member = member_of(db, "bench-user", "Bench Oy")
        operator = make_person(db, "bench-operator", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        with httpx.Client(base_url=url, timeout=30) as api:
            project, _ = award(api, member, operator, organisation="Bench Oy", hours=1000)  # type: ignore[arg-type]
    finally:
        db.dispose()
    return project, member.token, admin_token


# --- the open loop --------------------------------------------------------------------------


def open_loop(
    url: str, token: str, body: bytes, rate: float, seconds: float, threads: int
) -> list[Sent]:
    """Submission ``i`` is due at ``t0 + i / rate``; a pool sends it then, whatever came before.

    The pool starts a thread only when none is idle, so a few threads do the work while answers
    are quick, and a slow server gets more of them (up to ``threads``) before the offered rate
    drops; the send lag shows when it did.
    """
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def send(item: Sent) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, headers=headers, timeout=60)
            with lock:
                clients.append(client)
        delay = item.due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        item.sent = time.perf_counter()
        try:
            r = client.post(f"{API}/jobs", content=body)
            item.status = r.status_code
            if r.status_code == 201:
                item.job_id = int(r.json()["id"])
        except httpx.HTTPError as exc:
            item.status, item.error = -1, type(exc).__name__
        item.done, item.answered_wall = time.perf_counter(), time.time()

    n = round(rate * seconds)
    t0 = time.perf_counter() + 0.2
    sends = [Sent(due=t0 + i / rate) for i in range(n)]
    with ThreadPoolExecutor(threads) as pool:
        for item in sends:  # hand each to the pool a little before it is due
            lead = item.due - 0.1 - time.perf_counter()
            if lead > 0:
                time.sleep(lead)
            pool.submit(send, item)
    for c in clients:
        c.close()
    return sends


# --- reading what the server wrote ---------------------------------------------------------


def wait_handed(db: Database, ids: set[int], grace: float) -> float:
    """Wait until every accepted job has a ``submitted`` transition, or ``grace`` s pass."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < grace:
        with db.session() as s:
            done = s.scalar(
                select(func.count(func.distinct(JobTransition.job_id))).where(
                    JobTransition.to_state == "submitted"
                )
            )
        if (done or 0) >= len(ids):
            break
        time.sleep(0.25)
    return time.monotonic() - t0


def server_times(
    db: Database,
) -> tuple[dict[int, float], dict[str, dict[int, float]], Counter[str]]:
    """Each job's created_at, its first transition into placed / submitted, and final states."""
    with db.session() as s:
        jobs = s.execute(select(Job.id, Job.created_at, Job.state)).all()
        rows = s.execute(
            select(JobTransition.job_id, JobTransition.to_state, func.min(JobTransition.at))
            .where(JobTransition.to_state.in_(["placed", "submitted"]))
            .group_by(JobTransition.job_id, JobTransition.to_state)
        ).all()
    created = {i: at.timestamp() for i, at, _ in jobs}
    firsts: dict[str, dict[int, float]] = {"placed": {}, "submitted": {}}
    for job_id, state, at in rows:
        firsts[state][job_id] = at.timestamp()
    return created, firsts, Counter(state for _, _, state in jobs)


def seconds_summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        **{f"p{p}_s": round(percentile(values, p), 3) for p in (50, 90, 95, 99)},
        "max_s": round(max(values), 3),
        "mean_s": round(sum(values) / len(values), 3),
    }


def per_window(
    ids: list[int],
    created: dict[int, float],
    handed: dict[int, float],
    t0: float,
    width: float = 5.0,
) -> list[dict[str, Any]]:
    """p95 and max hand-over per ``width``-second window of creation (is it steady or growing?)."""
    buckets: dict[int, list[float]] = {}
    for i in ids:
        if i in handed:
            buckets.setdefault(int((created[i] - t0) // width), []).append(handed[i] - created[i])
    return [
        {
            "from_s": k * width,
            "n": len(v),
            "p95_s": round(percentile(v, 95), 3),
            "max_s": round(max(v), 3),
        }
        for k, v in sorted(buckets.items())
    ]


# --- one backend ----------------------------------------------------------------------------


def run_backend(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    n = round(args.rate * args.seconds)
    print(
        f"\n== accepted -> handed to the executor, `aif serve` on {backend}: {args.rate:g}/s "
        f"for {args.seconds:g} s ({n} jobs), grace {args.grace:g} s =="
    )
    body: dict[str, Any] = {"argv": ["true"], "gpus": 1, "time_limit": 60}
    load_before = [round(x, 2) for x in os.getloadavg()]
    with scratch(backend, args.keep) as (folder, aif_env, db_url):
        with aif_serve(folder, aif_env, args.serve_env) as server:
            project, member_token, admin_token = setup_people(db_url, server["url"])
            spec = job_spec(project, body["argv"], body["gpus"], body["time_limit"])
            pid = server["proc"].pid
            spy = start_profile(pid, folder, args) if args.profile else None
            cpu0 = cpu_sample(pid)
            sends = open_loop(
                server["url"], member_token, spec, args.rate, args.seconds, args.threads
            )
            db = Database(db_url)
            try:
                ids = {s.job_id for s in sends if s.job_id is not None}
                waited = wait_handed(db, ids, args.grace)
                deadline = time.time()  # handed over later than this counts as never
                cpu = cpu_used(cpu0, cpu_sample(pid))
                created, firsts, states = server_times(db)
            finally:
                db.dispose()
            health = controller_status(server["url"], admin_token)
            profile = stop_profile(spy, backend)
        log = log_summary(server["log"])
        if args.keep:
            print(f"  server log: {server['log']}")
    firsts["submitted"] = {i: t for i, t in firsts["submitted"].items() if t <= deadline}
    result = figures(sends, created, firsts, ids)
    result.update(
        config={
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "client_threads": args.threads,
            "grace_s": args.grace,
            "entry_point": " ".join(server["argv"]),
            "serve_env": {"AIF_LOCAL_GPUS_PER_SITE": str(LOCAL_GPUS), **args.serve_env},
            "job": body,
            "loadavg_1_5_15_before": load_before,
        },
        waited_after_last_submission_s=round(waited, 2),
        final_states=dict(states),
        cpu=cpu,
        controller_status=health,
        server_shutdown=server["shutdown"],
        server_log=log,
    )
    if profile is not None:
        result["profile"] = profile
        print_profile(profile)
    print_table(backend, result)
    return result


def job_spec(project: str, argv: list[str], gpus: int, time_limit: int) -> bytes:
    return json.dumps(
        {
            "name": "handover",
            "project": project,
            "command": argv,
            "resources": {"nodes": 1, "gpus_per_node": gpus, "time_limit": time_limit},
        }
    ).encode()


def figures(
    sends: list[Sent],
    created: dict[int, float],
    firsts: dict[str, dict[int, float]],
    ids: set[int],
) -> dict[str, Any]:
    """The hand-over figures (server clock) and the submit latency seen by the client."""
    handed, placed = firsts["submitted"], firsts["placed"]
    order = sorted(ids)
    ok = [s for s in sends if s.status == 201]
    answered = {s.job_id: s.answered_wall for s in ok}
    sent = [s.sent for s in sends if s.sent]
    span = (max(sent) - min(sent)) if len(sent) > 1 else 0.0
    t0 = min((created[i] for i in order), default=0.0)
    return {
        "offered": {
            "submissions": len(sends),
            "achieved_rate_per_s": round((len(sent) - 1) / span, 2) if span else None,
            "send_lag_ms": ms_summary([s.sent - s.due for s in sends if s.sent]),
        },
        "accepted": len(ok),
        "not_accepted": dict(Counter(s.error or str(s.status) for s in sends if s.status != 201)),
        "handed_over": len([i for i in order if i in handed]),
        "never_handed_over": len([i for i in order if i not in handed]),
        "handover_s": seconds_summary([handed[i] - created[i] for i in order if i in handed]),
        "created_to_placed_s": seconds_summary(
            [placed[i] - created[i] for i in order if i in placed]
        ),
        "placed_to_submitted_s": seconds_summary(
            [handed[i] - placed[i] for i in order if i in handed and i in placed]
        ),
        "answer_201_to_submitted_s": seconds_summary(
            [handed[i] - answered[i] for i in order if i in handed]
        ),
        "submit_latency_ms": {
            "from_due": ms_summary([s.done - s.due for s in ok]),
            "from_send": ms_summary([s.done - s.sent for s in ok]),
        },
        "by_5s_window_of_creation": per_window(order, created, handed, t0),
        "target_p95_s": TARGET_P95_S,
    }


def ms_summary(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    ms = [x * 1000 for x in seconds]
    return {
        "n": len(ms),
        **{f"p{p}_ms": round(percentile(ms, p), 1) for p in (50, 95, 99)},
        "max_ms": round(max(ms), 1),
    }


def controller_status(url: str, token: str) -> dict[str, Any]:
    """``GET /api/v1/status`` after the run (controllers alive, what still waits)."""
    try:
        r = httpx.get(f"{url}{API}/status", headers={"Authorization": f"Bearer {token}"})
        data: dict[str, Any] = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"error": str(exc)}
    keep = ("controllers_alive", "pending_jobs", "placed_jobs", "oldest_handover")
    return {k: data.get(k) for k in keep}


def log_summary(path: Path) -> dict[str, Any]:
    """Warnings and errors the server logged, and its exceptions by message (the first 80)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    raised = Counter(
        ln[:120] for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*: ", ln)
    )
    return {
        "lines": len(lines),
        "warnings": sum(" WARNING " in ln for ln in lines),
        "errors": sum(" ERROR " in ln for ln in lines),
        "exceptions": dict(raised.most_common(80)),
    }


def cpu_sample(pid: int) -> tuple[float, ...] | None:
    """(wall, server CPU s, its reaped children's CPU s, machine busy s, total s, this CPU s)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    me = os.times()
    own, children = (int(stat[11]) + int(stat[12])) / tick, (int(stat[13]) + int(stat[14])) / tick
    idle = machine[3] + machine[4]  # idle + iowait
    busy, total = (sum(machine) - idle) / tick, sum(machine) / tick
    return time.monotonic(), own, children, busy, total, me.user + me.system


def cpu_used(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> dict[str, Any]:
    """CPU used by `aif serve` (threads; reaped job wrappers) and the machine, per wall second."""
    if a is None or b is None:
        return {}
    wall = b[0] - a[0]
    d = [y - x for x, y in zip(a, b, strict=True)]
    return {
        "wall_s": round(wall, 1),
        "cpus": os.cpu_count(),
        "serve_cpu_s": round(d[1], 1),
        "job_wrappers_cpu_s": round(d[2], 1),
        "serve_cores": round(d[1] / wall, 2),
        "job_wrappers_cores": round(d[2] / wall, 2),
        "bench_client_cores": round(d[5] / wall, 2),
        "machine_busy_pct": round(100 * d[3] / d[4], 1) if d[4] else None,
    }


# --- profile (optional, py-spy) ---------------------------------------------------------------


def start_profile(pid: int, folder: Path, args: argparse.Namespace) -> tuple[Any, Path] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists() and not shutil.which("py-spy"):
        print("  --profile: py-spy not found (.venv/bin/pip install py-spy); no profile")
        return None
    out = folder / "profile.txt"
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100"]
    argv += ["--duration", str(int(args.seconds)), "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out


def stop_profile(spy: tuple[Any, Path] | None, backend: str) -> dict[str, Any] | None:
    if spy is None:
        return None
    proc, out = spy
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.copy(out, RESULTS / f"handover-profile-{backend}.txt")
    summary = summarize_profile(out)
    if proc.stderr is not None and not summary.get("samples"):
        summary["py_spy_stderr"] = proc.stderr.read().decode(errors="replace")[-500:]
    return summary


# --- printing and results -------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(backend: str, r: dict[str, Any]) -> None:
    h, lat = r["handover_s"], r["submit_latency_ms"]
    p95 = h.get("p95_s")
    rows: list[tuple[str, str, str, str]] = [
        ("submissions offered", str(r["offered"]["submissions"]), "", ""),
        ("achieved offered rate", f"{r['offered']['achieved_rate_per_s']}/s", "", ""),
        (
            "send lag p99 (behind schedule)",
            f"{r['offered']['send_lag_ms'].get('p99_ms')} ms",
            "",
            "",
        ),
        ("accepted (201)", str(r["accepted"]), "", ""),
        ("handed over", str(r["handed_over"]), "", ""),
        (
            "never handed over (run + grace)",
            str(r["never_handed_over"]),
            "0",
            verdict(r["never_handed_over"] == 0),
        ),
        ("hand-over p50", f"{h.get('p50_s')} s", "", ""),
        ("hand-over p95", f"{p95} s", f"<= {TARGET_P95_S:g} s", verdict_p95(r)),
        ("hand-over p99", f"{h.get('p99_s')} s", "", ""),
        ("hand-over max", f"{h.get('max_s')} s", "", ""),
        (
            "  of which placed -> submitted p95",
            f"{r['placed_to_submitted_s'].get('p95_s')} s",
            "",
            "",
        ),
        ("201 answer -> submitted p95", f"{r['answer_201_to_submitted_s'].get('p95_s')} s", "", ""),
        ("submit latency p50 (from due)", f"{lat['from_due'].get('p50_ms')} ms", "", ""),
        ("submit latency p99 (from due)", f"{lat['from_due'].get('p99_ms')} ms", "", ""),
        ("submit latency p99 (from send)", f"{lat['from_send'].get('p99_ms')} ms", "", ""),
    ]
    print(f"  {'figure (' + backend + ')':40} {'value':>12}  {'target':>9}  result")
    for name, value, target, mark in rows:
        print(f"  {name:40} {value:>12}  {target:>9}  {mark}")
    worst = max(r["by_5s_window_of_creation"], key=lambda w: w["p95_s"], default=None)
    if worst:
        print(f"  worst 5 s window: from {worst['from_s']:g} s, p95 {worst['p95_s']} s")
    c = r["cpu"]
    if c:
        print(
            f"  CPU while measured ({c['wall_s']} s, {c['cpus']} CPUs): aif serve "
            f"{c['serve_cores']} cores, its job wrappers {c['job_wrappers_cores']} cores, "
            f"this client {c['bench_client_cores']} cores, "
            f"machine {c['machine_busy_pct']} % busy"
        )
    print(
        f"  final states {r['final_states']}; not accepted {r['not_accepted'] or 'none'}; "
        f"server log: {r['server_log']['warnings']} warnings, {r['server_log']['errors']} errors; "
        f"stopped by {r['server_shutdown'].get('signal')} in "
        f"{r['server_shutdown'].get('seconds')} s (rc {r['server_shutdown'].get('returncode')})"
    )
    for message, count in r["server_log"]["exceptions"].items():
        print(f"  server raised {count} x {message}")


def verdict_p95(r: dict[str, Any]) -> str:
    p95 = r["handover_s"].get("p95_s")
    return verdict(p95 is not None and p95 <= TARGET_P95_S and r["never_handed_over"] == 0)


def write_results(results: dict[str, dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    with suppress(OSError, ValueError):
        old = json.loads(RESULT.read_text()).get("backends", {})
    backends = {**old, **{b: {"machine": machine_info(b), **r} for b, r in results.items()}}
    payload = {
        "benchmark": "handover",
        "what": "accepted -> handed to the executor (created_at -> 'submitted' transition), "
        "controllers as `aif serve` runs them",
        "target_p95_s": TARGET_P95_S,
        "backends": backends,
    }
    RESULT.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {RESULT.relative_to(ROOT)}")


def print_summary(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n  {'backend':12} {'n':>5} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'max s':>7}", end=""
    )
    print(f" {'never':>6} {'submit p50/p99 ms':>18}  target p95 <= {TARGET_P95_S:g} s")
    for backend, r in results.items():
        h, lat = r["handover_s"], r["submit_latency_ms"]["from_due"]
        print(
            f"  {backend:12} {h.get('n', 0):>5} {h.get('p50_s')!s:>7} {h.get('p95_s')!s:>7} "
            f"{h.get('p99_s')!s:>7} {h.get('max_s')!s:>7} {r['never_handed_over']:>6} "
            f"{str(lat.get('p50_ms')) + ' / ' + str(lat.get('p99_ms')):>18}  {verdict_p95(r)}"
        )


# --- command line -------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of submissions")
    ap.add_argument("--rate", type=float, default=20.0, help="submissions/s (open loop)")
    ap.add_argument(
        "--threads",
        type=int,
        default=32,
        help="most client threads, started only as needed (a few while answers are quick); "
        "above about 40 requests in flight `aif serve` stalls (see bench/README.md)",
    )
    ap.add_argument("--grace", type=float, default=30.0, help="s to wait for hand-overs after")
    ap.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="AIF_NAME=VALUE",
        help="extra setting for `aif serve` (repeatable), e.g. AIF_AGENT_INTERVAL_S=0.2",
    )
    ap.add_argument("--keep", action="store_true", help="keep the data dir, log and database")
    ap.add_argument("--profile", action="store_true", help="sample `aif serve` with py-spy")
    args = ap.parse_args(argv)
    pairs = [item.partition("=") for item in args.serve_env]
    bad = [k for k, eq, _ in pairs if not eq or not k.startswith("AIF_")]
    if bad:
        ap.error(f"--serve-env takes AIF_NAME=VALUE, not {bad}")
    args.serve_env = {k: v for k, _, v in pairs}
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = {b: run_backend(args, b) for b in backends}
    write_results(results)
    print_summary(results)


if __name__ == "__main__":
    main()
