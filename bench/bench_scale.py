"""Cost that stays flat as the federation grows (issue 17): four curves under `aif serve`.

1. ``backlog``: idle cost vs pending jobs that cannot run. The controller process's CPU (its
   own threads, the job wrappers it started, its reaped children: CPU-s per wall second) and
   the SQL statements it sends (per second and per idle pass, one ``controller_resync_s``
   window), with 0 / 100 / 1,000 / 10,000 pending 8-GPU jobs of a project whose only site
   (LUMI AIF, 16 virtual GPUs) has 9 GPUs held by ``sleep`` jobs. Nothing else happens while
   measured. Target: <= 0.05 CPU-s/s and <= 50 statements per idle pass at every point.
2. ``running``: the same measures with 0 / 50 / 200 / 1,000 running ``sleep 3600`` jobs (1 GPU
   each, 1,024 virtual GPUs per site) on the local executor; the CPU of the job wrappers (live
   children of the server, counted when present at both samples) is included.
3. ``history``: submit latency p50/p99 (REST ``POST /api/v1/jobs``, open loop at ``--rate``
   20/s) with 0 / 100,000 / 1,000,000 finished jobs and their ledger rows (reserve, release,
   charge: 3 per job) bulk-inserted (SQLite executemany, PostgreSQL COPY). Target: p99 flat.
4. ``handover``: created -> ``submitted`` p95 of 40 small 1-GPU ``true`` jobs that fit free
   capacity, at 4/s, with the backlog of curve 1 at 0 / 1,000 / 10,000: ``other`` site (a
   project on BSC AIF) and ``same`` site (the backlog's project on LUMI AIF, 7 GPUs free).
   Target: p95 <= 1 s, none left un-handed after ``--grace``.

The server is ``bench/_scale_controller.py``: ``aif serve``'s own composition (``load_settings``,
``prepare``, ``server.serve``) with a SQLAlchemy ``before_cursor_execute`` counter per thread
(``--entry aif`` runs the venv's real ``aif serve`` instead: CPU only, no statement counts). It
runs on a scratch data dir and a scratch database (a SQLite file, or a PostgreSQL database on
127.0.0.1:5432 dropped afterwards), with its jobs' homes under a scratch ``AIF_LOCAL_JOB_ROOT``;
every process it started (job wrappers and jobs included) is killed at the end.

Usage::

    .venv/bin/python bench/bench_scale.py --quick                  # both backends, ~8 min each
    .venv/bin/python bench/bench_scale.py --backend sqlite --curves backlog,handover
    .venv/bin/python bench/bench_scale.py --running 0,50,200,1000 --curves running
    .venv/bin/python bench/bench_scale.py --history 0,100000,1000000,3000000 --curves history
    .venv/bin/python bench/bench_scale.py --serve-env AIF_AGENT_INTERVAL_S=0.2 --profile

To measure other code (an older commit): run it with a Python whose ``aifactory`` is that code,
e.g. a venv with a ``.pth`` putting ``/tmp/before/src`` first (job wrappers are started with
``sys.executable`` and no ``PYTHONPATH``, so ``--src DIR`` alone leaves them on the venv's code).

Writes ``bench/results/scale.json`` (``--out``): one entry per backend with the machine, the
code measured (where ``aifactory`` was imported from, its git commit and whether ``src`` had
uncommitted changes), the settings, and every point.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _early_src(argv: list[str]) -> str | None:
    """``--src DIR`` must be on sys.path before anything imports aifactory."""
    for i, arg in enumerate(argv):
        if arg == "--src" and i + 1 < len(argv):
            return str(Path(argv[i + 1]).resolve())
        if arg.startswith("--src="):
            return str(Path(arg.split("=", 1)[1]).resolve())
    return None


_SRC = _early_src(sys.argv)
if _SRC:
    sys.path.insert(0, _SRC)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any, cast  # noqa: E402

import httpx  # noqa: E402
from _common import (  # noqa: E402
    API,
    BIG_HOURS,
    RESULTS,
    add_project,
    big_federation,
    machine_info,
    percentile,
    print_profile,
    sites_file,
    summarize_profile,
)
from bench_handover import (  # noqa: E402
    _stop,
    _wait_healthy,
    job_spec,
    log_summary,
    ms_summary,
    open_loop,
    seconds_summary,
)
from bench_jobs import JOB_COLUMNS, LEDGER_COLUMNS, _bulk_insert  # noqa: E402
from sqlalchemy import Table, func, insert, inspect, literal, select, text, update  # noqa: E402

import aifactory  # noqa: E402
from aifactory.db.engine import Database  # noqa: E402
from aifactory.db.models import Allocation, Job, JobTransition, User  # noqa: E402
from aifactory.domain.enums import Role  # noqa: E402
from aifactory.server import free_port  # noqa: E402
from aifactory.services.setup import prepare  # noqa: E402
from aifactory.settings import Settings  # noqa: E402
from aifactory.testing import databases  # noqa: E402
from aifactory.testing.people import make_person  # noqa: E402

DRIVER = Path(__file__).resolve().with_name("_scale_controller.py")
TARGET_CPU = 0.05  # CPU-s per wall second, idle
TARGET_STATEMENTS_PER_PASS = 50
TARGET_HANDOVER_P95_S = 1.0
FACTORIES = ["LUMI AIF", "BSC AIF", "IT4LIA", "Meluxina-AI", "MIMER", "HammerHAI", "Pharos"]
BACKLOG_GPUS = 16  # per site, curve 1 and 4: LUMI AIF's pool
BLOCKERS = 9  # 1-GPU sleep jobs holding LUMI AIF: 7 GPUs free, an 8-GPU job waits
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- processes: the server's tree, its CPU, killing what it started --------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: with pid, names one process even if the pid is reused
    cpu_s: float  # utime + stime
    children_cpu_s: float  # cutime + cstime (reaped children)
    rss_kb: int
    comm: str


def proc_table() -> dict[int, Proc]:
    table: dict[int, Proc] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        head, _, rest = raw.rpartition(")")
        f = rest.split()
        try:
            table[int(entry.name)] = Proc(
                pid=int(entry.name),
                ppid=int(f[1]),
                start=int(f[19]),
                cpu_s=(int(f[11]) + int(f[12])) / TICK,
                children_cpu_s=(int(f[13]) + int(f[14])) / TICK,
                rss_kb=int(f[21]) * PAGE // 1024,
                comm=head.partition("(")[2],
            )
        except (IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    kids: dict[int, list[int]] = {}
    for p in table.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    out, todo = [], list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(table[pid])
            todo.extend(kids.get(pid, []))
    return out


@dataclass
class TreeSample:
    t: float
    root: Proc | None
    children: dict[tuple[int, int], Proc]  # (pid, start) -> process
    machine_busy: float
    machine_total: float
    db: dict[tuple[int, int], Proc] = field(default_factory=dict)  # PostgreSQL backends


def tree_sample(pid: int, db_name: str | None = None) -> TreeSample:
    """The server's process tree now; with ``db_name``, that PostgreSQL database's backends."""
    table = proc_table()
    machine = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = machine[3] + machine[4]
    db: dict[tuple[int, int], Proc] = {}
    if db_name:
        for p in table.values():
            if p.comm != "postgres":
                continue
            with suppress(OSError):  # "postgres: user dbname host(port) state"
                title = Path(f"/proc/{p.pid}/cmdline").read_bytes().decode(errors="replace")
                if f" {db_name} " in title:
                    db[(p.pid, p.start)] = p
    return TreeSample(
        t=time.monotonic(),
        root=table.get(pid),
        children={(p.pid, p.start): p for p in descendants(pid, table)},
        machine_busy=(sum(machine) - idle) / TICK,
        machine_total=sum(machine) / TICK,
        db=db,
    )


def cpu_between(a: TreeSample, b: TreeSample) -> dict[str, Any]:
    """CPU-s per wall second of the server, its live children, its reaped children."""
    wall = b.t - a.t
    if a.root is None or b.root is None or wall <= 0:
        return {"error": "server gone"}
    own = b.root.cpu_s - a.root.cpu_s
    reaped = b.root.children_cpu_s - a.root.children_cpu_s
    both = [k for k in b.children if k in a.children]
    live = sum(b.children[k].cpu_s - a.children[k].cpu_s for k in both)
    total = own + reaped + live
    db_both = [k for k in b.db if k in a.db]
    db = sum(b.db[k].cpu_s - a.db[k].cpu_s for k in db_both)
    return {
        "wall_s": round(wall, 2),
        "serve_cpu_s_per_s": round(own / wall, 4),
        "children_cpu_s_per_s": round(live / wall, 4),
        "reaped_children_cpu_s_per_s": round(reaped / wall, 4),
        "total_cpu_s_per_s": round(total / wall, 4),
        "children_at_both_samples": len(both),
        "children_rss_mib": round(sum(p.rss_kb for p in b.children.values()) / 1024, 1),
        # PostgreSQL's backends serving this database (not counted in the total above)
        "db_backends_cpu_s_per_s": round(db / wall, 4) if b.db else None,
        "db_backends_at_both_samples": len(db_both) if b.db else None,
        "machine_busy_pct": round(
            100 * (b.machine_busy - a.machine_busy) / (b.machine_total - a.machine_total), 1
        )
        if b.machine_total > a.machine_total
        else None,
    }


def kill_tree(pid: int) -> int:
    """SIGKILL every descendant of ``pid`` (job wrappers, jobs), until none is left."""
    killed = 0
    for _ in range(20):
        kids = descendants(pid, proc_table())
        if not kids:
            break
        for p in kids:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(p.pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.2)
    return killed


def kill_strays(marks: list[str]) -> int:
    """SIGKILL processes whose command line or working directory lies under a scratch path."""
    killed = 0
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (
                Path(entry.path, "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        cwd = ""
        with suppress(OSError):
            cwd = os.readlink(Path(entry.path, "cwd"))
        if any(m in cmd or cwd.startswith(m) for m in marks):
            with suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
    return killed


def pss_mib(pids: list[int]) -> float:
    """Proportional memory of these processes (shared pages split among their sharers)."""
    total = 0
    for pid in pids:
        with suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total / 1024


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- scratch environment and the server ---------------------------------------------------


@dataclass
class Scratch:
    backend: str
    folder: Path
    data: Path
    url: str
    job_root: Path
    pg_name: str | None = None

    @property
    def aif_env(self) -> dict[str, str]:
        env = {"AIF_DATA_DIR": str(self.data), "AIF_LOCAL_JOB_ROOT": str(self.job_root)}
        if self.backend == "postgresql":
            env["AIF_DATABASE_URL"] = self.url
        return env


@contextmanager
def scratch(backend: str, keep: bool) -> Iterator[Scratch]:
    folder = Path(tempfile.mkdtemp(prefix=f"aif-scale-{backend}-"))
    job_root = Path("/var/tmp") / f"aif-scale-jobs-{uuid.uuid4().hex[:10]}"
    pg_name = None
    if backend == "postgresql":
        reason = databases.postgres_available()
        if reason:
            raise SystemExit(reason)
        pg_name, url = databases.create_scratch_postgres()
    else:
        url = f"sqlite:///{folder / 'data' / 'aifactory.db'}"
    sc = Scratch(backend, folder, folder / "data", url, job_root, pg_name)
    try:
        yield sc
    finally:
        strays = kill_strays([str(folder), str(job_root)])
        if strays:
            print(f"  killed {strays} stray processes under {folder} / {job_root}")
        if keep:
            print(f"  kept {folder}, {job_root} and database {url}")
        else:
            if pg_name:
                try:
                    databases.drop_scratch_postgres(pg_name)
                    print(f"  dropped scratch database {pg_name}")
                except Exception as exc:
                    print(f"  could not drop scratch database {pg_name}: {exc}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(job_root, ignore_errors=True)


class Serve:
    """The server (driver or ``aif serve``) in a child process; ``snap()`` asks for counts."""

    def __init__(
        self,
        sc: Scratch,
        args: argparse.Namespace,
        extra: dict[str, str],
        controllers: bool = True,
    ) -> None:
        self.sc, self.args, self.extra, self.controllers = sc, args, extra, controllers
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = sc.folder / f"serve-{uuid.uuid4().hex[:6]}.log"
        self._snaps = 0
        self.shutdown: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def counting(self) -> bool:
        return bool(self.args.entry == "driver")

    def __enter__(self) -> Serve:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
        env.update(self.sc.aif_env)
        env.update(AIF_HOST="127.0.0.1", AIF_PORT=str(port))
        env.update(self.extra)
        env.update(self.args.serve_env)
        if _SRC:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, env.get("PYTHONPATH")]))
        if self.counting:
            argv = [sys.executable, str(DRIVER)]
        else:
            argv = [str(Path(sys.executable).with_name("aif")), "serve"]
        if not self.controllers:
            argv.append("--no-controllers")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(self.proc, self.url, self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def snap(self) -> dict[str, Any] | None:
        """The driver's counts now (None for ``aif serve``)."""
        if not self.counting or self.proc is None or self.proc.stdin is None:
            return None
        self._snaps += 1
        path = self.sc.folder / f"snap-{self._snaps}.json"
        self.proc.stdin.write(f"snap {path}\n".encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + 30
        while not path.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the driver did not answer a snapshot")
            time.sleep(0.01)
        data: dict[str, Any] = json.loads(path.read_text())
        path.unlink()
        return data

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        killed = kill_tree(self.proc.pid)  # the job wrappers first: they outlive the server
        self.shutdown = {**_stop(self.proc), "children_killed": killed}
        self.proc = None


# --- people, projects, jobs -----------------------------------------------------------------


def prepared_db(sc: Scratch, **settings: Any) -> Database:
    return prepare(Settings(data_dir=sc.data, database_url=sc.url, **settings))


def client(url: str, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


def submit_many(url: str, token: str, bodies: list[bytes], threads: int = 4) -> list[int]:
    """Submit back to back from a few threads; returns the ids of the accepted jobs."""
    local = threading.local()
    made: list[httpx.Client] = []
    lock = threading.Lock()

    def one(body: bytes) -> int | None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = client(url, token)
            with lock:
                made.append(c)
        r = c.post(f"{API}/jobs", content=body)
        if r.status_code != 201:
            print(f"    submission refused: {r.status_code} {r.text[:200]}")
            return None
        return int(r.json()["id"])

    with ThreadPoolExecutor(threads) as pool:
        ids = [i for i in pool.map(one, bodies) if i is not None]
    for c in made:
        c.close()
    return ids


def states_of(db: Database, project: str) -> Counter[str]:
    with db.session() as s:
        rows = s.execute(
            select(Job.state, func.count()).where(Job.project_code == project).group_by(Job.state)
        ).all()
    return Counter({state: n for state, n in rows})


def wait_for(db: Database, project: str, state: str, n: int, timeout: float) -> float:
    t0 = time.monotonic()
    last = -1
    while time.monotonic() - t0 < timeout:
        got = states_of(db, project).get(state, 0)
        if got >= n:
            break
        if got != last and n >= 100:
            print(f"    {got} / {n} {state} ({time.monotonic() - t0:.0f} s)", flush=True)
            last = got
        time.sleep(1.0 if n >= 100 else 0.2)
    return time.monotonic() - t0


def clone_pending(db: Database, template_id: int, n: int, serial: int) -> float:
    """``n`` copies of a real waiting job (spec, placement, reason), each with its transition."""
    t0 = time.perf_counter()
    jobs = cast(Table, Job.__table__)
    with db.engine.begin() as conn:
        row = conn.execute(select(jobs).where(jobs.c.id == template_id)).mappings().one()
        base = {k: v for k, v in row.items() if k != "id"}
        top = conn.execute(select(func.max(jobs.c.id))).scalar() or 0
        batch: list[dict[str, Any]] = []
        for i in range(n):
            batch.append({**base, "uid": f"p{serial + i:015x}"})
            if len(batch) == 5000:
                conn.execute(insert(jobs), batch)
                batch = []
        if batch:
            conn.execute(insert(jobs), batch)
        trans = cast(Table, JobTransition.__table__)
        conn.execute(
            insert(trans).from_select(
                ["job_id", "at", "from_state", "to_state", "reason"],
                select(
                    jobs.c.id,
                    jobs.c.created_at,
                    literal(""),
                    literal("pending"),
                    literal("submitted"),
                ).where(jobs.c.id > top, jobs.c.state == "pending"),
            )
        )
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE jobs"))
            conn.execute(text("ANALYZE job_transitions"))
    return time.perf_counter() - t0


# --- measuring an idle window ---------------------------------------------------------------


def idle_window(serve: Serve, seconds: float, resync: float) -> dict[str, Any]:
    s0 = serve.snap()
    c0 = tree_sample(serve.pid, serve.sc.pg_name)
    load0 = os.getloadavg()[0]
    time.sleep(seconds)
    c1 = tree_sample(serve.pid, serve.sc.pg_name)
    s1 = serve.snap()
    out: dict[str, Any] = {"cpu": cpu_between(c0, c1), "loadavg_1m": [round(load0, 2)]}
    out["loadavg_1m"].append(round(os.getloadavg()[0], 2))
    wall = out["cpu"].get("wall_s") or seconds
    total = out["cpu"].get("total_cpu_s_per_s")
    out["cpu_s_per_idle_pass"] = round(total * resync, 3) if total is not None else None
    if s0 is not None and s1 is not None:
        out.update(statement_figures(s0, s1, s1["monotonic"] - s0["monotonic"], resync))
    out["wall_s"] = wall
    return out


def _diff(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b) if b.get(k, 0) - a.get(k, 0)}


def statement_figures(
    s0: dict[str, Any], s1: dict[str, Any], wall: float, resync: float
) -> dict[str, Any]:
    stm = _diff(s0["statements"], s1["statements"])
    commits = _diff(s0["commits"], s1["commits"])
    rollbacks = _diff(s0["rollbacks"], s1["rollbacks"])
    cpu = _diff(s0["thread_cpu_s"], s1["thread_cpu_s"])
    texts = _diff(s0["texts"], s1["texts"])
    spent = _diff(s0.get("seconds", {}), s1.get("seconds", {}))
    n = sum(stm.values())
    groups = sorted(set(stm) | set(cpu), key=lambda g: -(cpu.get(g, 0) + stm.get(g, 0) / 1e4))
    top = sorted(texts.items(), key=lambda kv: -kv[1])[:10]
    return {
        "statements": int(n),
        "statements_per_s": round(n / wall, 2),
        "statements_per_idle_pass": round(n / wall * resync, 1),
        "transactions_per_s": round((sum(commits.values()) + sum(rollbacks.values())) / wall, 2),
        "by_thread": {
            g: {
                "statements_per_s": round(stm.get(g, 0) / wall, 2),
                "cpu_s_per_s": round(cpu.get(g, 0) / wall, 4),
                "commits_per_s": round(commits.get(g, 0) / wall, 2),
                "rollbacks_per_s": round(rollbacks.get(g, 0) / wall, 2),
            }
            for g in groups
        },
        "top_statements_per_s": [
            {"thread": k.split("\t", 1)[0], "sql": k.split("\t", 1)[1], "per_s": round(v / wall, 2)}
            for k, v in top
        ],
        "statement_seconds_per_s": round(sum(spent.values()) / wall, 4),
        "top_statements_by_time": [
            {
                "thread": k.split("\t", 1)[0],
                "sql": k.split("\t", 1)[1],
                "ms_per_s": round(1000 * v / wall, 2),
                "mean_ms": round(1000 * v / texts[k], 3) if texts.get(k) else None,
            }
            for k, v in sorted(spent.items(), key=lambda kv: -kv[1])[:8]
        ],
    }


def start_spy(
    serve: Serve, args: argparse.Namespace, name: str, seconds: float
) -> tuple[subprocess.Popen[bytes], Path]:
    out = serve.sc.folder / f"profile-{name}.txt"
    argv = [args.py_spy, "record", "--pid", str(serve.pid), "--format", "raw", "--rate", "50"]
    argv += ["--duration", str(int(seconds)), "--output", str(out), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out


def stop_spy(spy: tuple[subprocess.Popen[bytes], Path], args: argparse.Namespace) -> dict[str, Any]:
    proc, out = spy
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    summary = summarize_profile(out, top=20, self_top=10)
    if out.exists():
        shutil.copy(out, args.out.with_name(f"{args.out.stem}-{out.name}"))
    if not summary.get("samples") and proc.stderr is not None:
        summary["py_spy_stderr"] = proc.stderr.read().decode(errors="replace")[-400:]
    print_profile(summary)
    return summary


def profile_window(serve: Serve, args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    """py-spy on the server for ``--profile-s`` (a window of its own, after the measured one)."""
    if not args.profile:
        return None
    return stop_spy(start_spy(serve, args, name, args.profile_s), args)


# --- curve 1 and 4: backlog -----------------------------------------------------------------


def run_backlog(args: argparse.Namespace, backend: str, resync: float) -> dict[str, Any]:
    idle_levels = args.backlog if "backlog" in args.curves else []
    hand_levels = args.handover_backlog if "handover" in args.curves else []
    levels = sorted(set(idle_levels) | set(hand_levels))
    print(
        f"\n== backlog on {backend}: pending 8-GPU jobs blocked at LUMI AIF "
        f"({BLOCKERS} of {BACKLOG_GPUS} GPUs held); levels {levels} =="
    )
    result: dict[str, Any] = {"idle": [], "handover": []}
    with scratch(backend, args.keep) as sc:
        db = prepared_db(sc, local_gpus_per_site=BACKLOG_GPUS)
        try:
            member = make_person(db, "scale-user", [(Role.APPLICANT, None)])
            big = add_project(db, "SCALE-BIG", "LUMI AIF", [member.username])
            other = add_project(db, "SCALE-OTHER", "BSC AIF", [member.username])
            extra = {"AIF_LOCAL_GPUS_PER_SITE": str(BACKLOG_GPUS)}
            with Serve(sc, args, extra) as serve:
                sleeper = job_spec(big, ["sleep", "3600"], 1, 7200)
                submit_many(serve.url, member.token, [sleeper] * BLOCKERS)
                took = wait_for(db, big, "running", BLOCKERS, 60)
                print(f"  {BLOCKERS} blockers running after {took:.1f} s")
                template: int | None = None
                have = 0
                for level in levels:
                    if level > have:
                        if template is None:
                            ids = submit_many(
                                serve.url, member.token, [job_spec(big, ["true"], 8, 3600)]
                            )
                            template, have = ids[0], 1
                        if level > have:
                            took = clone_pending(db, template, level - have, have)
                            print(f"  +{level - have} pending rows in {took:.1f} s")
                            have = level
                    pending = states_of(db, big).get("pending", 0)
                    if level in idle_levels:
                        time.sleep(args.warmup)
                        point = idle_window(serve, args.window, resync)
                        point.update(backlog=level, pending_seen=pending)
                        prof = profile_window(serve, args, f"{backend}-backlog-{level}")
                        if prof:
                            point["profile"] = prof
                        result["idle"].append(point)
                        print_idle_point("backlog", level, point)
                    if level in hand_levels:
                        for where in args.handover_where:
                            project = other if where == "other" else big
                            point = handover_run(args, serve, db, member.token, project)
                            point.update(backlog=level, where=where, pending_seen=pending)
                            result["handover"].append(point)
                            print_handover_point(point)
                            if args.profile:  # the same load again, sampled (not measured)
                                name = f"{backend}-handover-{level}-{where}"
                                spy = start_spy(serve, args, name, args.handover_jobs / 4 + 3)
                                handover_run(args, serve, db, member.token, project)
                                point["profile"] = stop_spy(spy, args)
                result["final_states"] = dict(states_of(db, big))
            result["server_log"] = log_summary(serve.log)
            result["server_shutdown"] = serve.shutdown
        finally:
            db.dispose()
    return result


def handover_run(
    args: argparse.Namespace, serve: Serve, db: Database, token: str, project: str
) -> dict[str, Any]:
    body = job_spec(project, ["true"], 1, 60)
    s0 = serve.snap()
    c0 = tree_sample(serve.pid, serve.sc.pg_name)
    sends = open_loop(
        serve.url, token, body, args.handover_rate, args.handover_jobs / args.handover_rate, 8
    )
    ids = sorted(s.job_id for s in sends if s.job_id is not None)
    answered = {s.job_id: s.answered_wall for s in sends if s.job_id is not None}
    t0 = time.monotonic()
    created: dict[int, float] = {}
    handed: dict[int, float] = {}
    while True:
        with db.session() as s:
            created = {
                i: at.timestamp()
                for i, at in s.execute(select(Job.id, Job.created_at).where(Job.id.in_(ids)))
            }
            handed = {
                i: at.timestamp()
                for i, at in s.execute(
                    select(JobTransition.job_id, func.min(JobTransition.at))
                    .where(JobTransition.job_id.in_(ids), JobTransition.to_state == "submitted")
                    .group_by(JobTransition.job_id)
                )
            }
        if len(handed) >= len(ids) or time.monotonic() - t0 > args.grace:
            break
        time.sleep(0.25)
    c1 = tree_sample(serve.pid, serve.sc.pg_name)
    s1 = serve.snap()
    times = [handed[i] - created[i] for i in ids if i in handed]
    work: dict[str, Any] = {}
    if s0 is not None and s1 is not None:  # what the server did meanwhile, by thread
        fig = statement_figures(s0, s1, s1["monotonic"] - s0["monotonic"], args.resync)
        work = {k: fig[k] for k in ("statements", "statements_per_s", "by_thread")}
        work["top_statements_by_time"] = fig["top_statements_by_time"][:5]
    return {
        "server_work": work,
        "submitted": len(sends),
        "accepted": len(ids),
        "not_accepted": dict(Counter(s.error or str(s.status) for s in sends if s.status != 201)),
        "handed_over": len(times),
        "never_handed_over": len(ids) - len(times),
        "handover_s": seconds_summary(times),
        "answer_201_to_submitted_s": seconds_summary(
            [handed[i] - answered[i] for i in ids if i in handed]
        ),
        "submit_latency_ms": ms_summary(
            [s.done - s.sent for s in sends if s.status == 201 and s.sent]
        ),
        "waited_after_last_answer_s": round(time.monotonic() - t0, 1),
        "cpu": cpu_between(c0, c1),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


# --- curve 2: running jobs ------------------------------------------------------------------


def run_running(args: argparse.Namespace, backend: str, resync: float) -> list[dict[str, Any]]:
    levels = sorted(args.running)
    print(
        f"\n== running `sleep 3600` jobs ({args.running_gpus} GPU each) on {backend}: {levels} =="
    )
    points: list[dict[str, Any]] = []
    with scratch(backend, args.keep) as sc:
        db = prepared_db(sc, local_gpus_per_site=1024)
        try:
            member = make_person(db, "scale-user", [(Role.APPLICANT, None)])
            project = add_project(db, "SCALE-RUN", "LUMI AIF", [member.username])
            with Serve(sc, args, {"AIF_LOCAL_GPUS_PER_SITE": "1024"}) as serve:
                body = job_spec(project, ["sleep", "3600"], args.running_gpus, 7200)
                have = 0
                for level in levels:
                    need = level - have
                    skip = None
                    if need > 0:
                        kids = [p.pid for p in descendants(serve.pid, proc_table())]
                        per_job = pss_mib(kids) / have if have else 15.0
                        want = need * per_job
                        if want > mem_available_mib() - 3072:
                            skip = (
                                f"{need} more jobs need about {want:.0f} MiB "
                                f"({per_job:.1f} MiB each); {mem_available_mib():.0f} MiB free"
                            )
                    if skip:
                        print(f"  {level} running: skipped, {skip}")
                        points.append({"running": level, "skipped": skip})
                        continue
                    started_in = None
                    if need > 0:
                        t0 = time.monotonic()
                        submit_many(serve.url, member.token, [body] * need)
                        wait_for(db, project, "running", level, 90 + 0.5 * need)
                        started_in = round(time.monotonic() - t0, 1)
                        print(f"  +{need} jobs: submitted and running after {started_in} s")
                        have = level
                    seen = states_of(db, project)
                    time.sleep(args.warmup)
                    point = idle_window(serve, args.window, resync)
                    tree = descendants(serve.pid, proc_table())
                    point.update(
                        running=level,
                        states=dict(seen),
                        added_jobs_running_after_s=started_in,
                        wrappers=sum(1 for p in tree if p.ppid == serve.pid),
                        processes=len(tree),
                        children_pss_mib=round(pss_mib([p.pid for p in tree]), 1),
                    )
                    if level:
                        child = point["cpu"].get("children_cpu_s_per_s", 0)
                        point["wrapper_cpu_ms_per_s_per_job"] = round(1000 * child / level, 3)
                    prof = profile_window(serve, args, f"{backend}-running-{level}")
                    if prof:
                        point["profile"] = prof
                    points.append(point)
                    print_idle_point("running", level, point)
        finally:
            db.dispose()
    return points


# --- curve 3: history -----------------------------------------------------------------------


JOB_COLS = ("id", "uid", *JOB_COLUMNS)
LEDGER_COLS = (*LEDGER_COLUMNS[:-1], "job_id", "attempt", "note")
FINISHED = [
    ("completed", 80),
    ("failed", 10),
    ("cancelled", 6),
    ("timed_out", 3),
    ("node_failed", 1),
]


class _Loader:
    """What ``bench_jobs._bulk_insert`` needs of an environment."""

    def __init__(self, backend: str, db: Database) -> None:
        self.backend, self.db = backend, db


def add_history(
    backend: str, db: Database, n: int, seed: int, batch: int = 200_000
) -> dict[str, Any]:
    """``n`` finished jobs over the last year, each with reserve, release and charge rows."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    present = {c["name"] for c in inspect(db.engine).get_columns("jobs")}
    cols = tuple(c for c in JOB_COLS if c in present)
    lcols = tuple(
        c
        for c in LEDGER_COLS
        if c in {c["name"] for c in inspect(db.engine).get_columns("ledger_entries")}
    )
    with db.session() as s:
        allocs = [
            (a.project_code, a.id, a.factory_id, a.partition_id)
            for a in s.scalars(select(Allocation))
        ]
        owner = s.scalar(select(User.id).order_by(User.id))
        top = s.scalar(select(func.max(Job.id))) or 0
    names, weights = zip(*FINISHED, strict=True)
    t_end = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    step = timedelta(days=365) / max(n, 1)
    loader = _Loader(backend, db)
    done = 0
    t_jobs = t_ledger = 0.0
    while done < n:
        m = min(batch, n - done)
        jobs: list[tuple[Any, ...]] = []
        entries: list[tuple[Any, ...]] = []
        for k in range(m):
            job_id = top + done + k + 1
            project, alloc, factory, partition = allocs[rng.randrange(len(allocs))]
            state = rng.choices(names, weights)[0]
            gpus = rng.choice((1, 1, 2, 4, 8))
            limit = rng.choice((600, 3600, 4 * 3600, 24 * 3600))
            created = t_end - timedelta(days=365) + step * (done + k)
            started = created + timedelta(seconds=rng.randrange(1, 600))
            elapsed = rng.randrange(1, limit)
            ended = started + timedelta(seconds=elapsed)
            reserve = gpus * limit * 1000 // 3600
            charged = gpus * elapsed * 1000 // 3600
            spec = json.dumps(
                {
                    "name": f"hist-{job_id}",
                    "project": project,
                    "command": ["python", "train.py"],
                    "resources": {"nodes": 1, "gpus_per_node": gpus, "time_limit": limit},
                }
            )
            values = {
                "id": job_id,
                "uid": f"h{job_id:015x}",
                "name": f"hist-{job_id}",
                "project_code": project,
                "owner_id": owner,
                "spec": spec,
                "state": state,
                "attempt": 1,
                "gpus": gpus,
                "time_limit_s": limit,
                "allocation_id": alloc,
                "factory_id": factory,
                "partition_id": partition,
                "reserved_milli": 0,
                "charged_milli": charged,
                "backend_id": f"{job_id}.1",
                "exit_code": 0 if state == "completed" else 1,
                "placement": None,
                "reason": state,
                "cancel_requested": False,
                "created_at": created,
                "updated_at": ended,
                "started_at": started,
                "ended_at": ended,
            }
            jobs.append(tuple(values[c] for c in cols))
            ref = f"job:{job_id}"
            for kind, amount, at, actor in (
                ("reserve", -reserve, created, "broker"),
                ("release", reserve, ended, "site"),
                ("charge", -charged, ended, "site"),
            ):
                e = {
                    "allocation_id": alloc,
                    "kind": kind,
                    "amount_milli": amount,
                    "at": at,
                    "actor": actor,
                    "job_ref": ref,
                    "job_id": job_id,
                    "attempt": 1,
                    "note": "",
                }
                entries.append(tuple(e[c] for c in lcols))
        t_jobs += _bulk_insert(loader, "jobs", cols, jobs)  # type: ignore[arg-type]
        t_ledger += _bulk_insert(loader, "ledger_entries", lcols, entries)  # type: ignore[arg-type]
        done += m
    t_analyze = 0.0
    if backend == "postgresql":
        t1 = time.perf_counter()
        with db.engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), max(id)) FROM jobs")
            )
        # as autovacuum would soon after a bulk load (so it does not run during the measurement)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) jobs"))
            conn.execute(text("VACUUM (ANALYZE) ledger_entries"))
        t_analyze = time.perf_counter() - t1
    return {
        "jobs": n,
        "ledger_rows": 3 * n,
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_insert_jobs": round(t_jobs, 1),
        "seconds_insert_ledger": round(t_ledger, 1),
        "seconds_analyze": round(t_analyze, 1),
    }


def end_placed(db: Database, project: str) -> int:
    """Mark the jobs a latency run left placed (no controllers ran them) as completed rows, so
    each level starts with the same live jobs (none) and only the history grows."""
    jobs = cast(Table, Job.__table__)
    with db.engine.begin() as conn:
        done = conn.execute(
            update(jobs)
            .where(jobs.c.project_code == project, jobs.c.state.in_(["placed", "pending"]))
            .values(state="completed", reserved_milli=0)
        )
    return int(done.rowcount or 0)


def run_history(args: argparse.Namespace, backend: str) -> list[dict[str, Any]]:
    levels = sorted(args.history)
    ctl = "on" if args.history_controllers else "off"
    print(
        f"\n== submit latency vs finished jobs on {backend}: {levels}; {args.rate:g}/s for "
        f"{args.latency_s:g} s; controllers {ctl} =="
    )
    points: list[dict[str, Any]] = []
    with scratch(backend, args.keep) as sc:
        fed = big_federation(sc.folder, "LUMI AIF")
        sites = sites_file(sc.folder, {"LUMI AIF": 10_000_000})
        db = prepared_db(sc, federation_file=fed, sites_file=sites)
        try:
            member = make_person(db, "scale-user", [(Role.APPLICANT, None)])
            mine = add_project(db, "SCALE-0001", "LUMI AIF", [member.username], BIG_HOURS)
            for i, factory in enumerate(FACTORIES * 3):  # others' history: 21 more projects
                add_project(db, f"SCALE-{i + 2:04d}", factory, [], BIG_HOURS)
            extra = {"AIF_FEDERATION_FILE": str(fed), "AIF_SITES_FILE": str(sites)}
            have = 0
            body = job_spec(mine, ["true"], 1, 60)
            with Serve(sc, args, extra, controllers=args.history_controllers) as serve:
                for level in levels:
                    load = None
                    if level > have:
                        print(f"  inserting {level - have:,} finished jobs ...", flush=True)
                        load = add_history(backend, db, level - have, seed=level)
                        print(f"  inserted in {load['seconds']} s", flush=True)
                        have = level
                    with client(serve.url, member.token) as c:  # warm-up, not measured
                        for _ in range(20):
                            c.post(f"{API}/jobs", content=body)
                    c0 = tree_sample(serve.pid, serve.sc.pg_name)
                    s0 = serve.snap()
                    sends = open_loop(
                        serve.url, member.token, body, args.rate, args.latency_s, args.threads
                    )
                    s1 = serve.snap()
                    c1 = tree_sample(serve.pid, serve.sc.pg_name)
                    ok = [s for s in sends if s.status == 201]
                    point: dict[str, Any] = {
                        "finished_jobs": level,
                        "ledger_rows_added": 3 * level,
                        "load": load,
                        "submissions": len(sends),
                        "accepted": len(ok),
                        "not_accepted": dict(
                            Counter(s.error or str(s.status) for s in sends if s.status != 201)
                        ),
                        "latency_from_send_ms": ms_summary([s.done - s.sent for s in ok]),
                        "latency_from_due_ms": ms_summary([s.done - s.due for s in ok]),
                        "cpu": cpu_between(c0, c1),
                        "loadavg_1m_after": round(os.getloadavg()[0], 2),
                    }
                    for p in (50, 90):
                        vals = [1000 * (s.done - s.sent) for s in ok]
                        if vals:
                            point["latency_from_send_ms"][f"p{p}_ms"] = round(
                                percentile(vals, p), 1
                            )
                    if s0 is not None and s1 is not None and ok:
                        fig_wall = s1["monotonic"] - s0["monotonic"]
                        fig = statement_figures(s0, s1, fig_wall, 1.0)
                        point["statements_per_submission"] = round(
                            fig["statements"] / len(sends), 1
                        )
                        point["top_statements_per_s"] = fig["top_statements_per_s"][:6]
                        point["statement_ms_per_submission"] = round(
                            1000 * fig["statement_seconds_per_s"] * fig_wall / len(sends), 2
                        )
                        point["top_statements_by_time"] = fig["top_statements_by_time"][:6]
                    points.append(point)
                    print_history_point(point)
                    point["jobs_completed_after"] = end_placed(db, mine)
        finally:
            db.dispose()
    return points


# --- printing -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_idle_point(curve: str, level: int, p: dict[str, Any]) -> None:
    c = p["cpu"]
    stm = p.get("statements_per_idle_pass")
    ok = (c.get("total_cpu_s_per_s") or 0) <= TARGET_CPU and (
        stm is None or stm <= TARGET_STATEMENTS_PER_PASS
    )
    by = p.get("by_thread", {})
    busiest = ", ".join(
        f"{g} {v['cpu_s_per_s']:.3f} cpu/{v['statements_per_s']:.0f} st"
        for g, v in list(by.items())[:3]
    )
    print(
        f"  {curve} {level:>6}: CPU {c.get('total_cpu_s_per_s')} s/s (serve "
        f"{c.get('serve_cpu_s_per_s')}, children {c.get('children_cpu_s_per_s')} over "
        f"{c.get('children_at_both_samples')}; PostgreSQL backends "
        f"{c.get('db_backends_cpu_s_per_s')}), statements {p.get('statements_per_s')}/s = "
        f"{stm}/pass, machine {c.get('machine_busy_pct')} % busy  {verdict(ok)}"
    )
    if busiest:
        print(f"           by thread (per s): {busiest}")


def print_handover_point(p: dict[str, Any]) -> None:
    h = p["handover_s"]
    ok = (h.get("p95_s") or 99) <= TARGET_HANDOVER_P95_S and p["never_handed_over"] == 0
    print(
        f"  hand-over, backlog {p['backlog']:>6}, {p['where']:5}: {p['handed_over']}/"
        f"{p['accepted']} handed, p50 {h.get('p50_s')} s, p95 {h.get('p95_s')} s, max "
        f"{h.get('max_s')} s, never {p['never_handed_over']}; serve CPU "
        f"{p['cpu'].get('total_cpu_s_per_s')} s/s  {verdict(ok)}"
    )


def print_history_point(p: dict[str, Any]) -> None:
    lat = p["latency_from_send_ms"]
    print(
        f"  history {p['finished_jobs']:>9,}: {p['accepted']}/{p['submissions']} accepted, "
        f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, max {lat.get('max_ms')} ms "
        f"(from due: p99 {p['latency_from_due_ms'].get('p99_ms')} ms); "
        f"{p.get('statements_per_submission')} statements/submission taking "
        f"{p.get('statement_ms_per_submission')} ms; serve CPU "
        f"{p['cpu'].get('serve_cpu_s_per_s')} s/s"
    )


def print_tables(backend: str, r: dict[str, Any]) -> None:
    print(
        f"\n#### {backend}: {r['code']['aifactory']} ({r['code'].get('git_head')}"
        f"{', src modified' if r['code'].get('src_modified') else ''})"
    )
    for curve, key in (("backlog", "backlog"), ("running", "running")):
        rows = r.get(curve) or []
        if not rows:
            continue
        print(
            f"\n  {'idle, ' + curve:16} {'CPU-s/s':>8} {'serve':>7} {'children':>8} {'pg':>7} "
            f"{'stmt/s':>8} {'stmt/pass':>9} {'tx/s':>7} {'busy %':>6}  target <= {TARGET_CPU} "
            f"CPU-s/s, <= {TARGET_STATEMENTS_PER_PASS} stmt/pass"
        )
        for p in rows:
            if "skipped" in p:
                print(f"  {p[key]:>16} skipped: {p['skipped']}")
                continue
            c = p["cpu"]
            stm = p.get("statements_per_idle_pass")
            ok = (c.get("total_cpu_s_per_s") or 0) <= TARGET_CPU and (
                stm is None or stm <= TARGET_STATEMENTS_PER_PASS
            )
            print(
                f"  {p[key]:>16} {c.get('total_cpu_s_per_s')!s:>8} "
                f"{c.get('serve_cpu_s_per_s')!s:>7} {c.get('children_cpu_s_per_s')!s:>8} "
                f"{c.get('db_backends_cpu_s_per_s') or '-'!s:>7} "
                f"{p.get('statements_per_s')!s:>8} {stm!s:>9} "
                f"{p.get('transactions_per_s')!s:>7} {c.get('machine_busy_pct')!s:>6}  "
                f"{verdict(ok)}"
            )
    rows = r.get("history") or []
    if rows:
        print(
            f"\n  {'finished jobs':>16} {'ledger rows':>12} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8} {'stmt/sub':>8} {'SQL ms':>7} {'non-201':>8} "
            f"{'busy %':>6}"
        )
        for p in rows:
            lat = p["latency_from_send_ms"]
            print(
                f"  {p['finished_jobs']:>16,} {p['ledger_rows_added']:>12,} {lat.get('n', 0):>5} "
                f"{lat.get('p50_ms')!s:>8} {lat.get('p90_ms')!s:>8} {lat.get('p99_ms')!s:>8} "
                f"{lat.get('max_ms')!s:>8} {p.get('statements_per_submission')!s:>8} "
                f"{p.get('statement_ms_per_submission')!s:>7} "
                f"{sum(p['not_accepted'].values()):>8} {p['cpu'].get('machine_busy_pct')!s:>6}"
            )
    rows = r.get("handover") or []
    if rows:
        print(
            f"\n  {'hand-over backlog':>18} {'where':>6} {'n':>4} {'p50 s':>7} {'p95 s':>7} "
            f"{'max s':>7} {'never':>6} {'CPU-s/s':>8} {'busy %':>6}  "
            f"target p95 <= {TARGET_HANDOVER_P95_S:g} s"
        )
        for p in rows:
            h = p["handover_s"]
            ok = (h.get("p95_s") or 99) <= TARGET_HANDOVER_P95_S and p["never_handed_over"] == 0
            print(
                f"  {p['backlog']:>18} {p['where']:>6} {p['accepted']:>4} {h.get('p50_s')!s:>7} "
                f"{h.get('p95_s')!s:>7} {h.get('max_s')!s:>7} {p['never_handed_over']:>6} "
                f"{p['cpu'].get('total_cpu_s_per_s')!s:>8} "
                f"{p['cpu'].get('machine_busy_pct')!s:>6}  {verdict(ok)}"
            )


# --- code and results -----------------------------------------------------------------------


def code_info() -> dict[str, Any]:
    """Where aifactory came from, its git commit and whether its src had changes (read only)."""
    src = Path(aifactory.__file__).resolve().parents[1]
    info: dict[str, Any] = {"aifactory": str(src)}
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    with suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(src), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            env=env,
        )
        info["git_head"] = head.stdout.strip()[:100]
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=all", "--", "."],
            capture_output=True,
            text=True,
            env=env,
        )
        info["src_modified"] = bool(dirty.stdout.strip())
        info["src_changes"] = dirty.stdout.strip().splitlines()[:40]
    return info


def write_results(path: Path, results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    old: dict[str, Any] = {}
    with suppress(OSError, ValueError):
        old = json.loads(path.read_text()).get("backends", {})
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"  # machine_info runs git status: never take its lock
    backends = {**old, **{b: {"machine": machine_info(b), **r} for b, r in results.items()}}
    payload = {
        "benchmark": "scale",
        "what": "idle controller cost vs backlog and vs running jobs, submit latency vs "
        "history, hand-over vs backlog (issue 17)",
        "targets": {
            "idle_cpu_s_per_s": TARGET_CPU,
            "idle_statements_per_pass": TARGET_STATEMENTS_PER_PASS,
            "handover_p95_s": TARGET_HANDOVER_P95_S,
            "submit_p99": "flat across history sizes",
        },
        "backends": backends,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")


# --- command line -------------------------------------------------------------------------


def _ints(text_: str) -> list[int]:
    return [int(float(x)) for x in re.split(r"[,\s]+", text_.strip()) if x]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument(
        "--curves",
        default="backlog,handover,running,history",
        help="which of backlog, handover, running, history (comma-separated)",
    )
    ap.add_argument("--quick", action="store_true", help="smaller sets, shorter windows")
    ap.add_argument("--backlog", type=_ints, help="pending jobs (default 0,100,1000,10000)")
    ap.add_argument("--running", type=_ints, help="running jobs (default 0,50,200,1000)")
    ap.add_argument("--running-gpus", type=int, default=1, help="GPUs per running job (0 or 1)")
    ap.add_argument("--history", type=_ints, help="finished jobs (default 0,100000,1000000)")
    ap.add_argument(
        "--history-controllers",
        action="store_true",
        help="run the controllers during the latency runs (default: API only, jobs stay placed)",
    )
    ap.add_argument("--handover-backlog", type=_ints, help="default 0,1000,10000")
    ap.add_argument("--handover-where", default="other,same", help="other, same or both")
    ap.add_argument("--handover-jobs", type=int, default=40)
    ap.add_argument("--handover-rate", type=float, default=4.0)
    ap.add_argument("--grace", type=float, default=30.0, help="s to wait for hand-overs")
    ap.add_argument("--window", type=float, help="measured idle window, s (default 15; quick 10)")
    ap.add_argument(
        "--warmup", type=float, help="s before each idle window (default 2 resyncs + 1)"
    )
    ap.add_argument("--rate", type=float, default=20.0, help="history: submissions/s")
    ap.add_argument("--latency-s", type=float, help="history: s of submissions (20; quick 10)")
    ap.add_argument("--threads", type=int, default=16, help="history: most client threads")
    ap.add_argument(
        "--serve-env",
        action="append",
        default=[],
        metavar="AIF_NAME=VALUE",
        help="extra setting for the server (repeatable), e.g. AIF_AGENT_INTERVAL_S=0.2",
    )
    ap.add_argument(
        "--entry",
        choices=["driver", "aif"],
        default="driver",
        help="driver: _scale_controller.py (counts statements); aif: `aif serve`",
    )
    ap.add_argument("--src", help="put this aifactory src first (see the module doc)")
    ap.add_argument("--profile", action="store_true", help="py-spy the server after each window")
    ap.add_argument("--profile-s", type=float, default=8.0)
    ap.add_argument("--py-spy", default=None, help="path of py-spy (default: PATH, the venv)")
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    ap.add_argument("--keep", action="store_true", help="keep scratch folders and databases")
    args = ap.parse_args(argv)
    q = args.quick
    args.curves = [c.strip() for c in args.curves.split(",") if c.strip()]
    bad = set(args.curves) - {"backlog", "handover", "running", "history"}
    if bad:
        ap.error(f"unknown curves {sorted(bad)}")
    args.backlog = args.backlog if args.backlog is not None else [0, 100, 1000, 10000]
    args.running = (
        args.running if args.running is not None else ([0, 50, 200] if q else [0, 50, 200, 1000])
    )
    args.history = (
        args.history
        if args.history is not None
        else ([0, 100_000] if q else [0, 100_000, 1_000_000])
    )
    args.handover_backlog = (
        args.handover_backlog if args.handover_backlog is not None else [0, 1000, 10000]
    )
    args.handover_where = [w.strip() for w in args.handover_where.split(",") if w.strip()]
    if set(args.handover_where) - {"other", "same"}:
        ap.error("--handover-where takes other and/or same")
    args.window = args.window or (10.0 if q else 15.0)
    args.latency_s = args.latency_s or (10.0 if q else 20.0)
    pairs = [item.partition("=") for item in args.serve_env]
    bad_env = [k for k, eq, _ in pairs if not eq or not k.startswith("AIF_")]
    if bad_env:
        ap.error(f"--serve-env takes AIF_NAME=VALUE, not {bad_env}")
    args.serve_env = {k: v for k, _, v in pairs}
    resync = float(
        args.serve_env.get(
            "AIF_CONTROLLER_RESYNC_S", Settings.model_fields["controller_resync_s"].default
        )
    )
    args.resync = resync
    args.warmup = args.warmup if args.warmup is not None else 2 * resync + 1
    if args.profile:
        spy = args.py_spy or shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            ap.error("--profile needs py-spy (pip install py-spy, or --py-spy PATH)")
        args.py_spy = spy
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    code = code_info()
    print(
        f"aifactory from {code['aifactory']} ({code.get('git_head')}); "
        f"src modified: {code.get('src_modified')}; load {os.getloadavg()}"
    )
    if _SRC:
        print("  note: --src: job wrappers still import the venv's aifactory (see the module doc)")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        t0 = time.monotonic()
        r: dict[str, Any] = {
            "code": code,
            "config": {
                "curves": args.curves,
                "window_s": args.window,
                "warmup_s": args.warmup,
                "controller_resync_s": args.resync,
                "serve_env": args.serve_env,
                "entry": args.entry,
                "quick": args.quick,
                "loadavg_1_5_15_before": [round(x, 2) for x in os.getloadavg()],
            },
        }
        if "backlog" in args.curves or "handover" in args.curves:
            b = run_backlog(args, backend, args.resync)
            r["backlog"], r["handover"] = b["idle"], b["handover"]
            r["backlog_env"] = {k: v for k, v in b.items() if k not in ("idle", "handover")}
        if "running" in args.curves:
            r["running"] = run_running(args, backend, args.resync)
        if "history" in args.curves:
            r["history"] = run_history(args, backend)
        r["seconds"] = round(time.monotonic() - t0, 1)
        results[backend] = r
        write_results(args.out, {backend: r}, args)
    for backend, r in results.items():
        print_tables(backend, r)


if __name__ == "__main__":
    main()
