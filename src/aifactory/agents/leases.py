"""Leases: at most one controller acts for a site (or the broker) at a time.

A lease row names its holder, an expiry and a fencing token. Taking an expired lease and
renewing one's own are single conditional UPDATEs, so two processes racing for one lease can
never both win. A holder killed with ``kill -9`` stops renewing and loses the lease when it
expires; the next taker bumps the token. Every transaction an agent commits first calls
``fence``: it reads the lease (``FOR SHARE`` on PostgreSQL, which also blocks a takeover until
the transaction ends) and refuses to go on when the lease carries another holder or token.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from aifactory.db.engine import Database
from aifactory.db.models import Lease
from aifactory.db.types import utcnow


def new_holder() -> str:
    """A name for this controller process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseLost(Exception):
    """The lease was taken by another controller (or never held); stop acting."""


@dataclass
class LeaseHandle:
    """One lease as its would-be holder sees it."""

    db: Database
    name: str
    holder: str
    ttl_s: float
    token: int | None = None
    _renewed: float = field(default=0.0, repr=False)

    @property
    def held(self) -> bool:
        return self.token is not None

    def ensure_due(self) -> bool:
        """Like ``ensure``, but touches the database only a third of a lease time apart."""
        if self.token is not None and time.monotonic() < self._renewed + self.ttl_s / 3:
            return True
        return self.ensure()

    def ensure(self) -> bool:
        """Renew the lease if held, else try to take it; True while this holder has it."""
        now = utcnow()
        expires = now + timedelta(seconds=self.ttl_s)
        with self.db.session() as s:
            if self.token is not None:
                renewed = s.execute(
                    update(Lease).where(*self._mine()).values(renewed_at=now, expires_at=expires)
                )
                if renewed.rowcount:  # type: ignore[attr-defined]
                    self._renewed = time.monotonic()
                    return True
                self.token = None
            taken = s.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.expires_at < now)
                .values(
                    holder=self.holder,
                    token=Lease.token + 1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=expires,
                )
            )
            if taken.rowcount:  # type: ignore[attr-defined]
                self.token = s.scalar(select(Lease.token).where(Lease.name == self.name))
                self._renewed = time.monotonic()
                return True
        return self._create(now, expires)

    def _mine(self) -> tuple[ColumnElement[bool], ...]:
        """The lease row as this holder holds it (name, holder and fencing token)."""
        return (Lease.name == self.name, Lease.holder == self.holder, Lease.token == self.token)

    def _create(self, now: datetime, expires: datetime) -> bool:
        """The first holder ever inserts the row; a racing insert loses on the primary key."""
        try:
            with self.db.session() as s:
                if s.get(Lease, self.name) is not None:
                    return False
                s.add(
                    Lease(
                        name=self.name,
                        holder=self.holder,
                        token=1,
                        acquired_at=now,
                        renewed_at=now,
                        expires_at=expires,
                    )
                )
        except IntegrityError:
            return False
        self.token, self._renewed = 1, time.monotonic()
        return True

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so another controller need not wait."""
        if self.token is None:
            return
        with self.db.session() as s:
            s.execute(
                update(Lease)
                .where(*self._mine())
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        self.token = None

    def fence(self, session: Session) -> None:
        """Raise ``LeaseLost`` unless this transaction runs under the lease as held now.

        Renews the lease first when a third of its time has gone, so a long pass (thousands of
        pending jobs, a slow scheduler) never loses it to a standby while healthy.
        """
        if self.token is not None and not self.ensure_due():
            raise LeaseLost(f"lease {self.name} was taken from {self.holder}")
        query = select(Lease.name).where(*self._mine())
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        if session.execute(query).first() is None:
            self.token = None
            raise LeaseLost(f"lease {self.name} is no longer held by {self.holder}")
