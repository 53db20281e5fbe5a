"""The model gateway under load: streamed requests to a CPU model, direct and through ``/v1``.

Issue: "50 concurrent streamed requests through the gateway to a CPU model: p95 time to first
token and gateway overhead vs calling the model server directly".

Set-up, through the doors users use (``aifactory.testing.serving.served_federation``: ``aif
serve`` as a subprocess, an applicant holding a project; job homes under a scratch
``AIF_LOCAL_JOB_ROOT``): a tiny GPT is trained as a job (``examples/train_gpt/train.py``, 30
steps), ``aif endpoints create`` of ``examples/train_gpt/endpoint.yaml`` ``--from-job N --wait``
with ONE replica (``replicas: {min: 1, max: 1}``), and ``aif endpoints keys create NAME --json``.
The replica's address comes from ``aif endpoints show NAME --json`` and its bearer token (the
``AIF_SERVICE_TOKEN`` that ``serve.py`` then requires) from ``endpoint_replicas.token``: direct
and gateway requests go to the same server process. The endpoint is deleted at the end.

Load: streamed ``/v1/chat/completions`` (``--route completions``: ``/v1/completions``) with
``--max-tokens`` (32) and ``stream_options.include_usage`` (the gateway asks the replica for it
anyway), as ``httpx.AsyncClient`` streams in one asyncio loop, one client per target.

1. **cold**: one burst of ``--concurrency`` (50) per target on new connections (the gateway's
   pool to the replica is new too); ``--no-cold`` skips it. Requests the gateway cannot answer
   end at the client's ``--timeout`` (60 s).
2. **concurrent**: ``--rounds`` (3) bursts of ``--concurrency`` requests started together per
   target, alternating direct and gateway (and which goes first). Before each burst an
   unmeasured ramp (``--concurrency`` requests ``--ramp-ms`` apart) opens the connections of
   both hops one at a time; the bench's clients keep idle connections 100 s (direct) and 4 s
   (gateway), less than serve.py (120 s) and uvicorn (5 s) do. The connections the replica
   holds are counted before and after each burst.
3. **sequential**: ``--sequential`` (30) requests one at a time per target, interleaved: the
   per-request overhead without queueing.

Per request: time to first token (the first SSE event with content; chat's first, empty "role"
chunk does not count), time to ``[DONE]`` ("total"), time to the end of the body (after the
gateway's metering write), tokens (characters) received and the usage event. Reported per
phase: p50/p95/p99 of TTFT and total, tokens/s, the gateway's overhead (gateway minus direct
at p50 and p95), the CPU ``aif serve`` (gateway, API and controllers in one process) and the
replica spent per request, errors, the server log's warnings, and the metering check: one
closed ``endpoint_requests`` row per gateway request, no duplicates, the 200s' tokens equal to
those received, and ``aif endpoints show --json`` ``usage.requests`` agreeing. ``--profile``
samples ``aif serve`` with py-spy during the concurrent rounds (``pip install py-spy``).

    .venv/bin/python bench/bench_gateway.py                       # SQLite, ~3 min on 2 cores
    .venv/bin/python bench/bench_gateway.py --backend postgresql --rounds 5
    .venv/bin/python bench/bench_gateway.py --concurrency 20 --max-tokens 64 --json /tmp/g.json

Writes ``bench/results/gateway-<backend>.json`` (``--json PATH`` elsewhere), every request's
sample included. On a shared machine compare direct and gateway of the same run (they
alternate) and read p50 beside p95; the load average is recorded after each burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, machine_info, percentile, summarize_profile

from aifactory.db.engine import Database
from aifactory.db.models import EndpointReplica, EndpointRequest
from aifactory.settings import Settings
from aifactory.testing import databases
from aifactory.testing.serving import Federation, served_federation

NAME = "gpt-bench"
WARM_TOKENS = 48  # characters per warm-up answer: each still streams when the last starts
EXAMPLE = ROOT / "examples" / "train_gpt" / "endpoint.yaml"
TRAIN = """name: bench-gpt
project: {project}
resources: {{nodes: 1, gpus_per_node: 1, cpus: 2, memory_gb: 4, time_limit: "00:10:00"}}
script: |
  #!/bin/bash
  exec python "$AIF_SUBMIT_DIR/examples/train_gpt/train.py" --steps 30 --batch-size 8 \\
    --eval-batches 1 --checkpoint-dir "$AIF_CHECKPOINT_DIR" --checkpoint-every 30
