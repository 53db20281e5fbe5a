"""A JupyterLab session on a real Slurm site (the harness's factory1 backs LUMI AIF).

The server (API, portal, proxy and agents under uvicorn) hands the session's job to Slurm as
anna's own login there (``aif-anna``, through ``runuser ... sbatch``); JupyterLab starts on a
node under that identity and announces itself in the Slurm output file; the control plane reads
it, checks the server and proxies it. Through the proxy a kernel started over REST runs a cell
over its WebSocket that prints who it runs as, its Slurm job and ``torch.__version__``; then the
same session is driven in Chromium (skipped without it, as the portal's browser tests are). Bob
gets 404. Stopping it cancels the Slurm job, which is charged.

The site's Python is the one on the agent's ``PATH`` (sbatch passes it to the job), as "python"
means the site's interpreter: here this checkout's virtualenv, which anna's login is let
through to (``ensure_python``, as the local executor does for its job user).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from unix_users import map_login

from aifactory.api.app import create_app
from aifactory.domain.enums import Role
from aifactory.executors import _jobuser
from aifactory.server import BackgroundServer
from aifactory.services import registry, sessions
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import make_person
from aifactory.testing.sessions import follow, run_cell, run_in_new_notebook

LOGIN = "aif-anna"
API = "/api/v1/sessions"
PASSWORD = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
TORCH = pytest.importorskip("torch").__version__
CELL = (
    "import getpass, os, torch; "
    "print(getpass.getuser(), os.environ['SLURM_JOB_ID'], torch.__version__)"
)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def site(
    harness: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """LUMI AIF on factory1; anna (login aif-anna there) with an award; bob; the server."""
    tmp = tmp_path_factory.mktemp("slurm-sessions")
    options = {
        "cluster": "factory1",
        "slurm_conf": harness["FACTORY1_CONF"],
        "accounting": False,
        "job_root": harness["JOB_ROOT"],
        "partitions": {"gpu": "debug"},
        "command_timeout_s": 30.0,
    }
    sites = tmp / "sites.yaml"
    site_entry = {"factory": "LUMI AIF", "executor": "slurm", "options": options}
    sites.write_text(yaml.safe_dump({"sites": [site_entry]}))
    settings = Settings(data_dir=tmp / "data", sites_file=sites, agent_interval_s=0.2)
    db = prepare(settings)
    with db.session() as s:  # the registry describes the real test cluster
        registry.update_partition(
            s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4, "gpu_model": "GPU"}
        )
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    bob = make_person(db, "bob", [(Role.APPLICANT, None)])
    ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    map_login(db, "anna", "LUMI AIF", LOGIN)
    with db.session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    login = _jobuser.resolve(LOGIN, create=False)
    assert login is not None and _jobuser.ensure_python(login, sys.executable)
    with TestClient(create_app(settings, db)) as api:
        project, _ = award(api, anna, ops, hours=100)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)  # the agent's PATH, which sbatch hands to the job
        with (
            BackgroundServer(settings, db, agents=True) as server,
            httpx.Client(base_url=server.url, timeout=60) as http,
        ):
            yield {"url": server.url, "http": http, "project": project, "anna": anna, "bob": bob}
            for left in http.get(API, headers=anna.headers).json():
                http.post(f"{API}/{left['id']}/stop", headers=anna.headers)
                follow(http, left["id"], anna.headers, lambda v: v["state"] == "ended", "ended")
    db.dispose()


@pytest.fixture(scope="module")
def ready(site: dict[str, Any]) -> dict[str, Any]:
    """anna's JupyterLab session, answering."""
    http, anna = site["http"], site["anna"]
    body = {"project": site["project"], "kind": "jupyter", "gpus": 1, "time": "10m"}
    started = http.post(API, json=body, headers=anna.headers)
    assert started.status_code == 201, started.text
    sid = started.json()["id"]
    view = follow(http, sid, anna.headers, lambda v: v["state"] in ("ready", "ended"), "ready")
    assert view["state"] == "ready", view
    return view


def test_a_session_runs_on_slurm_as_its_owner_and_is_proxied_to_her_alone(
    site: dict[str, Any], ready: dict[str, Any]
) -> None:
    http, anna, bob, sid = site["http"], site["anna"], site["bob"], ready["id"]
    status = http.get(f"/sessions/{sid}/api/status", headers=anna.headers)
    assert status.status_code == 200, status.text
    assert http.get(f"/sessions/{sid}/api/status", headers=bob.headers).status_code == 404
    job = http.get(f"/api/v1/jobs/{ready['job_id']}", headers=anna.headers).json()
    assert job["factory"] == "LUMI AIF" and job["state"] == "running"
    (attempt,) = job["attempts"]
    user, slurm_job, version = run_cell(site["url"], sid, anna.headers, CELL).split()
    assert (user, slurm_job, version) == (LOGIN, attempt["backend_id"], TORCH)


def test_the_slurm_session_is_driven_in_chromium(
    site: dict[str, Any], ready: dict[str, Any]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    url = site["url"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.set_default_timeout(60_000)
        page.goto(f"{url}{ready['path']}")  # not signed in: the portal's sign-in, then back
        page.get_by_label("Username").fill("anna")
        page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        output = run_in_new_notebook(page, CELL)
        expect(output).to_contain_text(f"{LOGIN} ")
        expect(output).to_contain_text(TORCH)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "session-jupyter-slurm.png"))
        browser.close()


def test_stopping_the_slurm_session_cancels_its_job_and_charges_it(
    site: dict[str, Any], ready: dict[str, Any]
) -> None:
    http, anna, sid = site["http"], site["anna"], ready["id"]
    assert http.post(f"{API}/{sid}/stop", headers=anna.headers).status_code == 200
    ended = follow(http, sid, anna.headers, lambda v: v["state"] == "ended", "ended")
    assert ended["reason"] == "stopped by anna" and ended["job_state"] == "cancelled"
    assert float(ended["charged_gpu_hours"]) > 0
