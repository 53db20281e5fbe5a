"""Role x operation: every API operation allows exactly the roles its row names.

The operations come from the application's routes, so a new endpoint without a row here fails
``test_every_api_operation_has_a_row``. Each row names the callers allowed (2xx) and, for an
operation on one object, those who may not even see that object: they get the same 404 as for
an id that does not exist. Everyone else is refused with 403 (401 without a token): a role that
may never do the act is refused before any lookup, and a caller who may see the object but not
act on it (a reviewer withdrawing someone's proposal) is told so.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from matrix_support import API, CALLERS, LARGE, NOW, ORG, PEOPLE, SMALL, World, build_world

from aifactory.api.app import create_app
from aifactory.api.params import MAX_ID
from aifactory.db.engine import Database
from aifactory.db.models import ClaimRule, SiteAccount
from aifactory.services import identity, invitations, registry
from aifactory.services.permissions import Principal
from aifactory.settings import Settings
from aifactory.testing.access import award, set_clock
from aifactory.testing.jobs import spec
from aifactory.testing.proposals import pdf_bytes

Params = Callable[[World], dict[str, Any]]
Body = Callable[[World, str], Any]
ALL = frozenset(PEOPLE)
ADMIN = frozenset({"admin"})
LUMI_EDITORS = frozenset({"admin", "op_lumi"})
OWNER = frozenset({"applicant", "admin"})
PROJECT = frozenset({"applicant", "project_member", "pi", "op_lumi", "admin"})
MEMBERS = frozenset({"applicant", "project_member", "pi", "admin"})
NOT_PROJECT = frozenset({"reviewer", "op_bsc"})  # neither members nor its factory's staff
NOT_PROPOSAL = frozenset({"project_member", "pi", "op_bsc"})  # assigned reviewers do see it
LUMI = {"name": "LUMI AIF"}
PARTITION = {**LUMI, "system": "LUMI-AI", "partition": "gpu"}


@dataclass(frozen=True)
class Row:
    """Who may call one operation; ``None`` allowed: public, anonymous callers too."""

    allowed: frozenset[str] | None
    params: Params = lambda w: {}
    body: Body | None = None
    hidden: frozenset[str] = frozenset()  # may not see the object named by ``obj``: 404
    obj: str = ""
    # Callers for whom an object named in the body is unknown (it is not theirs): 422, the
    # same answer as for a name that does not exist.
    unseen_in_body: frozenset[str] = frozenset()

    def expected(self, who: str) -> str:
        if self.allowed is None or who in self.allowed:
            return "2xx"
        if who == "anonymous":
            return "401"
        if who in self.unseen_in_body:
            return "422"
        return "404" if who in self.hidden else "403"


def _fixed(**params: Any) -> Params:
    return lambda w: params


def _on(
    name: str,
    make: Callable[[World], Any],
    hidden: frozenset[str],
    allowed: frozenset[str],
    body: Body | None = None,
) -> Row:
    """A row acting on one object, made by ``make`` (a shared one or a fresh one per caller)."""
    return Row(allowed, lambda w: {name: make(w)}, body, hidden, name)


def _named(prefix: str) -> Body:
    return lambda w, who: f"{prefix}-{who}".replace("_", "-")


_LOGINS = itertools.count(1)


def _claim_rule(w: World) -> int:
    """A fresh claim rule (removing one is not repeatable)."""
    with w.db.session() as s:
        rule = ClaimRule(claim="entitlement", value=f"urn:m{next(_RULE_IDS)}", role="reviewer")
        s.add(rule)
        s.flush()
        return rule.id


def _home_org(w: World) -> dict[str, Any]:
    with w.db.session() as s:
        return {"org_id": next(o.id for o in identity.list_organisations(s) if o.name == ORG)}


_RULE_IDS = itertools.count(1)


def _mapped(w: World) -> dict[str, Any]:
    """A fresh person with a login at LUMI AIF (removing one is not repeatable)."""
    name = f"mapped{next(_LOGINS)}"
    with w.db.session() as s:
        user = identity.create_user(s, name, f"{name}@x.eu")
        s.add(
            SiteAccount(
                user_id=user.id, factory_id=registry.factory_id(s, LUMI["name"]), username=name
            )
        )
    return {"username": name, "factory": LUMI["name"]}


def _org_id(w: World) -> int:
    """The applicant's organisation (its only member)."""
    with w.db.session() as s:
        return next(o.id for o in identity.list_organisations(s) if o.name == ORG)


