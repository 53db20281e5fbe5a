"""Shared pieces of the jobs benchmarks: environments, a server process, stats, results.

An environment is a fresh database (a SQLite file, or a scratch PostgreSQL database) that is
migrated and seeded with the default federation (``services.setup.prepare``), plus an admin,
a project member, and projects with large allocations (created directly as rows with a GRANT
ledger entry, as ``tests/integration/access/test_ledger_db.py`` does). The API runs in a
separate process (``bench/_server.py`` with ``aifactory.server.BackgroundServer``) so that the
load generator never shares a GIL with the server.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import (
    Allocation,
    Factory,
    Organisation,
    Partition,
    Project,
    ProjectMember,
    Proposal,
    System,
    User,
)
from aifactory.domain.enums import LedgerKind, Role
from aifactory.services import ledger
from aifactory.services.setup import prepare
from aifactory.settings import Settings, load_federation
from aifactory.testing import databases
from aifactory.testing.people import Person, make_person

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
H = 1000  # milli-GPU-hours per GPU-hour
BIG_HOURS = 10**9  # an allocation this size never runs out during a benchmark
API = "/api/v1"


# --- machine info and results -------------------------------------------------------------


def cpu_model() -> str:
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(backend: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": backend,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with suppress(OSError):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    with suppress(OSError):
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    if backend == "postgresql":
        with suppress(Exception):
            import psycopg

            with psycopg.connect(databases.PG_ADMIN_DSN) as conn:
                row = conn.execute("SHOW server_version").fetchone()
                info["postgresql"] = row[0] if row else "?"
    with suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        info["git_head"] = head.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        info["src_modified_since_head"] = bool(dirty.stdout.strip())
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    return info


def write_result(name: str, backend: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{backend}.json"
    payload = {"benchmark": name, "machine": machine_info(backend), **data}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def latency_summary(seconds: list[float]) -> dict[str, float | int]:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
    }


# --- environments -------------------------------------------------------------------------


@dataclass
class Env:
    backend: str
    settings: Settings
    db: Database
    admin: Person
    member: Person
    projects: list[str] = field(default_factory=list)
    pg_name: str | None = None

    def server_config(self, agents: bool, workers: int = 1) -> dict[str, Any]:
        s = self.settings
        return {
            "agents": agents,
            "workers": workers,
            "settings": {
                "data_dir": str(s.data_dir),
                "database_url": s.database_url,
                "local_gpus_per_site": s.local_gpus_per_site,
                "agent_interval_s": s.agent_interval_s,
                "federation_file": str(s.federation_file) if s.federation_file else None,
                "sites_file": str(s.sites_file) if s.sites_file else None,
            },
        }


def big_federation(folder: Path, factory: str = "LUMI AIF", nodes: int = 100_000) -> Path:
    """The shipped federation with one partition grown to ``nodes`` nodes (never full)."""
    fed = load_federation()
    for f in fed.factories:
        if f.name == factory:
            f.systems[0].partitions[0].nodes = nodes
    path = folder / "federation-bench.yaml"
    path.write_text(yaml.safe_dump(fed.model_dump(mode="json"), sort_keys=False))
    return path


def sites_file(folder: Path, capacities: dict[str, int]) -> Path:
    path = folder / "sites-bench.yaml"
    sites = [{"factory": name, "capacity_gpus": gpus} for name, gpus in capacities.items()]
    path.write_text(yaml.safe_dump({"sites": sites}))
    return path


@contextmanager
def environment(
    backend: str,
    *,
    local_gpus: int = 8,
    big_factory: str | None = None,
    projects: int = 1,
    factories: list[str] | None = None,
    member_projects: int | None = None,
    keep: bool = False,
) -> Iterator[Env]:
    """A fresh, seeded database with an admin, a member and ``projects`` funded projects.

    ``big_factory``: that factory's first partition gets 100,000 nodes and its site a capacity
    to match, so jobs there are always placed (reserved) and never wait for capacity.
    ``factories``: the projects get one allocation each, round robin over these factories.
    ``member_projects``: the member belongs to the first this many projects (default: all).
    """
    folder = Path(tempfile.mkdtemp(prefix=f"aif-bench-{backend}-"))
    pg_name = None
    if backend == "postgresql":
        reason = databases.postgres_available()
        if reason:
            raise SystemExit(reason)
        pg_name, url = databases.create_scratch_postgres()
    elif backend == "sqlite":
        url = f"sqlite:///{folder / 'aifactory.db'}"
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    extra: dict[str, Any] = {}
    if big_factory:
        extra["federation_file"] = big_federation(folder, big_factory)
        extra["sites_file"] = sites_file(folder, {big_factory: 10_000_000})
    settings = Settings(
        data_dir=folder / "data", database_url=url, local_gpus_per_site=local_gpus, **extra
    )
    db = prepare(settings, Database(url))
    try:
        admin = make_person(db, "bench-admin", [(Role.FEDERATION_ADMIN, None)])
        member = make_person(db, "bench-user", [(Role.APPLICANT, None)])
        env = Env(backend, settings, db, admin, member, pg_name=pg_name)
        names = factories or [big_factory or "LUMI AIF"]
        mine = projects if member_projects is None else member_projects
        env.projects = [
            add_project(
                db,
                f"BENCH-{i + 1:04d}",
                names[i % len(names)],
                [member.username] if i < mine else [],
            )
            for i in range(projects)
        ]
        yield env
    finally:
        db.dispose()
        if keep:
            print(f"kept database {url} and data dir {folder}")
        else:
            if pg_name:
                databases.drop_scratch_postgres(pg_name)
            shutil.rmtree(folder, ignore_errors=True)


def add_project(
    db: Database, code: str, factory: str, members: list[str], hours: int = BIG_HOURS
) -> str:
    """A project with one active allocation of ``hours`` on ``factory``'s first partition."""
    with db.session() as s:
        org = s.scalar(select(Organisation.id).where(Organisation.name == "Bench Oy"))
        if org is None:
            o = Organisation(
                name="Bench Oy", type="startup", country_code="FI", enterprise_links=[]
            )
            s.add(o)
            s.flush()
            org = o.id
        users = {
            u.username: u.id for u in s.scalars(select(User).where(User.username.in_(members)))
        }
        fid, pid = s.execute(
            select(Factory.id, Partition.id)
            .join(System, System.factory_id == Factory.id)
            .join(Partition, Partition.system_id == System.id)
            .where(Factory.name == factory)
            .order_by(Partition.id)
            .limit(1)
        ).one()
        applicant = users[members[0]] if members else s.scalar(select(User.id))
        p = Proposal(
            call_id="bench",
            mode="PG",
            organisation_id=org,
            applicant_id=applicant,
            title="bench",
            research_kind="open_rd",
            status="accepted",
        )
        s.add(p)
        s.flush()
        s.add(
            Project(
                code=code,
                proposal_id=p.id,
                title="bench",
                mode="PG",
                organisation_id=org,
                factory_id=fid,
                members=[ProjectMember(user_id=users[m], role=Role.PI) for m in members],
            )
        )
        s.flush()
        a = Allocation(
            project_code=code,
            factory_id=fid,
            partition_id=pid,
            start_date=date(2020, 1, 1),
            end_date=date(2099, 12, 31),
            eu_share=0.5,
            national_share=0.5,
            commercial_share=0,
        )
        s.add(a)
        s.flush()
        ledger.post(s, a.id, LedgerKind.GRANT, hours * H, "bench")
    return code


