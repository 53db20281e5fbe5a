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
