"""`aif` loads only what the command it runs needs: start-up time is mostly imports.

Each command runs in a fresh interpreter (as the `aif` entry point would) and the test looks at
``sys.modules`` afterwards, so a stray top-level import in any CLI module fails here, without
timing anything (``bench/bench_cli.py`` measures the seconds).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

#: Never needed by a command that only talks to the API, nor by `aif --help`.
SERVER_SIDE = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "uvicorn",
    "alembic",
    "psycopg",
    "pydantic_settings",
    "yaml",
    "numpy",
    "matplotlib",
    "jinja2",
    "aifactory.db",
    "aifactory.api",
    "aifactory.server",
    "aifactory.agents",
    "aifactory.broker",
    "aifactory.executors",
    "aifactory.sim",
    "aifactory.settings",
    "aifactory.portal",
)
#: What help texts do not need either: the HTTP client and the response models.
CLIENT_SIDE = ("httpx", "aifactory.client", "aifactory.services")

RUN_AIF = """
import json, sys
from aifactory.cli.main import main
out, sys.argv = sys.argv[1], ["aif", *sys.argv[2:]]
try:
    main()
finally:
    with open(out, "w") as fh:
        json.dump(sorted(name for name, module in sys.modules.items() if module), fh)
"""

JOB = {
    "id": 7,
    "name": "hello",
    "project": "EHPC-AIF-0001",
    "owner": "anna",
    "state": "running",
    "attempt": 1,
    "gpus": 1,
    "time_limit_s": 60,
    "factory": "LUMI AIF",
    "partition": "LUMI-AI/gpu",
    "reserved_gpu_hours": "0.017",
    "charged_gpu_hours": "0",
    "exit_code": None,
    "reason": "started",
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "ended_at": None,
}


def aif(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Run `aif ARGS` in a fresh interpreter: its output and the modules it had loaded."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN_AIF, str(out), *args],
        capture_output=True,
        text=True,
        env={"AIF_CONFIG_DIR": str(tmp_path / "cfg"), "COLUMNS": "150", **(env or {})},
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, set(json.loads(out.read_text()))


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize("args", [["--help"], ["jobs", "--help"], ["admin", "--help"]])
def test_help_loads_neither_server_side_code_nor_the_http_client(
    args: list[str], tmp_path: Path
) -> None:
    output, modules = aif(args, tmp_path)
    assert "Usage: aif" in output
    assert loaded(modules, SERVER_SIDE + CLIENT_SIDE) == []
    assert "aifactory.cli.sim" not in modules  # `aif sim` is registered lazily


def test_top_level_help_loads_no_pydantic(tmp_path: Path) -> None:
    """Past the top level Typer itself converts option values with pydantic (Typer 0.29),
    so only `aif --help`, the most common, can and does do without it."""
    _, modules = aif(["--help"], tmp_path)
    assert loaded(modules, ("pydantic", "pydantic_core")) == []


@pytest.fixture
def api() -> Iterator[str]:
    """A stand-in API answering ``GET /api/v1/jobs`` with one job."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"jobs": [JOB], "next_before": None}).encode()
            code = 200 if self.path.startswith("/api/v1/jobs") else 404
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_jobs_list_loads_the_client_and_the_job_models_only(api: str, tmp_path: Path) -> None:
    output, modules = aif(["jobs", "list"], tmp_path, {"AIF_URL": api, "AIF_TOKEN": "aif_x"})
    assert "hello" in output and "LUMI AIF" in output
    assert loaded(modules, SERVER_SIDE) == []
    services = loaded(modules, ("aifactory.services",))
    assert services == ["aifactory.services", "aifactory.services.job_views"]
    # httpx's own command-line tool is not loaded: it alone brings click (Typer 0.29 has its
    # own copy) and Pygments here
    assert loaded(modules, ("httpx._main", "click", "pygments")) == []


def test_the_lazy_sim_group_has_the_simulators_help_and_commands() -> None:
    from aifactory.cli import main, sim

    assert sim.app.info.help == main.SIM_HELP
    assert sim.app.registered_callback is None  # the lazy group would not run it
    lazy = typer.main.get_group(main.app).commands["sim"]
    assert isinstance(lazy, TyperGroup)
    real = typer.main.get_group(sim.app)
    assert list(lazy.commands) == list(real.commands) != []
