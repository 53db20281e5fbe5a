"""`aif serve` as a subprocess for tests: wait until it answers, stop its whole process group;
a whole federation served that way, with an applicant who holds an awarded project."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CEILING_S = 300.0  # generous: a slow machine only waits longer, it never fails for it
AIF = str(Path(sys.executable).parent / "aif")
ROOT = Path(__file__).resolve().parents[3]
ENDED = {"completed", "failed", "cancelled", "timed_out", "node_failed"}


@dataclass
class Federation:
    """A running `aif serve` and an applicant (``token``) with an awarded ``project``."""

    work: Path
    env: dict[str, str]
    url: str
    token: str
    project: str
    log: Path

    def aif(self, *args: str, code: int = 0) -> str:
        """Run `aif ARGS` as the applicant, in the work directory; its stdout and stderr."""
        done = subprocess.run(  # noqa: S603 (argv list; the test's own arguments)
            [AIF, *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CEILING_S,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == code, f"aif {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def aif_json(self, *args: str) -> Any:
        """Run `aif ARGS --json`: the JSON document on its stdout (progress goes to stderr)."""
        done = subprocess.run(  # noqa: S603 (argv list; the test's own arguments)
            [AIF, *args, "--json"],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CEILING_S,
            check=False,
        )
        assert done.returncode == 0, f"aif {' '.join(args)}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout)

    def submit(self, spec: Path, *extra: str, code: int = 0) -> tuple[int, str]:
        out = self.aif("submit", str(spec), "--project", self.project, *extra, code=code)
        found = re.search(r"^job (\d+) (\w+)", out, re.MULTILINE)
        assert found, out
        return int(found.group(1)), out

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.url}/api/v1{path}"
        response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
        return response.json()

    def wait_for(self, job_id: int, what: str, ok: Callable[[dict[str, Any]], bool]) -> None:
        """Poll the job until ``ok(job)``; fail if it ends first or after the ceiling."""
        deadline = time.monotonic() + CEILING_S
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.api("GET", f"/jobs/{job_id}")
            if ok(job):
                return
            assert job["state"] not in ENDED, f"job {job_id} ended before {what}: {job}"
            time.sleep(0.5)
        raise AssertionError(f"job {job_id}: no {what} within {CEILING_S} s: {job}")


@contextmanager
def served_federation(hours: int = 1000, **settings: Any) -> Iterator[Federation]:
    """`aif serve` in a scratch directory holding a link to the checkout's ``examples/`` (so
    relative paths in the shipped specs resolve as for a user who works in the checkout),
    with an applicant holding a LUMI AIF Playground project of ``hours`` GPU-hours."""
    from fastapi.testclient import TestClient

    from aifactory.api.app import create_app
    from aifactory.domain.enums import Role
    from aifactory.server import free_port
    from aifactory.services.setup import prepare
    from aifactory.settings import Settings
    from aifactory.testing.access import award, member_of
    from aifactory.testing.people import make_person

    # A directory others may enter, like a checkout (pytest's own tmp is 0700): under a root
    # server the job user reads the example's code from where it was submitted.
    base = Path(tempfile.mkdtemp(prefix="aif-examples-", dir="/var/tmp"))
    base.chmod(0o755)
    work = base / "work"
    work.mkdir(mode=0o755)
    (work / "examples").symlink_to(ROOT / "examples")
    db = prepare(Settings(data_dir=base / "data", **settings))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    with TestClient(create_app(Settings(data_dir=base / "data"), db)) as api:
        code, _ = award(api, anna, ops, hours=hours)
    db.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(
        AIF_DATA_DIR=str(base / "data"),
        AIF_CONFIG_DIR=str(base / "config"),
        AIF_PORT=str(port),
        AIF_URL=f"http://127.0.0.1:{port}",
        AIF_TOKEN=anna.token,
        COLUMNS="200",
    )
    env.update({f"AIF_{k.upper()}": str(v) for k, v in settings.items()})
    log = base / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 (argv list)
            [AIF, "serve"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    fed = Federation(work, env, env["AIF_URL"], anna.token, code, log)
    try:
        wait_healthy(server, fed.url, log, CEILING_S)
        yield fed
    finally:
        stop_group(server)
        shutil.rmtree(base, ignore_errors=True)


def wait_healthy(
    server: subprocess.Popen[bytes], url: str, log: Path, ceiling: float = CEILING_S
) -> None:
    """Return once ``url``'s health endpoint answers; fail at once if the server exits."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"aif serve exited:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"aif serve did not answer within {ceiling:g} s:\n{_tail(log)}")


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it was started with a session of its own)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-5000:] if log.exists() else ""
