"""Helpers for access-path tests: organisations with members, a settable clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.domain.enums import OrganisationType, Role
from aifactory.services import identity
from aifactory.testing.people import Person, make_person


def at(text: str) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def set_clock(api: TestClient, when: datetime) -> None:
    api.app.state.clock = lambda: when  # type: ignore[attr-defined]


def member_of(
    db: Database,
    username: str,
    organisation: str,
    org_type: OrganisationType = OrganisationType.STARTUP,
    country: str = "FI",
    roles: list[tuple[Role, str | None]] | None = None,
    staff: int = 12,
) -> Person:
    """A person (applicant by default) who belongs to a (new or existing) organisation."""
    with db.session() as s:
        if organisation not in {o.name for o in identity.list_organisations(s)}:
            identity.create_organisation(
                s, organisation, org_type, country, staff, 1_500_000, 800_000
            )
    person = make_person(db, username, roles or [(Role.APPLICANT, None)])
    with db.session() as s:
        identity.add_membership(s, username, organisation)
    return person


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def award(
    api: TestClient,
    applicant: Person,
    operator: Person,
    call: str = "lumi-aif-pg",
    organisation: str = "Nordic Tokens Oy",
    partition: str = "LUMI-AI/gpu",
    hours: int = 1000,
    kind: str = "open_rd",
) -> tuple[str, int]:
    """Apply, submit and get accepted; returns (project code, allocation id)."""
    p = ok(
        api.post(
            "/api/v1/proposals",
            headers=applicant.headers,
            json={
                "call_id": call,
                "title": "work",
                "organisation": organisation,
                "research_kind": kind,
                "gpu_hours": hours,
                "duration_months": 1,
                "partition": partition,
            },
        ),
        201,
    )
    ok(api.post(f"/api/v1/proposals/{p['id']}/submit", headers=applicant.headers))
    done = ok(
        api.post(
            f"/api/v1/proposals/{p['id']}/assessment",
            headers=operator.headers,
            json={"feasible": True},
        )
    )
    project = ok(api.get(f"/api/v1/projects/{done['project_code']}", headers=applicant.headers))
    return str(done["project_code"]), int(project["allocations"][0]["id"])
