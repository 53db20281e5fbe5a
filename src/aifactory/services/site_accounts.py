"""Site accounts: each person's own login at a factory (one per person per system, as EuroHPC
sites issue them).

Jobs run under their owner's login, and a project's Slurm account holds exactly its members'
logins; the control plane's service user never runs people's jobs at a site that requires site
accounts. Federation admins and the factory's operators map logins (every change is audited);
people see their own, operators those at the factories they run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Factory,
    Partition,
    Project,
    ProjectMember,
    SiteAccount,
    System,
    User,
)
from aifactory.domain.enums import Role
from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.services import audit, entitlements, ledger
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Action, Principal, authorize

#: A POSIX login as Slurm stores it (lower case); the same rule as the Slurm transport's.
LOGIN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: Logins no person is mapped to: a job must never run with the site's own privileges.
PRIVILEGED = frozenset({"root"})


class SiteAccountView(BaseModel):
    username: str
    factory: str
    login: str
    created_at: datetime


class NoSiteAccount(Invalid):
    """The owner of a job has no login at a site that runs jobs only as their owners."""


def check_login(login: str) -> str:
    """Return ``login`` when it is a plain, unprivileged login name."""
    if not LOGIN.fullmatch(login):
        raise Invalid.field("login", "pattern", f"{login!r} must match {LOGIN.pattern}")
    if login in PRIVILEGED:
        raise Invalid.field("login", "unprivileged", f"no person is mapped to {login}")
    return login


def set_login(
    session: Session, who: Principal, username: str, factory: str, login: str
) -> SiteAccountView:
    """Map ``username``'s login at ``factory`` (replacing an earlier one).

    Raises:
        Forbidden: ``who`` is neither a federation admin nor an operator of ``factory``.
        NotFound: No such user or factory.
        Invalid: ``login`` is not a plain login name, or is a privileged one.
        Conflict: Another person already has ``login`` at ``factory``.
    """
    factory_id = _authorized_factory(session, who, factory)
    check_login(login)
    user = _user(session, username)
    owner = session.scalar(
        select(User.username)
        .join(SiteAccount, SiteAccount.user_id == User.id)
        .where(SiteAccount.factory_id == factory_id, SiteAccount.username == login)
    )
    if owner is not None and owner != username:
        raise Conflict(f"login {login!r} at {factory} already belongs to {owner}")
    row = _row(session, user.id, factory_id)
    previous = row.username if row is not None else None
    if row is None:
        row = SiteAccount(user_id=user.id, factory_id=factory_id, username=login)
        session.add(row)
    row.username = login
    session.flush()
    if previous != login:
        audit.record(
            session,
            who.username,
            AuditAction.SITE_ACCOUNT_SET,
            ("user", username),
            factory=factory,
            login=login,
            previous=previous,
        )
    return SiteAccountView(
        username=username, factory=factory, login=login, created_at=row.created_at
    )


def remove_login(session: Session, who: Principal, username: str, factory: str) -> None:
    """Forget ``username``'s login at ``factory``; their jobs there are refused from now on.

    Raises:
        Forbidden: ``who`` is neither a federation admin nor an operator of ``factory``.
        NotFound: No such user or factory, or the user has no login there.
    """
    factory_id = _authorized_factory(session, who, factory)
    row = _row(session, _user(session, username).id, factory_id)
    if row is None:
        raise NotFound(f"{username} has no site account at {factory}")
    login = row.username
    session.delete(row)
    session.flush()
    audit.record(
        session,
        who.username,
        AuditAction.SITE_ACCOUNT_REMOVE,
        ("user", username),
        factory=factory,
        login=login,
    )


def list_logins(session: Session, who: Principal, username: str) -> list[SiteAccountView]:
    """``username``'s logins: all of them for the person and admins, those at the factories
    an operator runs for that operator.

    Raises:
        Forbidden: Anyone else.
        NotFound: No such user.
    """
    operated = {f for role, f in who.roles if role == Role.FACTORY_OPERATOR and f is not None}
    everything = who.username == username or who.is_admin
    if not (everything or operated):
        authorize(who, Action.MANAGE_SITE_ACCOUNTS)  # refused, naming who may
    user = _user(session, username)
    rows = session.execute(
        select(SiteAccount, Factory.name)
        .join(Factory, Factory.id == SiteAccount.factory_id)
        .where(SiteAccount.user_id == user.id)
        .order_by(Factory.name)
    ).all()
    return [
        SiteAccountView(
            username=username, factory=name, login=row.username, created_at=row.created_at
        )
        for row, name in rows
        if everything or row.factory_id in operated
    ]


# --- for the site agents -------------------------------------------------------------------


def login_at(session: Session, user_id: int, factory_id: int) -> str | None:
    """The person's login at the factory, ``None`` without one."""
    return session.scalar(
        select(SiteAccount.username).where(
            SiteAccount.user_id == user_id, SiteAccount.factory_id == factory_id
        )
    )