environment: {{PYTHONUNBUFFERED: "1"}}
checkpoint_dir: checkpoints/bench
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=50, help="requests per burst")
    p.add_argument("--max-tokens", type=int, default=32, help="characters per answer")
    p.add_argument("--rounds", type=int, default=3, help="bursts per target, alternating")
    p.add_argument("--sequential", type=int, default=30, help="one-at-a-time requests each")
    p.add_argument("--route", choices=("chat", "completions"), default="chat")
    p.add_argument("--timeout", type=float, default=60.0, help="client seconds per request")
    p.add_argument("--ramp-ms", type=float, default=20.0, help="warm-up: ms between starts")
    p.add_argument("--no-cold", action="store_true", help="skip the burst on new connections")
    p.add_argument("--profile", action="store_true", help="py-spy `aif serve` in the rounds")
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--json", type=Path, default=None, help="result file (default bench/results)")
    return p.parse_args()


# --- set-up through the CLI ------------------------------------------------------------------


@dataclass
class Target:
    """Where requests go: the replica itself, or the gateway with an endpoint key."""

    label: str
    base: str  # ends before /v1
    token: str
    sent: int = 0  # requests sent, warm-ups included
    no_status: int = 0  # of which failed before any HTTP status came back
    received: int = 0  # tokens received in answers that ended with [DONE]


@dataclass
class Bench:
    fed: Federation
    db_url: str
    direct: Target
    gateway: Target
    replica_id: int
    token_required: bool
    serve_pid: int | None
    replica_pid: int | None
    endpoint_id: int


def cli_json(fed: Federation, *args: str) -> Any:
    """`aif ARGS --json`: the document on stdout (progress lines go to stderr)."""
    return fed.aif_json(*(a for a in args if a != "--json"))


def train(fed: Federation) -> int:
    (fed.work / "bench-train.yaml").write_text(TRAIN.format(project=fed.project))
    job_id, out = fed.submit(Path("bench-train.yaml"), "--follow")
    if "completed (exit code 0)" not in out:
        raise SystemExit(f"training job {job_id} did not complete:\n{out}")
    return job_id


def create_endpoint(fed: Federation, job_id: int) -> dict[str, Any]:
    spec = yaml.safe_load(EXAMPLE.read_text()) | {"name": NAME, "project": fed.project}
    spec["replicas"] = {"min": 1, "max": 1, "target_inflight": 8}
    (fed.work / "bench-endpoint.yaml").write_text(yaml.safe_dump(spec))
    view = cli_json(
        fed,
        "endpoints",
        "create",
        "bench-endpoint.yaml",
        "--from-job",
        str(job_id),
        "--wait",
        "--json",
    )
    if view["state"] != "ready":
        raise SystemExit(f"endpoint not ready: {view}")
    return dict(view)


