"""Usage reports over 10 M ledger rows and ~1 M jobs (DESIGN.md §7: p95 <= 200 ms).

Loads the jobs and their ledger rows with ``bench_jobs``' loader (PostgreSQL ``COPY``, SQLite
``executemany``), adds further attempts' ledger rows (reserve, release, charge) spread over the
same year up to ``--rows``, then times ``services.reports.usage_report`` by funding source and by
project, with and without a date range, as an admin and as a member of one project: in process
(the service function, a fresh session per call) and through ``GET /api/v1/reports/usage`` (as
the CLI and the portal ask). The before figure is the same report summed from the ledger
entries (``reports.ranged_totals_from_entries``, the path dated reports took before
``ledger_days``), run on the same database, and every dated report is checked equal to it.
Also: the other groupings through the API, the cost the triggers add to one ledger write, the
migration's backfill over the loaded rows, and an audit of the day sums.

Usage::

    .venv/bin/python bench/bench_reports.py                                # PostgreSQL, 10 M
    .venv/bin/python bench/bench_reports.py --backend sqlite
    .venv/bin/python bench/bench_reports.py --rows 1000000 --jobs 100000 --explain --keep
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from sqlalchemy import event, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, Env, ServerProcess, environment, latency_summary, write_result
from bench_jobs import LEDGER_COLUMNS, _bulk_insert, _load

from aifactory.db.engine import alembic_config
from aifactory.db.models import Allocation, LedgerRow, User
from aifactory.domain.enums import LedgerKind
from aifactory.services import ledger, reports
from aifactory.services.identity import principal_of
from aifactory.services.permissions import Principal

TARGET_P95_MS = 200
FACTORIES = ["LUMI AIF", "BSC AIF", "IT4LIA", "Meluxina-AI", "MIMER", "HammerHAI", "Pharos"]
CHUNK = 1_000_000
GROUPS = ("funding", "project", "factory", "factory-country", "user-country", "mode")
Range = tuple[date | None, date | None]


def _load_ledger(env: Env, jobs: int, rows: int, analyze: bool) -> dict[str, Any]:
    """``bench_jobs``' jobs with their ledger rows, then further attempts up to ``rows``."""
    load = _load(env, jobs, with_ledger=True, analyze=False)
    extra = max(rows - load["ledger_rows"], 0)
    t0 = time.perf_counter()
    for part in _attempts(env, jobs, extra):
        _bulk_insert(env, "ledger_entries", LEDGER_COLUMNS, part)
    load["extra_ledger_rows"] = extra
    load["seconds_insert_extra_ledger"] = round(time.perf_counter() - t0, 1)
    if analyze:
        t1 = time.perf_counter()
        with env.db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        load["seconds_analyze"] = round(time.perf_counter() - t1, 1)
    load["analyzed"] = analyze
    with env.db.session() as s:
        load["ledger_rows_total"] = s.scalar(select(func.count()).select_from(LedgerRow))
        load["ledger_days_rows"] = s.scalar(text("SELECT count(*) FROM ledger_days"))
    print(f"  extra ledger rows {extra:,} in {load['seconds_insert_extra_ledger']} s; {load}")
    return load


def _attempts(env: Env, jobs: int, n: int, seed: int = 7) -> Iterator[list[tuple[Any, ...]]]:
    """``n`` rows of further attempts (reserve; release and charge at the end), in chunks, in
    time order as a live system writes them (random times made every index insert a random
    page write: SQLite slowed to 9,000 rows/s)."""
    rng = random.Random(seed)
    with env.db.session() as s:
        allocs = list(s.scalars(select(Allocation.id).order_by(Allocation.id)))
    t_end = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
    t0, triples = t_end - timedelta(days=364), max(n // 3, 1)
    step = (t_end - t0 - timedelta(days=1)) / triples
    part: list[tuple[Any, ...]] = []
    for i in range(triples):
        alloc, ref = rng.choice(allocs), f"job:{1 + i * jobs // triples}"
        gpus, limit = rng.choice((1, 1, 2, 4, 8)), rng.choice((600, 3600, 14400, 86400))
        start = t0 + step * i
        elapsed = rng.randrange(1, limit)
        reserve, used = gpus * limit * 1000 // 3600, gpus * elapsed * 1000 // 3600 or 1
        ended = start + timedelta(seconds=elapsed)
        part += [
            (alloc, "reserve", -reserve, start, "broker", ref, ""),
            (alloc, "release", reserve, ended, "site", ref, ""),
            (alloc, "charge", -used, ended, "site", ref, ""),
        ]
        if len(part) >= CHUNK:
            yield part
            part = []
    if part:
        yield part


@contextmanager
def _entries_path() -> Iterator[None]:
    """Dated reports summed from the entries, as before ``ledger_days``."""
    original = reports._ranged_totals
    reports._ranged_totals = reports.ranged_totals_from_entries
    try:
        yield
    finally:
        reports._ranged_totals = original


def _time(call: Callable[[], Any], calls: int, warmup: int = 3) -> dict[str, Any]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t0)
    return {**latency_summary(seconds), "min_ms": round(min(seconds) * 1000, 2)}


