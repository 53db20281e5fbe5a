"""Interactive sessions through a real server whose LUMI AIF runs jobs on the local executor.

A JupyterLab session is started through the API as a job of anna's project, followed until it
answers, used through the proxy (REST and a kernel's WebSocket) by her alone, stopped, and
charged (on SQLite and PostgreSQL); an idle terminal session is culled (SQLite). One server per
backend serves the module; every wait is on the session's progress (state, reason, job state),
never a fixed time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from aifactory.api.app import create_app
from aifactory.cli.main import app as aif
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services import ledger, sessions
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.jobs import BACKENDS, backend_database
from aifactory.testing.people import Person, make_person
from aifactory.testing.sessions import follow, run_cell

API = "/api/v1/sessions"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One server per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@contextmanager
def _site(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """Anna with an award at LUMI AIF, bob (in none of her projects), a server with agents."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("sessions") / "data",
        local_gpus_per_site=4,
        agent_interval_s=0.1,
    )
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        bob = make_person(db, "bob", [(Role.APPLICANT, None)])
        with db.session() as s:
            sessions.set_password(s, "anna", PASSWORD)
        ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        with TestClient(create_app(settings, db)) as api:
            project, _ = award(api, anna, ops)
        with (
            BackgroundServer(settings, db, agents=True) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            world = {"url": server.url, "http": http, "db": db, "project": project}
            world["cli"] = {
                "AIF_URL": server.url,
                "AIF_TOKEN": anna.token,
                "AIF_CONFIG_DIR": str(tmp_path_factory.mktemp("cli")),
            }
            yield world | {"anna": anna, "bob": bob}
            for left in http.get(API, headers=anna.headers).json():  # a failed test's
                http.post(f"{API}/{left['id']}/stop", headers=anna.headers)
                follow(http, left["id"], anna.headers, _over, "left-over session ended")


@pytest.fixture(scope="module")
def site(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    with _site(backend, tmp_path_factory, request) as world:
        yield world


@pytest.fixture(scope="module")
def sqlite_site(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """The same on SQLite alone: culling is the controller's arithmetic, the same on both."""
    with _site("sqlite", tmp_path_factory, request) as world:
        yield world


def _over(view: dict[str, Any]) -> bool:
    return view["state"] == "ended"


def _start(site: dict[str, Any], **spec: Any) -> dict[str, Any]:
    anna: Person = site["anna"]
    body = {"project": site["project"], **spec}
    started = site["http"].post(API, json=body, headers=anna.headers)
    assert started.status_code == 201, started.text
    view: dict[str, Any] = started.json()
    assert view["state"] == "starting" and view["job_id"] is not None, view
    return view


def _ready(site: dict[str, Any], session_id: int) -> dict[str, Any]:
    return follow(
        site["http"],
        session_id,
        site["anna"].headers,
        lambda v: v["state"] in ("ready", "ended"),
        f"session {session_id} ready",
    )


def test_a_jupyter_session_is_served_to_its_owner_alone_and_charged_as_gpu_time(
    site: dict[str, Any],
) -> None:
    http, anna, bob = site["http"], site["anna"], site["bob"]
    view = _start(site, kind="jupyter", gpus=1, time="10m")
    sid = view["id"]
    ready = _ready(site, sid)
    assert ready["state"] == "ready", ready
    assert ready["path"] == f"/sessions/{sid}/lab" and "token" not in ready
    status = http.get(f"/sessions/{sid}/api/status", headers=anna.headers)
    assert status.status_code == 200, status.text
    assert {"kernels", "last_activity", "started"} <= status.json().keys()
    # Another person: the same 404 as for a session that does not exist; no one else: 401.
    theirs = http.get(f"/sessions/{sid}/api/status", headers=bob.headers)
    unknown = http.get("/sessions/999999/api/status", headers=bob.headers)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.text.replace(str(sid), "N") == unknown.text.replace("999999", "N")
    assert http.get(f"{API}/{sid}", headers=bob.headers).status_code == 404
    assert http.get(f"/sessions/{sid}/api/status").status_code == 401
    _by_cookie(site, sid)
    page = http.get(f"/sessions/{sid}/lab", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next=%2Fsessions%2F{sid}%2Flab"
    # The kernel's WebSocket goes through the proxy too, for her only.
    printed = run_cell(site["url"], sid, anna.headers, "import torch; print(torch.__version__)")
    assert printed.strip() == __import__("torch").__version__
    ws = site["url"].replace("http", "ws", 1) + f"/sessions/{sid}/api/events/subscribe"
    with pytest.raises(InvalidStatus) as refused, connect(ws, additional_headers=bob.headers):
        pass
    assert refused.value.response.status_code == 404
    stopped = http.post(f"{API}/{sid}/stop", headers=anna.headers)
    assert stopped.status_code == 200 and stopped.json()["state"] in ("stopping", "ended")
    ended = follow(http, sid, anna.headers, _over, f"session {sid} ended")
    assert ended["reason"] == "stopped by anna" and ended["job_state"] == "cancelled"
    assert float(ended["charged_gpu_hours"]) > 0
    gone = http.get(f"/sessions/{sid}/api/status", headers=anna.headers)
    assert gone.status_code == 409 and "ended" in gone.json()["error"]["message"]
    with site["db"].session() as s:
        assert ledger.audit(s) == []


def _aif(site: dict[str, Any], *argv: str) -> str:
    done = CliRunner().invoke(aif, list(argv), env=site["cli"])
    assert done.exit_code == 0, done.output
    return done.output


def test_an_idle_terminal_session_is_culled(sqlite_site: dict[str, Any]) -> None:
    site = sqlite_site
    http, anna = site["http"], site["anna"]
    argv = ["sessions", "start", "--project", site["project"], "--kind", "shell"]
    # Idle from the moment it is ready: long enough for a busy machine to get from there to
    # the terminal request below (3 s was not, with other tests running beside it).
    argv += ["--time", "10m", "--idle-timeout", "15", "--json"]
    shown = json.loads(_aif(site, *argv))  # waits until it answers
    sid = shown["id"]
    assert shown["state"] == "ready" and shown["url"] == f"{site['url']}/sessions/{sid}/lab"
    terminals = http.get(f"/sessions/{sid}/api/terminals", headers=anna.headers)
    assert terminals.status_code == 200 and [t["name"] for t in terminals.json()] == ["1"]
    ended = follow(http, sid, anna.headers, _over, f"session {sid} culled")
    assert ended["reason"].startswith("culled after ") and ended["reason"].endswith(" idle")
    assert ended["job_state"] == "cancelled"
    assert f"session {sid} (shell, 0 GPU" in _aif(site, "sessions", "show", str(sid))
    assert "culled after" in _aif(site, "sessions", "list", "--all")
    assert "no sessions" in _aif(site, "sessions", "list")
    assert "ended (culled after" in _aif(site, "sessions", "stop", str(sid))  # changes nothing


def _by_cookie(site: dict[str, Any], sid: int) -> None:
    """Signed in to the portal, anna's browser reaches her session; a request that may change
    something, sent from another site with her cookie, is refused (HTTP and WebSocket)."""
    with httpx.Client(base_url=site["url"], timeout=60) as browser:
        form = {"method": "password", "username": "anna", "password": PASSWORD, "next": "/"}
        match = CSRF.search(browser.get("/login").text)
        assert match is not None
        assert browser.post("/login", data=form | {"csrf_token": match.group(1)}).is_redirect
        assert browser.get(f"/sessions/{sid}/api/status").status_code == 200
        evil = {"Origin": "https://evil.example"}
        kernels = f"/sessions/{sid}/api/kernels"
        assert browser.post(kernels, json={}, headers=evil).status_code == 403
        cookie = {"Cookie": f"aif_session={browser.cookies['aif_session']}"}
        ws = site["url"].replace("http", "ws", 1) + f"/sessions/{sid}/api/events/subscribe"
        with (
            pytest.raises(InvalidStatus) as refused,
            connect(ws, additional_headers=cookie, origin=Origin("https://evil.example")),
        ):
            pass
        assert refused.value.response.status_code == 403


def test_a_session_needs_a_project_of_ones_own_and_a_valid_spec(site: dict[str, Any]) -> None:
    http, bob = site["http"], site["bob"]
    theirs = http.post(API, json={"project": site["project"]}, headers=bob.headers)
    assert theirs.status_code == 422
    assert [d["field"] for d in theirs.json()["error"]["details"]] == ["project"]
    bad = http.post(
        API, json={"project": site["project"], "kind": "vnc"}, headers=site["anna"].headers
    )
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "kind"
    assert http.get(API, headers=bob.headers).json() == []