def _invitation(w: World) -> dict[str, Any]:
    """A fresh pending invitation to the project (revoking one is not repeatable)."""
    made = w.as_("applicant", "POST", f"/projects/{w.project}/invitations", {"email": "i@x.eu"})
    return {"code": w.project, "invitation_id": made["id"]}


def _invited(w: World, who: str) -> dict[str, str]:
    """An invitation to a second project of the applicant's: whoever accepts it joins that one,
    so the rows about ``w.project`` still meet their callers as strangers."""
    code = getattr(w, "spare_project", None)
    if code is None:
        code, _ = award(w.api, w.people["applicant"], w.people["op_lumi"], organisation=ORG)
        w.spare_project = code  # type: ignore[attr-defined]
    made = w.as_("applicant", "POST", f"/projects/{code}/invitations", {"email": "i@x.eu"})
    return {"token": made["token"]}


def _fresh_member(w: World) -> dict[str, Any]:
    """A fresh member of the project (removing one is not repeatable)."""
    name = f"joiner{next(_LOGINS)}"
    with w.db.session() as s:
        identity.create_user(s, name, f"{name}@x.eu")
    made = w.as_("applicant", "POST", f"/projects/{w.project}/invitations", {"email": "j@x.eu"})
    token = made["token"]
    with w.db.session() as s:
        user = identity.get_user(s, name)
        principal = Principal(user.id, name, frozenset())
        invitations.accept(s, principal, token, NOW)
    return {"code": w.project, "username": name}


SEES_PROPOSAL = frozenset({"applicant", "reviewer", "op_lumi", "admin"})


@dataclass(frozen=True)
class Upload:
    """A multipart body (an attachment) instead of JSON."""

    files: dict[str, Any]


