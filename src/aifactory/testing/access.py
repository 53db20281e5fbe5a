"""Helpers for access-path tests: organisations with members, a settable clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Partition, System
from aifactory.domain.enums import LedgerKind, OrganisationType, Role
from aifactory.services import identity, ledger
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


def entitle(db: Database, code: str, first: int, factory: str) -> int:
    """Entitle project ``code`` at ``factory`` too: an allocation on the factory's first
    partition like the allocation ``first`` (same dates, shares and grant); its id."""
    with db.session() as s:
        a = s.get_one(Allocation, first)
        partition_id, factory_id = s.execute(
            select(Partition.id, Factory.id)
            .join(System, System.id == Partition.system_id)
            .join(Factory, Factory.id == System.factory_id)
            .where(Factory.name == factory)
            .order_by(Partition.id)
            .limit(1)
        ).one()
        b = Allocation(
            project_code=code,
            factory_id=factory_id,
            partition_id=partition_id,
            start_date=min(a.start_date, date.today() - timedelta(days=1)),
            end_date=a.end_date,
            eu_share=a.eu_share,
            national_share=a.national_share,
            commercial_share=a.commercial_share,
        )
        s.add(b)
        s.flush()
        ledger.post(s, b.id, LedgerKind.GRANT, a.granted_milli, "test", note=code)
        return b.id
