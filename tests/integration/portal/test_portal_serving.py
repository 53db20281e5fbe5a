"""The portal's Serving pages over HTTP (SQLite and PostgreSQL), and one look in a real browser.

A project member lists her endpoints, creates one from YAML (a refused spec comes back as
typed, each problem next to the field it names, and nothing is stored), makes a key (shown in
that answer only; later pages show its prefix), revokes it, rolls an update and stops the
endpoint; someone outside the project gets 404 pages. Nothing here needs a running replica:
creation only validates, and where a page should show replicas and usage the rows the serving
controller and the gateway would write are added directly. One federation per backend serves
the whole module, so each test uses endpoint names of its own. The browser step saves
``test-output/screenshots/serving-*.png`` at laptop and phone widths.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from portal_support import set_password, sign_in
from sqlalchemy import func, select
from test_portal_browser import LAPTOP, PHONE, _page, _shot, _sign_in

from aifactory.db.engine import Database
from aifactory.db.models import Endpoint, EndpointKey, EndpointReplica, EndpointRequest
from aifactory.db.types import utcnow
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer, build_app
from aifactory.services.identity import hash_token
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing import jobs
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.people import Person, make_person

KEY = re.compile(r'id="new-key">(aif-ep-[^<]+)<')


@dataclass(frozen=True)
class Fed:
    settings: Settings
    db: Database
    api: TestClient
    anna: Person
    project: str


@pytest.fixture(scope="module", params=jobs.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One federation per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def fed(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Fed]:
    """Anna with an awarded project at LUMI AIF, bob outside it; both with passwords."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("serving") / "data")
    postgres = partial(request.getfixturevalue, "postgres_db")
    with jobs.backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        make_person(db, "bob", [(Role.APPLICANT, None)])
        for person in ("anna", "bob"):
            set_password(db, person)
        app = build_app(settings, db)
        with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as api:
            project, _ = award(api, anna, olli)
            yield Fed(settings, db, api, anna, project)


def _client(fed: Fed, username: str = "anna") -> tuple[TestClient, str]:
    """A browser of its own (cookies), signed in: the client and its CSRF token."""
    client = TestClient(fed.api.app, raise_server_exceptions=False, follow_redirects=False)
    return client, sign_in(client, username)


def _spec(project: str, name: str) -> dict[str, Any]:
    """A valid spec without a checkpoint; its command is never run here."""
    return {
        "name": name,
        "project": project,
        "replicas": {"min": 1, "max": 2},
        "replica": {
            "command": ["python3", "serve.py"],
            "resources": {"nodes": 1, "gpus_per_node": 1, "time_limit": "01:00:00"},
        },
    }


def _endpoint(fed: Fed, name: str) -> dict[str, Any]:
    """An endpoint created through the API, as the CLI would."""
    body = {"spec": _spec(fed.project, name)}
    return dict(ok(fed.api.post("/api/v1/endpoints", headers=fed.anna.headers, json=body), 201))


def _served(fed: Fed, endpoint_id: int) -> int:
    """What the controller and the gateway would write: a ready replica (a job of the
    project) and two metered requests. Returns the replica's job id."""
    job = fed.api.post(
        "/api/v1/jobs", headers=fed.anna.headers, json=jobs.spec(fed.project, ["true"])
    )
    job_id = int(ok(job, 201)["id"])
    now = utcnow()
    with fed.db.session() as s:
        s.add(
            EndpointReplica(
                endpoint_id=endpoint_id,
                spec_version=1,
                job_id=job_id,
                gpus=1,
                state="ready",
                address="http://nid001234.lumi.example:41235",
                token="t" * 32,
                reason="",
                ready_at=now,
            )
        )
        for i, (tokens_in, tokens_out) in enumerate([(200, 1000), (1000, 2400)]):
            s.add(
                EndpointRequest(
                    request_id=f"req-{endpoint_id}-{i}",
                    endpoint_id=endpoint_id,
                    route="chat",
                    status=200,
                    tokens_in=tokens_in,
                    tokens_out=tokens_out,
                    gpu_seconds=6.25,
                    started_at=now - timedelta(seconds=5),
                    ended_at=now,
                )
            )
    return job_id