def run_as(
    session: Session, owner_id: int, factory_id: int, factory: str, *, required: bool | None
) -> str | None:
    """The login a job of ``owner_id`` runs as at the factory.

    Args:
        session: The agent's transaction.
        owner_id: The job's owner.
        factory_id: The factory the job runs at.
        factory: Its name (for the refusal).
        required: The executor's ``requires_site_account``; ``None`` for an executor without
            per-person identity (all its jobs run as its own job user): nothing is looked up.

    Raises:
        NoSiteAccount: The owner has none and the site requires one.
    """
    if required is None:
        return None
    login = login_at(session, owner_id, factory_id)
    if login is None and required:
        owner = session.scalar(select(User.username).where(User.id == owner_id))
        raise NoSiteAccount(f"no site account at {factory} for {owner}; ask the factory's operator")
    return login


def member_logins(
    session: Session, factory_id: int, projects: Iterable[str]
) -> dict[str, list[str]]:
    """Each project's members' logins at the factory (members without one are left out)."""
    codes = list(projects)
    logins: dict[str, list[str]] = {code: [] for code in codes}
    rows = session.execute(
        select(ProjectMember.project_code, SiteAccount.username)
        .join(SiteAccount, SiteAccount.user_id == ProjectMember.user_id)
        .where(SiteAccount.factory_id == factory_id, ProjectMember.project_code.in_(codes))
        .order_by(ProjectMember.project_code, SiteAccount.username)
    ).all()
    for code, login in rows:
        logins[code].append(login)
    return logins


# --- helpers -------------------------------------------------------------------------------


def _authorized_factory(session: Session, who: Principal, factory: str) -> int:
    """The factory's id, once ``who`` may map logins there (refused before any lookup when
    ``who`` may map logins nowhere)."""
    if not (who.is_admin or who.has(Role.FACTORY_OPERATOR)):
        authorize(who, Action.MANAGE_SITE_ACCOUNTS)
    factory_id = session.scalar(select(Factory.id).where(Factory.name == factory))
    if factory_id is None:
        raise NotFound(f"factory {factory!r} not found")
    authorize(who, Action.MANAGE_SITE_ACCOUNTS, factory_id)
    return factory_id


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} not found")
    return user


def _row(session: Session, user_id: int, factory_id: int) -> SiteAccount | None:
    return session.scalar(
        select(SiteAccount).where(
            SiteAccount.user_id == user_id, SiteAccount.factory_id == factory_id
        )
    )


def project_budgets(session: Session, factory_id: int) -> dict[str, float]:
    """Raw GPU-hours each project may use at a factory, for its site account's budget.

    A partition's allocation counts at its own partition's charge factor. A federation
    allocation counts at every factory that admits the project (``services.entitlements``), at
    the site's cheapest charge factor: an upper bound, as the site's budget is a backstop and the
    control plane's ledger (one balance for all sites) is the real limit.
    """
    rows = session.execute(
        select(Allocation, Partition.charge_factor)
        .join(Partition, Partition.id == Allocation.partition_id)
        .where(Allocation.factory_id == factory_id)
    ).all()
    budgets: dict[str, float] = {}
    for alloc, factor in [*rows, *_federation_rows(session, factory_id)]:
        state = ledger.state(session, alloc.id)
        raw = (state.granted - state.expired) / 1000 / factor
        budgets[alloc.project_code] = budgets.get(alloc.project_code, 0.0) + raw
    return budgets


def _federation_rows(session: Session, factory_id: int) -> list[tuple[Allocation, float]]:
    """The federation allocations a factory admits, with the site's cheapest charge factor."""
    cheapest = session.scalar(
        select(func.min(Partition.charge_factor))
        .join(System, System.id == Partition.system_id)
        .where(System.factory_id == factory_id)
    )
    name = session.scalar(select(Factory.name).where(Factory.id == factory_id))
    if not cheapest or name is None:
        return []
    rows = session.execute(
        select(Allocation, Project.mode)
        .join(Project, Project.code == Allocation.project_code)
        .where(Allocation.scope == "federation", Allocation.status == "active")
    ).all()
    admits = entitlements.admitting_factories({mode for _, mode in rows})
    return [(a, cheapest) for a, mode in rows if name in admits.get(mode, frozenset())]
