"""CLI start: common `aif` commands timed end to end, as a user runs them.

Each command is the venv's installed entry point (``.venv/bin/aif``) run as a subprocess and
timed by wall clock from ``Popen`` to exit, ``--runs`` times (default 15) after one untimed
warm-up; best and median are reported, with the median CPU time (user + system, from
``wait4``), which a busy machine inflates less than the wall clock. The commands that talk to
the API run against a scratch ``aif serve`` (SQLite in a scratch ``AIF_DATA_DIR``, a free port,
controllers on) with a project member who has submitted ``--jobs`` jobs (default 5); the CLI
finds it through ``AIF_URL`` and ``AIF_TOKEN`` and a scratch ``AIF_CONFIG_DIR``, as after
``aif login``.

Then each command runs once more under ``python -X importtime``: its import time by package
(self times added up, so nothing counts twice; aifactory by subpackage), the number of modules,
and the heavy packages (SQLAlchemy, FastAPI, NumPy, ...) it loaded.

Targets (DESIGN.md section 7, issue 14): ``aif --help`` <= 0.3 s, ``aif jobs list`` <= 0.5 s.

Usage::

    .venv/bin/python bench/bench_cli.py                 # 15 runs per command
    .venv/bin/python bench/bench_cli.py --runs 30 --top 15
    .venv/bin/python bench/bench_cli.py --no-server     # only the commands needing no server

Writes ``bench/results/cli.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, RESULTS, ROOT, machine_info
from bench_handover import aif_serve, scratch, setup_people

AIF = str(Path(sys.executable).with_name("aif"))
RESULT = RESULTS / "cli.json"
HELLO = ROOT / "examples" / "jobs" / "hello.yaml"
#: Packages `aif` must not load for a command that only talks to the API (or for --help).
HEAVY = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "alembic",
    "psycopg",
    "numpy",
    "matplotlib",
    "jinja2",
    "pydantic_settings",
    "yaml",
    "aifactory.db",
    "aifactory.services.audit",
    "aifactory.sim",
    "aifactory.api",
)

# label -> (argv after `aif`, needs the server, target seconds or None)
COMMANDS: dict[str, tuple[list[str], bool, float | None]] = {
    "aif --help": (["--help"], False, 0.3),
    "aif jobs --help": (["jobs", "--help"], False, None),
    "aif sim --help": (["sim", "--help"], False, None),
    "aif submit --dry-run": (["submit", str(HELLO), "--dry-run"], False, None),
    "aif jobs list": (["jobs", "list"], True, 0.5),
    "aif jobs show 1": (["jobs", "show", "1"], True, None),
    "aif factories list": (["factories", "list"], True, None),
    "aif projects list": (["projects", "list"], True, None),
}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run; a failing command stops it."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([AIF, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            out.seek(0)
            text = out.read().decode(errors="replace")
            raise RuntimeError(f"aif {' '.join(argv)} exited {proc.returncode}:\n{text}")
    return wall, usage.ru_utime + usage.ru_stime


def time_runs(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of ``runs`` runs after one untimed warm-up."""
    run_once(argv, env)
    pairs = [run_once(argv, env) for _ in range(runs)]
    return [w for w, _ in pairs], [c for _, c in pairs]


def import_profile(argv: list[str], env: dict[str, str], top: int) -> dict[str, Any]:
    """One run under ``-X importtime``: import time by package (self times added up, so
    nothing counts twice; aifactory by subpackage) and the heavy packages it loaded."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", AIF, *argv], env=env, capture_output=True, text=True
    )
    by_package: Counter[str] = Counter()
    names: list[str] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line.split(":", 1)[1].split("|")
        name = name.strip()
        names.append(name)
        parts = name.split(".")
        by_package[".".join(parts[:2]) if parts[0] == "aifactory" else parts[0]] += int(own)
    heavy = sorted({h for h in HEAVY for n in names if n == h or n.startswith(h + ".")})
    return {
        "total_ms": round(sum(by_package.values()) / 1000, 1),
        "modules": len(names),
        "top_ms": [(name, round(us / 1000, 1)) for name, us in by_package.most_common(top)],
        "heavy_loaded": heavy,
    }


def seed_jobs(url: str, token: str, project: str, count: int) -> None:
    """``count`` one-GPU jobs of the member, so `jobs list` has rows to show."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url + API, headers=headers, timeout=30) as api:
        for i in range(count):
            body = {
                "name": f"cli-bench-{i}",
                "project": project,
                "command": ["true"],
                "resources": {"nodes": 1, "gpus_per_node": 1, "time_limit": 60},
            }
            api.post("/jobs", json=body).raise_for_status()


def measure(
    args: argparse.Namespace, base_env: dict[str, str], server_env: dict[str, str] | None
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for label, (argv, needs_server, target) in COMMANDS.items():
        if needs_server and server_env is None:
            continue
        env = {**base_env, **(server_env or {})} if needs_server else base_env
        times, cpu = time_runs(argv, env, args.runs)
        best, median = min(times), statistics.median(times)
        figures[label] = {
            "argv": argv,
            "runs": len(times),
            "best_s": round(best, 3),
            "median_s": round(median, 3),
            "max_s": round(max(times), 3),
            "cpu_best_s": round(min(cpu), 3),
            "cpu_median_s": round(statistics.median(cpu), 3),
            "target_s": target,
            "meets_target": None if target is None else median <= target,
            "imports": import_profile(argv, env, args.top),
        }
        verdict = "" if target is None else ("  ok" if median <= target else "  OVER")
        aim = f"<= {target:.2f} s" if target is not None else ""
        print(
            f"  {label:24} best {best:6.3f} s  median {median:6.3f} s  "
            f"(CPU median {statistics.median(cpu):5.3f} s)  {aim}{verdict}"
        )
    return figures


def print_imports(figures: dict[str, Any]) -> None:
    for label, fig in figures.items():
        imp = fig["imports"]
        print(f"\n{label}: {imp['modules']} modules imported in {imp['total_ms']} ms; by package:")
        for name, ms in imp["top_ms"]:
            print(f"    {ms:8.1f} ms  {name}")
        print(f"    heavy packages loaded: {', '.join(imp['heavy_loaded']) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--jobs", type=int, default=5, help="jobs the member has submitted")
    parser.add_argument("--top", type=int, default=10, help="imports listed per command")
    parser.add_argument("--no-server", action="store_true", help="skip the API commands")
    args = parser.parse_args()

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aif-cli-bench-")))
        # No inherited AIF_* (a real login or server elsewhere must not be measured) and a wide
        # terminal, so Rich lays out the tables the same way on every run.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
        base_env.update(AIF_CONFIG_DIR=str(folder / "cfg"), COLUMNS="150")
        server_env = None
        if not args.no_server:
            data, aif_env, db_url = stack.enter_context(scratch("sqlite", keep=False))
            served = stack.enter_context(aif_serve(data, aif_env, {}))
            project, member_token, _ = setup_people(db_url, served["url"])
            seed_jobs(served["url"], member_token, project, args.jobs)
            server_env = {"AIF_URL": served["url"], "AIF_TOKEN": member_token}
        print(f"aif start-up, {args.runs} runs per command (wall clock, subprocess):")
        figures = measure(args, base_env, server_env)
    print_imports(figures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "cli",
        "machine": machine_info("sqlite"),
        "jobs_seeded": 0 if args.no_server else args.jobs,
        "commands": figures,
    }
    RESULT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