def _row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-endpoint="{re.escape(name)}".*?</tr>', page, re.DOTALL)
    assert match, f"no row for {name}"
    return re.sub(r"\s+", " ", match.group(0))


def _problem(page: str, field: str) -> str:
    """The message shown next to a field (the spec's fields are listed under the textarea)."""
    pattern = rf'class="field-error"[^>]*data-field="{re.escape(field)}">(.*?)</(?:li|p)>'
    match = re.search(pattern, page, re.DOTALL)
    assert match, f"no error next to {field}"
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def _textarea(page: str, name: str = "spec") -> str:
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


def _count(fed: Fed, name: str) -> int:
    with fed.db.session() as s:
        return int(s.scalar(select(func.count(Endpoint.id)).where(Endpoint.name == name)) or 0)


def test_the_list_shows_each_endpoint_with_its_state_replicas_and_usage(fed: Fed) -> None:
    signed_out = TestClient(fed.api.app, follow_redirects=False).get("/endpoints")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login?next=%2Fendpoints"
    listed = _endpoint(fed, "listed")
    _served(fed, listed["id"])
    broken = _endpoint(fed, "broken")
    with fed.db.session() as s:
        row = s.get_one(Endpoint, broken["id"])
        row.state, row.reason = "failing", "3 replicas in a row ended before getting ready"
    anna, _ = _client(fed)
    page = anna.get("/endpoints")
    assert page.status_code == 200
    assert '<a href="/endpoints" aria-current="page">Serving</a>' in page.text
    row = _row(page.text, "listed")
    assert f'<a href="/endpoints/{fed.project}/listed">listed</a>' in row
    assert fed.project in row and 's-starting">starting' in row
    for shown in ("1 / 1", ">2<", "1,200", "3,400", "12.5"):  # ready/wanted, usage
        assert shown in row, shown
    assert "3 replicas in a row ended before getting ready" in _row(page.text, "broken")
    assert f'<option value="{fed.project}" selected>' in page.text
    assert f"project: {fed.project}\n" in _textarea(page.text)


def test_a_refused_spec_shows_each_problem_by_field_keeps_the_input_and_stores_nothing(
    fed: Fed,
) -> None:
    anna, token = _client(fed)
    form = {"csrf_token": token, "project": fed.project}
    bad = yaml.safe_dump(_spec(fed.project, "Bad Name!") | {"replicas": {"max": 0}})
    r = anna.post("/endpoints", data=form | {"spec": bad})
    assert r.status_code == 422
    assert "should match pattern" in _problem(r.text, "name")
    assert "greater than or equal to 1" in _problem(r.text, "replicas.max")
    assert _textarea(r.text) == bad and 'aria-invalid="true"' in r.text
    spec = _spec(fed.project, "refused")
    spec["replica"]["resources"]["gpus_per_node"] = -1
    r = anna.post("/endpoints", data=form | {"spec": yaml.safe_dump(spec)})
    assert r.status_code == 422 and _problem(r.text, "replica.resources.gpus_per_node")
    r = anna.post("/endpoints", data=form | {"spec": "name: [broken"})
    assert "not valid YAML" in _problem(r.text, "spec")
    assert _textarea(r.text) == "name: [broken"
    other = yaml.safe_dump(_spec("EHPC-OTHER-0001", "refused"))
    r = anna.post("/endpoints", data=form | {"spec": other})
    assert "the spec says project 'EHPC-OTHER-0001'" in _problem(r.text, "project")
    r = anna.post("/endpoints", data=form | {"project": "EHPC-OTHER-0001", "spec": other})
    assert "not a project you are a member of" in _problem(r.text, "project")
    assert _count(fed, "refused") == 0 and _count(fed, "Bad Name!") == 0


