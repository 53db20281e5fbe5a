"""The federation the authorization matrix runs on: one person per role and their objects.

The applicant owns the objects (proposals, a project with an allocation and a job at LUMI AIF);
the project member and the PI are members of that project (not of its organisation); the
reviewer is assigned to the applicant's proposals under peer review. Operations that change an
object's state get a fresh object per caller (``draft``, ``in_assessment``, ``in_review``, ...),
so that one caller's success never turns into the next caller's conflict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import ProjectMember, User
from aifactory.domain.enums import Role
from aifactory.services import identity, throttle
from aifactory.testing.access import at, award, member_of, set_clock
from aifactory.testing.jobs import spec
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"
#: The clock every request runs at, unless a row moves it (a decision after its cut-off).
NOW = at("2026-11-25T09:00")
AFTER_CUTOFF = at("2026-12-02T10:00")  # the cut-off of proposals submitted at NOW is 12-01
ORG = "Matrix Labs"
PEOPLE: dict[str, list[tuple[Role, str | None]]] = {
    "applicant": [(Role.APPLICANT, None)],
    "project_member": [(Role.PROJECT_MEMBER, None)],
    "pi": [(Role.PI, None)],
    "reviewer": [(Role.REVIEWER, None)],
    "op_lumi": [(Role.FACTORY_OPERATOR, "LUMI AIF")],
    "op_bsc": [(Role.FACTORY_OPERATOR, "BSC AIF")],
    "admin": [(Role.FEDERATION_ADMIN, None)],
}
CALLERS = ["anonymous", *PEOPLE]
SMALL = {  # a Playground proposal (first come, first served; no review)
    "call_id": "lumi-aif-pg",
    "title": "small work",
    "organisation": ORG,
    "research_kind": "open_rd",
    "gpu_hours": 10,
    "duration_months": 1,
}
LARGE = {  # a Large Scale proposal: technical assessment, then peer review by cut-off
    "call_id": "lumi-aif-ls",
    "title": "large work",
    "organisation": ORG,
    "research_kind": "open_rd",
    "gpu_hours": 60000,
    "duration_months": 3,
    "partition": "LUMI-AI/gpu",
    "pi_contract_end": "2028-12-31",
    "sections": SECTIONS,
}


@dataclass
class World:
    api: TestClient
    db: Database
    people: dict[str, Person]
    project: str = ""
    allocation: int = 0
    job: int = 0
    proposal: int = 0  # in technical assessment, its reviewer assigned
    _serial: list[int] = field(default_factory=lambda: [0])

    def headers(self, who: str) -> dict[str, str]:
        return {} if who == "anonymous" else self.people[who].headers

    def as_(self, who: str, method: str, path: str, body: Any = None) -> Any:
        response = self.api.request(method, API + path, headers=self.headers(who), json=body)
        assert 200 <= response.status_code < 300, (method, path, response.text)
        return response.json()

    def draft(self) -> int:
        return int(self.as_("applicant", "POST", "/proposals", SMALL)["id"])

    def in_assessment(self) -> int:
        pid = int(self.as_("applicant", "POST", "/proposals", LARGE)["id"])
        self.as_("applicant", "POST", f"/proposals/{pid}/submit")
        return pid

    def in_review(self) -> int:
        pid = self.in_assessment()
        self.as_("op_lumi", "POST", f"/proposals/{pid}/assessment", {"feasible": True})
        self.as_("admin", "POST", f"/proposals/{pid}/reviewers", {"username": "reviewer"})
        return pid

    def decidable(self) -> int:
        """A proposal under peer review whose cut-off has passed (the clock moves past it)."""
        pid = self.in_review()
        set_clock(self.api, AFTER_CUTOFF)
        return pid

    def new_job(self) -> int:
        return int(self.as_("applicant", "POST", "/jobs", spec(self.project, ["true"]))["id"])

    def endpoint_spec(self, name: str) -> dict[str, Any]:
        replica = {"command": ["true"], "resources": {"gpus_per_node": 1, "time_limit": 60}}
        return {"spec": {"name": name, "project": self.project, "replica": replica}}

    def new_endpoint(self) -> str:
        """A fresh endpoint of the project (stopping or updating one is not repeatable)."""
        self._serial[0] += 1
        name = f"ep{self._serial[0]}"
        return str(self.as_("applicant", "POST", "/endpoints", self.endpoint_spec(name))["name"])

    def endpoint_key(self) -> dict[str, Any]:
        """An endpoint and one of its keys (a revoked key stays revoked: revoking is idempotent)."""
        name = self.new_endpoint()
        key = self.as_("applicant", "POST", f"/endpoints/{name}/keys", {"name": "k"})
        return {"name": name, "key_id": key["view"]["id"]}

    def new_session(self) -> int:
        body = {"project": self.project, "kind": "jupyter", "gpus": 0, "time": 60}
        return int(self.as_("applicant", "POST", "/sessions", body)["id"])

    def applicants_token(self) -> int:
        with self.db.session() as s:
            return identity.create_token(s, "applicant", "spare", 1).id

    def lockout(self) -> str:
        self._serial[0] += 1
        key = throttle.account_key(f"someone{self._serial[0]}")
        policy = throttle.Policy(1, timedelta(minutes=5), timedelta(minutes=5))
        with self.db.session() as s:
            throttle.fail(s, {key: policy}, NOW)
        return key


def build_world(db: Database, api: TestClient) -> World:
    set_clock(api, NOW)
    people = {"applicant": member_of(db, "applicant", ORG)}
    for name, roles in PEOPLE.items():
        if name not in people:
            people[name] = make_person(db, username(name), roles)
    make_person(db, "zed", [(Role.APPLICANT, None)])
    world = World(api, db, people)
    world.as_(
        "admin",
        "POST",
        "/organisations",
        {"name": "Zed Labs", "type": "startup", "country_code": "FI"},
    )
    world.project, world.allocation = award(
        api, people["applicant"], people["op_lumi"], organisation=ORG
    )
    _join_project(db, world.project, ["project_member", "pi"])
    world.job = world.new_job()
    world.as_("applicant", "POST", "/endpoints", world.endpoint_spec("ep-shared"))
    world.proposal = world.in_assessment()
    world.as_("admin", "POST", f"/proposals/{world.proposal}/reviewers", {"username": "reviewer"})
    return world


def username(name: str) -> str:
    return name.replace("_", "-")


def _join_project(db: Database, code: str, names: list[str]) -> None:
    with db.session() as s:
        for name in names:
            user_id = s.scalar(select(User.id).where(User.username == username(name)))
            assert user_id is not None
            s.add(ProjectMember(project_code=code, user_id=user_id, role=Role.PROJECT_MEMBER))
