"""A job on the local executor cannot take over the control plane (the reviewer's attack).

`aif serve` runs as a subprocess, as root, with a secret in its environment; a project member
submits jobs through the API like anyone would. The attacking job tries what the reviewer did:
grant itself ``federation_admin`` in the SQLite database, read the server's and its wrapper's
``/proc/PID/environ``, find the server's secret, forge its own exit record, and read another
job's directory and logs. Each probe prints OK or DENIED with the errno; every one must be
DENIED, and the member must still not be an administrator.

Only root can make jobs run as another user, so these tests need root (CI runs as root); a
server that is not root runs its jobs as itself, which docs/jobs.md says plainly.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.server import free_port
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, spec
from aifactory.testing.people import Person, make_person
from aifactory.testing.serving import stop_group, wait_healthy

API = "/api/v1"
AIF = str(Path(sys.executable).parent / "aif")
SECRET = "s3cret-that-only-the-server-holds"
CEILING_S = 300  # generous: a slow machine only waits longer, it never fails for it
ENDED = {"completed", "failed", "cancelled", "timed_out", "node_failed"}
PROBES = (
    "env_secret",
    "server_environ",
    "wrapper_environ",
    "db_file",
    "db_grant",
    "data_dir",
    "forge_exit",
    "other_records",
    "other_home",
    "signal_server",
)

# The attacker: a script with its own interpreter line, given its targets as arguments.
ATTACK = f"""#!{PY}
import json, os, sqlite3, sys
db, server_pid, records, victim = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
secret = {SECRET!r}

def probe(name, action):
    try:
        detail = action()
        print("PROBE", name, "OK", detail, flush=True)
    except (OSError, sqlite3.Error) as exc:
        print("PROBE", name, "DENIED", getattr(exc, "errno", None), exc, flush=True)

def env_secret():
    leaked = [k for k, v in os.environ.items() if secret in v or k == "AIF_TEST_SECRET"]
    if not leaked:
        raise PermissionError(0, "no variable holds the secret")
    return leaked

def environ(pid):
    text = open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
    return "holds the secret" if secret in text else f"read {{len(text)}} bytes"

def db_grant():
    con = sqlite3.connect(db, timeout=5)
    (uid,) = con.execute("SELECT id FROM users WHERE username = 'anna'").fetchone()
    con.execute("INSERT INTO role_grants (user_id, role) VALUES (?, 'federation_admin')", (uid,))
    con.commit()
    return f"granted to user {{uid}}"

def forge():
    path = os.path.join(records, os.environ["AIF_BACKEND_ID"], "exit.json")
    with open(path, "w") as f:
        json.dump({{"outcome": "exited", "exit_code": 0}}, f)
    return path