def test_a_good_spec_creates_an_endpoint_that_starts(fed: Fed) -> None:
    anna, token = _client(fed)
    template = _textarea(anna.get("/endpoints").text)  # the form's own example, as it is
    spec = template.replace("name: my-model", "name: fresh")
    form = {"csrf_token": token, "project": fed.project, "spec": spec}
    r = anna.post("/endpoints", data=form)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/endpoints/{fed.project}/fresh?notice=created"
    page = anna.get(r.headers["location"]).text
    assert "Endpoint created" in page and 's-starting">starting' in page
    assert '<code id="gateway-url" class="copyable">http://testserver/v1</code>' in page
    assert "curl http://testserver/v1/chat/completions" in page
    assert 'base_url="http://testserver/v1"' in page and 'model="fresh"' in page
    assert "No replica yet" in page and "No keys yet." in page
    again = anna.post("/endpoints", data=form)
    assert again.status_code == 422
    assert "already has an endpoint 'fresh'" in _problem(again.text, "spec")
    assert _count(fed, "fresh") == 1
    assert _row(anna.get("/endpoints").text, "fresh")


def test_a_key_is_shown_once_then_by_its_prefix_and_revoking_it_locks_the_gateway(
    fed: Fed,
) -> None:
    _endpoint(fed, "keyed")
    anna, token = _client(fed)
    base = f"/endpoints/{fed.project}/keyed"
    assert anna.post(f"{base}/keys", data={"label": "my app"}).status_code == 403  # no CSRF
    made = anna.post(f"{base}/keys", data={"csrf_token": token, "label": "my app"})
    assert made.status_code == 200 and "Copy it now" in made.text
    key = KEY.search(made.text)
    assert key, made.text
    secret = key.group(1)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert ok(fed.api.get("/v1/models", headers=bearer))["data"][0]["id"] == "keyed"
    page = anna.get(base).text
    assert secret not in page and "Copy it now" not in page
    assert f"<code>{secret[:13]}…</code>" in page and "my app" in page
    with fed.db.session() as s:
        stored = s.scalars(select(EndpointKey.token_hash)).all()
    assert hash_token(secret) in stored and secret not in stored
    revoke = re.search(rf'action="{base}/keys/(\d+)/revoke"', page)
    assert revoke
    r = anna.post(f"{base}/keys/{revoke.group(1)}/revoke", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == f"{base}?notice=revoked"
    page = anna.get(r.headers["location"]).text
    assert "Key revoked" in page and "revoked 20" in page and "/revoke" not in page
    assert fed.api.get("/v1/models", headers=bearer).status_code == 401


def test_stopping_needs_the_name_typed_and_then_stops_serving(fed: Fed) -> None:
    job_id = _served(fed, _endpoint(fed, "stoppable")["id"])
    anna, token = _client(fed)
    base = f"/endpoints/{fed.project}/stoppable"
    page = anna.get(base).text
    row = re.sub(r"\s+", " ", page[page.index('<tr data-replica="') :])
    assert f'<a href="/jobs/{job_id}">job {job_id}</a>' in row
    assert "http://nid001234.lumi.example:41235" in row and 's-ready">ready' in row
    r = anna.post(f"{base}/stop", data={"csrf_token": token, "confirm": "stop it"})
    assert r.status_code == 422
    assert "type the endpoint's name, stoppable" in _problem(r.text, "confirm")
    r = anna.post(f"{base}/stop", data={"csrf_token": token, "confirm": "stoppable"})
    assert r.status_code == 303 and r.headers["location"] == f"{base}?notice=stopped"
    page = anna.get(r.headers["location"]).text
    assert "Endpoint stopped" in page and 's-stopped">stopped' in page
    assert "stopped by anna" in page
    for form in ("/stop", "/update", '/keys"'):
        assert f'action="{base}{form}' not in page
    assert 'data-endpoint="stoppable"' not in anna.get("/endpoints").text
    assert _row(anna.get("/endpoints?all=true").text, "stoppable")


def test_an_update_rolls_to_a_new_version_and_a_refused_one_keeps_the_input(fed: Fed) -> None:
    _endpoint(fed, "rolling")
    anna, token = _client(fed)
    base = f"/endpoints/{fed.project}/rolling"
    spec = yaml.safe_load(_textarea(anna.get(base).text))
    assert spec["name"] == "rolling" and spec["replicas"]["max"] == 2
    spec["replicas"]["max"] = 1
    r = anna.post(f"{base}/update", data={"csrf_token": token, "spec": yaml.safe_dump(spec)})
    assert r.status_code == 303 and r.headers["location"] == f"{base}?notice=updated"
    page = re.sub(r"\s+", " ", anna.get(r.headers["location"]).text)
    assert "Update accepted" in page and "<dt>Spec version</dt><dd>2</dd>" in page
    renamed = yaml.safe_dump(spec | {"name": "other"})
    r = anna.post(f"{base}/update", data={"csrf_token": token, "spec": renamed})
    assert r.status_code == 422 and "keeps the name" in _problem(r.text, "name")
    assert _textarea(r.text) == renamed


def test_someone_outside_the_project_gets_not_found_pages(fed: Fed) -> None:
    _endpoint(fed, "private")
    bob, token = _client(fed, "bob")
    base = f"/endpoints/{fed.project}/private"
    assert bob.get(base).status_code == 404
    posts = {"/keys": {}, "/keys/1/revoke": {}, "/stop": {"confirm": "private"}, "/update": {}}
    for path, form in posts.items():
        r = bob.post(base + path, data={"csrf_token": token, "spec": "{}", **form})
        assert r.status_code == 404, path
        assert "<h1>Not found</h1>" in r.text
    listing = bob.get("/endpoints").text
    assert "private" not in listing and "not a member of a project yet" in listing
    spec = yaml.safe_dump(_spec(fed.project, "sneaky"))
    r = bob.post("/endpoints", data={"csrf_token": token, "project": fed.project, "spec": spec})
    assert "not a project you are a member of" in _problem(r.text, "project")
    anna, _ = _client(fed)
    assert 's-starting">starting' in anna.get(base).text and _count(fed, "sneaky") == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # a page's layout: one is enough
def test_the_endpoint_page_fits_a_laptop_and_a_phone(browser: Any, fed: Fed) -> None:
    from playwright.sync_api import expect

    _served(fed, _endpoint(fed, "gpt-char")["id"])
    with BackgroundServer(fed.settings, fed.db) as server:
        page = _page(browser)
        _sign_in(page, server.url, "anna")
        page.get_by_role("link", name="Serving").click()
        expect(page.locator('tr[data-endpoint="gpt-char"]')).to_contain_text("1 / 1")
        _shots(page, "serving-list")
        page.get_by_label("Endpoint spec (YAML)").fill("name: Bad Name\nreplicas: {max: 0}\n")
        page.get_by_role("button", name="Create endpoint").click()
        expect(page.locator('.field-error[data-field="replicas.max"]')).to_be_visible()
        _shot(page, "serving-refused")
        page.get_by_role("link", name="gpt-char", exact=True).click()
        page.get_by_label("Label (optional)").fill("notebook")
        page.get_by_role("button", name="Create key").click()
        expect(page.locator("#new-key")).to_have_text(re.compile(r"^aif-ep-"))
        expect(page.locator("#replicas")).to_contain_text("nid001234.lumi.example")
        _shots(page, "serving-endpoint")
        page.context.close()


def _shots(page: Any, name: str) -> None:
    """Screenshots at both widths; on the phone nothing may widen the page (tables scroll)."""
    for suffix, viewport in (("", LAPTOP), ("-phone", PHONE)):
        page.set_viewport_size(viewport)
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{name}{suffix} is {wide}px wider than the window"
        _shot(page, name + suffix)
    page.set_viewport_size(LAPTOP)
