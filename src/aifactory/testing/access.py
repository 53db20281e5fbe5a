"""Helpers for access-path tests: organisations with members, a settable clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Partition, System
from aifactory.domain.enums import LedgerKind, OrganisationType, ResearchKind, Role
from aifactory.domain.ledger import FundingSplit, attribution_for
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


def entitle(db: Database, first: int, factory: str, granted_milli: int | None = None) -> int:
    """Entitle the project of allocation ``first`` at ``factory`` too, as an award on several
    systems does: an allocation on the factory's first partition, with ``first``'s dates, that
    factory's open R&D funding split and a grant (``first``'s when not given); its id."""
    with db.session() as s:
        a = s.get_one(Allocation, first)
        f = s.scalars(select(Factory).where(Factory.name == factory)).one()
        partition_id = s.scalars(
            select(Partition.id)
            .join(System, System.id == Partition.system_id)
            .where(System.factory_id == f.id)
            .order_by(Partition.id)
            .limit(1)
        ).one()
        shares = (f.eu_share, f.national_share, f.commercial_share)
        split = attribution_for(ResearchKind.OPEN_RD, FundingSplit(*map(Decimal, map(str, shares))))
        b = Allocation(
            project_code=a.project_code,
            factory_id=f.id,
            partition_id=partition_id,
            start_date=min(a.start_date, date.today() - timedelta(days=1)),
            end_date=a.end_date,
            eu_share=split.eu,
            national_share=split.national,
            commercial_share=split.commercial,
            status="active",
        )
        s.add(b)
        s.flush()
        grant = a.granted_milli if granted_milli is None else granted_milli
        ledger.post(s, b.id, LedgerKind.GRANT, grant, "test", note=a.project_code)
        return b.id
