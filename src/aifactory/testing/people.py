"""Users with given roles and their tokens, created directly through the services."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from aifactory.db.engine import Database
from aifactory.db.models import ApiToken, User
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


#: Where :func:`move_tokens_out_of_reach` puts token ids: far from the bounds generators favour.
FAR_TOKEN_ID = 1_234_567_000


def move_tokens_out_of_reach(db: Database, *people: Person) -> None:
    """Renumber these people's tokens to ids generated input never guesses, so that a fuzzed
    ``DELETE /tokens/{id}`` (ids drawn near 1) cannot revoke the token a fuzzer signs in with."""
    names = [p.username for p in people]
    with db.session() as session:
        owned = select(ApiToken.id).join(User, User.id == ApiToken.user_id)
        ids = session.scalars(owned.where(User.username.in_(names)).order_by(ApiToken.id)).all()
        for offset, token_id in enumerate(ids):
            moved = update(ApiToken).where(ApiToken.id == token_id)
            session.execute(moved.values(id=FAR_TOKEN_ID + offset))