def _principals(env: Env) -> dict[str, Principal]:
    with env.db.session() as s:
        return {
            who: principal_of(s.scalars(select(User).where(User.username == p.username)).one())
            for who, p in (("admin", env.admin), ("member", env.member))
        }


def _ranges(today: date) -> dict[str, Range]:
    return {
        "all_time": (None, None),
        "quarter": (today - timedelta(days=120), today - timedelta(days=30)),
        "last_30_days": (today - timedelta(days=30), None),
    }


def _query(group: str, span: Range) -> str:
    start, end = span
    dates = (f"&start={start}" if start else "") + (f"&end={end}" if end else "")
    return f"{API}/reports/usage?group_by={group}{dates}"


def _service_figures(env: Env, args: argparse.Namespace, spans: dict[str, Range]) -> dict[str, Any]:
    """Each case in process, new path and (dated cases) the entries path; checked equal."""
    out: dict[str, Any] = {}
    for who, principal in _principals(env).items():
        for group in ("funding", "project"):
            for name, (start, end) in spans.items():

                def call(
                    p: Principal = principal, g: str = group, a: Any = start, b: Any = end
                ) -> Any:
                    with env.db.session() as s:
                        return reports.usage_report(s, p, g, a, b)

                case = f"{who}:{group}:{name}"
                out[case] = {"now": _time(call, args.calls)}
                if start or end:
                    with _entries_path():
                        out[case]["before"] = _time(call, args.before_calls, warmup=1)
                        reference = call()
                    assert call() == reference, f"{case}: day sums differ from the entries"
                    out[case]["equal_to_entries"] = True
                _print(case, out[case])
    return out