def pid_listening(port: int) -> int | None:
    """The process listening on ``port`` on this machine (through /proc, as ``ss -p``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with suppress(OSError):
            if inodes & {os.readlink(fd) for fd in (proc / "fd").iterdir()}:
                return int(proc.name)
    return None


def replica_row(db_url: str, address: str) -> tuple[int, int, str]:
    """(replica id, endpoint id, bearer token) of the replica at ``address``."""
    db = Database(db_url)
    try:
        with db.session() as s:
            row = s.execute(
                select(
                    EndpointReplica.id, EndpointReplica.endpoint_id, EndpointReplica.token
                ).where(EndpointReplica.address == address, EndpointReplica.state == "ready")
            ).one()
        return int(row[0]), int(row[1]), str(row[2])
    finally:
        db.dispose()


def prepare_bench(fed: Federation, db_url: str) -> Bench:
    t0 = time.monotonic()
    job_id = train(fed)
    print(f"  trained job {job_id} in {time.monotonic() - t0:.0f} s")
    t0 = time.monotonic()
    create_endpoint(fed, job_id)
    key = str(json.loads(fed.aif("endpoints", "keys", "create", NAME, "--json"))["key"])
    view = cli_json(fed, "endpoints", "show", NAME, "--json")
    ready = [r for r in view["replicas"] if r["state"] == "ready"]
    if len(ready) != 1:
        raise SystemExit(f"expected one ready replica: {view['replicas']}")
    address = ready[0]["address"]
    replica_id, endpoint_id, token = replica_row(db_url, address)
    bare = httpx.get(f"{address}/v1/models", timeout=10).status_code
    print(f"  endpoint ready in {time.monotonic() - t0:.0f} s; replica {replica_id} at {address}")
    print(f"  replica without its token: HTTP {bare} (token required: {bare == 401})")
    return Bench(
        fed=fed,
        db_url=db_url,
        direct=Target("direct", address, token),
        gateway=Target("gateway", fed.url, key),
        replica_id=replica_id,
        token_required=bare == 401,
        serve_pid=pid_listening(int(fed.url.rsplit(":", 1)[1])),
        replica_pid=pid_listening(int(address.rsplit(":", 1)[1])),
        endpoint_id=endpoint_id,
    )


@contextmanager
def federation(backend: str) -> Iterator[tuple[Federation, str]]:
    """``aif serve`` on a scratch SQLite file or PostgreSQL database, its jobs' homes under a
    scratch ``AIF_LOCAL_JOB_ROOT`` (removed afterwards); yields it and its database URL."""
    job_root = Path("/var/tmp") / f"aif-gwbench-jobs-{uuid.uuid4().hex[:10]}"
    name, url = None, None
    if backend == "postgresql":
        reason = databases.postgres_available()
        if reason:
            raise SystemExit(reason)
        name, url = databases.create_scratch_postgres()
    settings: dict[str, Any] = {"local_job_root": job_root}
    if url:
        settings["database_url"] = url
    try:
        with served_federation(**settings) as fed:
            data = Path(fed.env["AIF_DATA_DIR"])
            yield fed, url or Settings(data_dir=data).effective_database_url
    finally:
        if name:
            databases.drop_scratch_postgres(name)
        shutil.rmtree(job_root, ignore_errors=True)


def stop_endpoint(bench: Bench) -> None:
    """``aif endpoints delete``, then wait for the replica to exit (a replica is a job, which
    outlives ``aif serve``): SIGTERM it after 20 s."""
    with suppress(AssertionError):
        bench.fed.aif("endpoints", "delete", NAME)
    pid, deadline = bench.replica_pid, time.monotonic() + 20
    while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if pid is not None and Path(f"/proc/{pid}").exists():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


# --- load ------------------------------------------------------------------------------------


@dataclass
class Sample:
    status: int = 0
    ttft_s: float | None = None
    done_s: float | None = None  # the [DONE] event
    end_s: float | None = None  # the end of the body
    tokens: int = 0
    usage_tokens: int | None = None
    error: str = ""


def request_body(args: argparse.Namespace, max_tokens: int | None = None) -> bytes:
    body: dict[str, Any] = {
        "model": NAME,
        "max_tokens": max_tokens or args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if args.route == "chat":
        body["messages"] = [{"role": "user", "content": "Hello there"}]
    else:
        body["prompt"] = "The cat "
    return json.dumps(body).encode()


def _take(event: dict[str, Any], sample: Sample, t0: float) -> None:
    if event.get("usage"):
        sample.usage_tokens = int(event["usage"].get("completion_tokens") or 0)
    for c in event.get("choices") or []:
        text = (c.get("delta") or {}).get("content") or c.get("text") or ""
        if text:
            if sample.ttft_s is None:
                sample.ttft_s = time.perf_counter() - t0
            sample.tokens += len(text)


async def one(client: httpx.AsyncClient, target: Target, path: str, body: bytes) -> Sample:
    """One streamed request, timed from just before it is sent."""
    sample, headers = Sample(), {"authorization": f"Bearer {target.token}"}
    headers["content-type"] = "application/json"
    target.sent += 1
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", target.base + path, content=body, headers=headers) as r:
            sample.status = r.status_code
            if r.status_code != 200:
                sample.error = (await r.aread())[:300].decode("utf-8", "replace")
                return sample
            async for line in r.aiter_lines():
                data = line.removeprefix("data:").strip() if line.startswith("data:") else ""
                if data == "[DONE]":
                    sample.done_s = time.perf_counter() - t0
                elif data:
                    _take(json.loads(data), sample, t0)
        sample.end_s = time.perf_counter() - t0
        target.received += sample.tokens if sample.done_s is not None else 0
    except httpx.HTTPError as exc:
        sample.error = repr(exc)[:300]
        target.no_status += sample.status == 0
    return sample


#: Seconds the bench's clients keep an idle connection: less than the server does, so that a
#: request never goes out on a connection the server is closing (uvicorn closes them after 5 s,
#: serve.py after 120 s). Direct connections thus survive the gateway's rounds: a burst of new
#: connections overflows serve.py's listen backlog (the cold burst shows it).
KEEPALIVE_S = {"direct": 100.0, "gateway": 4.0}


def new_client(concurrency: int, timeout: float, target: Target) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=concurrency,
        max_keepalive_connections=concurrency,
        keepalive_expiry=KEEPALIVE_S[target.label],
    )
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits)


async def ramp(
    client: httpx.AsyncClient, target: Target, path: str, body: bytes, n: int, gap_s: float
) -> list[Sample]:
    """``n`` requests started ``gap_s`` apart: the connections of both hops are opened one at
    a time (a burst of new connections overflows serve.py's listen backlog) and kept."""
    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one(client, target, path, body)))
        await asyncio.sleep(gap_s)
    return list(await asyncio.gather(*tasks))