def _attached(w: World, submit: bool = True) -> dict[str, Any]:
    """A proposal with a PDF; submitted, in assessment with its reviewer, unless ``submit``
    is false (a draft, whose attachments may still be removed)."""
    pid = int(w.as_("applicant", "POST", "/proposals", LARGE)["id"])
    files = {"file": ("cv.pdf", pdf_bytes("cv"), "application/pdf")}
    url = f"{API}/proposals/{pid}/attachments"
    added = w.api.post(url, headers=w.headers("applicant"), files=files)
    assert added.status_code == 201, added.text
    if submit:
        w.as_("applicant", "POST", f"/proposals/{pid}/submit")
        w.as_("admin", "POST", f"/proposals/{pid}/reviewers", {"username": "reviewer"})
    return {"proposal_id": pid, "attachment_id": added.json()["id"]}


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row(None),
    ("GET", "/federation/summary"): Row(ALL),
    ("GET", "/countries"): Row(ALL),
    ("POST", "/countries"): Row(
        ADMIN,
        body=lambda w, who: {
            "code": "Q" + "ABCDEFGH"[CALLERS.index(who)],
            "name": f"Land {who}",
            "status": "other",
        },
    ),
    ("GET", "/factories"): Row(ALL),
    ("POST", "/factories"): Row(
        ADMIN,
        body=lambda w, who: {
            "name": f"New {who}",
            "hosting_entity": "X",
            "city": "Y",
            "country": "CY",
        },
    ),
    ("GET", "/factories/{name}"): Row(ALL, _fixed(**LUMI)),
    ("PATCH", "/factories/{name}"): Row(
        LUMI_EDITORS, _fixed(**LUMI), lambda w, who: {"city": f"Kajaani {who}"}
    ),
    ("POST", "/factories/{name}/status"): Row(  # same status: allowed, changes nothing
        LUMI_EDITORS, _fixed(**LUMI), lambda w, who: {"status": "operational"}
    ),
    ("POST", "/factories/{name}/systems"): Row(
        LUMI_EDITORS, _fixed(**LUMI), lambda w, who: {"name": f"sys-{who}", "kind": "new"}
    ),
    ("POST", "/factories/{name}/systems/{system}/partitions"): Row(
        LUMI_EDITORS,
        _fixed(**LUMI, system="LUMI-AI"),
        lambda w, who: {
            "name": _named("p")(w, who),
            "gpu_model": "H100",
            "nodes": 2,
            "gpus_per_node": 4,
            "gpu_memory_gb": 80,
        },
    ),
    ("PATCH", "/factories/{name}/systems/{system}/partitions/{partition}"): Row(
        LUMI_EDITORS, _fixed(**PARTITION), lambda w, who: {"nodes": 100}
    ),
    ("GET", "/me"): Row(ALL),
    ("GET", "/users"): Row(ADMIN),
    ("POST", "/users"): Row(
        ADMIN, body=lambda w, who: {"username": _named("new")(w, who), "email": f"{who}@x.eu"}
    ),
    ("GET", "/users/{username}"): Row(ADMIN, _fixed(username="zed")),
    ("PUT", "/users/{username}/password"): Row(
        ADMIN, _fixed(username="zed"), lambda w, who: {"password": "correct horse battery"}
    ),
    ("POST", "/users/{username}/roles"): Row(
        ADMIN, _fixed(username="zed"), lambda w, who: {"role": "reviewer"}
    ),
    ("POST", "/users/{username}/memberships"): Row(
        ADMIN, _fixed(username="zed"), lambda w, who: {"organisation": "Zed Labs"}
    ),
    ("GET", "/users/{username}/site-accounts"): Row(  # operators: their factories' logins
        frozenset({"admin", "op_lumi", "op_bsc"}), _fixed(username="zed")
    ),
    ("PUT", "/users/{username}/site-accounts/{factory}"): Row(
        LUMI_EDITORS,
        _fixed(username="zed", factory=LUMI["name"]),
        lambda w, who: {"login": _named("zed")(w, who)},
    ),
    ("DELETE", "/users/{username}/site-accounts/{factory}"): Row(LUMI_EDITORS, _mapped),
    ("GET", "/organisations"): Row(ALL),  # admins: all; others: their own
    ("POST", "/organisations"): Row(  # anyone registers their organisation (and joins it)
        ALL,
        body=lambda w, who: {"name": f"Org {who}", "type": "startup", "country_code": "FI"},
    ),
    ("GET", "/organisations/{org_id}"): _on("org_id", _org_id, ALL - OWNER, OWNER),
    ("PATCH", "/organisations/{org_id}"): _on(
        "org_id", _org_id, ALL - OWNER, OWNER, lambda w, who: {"staff_headcount": 12}
    ),
    # A project's PIs (the applicant) and admins manage its invitations and members.
    ("POST", "/projects/{code}/invitations"): _on(
        "code", lambda w: w.project, NOT_PROJECT, OWNER, lambda w, who: {"email": f"{who}@x.eu"}
    ),
    ("GET", "/projects/{code}/invitations"): _on("code", lambda w: w.project, NOT_PROJECT, OWNER),
    ("DELETE", "/projects/{code}/invitations/{invitation_id}"): Row(
        OWNER, _invitation, hidden=NOT_PROJECT, obj="code"
    ),
    ("POST", "/invitations/accept"): Row(ALL, body=_invited),  # whoever holds the link
    ("DELETE", "/projects/{code}/members/{username}"): Row(
        OWNER, _fresh_member, hidden=NOT_PROJECT, obj="code"
    ),
    ("GET", "/tokens"): Row(ALL),
    ("POST", "/tokens"): Row(ALL, body=lambda w, who: {"name": "mine"}),
    ("DELETE", "/tokens/{token_id}"): _on(  # another's token is as unknown as a missing one
        "token_id", lambda w: w.applicants_token(), ALL - OWNER, OWNER
    ),
    ("GET", "/access-modes"): Row(ALL),
    ("GET", "/calls"): Row(ALL),
    ("GET", "/calls/{call_id}"): Row(ALL, _fixed(call_id="lumi-aif-pg")),
    ("POST", "/calls/{call_id}/decisions"): Row(
        ADMIN, _fixed(call_id="lumi-aif-ls"), lambda w, who: {"cutoff": "2026-12-15"}
    ),
    ("POST", "/eligibility/check"): Row(  # members of the organisation (and admins) only
        OWNER,
        body=lambda w, who: {
            "call_id": "lumi-aif-pg",
            "organisation": ORG,
            "research_kind": "open_rd",
        },
        unseen_in_body=ALL - OWNER,  # not their organisation: as unknown as a missing one
    ),
    ("POST", "/proposals"): Row(  # applicant roles of another organisation: not theirs (422)
        OWNER,
        body=lambda w, who: {**SMALL, "title": f"P {who}"},
        unseen_in_body=frozenset({"project_member", "pi"}),
    ),
    ("GET", "/proposals"): Row(ALL),
    ("GET", "/proposals/{proposal_id}"): _on(
        "proposal_id",
        lambda w: w.proposal,
        NOT_PROPOSAL,
        frozenset({"applicant", "reviewer", "op_lumi", "admin"}),
    ),
    ("PUT", "/proposals/{proposal_id}"): _on(
        "proposal_id",
        World.draft,
        NOT_PROPOSAL | {"reviewer"},
        OWNER,
        lambda w, who: {**SMALL, "title": f"changed by {who}"},
    ),
    ("POST", "/proposals/{proposal_id}/attachments"): _on(
        "proposal_id",
        World.draft,
        NOT_PROPOSAL | {"reviewer"},
        OWNER,
        lambda w, who: Upload({"file": ("cv.pdf", pdf_bytes(who), "application/pdf")}),
    ),
    ("GET", "/proposals/{proposal_id}/attachments"): Row(
        SEES_PROPOSAL, _attached, hidden=NOT_PROPOSAL, obj="proposal_id"
    ),
    ("GET", "/proposals/{proposal_id}/attachments/{attachment_id}"): Row(
        SEES_PROPOSAL, _attached, hidden=NOT_PROPOSAL, obj="proposal_id"
    ),
    ("DELETE", "/proposals/{proposal_id}/attachments/{attachment_id}"): Row(
        OWNER,
        lambda w: _attached(w, submit=False),
        hidden=NOT_PROPOSAL | {"reviewer"},
        obj="proposal_id",
    ),
    ("POST", "/proposals/{proposal_id}/submit"): _on(
        "proposal_id", World.draft, NOT_PROPOSAL | {"reviewer"}, OWNER
    ),
    ("POST", "/proposals/{proposal_id}/withdraw"): _on(
        "proposal_id",
        World.draft,
        NOT_PROPOSAL | {"reviewer"},
        OWNER,
        lambda w, who: {"comment": "changed plans"},
    ),
    ("POST", "/proposals/{proposal_id}/assessment"): _on(
        "proposal_id",
        World.in_assessment,
        NOT_PROPOSAL | {"reviewer"},
        LUMI_EDITORS,
        lambda w, who: {"feasible": True},
    ),
    ("POST", "/proposals/{proposal_id}/reviewers"): Row(
        ADMIN, lambda w: {"proposal_id": w.in_assessment()}, lambda w, who: {"username": "reviewer"}
    ),
    ("POST", "/proposals/{proposal_id}/reviews"): _on(
        "proposal_id",
        World.in_review,
        NOT_PROPOSAL,
        frozenset({"reviewer"}),
        lambda w, who: {"scores": {"excellence": 4, "impact": 4, "feasibility": 5}},
    ),
    ("POST", "/proposals/{proposal_id}/decision"): Row(
        ADMIN, lambda w: {"proposal_id": w.decidable()}, lambda w, who: {"accept": False}
    ),
    ("GET", "/projects"): Row(ALL),
    ("GET", "/projects/{code}"): _on("code", lambda w: w.project, NOT_PROJECT, PROJECT),
    ("GET", "/allocations/{allocation_id}"): _on(
        "allocation_id", lambda w: w.allocation, NOT_PROJECT, PROJECT
    ),
    ("GET", "/allocations/{allocation_id}/ledger"): _on(
        "allocation_id", lambda w: w.allocation, NOT_PROJECT, PROJECT
    ),
    ("POST", "/allocations/expire"): Row(ADMIN),
    ("GET", "/reports/usage"): Row(ALL),
    ("GET", "/reports/usage.csv"): Row(ALL),
    ("POST", "/jobs"): Row(  # members (and admins) submit; to others it is an unknown project
        frozenset({"applicant", "project_member", "pi", "admin"}),
        body=lambda w, who: spec(w.project, ["true"], name=_named("job")(w, who)),
        unseen_in_body=ALL - {"applicant", "project_member", "pi", "admin"},
    ),
    ("GET", "/jobs"): Row(ALL),
    ("GET", "/jobs/{job_id}"): _on("job_id", lambda w: w.job, NOT_PROJECT, PROJECT),
    ("GET", "/jobs/{job_id}/why"): _on("job_id", lambda w: w.job, NOT_PROJECT, PROJECT),
    ("GET", "/jobs/{job_id}/logs"): _on("job_id", lambda w: w.job, NOT_PROJECT, PROJECT),
    ("GET", "/jobs/{job_id}/metrics"): _on("job_id", lambda w: w.job, NOT_PROJECT, PROJECT),
    # Endpoints and sessions are the members' (and admins'): to others, unknown.
    ("POST", "/endpoints"): Row(
        MEMBERS,
        body=lambda w, who: w.endpoint_spec(_named("ep")(w, who)),
        unseen_in_body=ALL - MEMBERS,
    ),
    ("GET", "/endpoints"): Row(ALL),
    ("GET", "/endpoints/{name}"): _on("name", World.new_endpoint, ALL - MEMBERS, MEMBERS),
    ("PUT", "/endpoints/{name}"): Row(
        MEMBERS,
        lambda w: {"name": "ep-shared"},
        lambda w, who: w.endpoint_spec("ep-shared"),
        ALL - MEMBERS,
        "name",
    ),
    ("DELETE", "/endpoints/{name}"): _on("name", World.new_endpoint, ALL - MEMBERS, MEMBERS),
    ("POST", "/endpoints/{name}/keys"): _on(
        "name", World.new_endpoint, ALL - MEMBERS, MEMBERS, lambda w, who: {"name": "k"}
    ),
    ("GET", "/endpoints/{name}/keys"): _on("name", World.new_endpoint, ALL - MEMBERS, MEMBERS),
    ("DELETE", "/endpoints/{name}/keys/{key_id}"): Row(
        MEMBERS, lambda w: w.endpoint_key(), None, ALL - MEMBERS, "name"
    ),
    ("POST", "/sessions"): Row(
        MEMBERS,
        body=lambda w, who: {"project": w.project, "kind": "jupyter", "gpus": 0, "time": 60},
        unseen_in_body=ALL - MEMBERS,
    ),
    ("GET", "/sessions"): Row(ALL),
    ("GET", "/sessions/{session_id}"): _on(
        "session_id", World.new_session, ALL - {"applicant"}, frozenset({"applicant"})
    ),
    ("POST", "/sessions/{session_id}/stop"): _on(
        "session_id", World.new_session, ALL - {"applicant"}, frozenset({"applicant"})
    ),
    ("POST", "/jobs/{job_id}/cancel"): _on("job_id", World.new_job, NOT_PROJECT, PROJECT),
    ("GET", "/status"): Row(frozenset({"admin", "op_lumi", "op_bsc"})),
    ("GET", "/planning/snapshot"): Row(ALL),
    ("GET", "/planning/history"): Row(frozenset({"admin", "op_lumi", "op_bsc"})),
    ("GET", "/audit"): Row(ADMIN),
    ("GET", "/lockouts"): Row(ADMIN),
    ("DELETE", "/lockouts/{key}"): Row(ADMIN, lambda w: {"key": w.lockout()}),
    ("GET", "/admin/claim-rules"): Row(ADMIN),
    ("POST", "/admin/claim-rules"): Row(
        ADMIN,
        body=lambda w, who: {"claim": "entitlement", "value": f"urn:{who}", "role": "reviewer"},
    ),
    ("DELETE", "/admin/claim-rules/{rule_id}"): Row(ADMIN, lambda w: {"rule_id": _claim_rule(w)}),
    ("PUT", "/admin/organisations/{org_id}/home-domain"): Row(
        ADMIN, _home_org, lambda w, who: {"home_domain": "uni.example"}
    ),
}
# Accepting an invitation makes the caller a project member, which lets them do more (create
# proposals, for one): it is checked after every other row, which meet the callers as they were.
ROWS[("POST", "/invitations/accept")] = ROWS.pop(("POST", "/invitations/accept"))
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
UNKNOWN: dict[type, Any] = {int: MAX_ID, str: "EHPC-AIF-2099PG99-9999"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Room at every site for all the jobs the rows submit: each is placed, none waits."""
    return Settings(data_dir=tmp_path / "data", local_gpus_per_site=1024)


def _path(template: str, params: dict[str, Any]) -> str:
    return API + template.format(**{k: quote(str(v), safe="") for k, v in params.items()})


def test_every_api_operation_has_a_row() -> None:
    app = create_app(Settings(data_dir=Path("unused")), Database("sqlite://"))
    operations = {
        (method.upper(), path.removeprefix(API))
        for path, item in app.openapi()["paths"].items()
        if path.startswith(API + "/")
        for method in item.keys() & HTTP_METHODS
    }
    missing = sorted(f"{m} {API}{p}" for m, p in operations - ROWS.keys())
    stale = sorted(f"{m} {API}{p}" for m, p in ROWS.keys() - operations)
    assert missing == [], f"API operations without a row in the policy table: {missing}"
    assert stale == [], f"rows for operations the API no longer has: {stale}"


def _call(world: World, method: str, path: str, who: str, body: Any) -> Any:
    if isinstance(body, Upload):
        return world.api.request(method, path, headers=world.headers(who), files=body.files)
    return world.api.request(method, path, headers=world.headers(who), json=body)


def _check(world: World, key: tuple[str, str], row: Row, who: str) -> str | None:
    """What is wrong with one caller's answer, or None."""
    (method, template), expected = key, row.expected(who)
    set_clock(world.api, NOW)
    params = row.params(world)
    body = row.body(world, who) if row.body else None
    response = _call(world, method, _path(template, params), who, body)
    got = "2xx" if 200 <= response.status_code < 300 else str(response.status_code)
    where = f"{method} {template} as {who}"
    if got != expected:
        return f"{where}: expected {expected}, got {response.status_code} {response.text[:200]}"
    if expected != "404":
        return None
    value = params[row.obj]
    unknown = _call(
        world, method, _path(template, {**params, row.obj: UNKNOWN[type(value)]}), who, body
    )
    seen = json.dumps(response.json()).replace(str(value), "<id>")
    if unknown.status_code != 404 or seen != json.dumps(unknown.json()).replace(
        str(UNKNOWN[type(value)]), "<id>"
    ):
        return f"{where}: the 404 {seen} differs from an unknown id's {unknown.text}"
    return None


def test_every_operation_allows_exactly_its_roles(db: Database, api: TestClient) -> None:
    world = build_world(db, api)
    wrong = [
        problem
        for key, row in ROWS.items()
        for who in CALLERS
        if (problem := _check(world, key, row, who)) is not None
    ]
    assert not wrong, "\n".join(wrong)


def test_only_admins_mint_tokens_for_others(db: Database, api: TestClient) -> None:
    world = build_world(db, api)
    body = {"name": "for zed", "username": "zed"}
    codes = {who: _call(world, "POST", f"{API}/tokens", who, body).status_code for who in CALLERS}
    assert codes == {
        who: 201 if who == "admin" else 401 if who == "anonymous" else 403 for who in CALLERS
    }


def test_prometheus_metrics_are_for_admins_only(db: Database, api: TestClient) -> None:
    """``/metrics`` lies outside ``/api/v1`` (Prometheus's path), so it has no row above. Its
    figures span every factory: an operator of one factory is refused (403)."""
    world = build_world(db, api)
    codes = {who: _call(world, "GET", "/metrics", who, None).status_code for who in CALLERS}
    assert codes == {
        who: 200 if who == "admin" else 401 if who == "anonymous" else 403 for who in CALLERS
    }
