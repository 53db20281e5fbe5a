"""A JupyterLab session in a real browser (Debian's chromium via Playwright), through the proxy.

Anna signs in to the portal, opens her session at ``/sessions/<id>/lab`` (the proxy admits her
sign-in cookie; JupyterLab never sees it, nor does her browser see JupyterLab's token), makes a
notebook and runs a cell printing ``torch.__version__`` (its kernel talks over a WebSocket
through the proxy). Bob, signed in too, gets a 404 page at the same address. The session then
stops and its job is charged. A screenshot lands in ``test-output/screenshots/``. SQLite only:
the proxy's database work is a read per request, the same on both backends, which the API tests
run (``tests/integration/api/test_sessions.py``). Waits are on progress, not on fixed times.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_check import assert_accessible
from fastapi.testclient import TestClient
from portal_support import PASSWORD, UI_STEP_MS, set_password

from aifactory.api.app import create_app
from aifactory.client import Client
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import make_person
from aifactory.testing.sessions import follow, run_in_new_notebook

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
TORCH = pytest.importorskip("torch").__version__
API = "/api/v1/sessions"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Anna with an award at LUMI AIF, bob, both with passwords; a server with agents."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("sessions-browser") / "data",
        local_gpus_per_site=4,
        agent_interval_s=0.1,
    )
    db = prepare(settings)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    bob = make_person(db, "bob", [(Role.APPLICANT, None)])
    ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    for person in ("anna", "bob"):
        set_password(db, person)
    with TestClient(create_app(settings, db)) as api:
        project, _ = award(api, anna, ops)
    with (
        BackgroundServer(settings, db, agents=True) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        yield {"url": server.url, "http": http, "project": project, "anna": anna, "bob": bob}
        for left in http.get(API, headers=anna.headers).json():  # a failed test's: its job
            http.post(f"{API}/{left['id']}/stop", headers=anna.headers)  # outlives the server
            follow(http, left["id"], anna.headers, lambda v: v["state"] == "ended", "ended")
    db.dispose()


def _signed_in(browser: Any, url: str, username: str) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(UI_STEP_MS)
    page = context.new_page()
    page.goto(f"{url}/login")
    assert_accessible(page, f"login-{username}")
    page.get_by_label("Username").fill(username)
    page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator(".who")).to_contain_text(f"Signed in as {username}")
    return page


def test_a_jupyter_session_runs_a_cell_in_the_browser_for_its_owner_only(
    browser: Any, site: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    http, anna, url = site["http"], site["anna"], site["url"]
    body = {"project": site["project"], "kind": "jupyter", "gpus": 1, "time": "10m"}
    with Client(url, anna.token) as client:  # the Python client, as a user's script would
        view = client.wait_for_session(client.start_session(body).id, timeout_s=300)
        assert view.state == "ready", view
        assert client.session_url(view) == f"{url}/sessions/{view.id}/lab"
    sid, ready = view.id, view.model_dump()

    page = _signed_in(browser, url, "anna")
    page.goto(f"{url}/sessions")
    expect(page.locator(f'tr[data-session="{sid}"]')).to_be_visible()
    assert_accessible(page, "sessions")
    page.goto(f"{url}{ready['path']}")
    output = run_in_new_notebook(page, "import torch; print(torch.__version__)")
    expect(output).to_have_text(TORCH)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "session-jupyter.png"))
    page.context.close()

    other = _signed_in(browser, url, "bob")
    refused = other.goto(f"{url}{ready['path']}")
    assert refused is not None and refused.status == 404
    expect(other.locator("main")).to_contain_text(f"no session {sid} of yours")
    assert_accessible(other, "session-not-yours")
    other.context.close()

    assert http.post(f"{API}/{sid}/stop", headers=anna.headers).status_code == 200
    ended = follow(http, sid, anna.headers, lambda v: v["state"] == "ended", "ended")
    assert ended["job_state"] == "cancelled" and float(ended["charged_gpu_hours"]) > 0