probe("env_secret", env_secret)
probe("server_environ", lambda: environ(server_pid))
probe("wrapper_environ", lambda: environ(os.getppid()))
probe("db_file", lambda: len(open(db, "rb").read(100)))
probe("db_grant", db_grant)
probe("data_dir", lambda: os.listdir(os.path.dirname(db)))
probe("forge_exit", forge)
probe("other_records", lambda: open(os.path.join(records, victim, "stdout.log")).read())
probe("other_home", lambda: os.listdir(os.path.dirname(os.getcwd())))
probe("signal_server", lambda: os.kill(server_pid, 0))
sys.exit(3)
"""


@dataclass
class Served:
    """A running `aif serve` (as a subprocess) and a project member's token."""

    server: subprocess.Popen[bytes]
    url: str
    data: Path
    anna: Person
    project: str

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{API}{path}", headers=self.anna.headers, **kw)

    def run_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self.call("POST", "/jobs", json=body, timeout=30)
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        deadline = time.monotonic() + CEILING_S
        while time.monotonic() < deadline:
            view = self.call("GET", f"/jobs/{job_id}", timeout=30).json()
            if view["state"] in ENDED:
                return dict(view)
            time.sleep(0.2)
        pytest.fail(f"job {job_id} did not end within {CEILING_S} s: {view}")

    def logs(self, job_id: int) -> str:
        return str(self.call("GET", f"/jobs/{job_id}/logs", timeout=30).json()["text"])


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    if os.geteuid() != 0:
        pytest.skip("only a root server can run jobs as another user (see docs/jobs.md)")
    # Not under pytest's tmp_path, which is 0700: only the server's own modes may stop a probe.
    base = Path(tempfile.mkdtemp(prefix="aif-isolation-"))
    base.chmod(0o755)
    (base / "data").mkdir(mode=0o755)  # as loose as a careless operator left it
    settings = Settings(data_dir=base / "data")
    db = prepare(settings)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    with TestClient(create_app(settings, db)) as api:
        code, _ = award(api, anna, ops)
    db.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(
        AIF_DATA_DIR=str(base / "data"),
        AIF_CONFIG_DIR=str(base / "config"),
        AIF_PORT=str(port),
        AIF_LOCAL_JOB_ROOT=str(base / "jobs"),
        AIF_AGENT_INTERVAL_S="0.1",
        AIF_TEST_SECRET=SECRET,
    )
    log_path = base / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [AIF, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(server, url, log_path, CEILING_S)
        yield Served(server, url, base / "data", anna, code)
    finally:
        stop_group(server)
        shutil.rmtree(base, ignore_errors=True)


def _verdicts(output: str) -> dict[str, str]:
    lines = [line.split(" ", 3) for line in output.splitlines() if line.startswith("PROBE ")]
    return {name: verdict for _, name, verdict, *_ in lines}


def test_a_members_job_cannot_take_over_the_control_plane(served: Served) -> None:
    victim = served.run_job(spec(served.project, [PY, "-c", "print('victim-secret-output')"]))
    assert victim["state"] == "completed", victim
    victim_backend = victim["attempts"][0]["backend_id"]
    records = served.data / "sites" / "lumi-aif" / "jobs"
    db_file = served.data / "aifactory.db"
    # Each target exists and holds what the probe looks for: a DENIED is not a wrong path.
    assert (records / victim_backend / "stdout.log").read_text() == "victim-secret-output\n"
    assert SECRET in Path(f"/proc/{served.server.pid}/environ").read_text(errors="replace")
    assert db_file.stat().st_size > 0

    body = spec(served.project, None, name="attack")
    body.pop("command")
    body.update(
        script=ATTACK, args=[str(db_file), str(served.server.pid), str(records), victim_backend]
    )
    attack = served.run_job(body)
    output = served.logs(attack["id"])
    print(output)  # what each probe got, errno included (shown with -rP)
    verdicts = _verdicts(output)
    assert set(verdicts) == set(PROBES), output  # every probe ran
    assert verdicts == dict.fromkeys(PROBES, "DENIED"), output
    assert (attack["state"], attack["exit_code"]) == ("failed", 3)  # its real exit, not forged
    assert "victim-secret-output" not in output

    me = served.call("GET", "/me", timeout=30).json()
    assert Role.FEDERATION_ADMIN not in {r["role"] for r in me["roles"]}
    assert served.call("GET", "/users", timeout=30).status_code == 403


def test_the_data_dir_and_database_are_the_servers_alone(served: Served) -> None:
    data = served.data.stat()
    assert (data.st_uid, stat.S_IMODE(data.st_mode)) == (os.geteuid(), 0o700)
    for suffix in ("", "-wal", "-shm"):  # SQLite gives the side files the database's mode
        path = served.data / f"aifactory.db{suffix}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((served.data / "sites").stat().st_mode) == 0o700


def test_workdirs_outside_the_job_directory_are_refused_with_422(
    db: Database, operator: Person
) -> None:
    with TestClient(create_app(Settings(data_dir=Path("unused")), db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        for workdir in ("/etc", "../other-job", "a/../../b"):
            body = spec(code, ["true"], workdir=workdir)
            answer = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 422)
            assert [d["field"] for d in answer["error"]["details"]] == ["workdir"], answer
        accepted = spec(code, ["true"], workdir="run/1")
        ok(api.post(f"{API}/jobs", headers=anna.headers, json=accepted), 201)