async def burst(
    client: httpx.AsyncClient, target: Target, path: str, body: bytes, n: int
) -> dict[str, Any]:
    start = time.perf_counter()
    samples = await asyncio.gather(*(one(client, target, path, body) for _ in range(n)))
    wall = time.perf_counter() - start
    tokens = sum(s.tokens for s in samples)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "samples": samples}


# --- measurement -----------------------------------------------------------------------------


def connections(port: int) -> int:
    """Established TCP connections to ``port`` on this machine (both hops' pools and the
    controller's health checks): it must not grow during the measured bursts."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            count += f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port
    return count


def proc_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of one process (its threads), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """What one target got over all its measured requests."""

    samples: list[Sample] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)
    serve_cpu_s: float = 0.0
    replica_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    load: list[list[float]] = field(default_factory=list)
    replica_connections: list[list[int]] = field(default_factory=list)  # before, after


async def measured(bench: Bench, phase: Phase, work: Any) -> Any:
    """Run the coroutine ``work`` and add its CPU and wall time to ``phase``."""
    cpu = (proc_cpu_s(bench.serve_pid), proc_cpu_s(bench.replica_pid), time.process_time())
    port = int(bench.direct.base.rsplit(":", 1)[1])
    before = connections(port)
    t0 = time.perf_counter()
    result = await work
    phase.replica_connections.append([before, connections(port)])
    phase.wall_s += time.perf_counter() - t0
    phase.serve_cpu_s += proc_cpu_s(bench.serve_pid) - cpu[0]
    phase.replica_cpu_s += proc_cpu_s(bench.replica_pid) - cpu[1]
    phase.client_cpu_s += time.process_time() - cpu[2]
    phase.load.append([round(x, 2) for x in os.getloadavg()])
    return result


def route_path(args: argparse.Namespace) -> str:
    return "/v1/chat/completions" if args.route == "chat" else "/v1/completions"


async def cold(bench: Bench, args: argparse.Namespace) -> dict[str, Phase]:
    """One burst per target on new connections (the gateway's first requests to the replica
    open its connections too), direct first."""
    path, body = route_path(args), request_body(args)
    phases = {"direct": Phase(), "gateway": Phase()}
    for k, target in (("direct", bench.direct), ("gateway", bench.gateway)):
        async with new_client(args.concurrency, args.timeout, target) as client:
            work = burst(client, target, path, body, args.concurrency)
            got = await measured(bench, phases[k], work)
        phases[k].samples += got.pop("samples")
        phases[k].bursts.append(got)
        bad = sum(1 for s in phases[k].samples if s.error or s.status != 200)
        print(f"  cold burst {k:7}: {got['wall_s']:.2f} s, {bad} failed")
    return phases


async def warm_up(
    client: httpx.AsyncClient, target: Target, args: argparse.Namespace, quiet: bool = False
) -> None:
    """A ramp (not measured), so both hops hold ``--concurrency`` open connections: the
    gateway's pool drops connections idle for 5 s, i.e. during the other target's round."""
    path, body, gap = route_path(args), request_body(args, WARM_TOKENS), args.ramp_ms / 1000
    got = await ramp(client, target, path, body, args.concurrency, gap)
    bad = [s.error or f"HTTP {s.status}" for s in got if s.error or s.status != 200]
    if bad or not quiet:
        print(f"  warm-up {target.label:7}: {len(got) - len(bad)} ok, failed: {bad[:3]}")


async def concurrent_rounds(bench: Bench, args: argparse.Namespace) -> dict[str, Phase]:
    path, body = route_path(args), request_body(args)
    phases = {"direct": Phase(), "gateway": Phase()}
    targets = {"direct": bench.direct, "gateway": bench.gateway}
    clients = {k: new_client(args.concurrency, args.timeout, t) for k, t in targets.items()}
    try:
        for r in range(args.rounds):
            for k in ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct"):
                await warm_up(clients[k], targets[k], args, quiet=r > 0)
                await asyncio.sleep(0.5)
                work = burst(clients[k], targets[k], path, body, args.concurrency)
                got = await measured(bench, phases[k], work)
                phases[k].samples += got.pop("samples")
                phases[k].bursts.append(got)
                conns = phases[k].replica_connections[-1]
                print(
                    f"  round {r + 1} {k:7}: {got['wall_s']:.2f} s, {got['tokens_per_s']:.0f}/s, "
                    f"connections to the replica {conns[0]} -> {conns[1]}"
                )
    finally:
        for c in clients.values():
            await c.aclose()
    return phases


async def sequential(bench: Bench, args: argparse.Namespace) -> dict[str, Phase]:
    path, body = route_path(args), request_body(args)
    phases = {"direct": Phase(), "gateway": Phase()}
    targets = {"direct": bench.direct, "gateway": bench.gateway}
    clients = {k: new_client(1, args.timeout, t) for k, t in targets.items()}
    try:
        for k in targets:
            await one(clients[k], targets[k], path, body)  # warm-up: a kept-alive connection
        for i in range(args.sequential):
            for k in ("direct", "gateway") if i % 2 == 0 else ("gateway", "direct"):
                got = await measured(bench, phases[k], one(clients[k], targets[k], path, body))
                phases[k].samples.append(got)
    finally:
        for c in clients.values():
            await c.aclose()
    return phases


# --- figures ---------------------------------------------------------------------------------


def dist(values: list[float]) -> dict[str, float | int]:
    ms = [v * 1000 for v in values]
    if not ms:
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(ms)}
    for p in (50, 95, 99):
        out[f"p{p}_ms"] = round(percentile(ms, p), 1)
    out["max_ms"] = round(max(ms), 1)
    return out


def summary(phase: Phase) -> dict[str, Any]:
    ok = [s for s in phase.samples if s.status == 200 and s.done_s is not None and not s.error]
    n = len(phase.samples)
    bursts = [b["tokens_per_s"] for b in phase.bursts]
    return {
        "requests": n,
        "ok": len(ok),
        "errors": dict(
            Counter(s.error[:120] or f"HTTP {s.status}" for s in phase.samples if s not in ok)
        ),
        "short_answers": sum(1 for s in ok if s.tokens != s.usage_tokens),
        "ttft": dist([s.ttft_s for s in ok if s.ttft_s is not None]),
        "total": dist([s.done_s for s in ok if s.done_s is not None]),
        "body_end": dist([s.end_s for s in ok if s.end_s is not None]),
        "tokens": sum(s.tokens for s in ok),
        "tokens_per_s_per_burst": [round(b, 1) for b in bursts],
        "tokens_per_s": round(sum(s.tokens for s in ok) / phase.wall_s, 1) if phase.wall_s else 0,
        "serve_cpu_ms_per_request": round(1000 * phase.serve_cpu_s / max(n, 1), 2),
        "replica_cpu_ms_per_request": round(1000 * phase.replica_cpu_s / max(n, 1), 2),
        "client_cpu_ms_per_request": round(1000 * phase.client_cpu_s / max(n, 1), 2),
        "wall_s": round(phase.wall_s, 2),
        "loadavg_after_each": phase.load,
        "replica_connections_before_after": phase.replica_connections[:10],
    }


def overhead(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, float]:
    out = {}
    for what in ("ttft", "total"):
        for p in ("p50", "p95"):
            key = f"{p}_ms"
            if key in direct[what] and key in gateway[what]:
                out[f"{what}_{key}"] = round(gateway[what][key] - direct[what][key], 1)
    out["serve_cpu_ms_per_request"] = round(
        gateway["serve_cpu_ms_per_request"] - direct["serve_cpu_ms_per_request"], 2
    )
    return out


def print_table(title: str, d: dict[str, Any], g: dict[str, Any], over: dict[str, float]) -> None:
    print(f"\n{title}")
    head = f"  {'':9}{'ok/sent':>9}  {'TTFT p50':>9}{'p95':>8}{'p99':>8}"
    print(head + f"  {'total p50':>10}{'p95':>8}{'p99':>8}  {'tok/s':>7}  {'serve CPU':>10}")
    for label, s in (("direct", d), ("gateway", g)):
        t, tot = s["ttft"], s["total"]
        print(
            f"  {label:9}{s['ok']:>4}/{s['requests']:<4}  {t.get('p50_ms', '-'):>9}"
            f"{t.get('p95_ms', '-'):>8}{t.get('p99_ms', '-'):>8}  {tot.get('p50_ms', '-'):>10}"
            f"{tot.get('p95_ms', '-'):>8}{tot.get('p99_ms', '-'):>8}  {s['tokens_per_s']:>7}"
            f"  {s['serve_cpu_ms_per_request']:>7} ms"
        )
    print(
        f"  {'overhead':9}{'':9}  {over.get('ttft_p50_ms', '-'):>+9}"
        f"{over.get('ttft_p95_ms', '-'):>+8}{'':8}  {over.get('total_p50_ms', '-'):>+10}"
        f"{over.get('total_p95_ms', '-'):>+8}{'':8}  {'':7}  "
        f"{over['serve_cpu_ms_per_request']:>+7} ms"
    )
    print(
        "  (ms; total = to [DONE]; serve CPU = `aif serve`'s CPU per request; replica CPU "
        f"per request {d['replica_cpu_ms_per_request']} / {g['replica_cpu_ms_per_request']} ms; "
        f"errors {d['errors'] or 'none'} / {g['errors'] or 'none'})"
    )


# --- checks ----------------------------------------------------------------------------------


def meter_rows(db: Database, endpoint_id: int) -> dict[str, Any]:
    """Counts over the endpoint's ``endpoint_requests`` rows."""
    where = EndpointRequest.endpoint_id == endpoint_id
    with db.session() as s:
        rows, still_open, tokens_out = s.execute(
            select(
                func.count(EndpointRequest.id),
                func.count(EndpointRequest.id).filter(EndpointRequest.ended_at.is_(None)),
                func.coalesce(
                    func.sum(EndpointRequest.tokens_out).filter(EndpointRequest.status == 200), 0
                ),
            ).where(where)
        ).one()
        statuses = s.execute(
            select(EndpointRequest.status, func.count())
            .where(where)
            .group_by(EndpointRequest.status)
        ).all()
        duplicates = s.scalar(
            select(func.count()).select_from(
                select(EndpointRequest.request_id)
                .where(where)
                .group_by(EndpointRequest.request_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    return {
        "rows": rows,
        "open": still_open,
        "duplicates": duplicates,
        "statuses": {str(k): v for k, v in statuses},
        "tokens_out_metered": tokens_out,
    }


def metering(bench: Bench, sent: int, tokens: int) -> dict[str, Any]:
    """The gateway's rows for this endpoint: one closed, 200, row per request sent (rows still
    open are waited for, up to 30 s)."""
    db = Database(bench.db_url)
    deadline = time.monotonic() + 30
    try:
        found = meter_rows(db, bench.endpoint_id)
        while found["open"] and time.monotonic() < deadline:
            time.sleep(0.5)
            found = meter_rows(db, bench.endpoint_id)
    finally:
        db.dispose()
    usage = cli_json(bench.fed, "endpoints", "show", NAME, "--json")["usage"]
    ok = found["rows"] == sent == usage["requests"] and not found["open"]
    ok = ok and not found["duplicates"] and found["tokens_out_metered"] == tokens
    return {
        "sent": sent,
        **found,
        "tokens_received": tokens,
        "failed_without_status": bench.gateway.no_status,  # timed out, or the connection failed
        "show_usage_requests": usage["requests"],
        "ok": ok,
        "all_200": found["statuses"] == {"200": sent},
    }


def log_problems(log: Path, offset: int) -> dict[str, Any]:
    """Warnings, errors and tracebacks `aif serve` logged since ``offset``."""
    text = log.read_bytes()[offset:].decode("utf-8", "replace") if log.exists() else ""
    bad = [
        ln
        for ln in text.splitlines()
        if any(w in ln for w in ("WARNING", "ERROR", "Traceback", "CRITICAL"))
    ]
    return {"count": len(bad), "first": bad[:10]}


def replica_changes(bench: Bench) -> list[dict[str, Any]]:
    view = cli_json(bench.fed, "endpoints", "show", NAME, "--json")
    return [{k: r.get(k) for k in ("id", "state", "address", "reason")} for r in view["replicas"]]


@contextmanager
def profiled(pid: int | None, out: Path | None) -> Iterator[None]:
    """py-spy samples ``pid`` (``aif serve``) while the block runs (``out`` None: nothing)."""
    if out is None or pid is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    argv += ["--output", str(out), "--nonblocking"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def spy_summary(path: Path) -> dict[str, Any]:
    """The profile's aifactory frames (the server's own code) by inclusive share, below the
    entry points every sample shares, and the functions with the largest self share."""
    found = summarize_profile(path, top=1000, self_top=15)
    if not found.get("samples"):
        return found
    shared = {"serve (aifactory/server.py)", "serve (aifactory/cli/ops.py)"}
    shared |= {
        "main (aifactory/cli/main.py)",
        "friendly.<locals>.wrapper (aifactory/cli/common.py)",
    }
    ours = [(n, p) for n, p in found["inclusive_pct"] if "aifactory/" in n and n not in shared]
    return {"samples": found["samples"], "aifactory_pct": ours[:25], "self_pct": found["self_pct"]}


# --- main ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with federation(args.backend) as (fed, db_url):
        bench = prepare_bench(fed, db_url)
        try:
            offset = fed.log.stat().st_size
            load_before = [round(x, 2) for x in os.getloadavg()]
            print(f"  load average before: {load_before}")
            first = None if args.no_cold else asyncio.run(cold(bench, args))
            spy = RESULTS / f"gateway-{args.backend}.collapsed.txt" if args.profile else None
            with profiled(bench.serve_pid, spy):
                conc = asyncio.run(concurrent_rounds(bench, args))
            seq = asyncio.run(sequential(bench, args))
            meter = metering(bench, bench.gateway.sent, bench.gateway.received)
            replicas = replica_changes(bench)
            problems = log_problems(fed.log, offset)
        finally:
            stop_endpoint(bench)
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "setup": {
            "replica_token_required": bench.token_required,
            "replica": bench.direct.base,
            "replica_id": bench.replica_id,
            "serve_pid_found": bench.serve_pid is not None,
            "replica_pid_found": bench.replica_pid is not None,
        },
        "loadavg_before": load_before,
        "cold_burst": figures(first) if first else None,
        "concurrent": figures(conc),
        "sequential": figures(seq),
        "metering": meter,
        "replicas_after": replicas,
        "serve_log_problems": problems,
        "serve_profile": spy_summary(spy) if spy else None,
    }


def figures(phases: dict[str, Phase]) -> dict[str, Any]:
    d, g = summary(phases["direct"]), summary(phases["gateway"])
    return {
        "direct": d,
        "gateway": g,
        "overhead": overhead(d, g),
        "samples": {k: [asdict(s) for s in p.samples] for k, p in phases.items()},
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    c, q, m = result["concurrent"], result["sequential"], result["metering"]
    if result["cold_burst"]:
        k = result["cold_burst"]
        title = f"{args.concurrency} concurrent on new connections (one burst each, cold)"
        print_table(title, k["direct"], k["gateway"], k["overhead"])
    print_table(
        f"{args.concurrency} concurrent streamed requests x {args.rounds} rounds, "
        f"max_tokens {args.max_tokens} ({args.route}, {args.backend})",
        c["direct"],
        c["gateway"],
        c["overhead"],
    )
    print_table(f"{args.sequential} sequential requests", q["direct"], q["gateway"], q["overhead"])
    end = c["gateway"]["body_end"].get("p50_ms", 0) - c["gateway"]["total"].get("p50_ms", 0)
    print(f"\n[DONE] -> end of body through the gateway (metering write), p50: {end:.1f} ms")
    print(
        f"metering: {m['rows']} rows for {m['sent']} gateway requests ("
        f"{m['failed_without_status']} failed without a status), open {m['open']}, "
        f"duplicates {m['duplicates']}, statuses {m['statuses']}, tokens (200s) "
        f"{m['tokens_out_metered']} metered / {m['tokens_received']} received, `show` says "
        f"{m['show_usage_requests']}: " + ("OK" if m["ok"] else "MISMATCH")
    )
    print(f"replicas after: {result['replicas_after']}")
    p = result["serve_log_problems"]
    lines = "".join(f"\n    {line[:200]}" for line in p["first"])
    print(f"aif serve log: {p['count']} warning/error lines{lines}")
    spy = result["serve_profile"]
    if spy and spy.get("samples"):
        print(f"aif serve, concurrent rounds: {spy['samples']} py-spy samples; inclusive %:")
        print("".join(f"    {pct:5.1f}  {name}\n" for name, pct in spy["aifactory_pct"]), end="")
        print("  self %: " + ", ".join(f"{name} {pct}" for name, pct in spy["self_pct"][:8]))
    print(f"load average before {result['loadavg_before']}, after {os.getloadavg()}")


def main() -> int:
    args = parse_args()
    print(f"gateway benchmark on {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    result = measure(args)
    report(args, result)
    path = args.json or RESULTS / f"gateway-{args.backend}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "gateway", "machine": machine_info(args.backend), **result}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0 if result["metering"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
