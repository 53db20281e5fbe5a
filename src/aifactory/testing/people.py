"""Users with given roles and their tokens, created directly through the services."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services import identity


@dataclass(frozen=True)
class Person:
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_person(
    db: Database, username: str, roles: list[tuple[Role, str | None]], ttl_days: int = 1
) -> Person:
    with db.session() as session:
        identity.create_user(
            session, username, f"{username}@example.eu", username.title(), None, roles
        )
        token = identity.create_token(session, username, "test", ttl_days)
    return Person(username, token.token)