def job_body(
    project: str,
    name: str = "bench",
    gpus: int = 1,
    argv: list[str] | None = None,
    time_limit: int = 60,
) -> dict[str, Any]:
    return {
        "name": name,
        "project": project,
        "command": argv or [sys.executable, "-c", "pass"],
        "resources": {"nodes": 1, "gpus_per_node": gpus, "time_limit": time_limit},
    }


# --- the API server in its own process ----------------------------------------------------


class ServerProcess:
    """``bench/_server.py`` in a child process; ``url`` once started, stopped on exit."""

    def __init__(self, env: Env, agents: bool = False, workers: int = 1) -> None:
        self.config = env.server_config(agents, workers)
        self.proc: subprocess.Popen[str] | None = None
        self.spy: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_server.py")), json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.url = line
        deadline = time.monotonic() + 30
        while True:  # with several workers, the port answers a little after the URL is known
            try:
                if httpx.get(f"{self.url}{API}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"server at {self.url} never answered")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start_profile(self, out: Path, seconds: float) -> None:
        """Sample the server with py-spy (collapsed stacks) for ``seconds``."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.spy = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "200",
                "--duration",
                str(int(seconds)),
                "--output",
                str(out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_profile(self) -> None:
        if self.spy is not None:
            try:
                self.spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.spy.send_signal(signal.SIGINT)
                self.spy.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        with suppress(BrokenPipeError):
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def summarize_profile(path: Path, top: int = 25, self_top: int = 15) -> dict[str, Any]:
    """Inclusive and self sample shares per function from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"error": f"no profile at {path}"}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "inclusive_pct": share(inclusive, top),
        "self_pct": share(own, self_top),
    }


def _frame(text: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``; aifactory paths kept longer."""
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    if "aifactory/" in where:
        where = "aifactory/" + where.split("aifactory/", 1)[1]
    else:
        where = Path(where).name
    return f"{name} ({where})"


def print_profile(summary: dict[str, Any]) -> None:
    if not summary.get("samples"):
        print(f"  profile: {summary}")
        return
    print(f"  server profile, {summary['samples']} samples; inclusive %:")
    for name, pct in summary["inclusive_pct"]:
        print(f"    {pct:5.1f}  {name}")
    print("  self %:")
    for name, pct in summary["self_pct"]:
        print(f"    {pct:5.1f}  {name}")


def now_s() -> float:
    return time.time()