def _api_figures(env: Env, args: argparse.Namespace, spans: dict[str, Range]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ServerProcess(env) as server:
        for who, person in (("admin", env.admin), ("member", env.member)):
            headers = {"Authorization": f"Bearer {person.token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
                groups = GROUPS
                for group in groups if who == "admin" else groups[:2]:
                    for name, span in spans.items():
                        path = _query(group, span)

                        def call(c: httpx.Client = client, p: str = path) -> None:
                            c.get(p).raise_for_status()

                        case = f"{who}:{group}:{name}"
                        out[case] = {"api": _time(call, args.calls)}
                        _print(case, out[case])
    return out


def _print(case: str, figures: dict[str, Any]) -> None:
    for path, f in figures.items():
        if isinstance(f, dict):
            flag = "" if f["p95_ms"] <= TARGET_P95_MS else "  MISS"
            print(
                f"  {case:34} {path:7} min {f['min_ms']:>8} p50 {f['p50_ms']:>8} "
                f"p95 {f['p95_ms']:>8} max {f['max_ms']:>8} ms (n={f['n']}){flag}",
                flush=True,
            )


def _write_cost(env: Env, rounds: int = 6, n: int = 100) -> dict[str, Any]:
    """One ledger entry through ``ledger.post`` (lock, insert, commit) with the day-sum
    trigger on and off, interleaved; entries written while off are summed in afterwards.
    On PostgreSQL also the trigger's own time, from ``EXPLAIN ANALYZE`` of one insert."""
    with env.db.session() as s:
        alloc = s.scalar(select(func.min(Allocation.id)))
    assert alloc is not None
    seconds: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(rounds):
        for mode in ("on", "off"):
            with env.db.session() as s:
                mark = s.scalar(select(func.max(LedgerRow.id))) or 0
            restore = _trigger_off(env) if mode == "off" else None
            for _ in range(n):
                t0 = time.perf_counter()
                with env.db.session() as s:
                    ledger.post(s, alloc, LedgerKind.GRANT, 1, "bench")
                seconds[mode].append(time.perf_counter() - t0)
            if restore:
                restore()
                _sum_in(env, mark)
    out: dict[str, Any] = {m: latency_summary(v) for m, v in seconds.items()}
    out["extra_ms_p50"] = round(out["on"]["p50_ms"] - out["off"]["p50_ms"], 3)
    if env.backend == "postgresql":
        out["trigger_times_ms"] = _trigger_times(env, alloc)
    print(f"  ledger write (post + commit), trigger on vs off: {out}")
    return out


def _trigger_times(env: Env, alloc: int, n: int = 30) -> dict[str, float]:
    """Median time per trigger (ours and the foreign-key checks) of a one-row insert."""
    sql = (
        "EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO ledger_entries "
        "(allocation_id, kind, amount_milli, at, actor, note) "
        f"VALUES ({int(alloc)}, 'grant', 1, now(), 'bench', '')"
    )
    times: dict[str, list[float]] = {}
    with env.db.engine.connect() as conn:
        for _ in range(n):
            with conn.begin() as trans:
                plan = conn.exec_driver_sql(sql).scalar_one()
                for trigger in plan[0].get("Triggers", []):
                    times.setdefault(trigger["Trigger Name"], []).append(trigger["Time"])
                trans.rollback()
    return {name: round(sorted(v)[len(v) // 2], 4) for name, v in times.items()}


def _trigger_off(env: Env) -> Callable[[], None]:
    with env.db.engine.begin() as conn:
        if env.backend == "postgresql":
            conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_days_insert"))
            sql = "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_days_insert"
        else:
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ledger_days_insert'")
            ).scalar_one()
            conn.execute(text("DROP TRIGGER ledger_days_insert"))

    def restore() -> None:
        with env.db.engine.begin() as conn:
            conn.execute(text(sql))

    return restore


def _sum_in(env: Env, after_id: int) -> None:
    day = "at::date" if env.backend == "postgresql" else "date(at)"
    with env.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ledger_days AS d (allocation_id, day, kind, amount_milli, entries) "
                f"SELECT allocation_id, {day}, kind, sum(amount_milli), count(*) "
                "FROM ledger_entries WHERE id > :mark GROUP BY allocation_id, "
                f"{day}, kind ON CONFLICT (allocation_id, day, kind) DO UPDATE SET "
                "amount_milli = d.amount_milli + excluded.amount_milli, "
                "entries = d.entries + excluded.entries"
            ),
            {"mark": after_id},
        )


def _backfill(env: Env) -> dict[str, Any]:
    """Migration 0009 again over the loaded ledger: drop the day sums, create and fill them."""
    config = alembic_config(env.db.url)
    with env.db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    t0 = time.perf_counter()
    env.db.upgrade()
    seconds = round(time.perf_counter() - t0, 1)
    print(f"  migration 0009 (create, triggers, backfill) over the ledger: {seconds} s")
    return {"seconds": seconds}


def _explain(env: Env, spans: dict[str, Range]) -> dict[str, str]:
    """The plans of the dated admin report's ledger query, day sums and entries."""
    admin = _principals(env)["admin"]
    start, end = spans["quarter"]
    captured: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if "ledger_days" in statement or "ledger_entries" in statement:
            captured.append((statement, params))

    plans = {}
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if env.backend == "postgresql" else "EXPLAIN QUERY PLAN "
    for name, path in (("now", None), ("before", _entries_path)):
        captured.clear()
        event.listen(env.db.engine, "before_cursor_execute", grab)
        try:
            with path() if path else _nothing(), env.db.session() as s:
                reports.usage_report(s, admin, "funding", start, end)
        finally:
            event.remove(env.db.engine, "before_cursor_execute", grab)
        statement, params = captured[-1]
        with env.db.engine.connect() as conn:
            rows = conn.exec_driver_sql(prefix + statement, params).all()
        plans[name] = "\n".join(" | ".join(str(c) for c in row) for row in rows)
        print(f"  plan, {name}:\n{plans[name]}")
    return plans


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _audit(env: Env) -> dict[str, Any]:
    t0 = time.perf_counter()
    with env.db.session() as s:
        problems = reports.audit_days(s)
    seconds = round(time.perf_counter() - t0, 1)
    print(f"  audit of the day sums: {len(problems)} differences ({seconds} s)")
    assert not problems, problems[:5]
    return {"differences": 0, "seconds": seconds}


def run(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    print(f"\n== usage reports over {args.rows:,} ledger rows, {args.jobs:,} jobs ({backend}) ==")
    analyze = args.analyze if args.analyze is not None else backend == "postgresql"
    result: dict[str, Any] = {"calls": args.calls, "before_calls": args.before_calls}
    with environment(
        backend, projects=20, factories=FACTORIES, member_projects=1, keep=args.keep
    ) as env:
        t0 = time.perf_counter()
        result["load"] = _load_ledger(env, args.jobs, args.rows, analyze)
        result["load"]["seconds_total"] = round(time.perf_counter() - t0, 1)
        spans = _ranges(datetime.now(UTC).date())
        result["ranges"] = {k: [str(v) for v in span] for k, span in spans.items()}
        result["loadavg_before"] = os.getloadavg()
        result["service"] = _service_figures(env, args, spans)
        result["api"] = _api_figures(env, args, spans)
        result["loadavg_after"] = os.getloadavg()
        if args.explain:
            result["plans"] = _explain(env, spans)
        result["ledger_write"] = _write_cost(env)
        if args.backfill:
            result["migration_backfill"] = _backfill(env)
        result["audit"] = _audit(env)
    result["target_p95_ms"] = TARGET_P95_MS
    write_result("reports", backend, result)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="postgresql")
    ap.add_argument("--rows", type=int, default=10_000_000, help="ledger rows in all")
    ap.add_argument("--jobs", type=int, help="job rows (default rows / 10)")
    ap.add_argument("--calls", type=int, default=50, help="timed calls per case")
    ap.add_argument("--before-calls", type=int, default=5, help="timed calls, entries path")
    ap.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=None,
                    help="ANALYZE after loading (default: PostgreSQL only)")  # fmt: skip
    ap.add_argument("--backfill", action=argparse.BooleanOptionalAction, default=True,
                    help="time migration 0009's backfill over the loaded rows")  # fmt: skip
    ap.add_argument("--explain", action="store_true", help="print the query plans")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args(argv)
    args.jobs = args.jobs or max(args.rows // 10, 1)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(args, backend)


if __name__ == "__main__":
    main()
