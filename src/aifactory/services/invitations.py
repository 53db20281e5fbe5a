"""Invitations to a project and its membership: a PI invites by e-mail, the invitee joins.

An invitation is a single-use link carrying a random secret; only the secret's SHA-256 is
stored. It is pending until it is used, revoked or expires (``TTL``); using and revoking close
it through ``_close``, one compare-and-set UPDATE that only a still-pending row passes, so two
people using one link at once, or a use racing a revocation, cannot both succeed. There is no
mail server: the link is returned to the PI (page, API, CLI) to pass on. Joining adds a
``ProjectMember`` row, the one place membership lives: the site agents put members' site
accounts into the project's Slurm account from those rows (``site_accounts.member_logins``).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aifactory.db.models import Project, ProjectInvitation, ProjectMember, User
from aifactory.domain.enums import Role
from aifactory.errors import Conflict, Forbidden, Invalid, NotFound
from aifactory.services import audit, identity, projects
from aifactory.services.access_views import MemberView
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.services.self_service_views import (
    InvitationStatus,
    InvitationView,
    NewInvitation,
)

TTL = timedelta(days=7)
TOKEN_PREFIX = "inv_"  # noqa: S105 (a label, not a secret)
EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")


def status_of(row: ProjectInvitation, now: datetime) -> InvitationStatus:
    if row.accepted_at is not None:
        return InvitationStatus.ACCEPTED
    if row.revoked_at is not None:
        return InvitationStatus.REVOKED
    return InvitationStatus.PENDING if now < row.expires_at else InvitationStatus.EXPIRED


def invite(session: Session, who: Principal, code: str, email: str, now: datetime) -> NewInvitation:
    """A PI of the project (or an admin) invites an e-mail address; returns the link once."""
    project = _managed(session, who, code)
    email = email.strip()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise Invalid.field("email", "email", f"{email[:60]!r} is not an e-mail address")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ProjectInvitation(
        project_code=project.code,
        email=email,
        role=Role.PROJECT_MEMBER,
        token_hash=identity.hash_token(secret),
        inviter_id=who.user_id,
        created_at=now,
        expires_at=now + TTL,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, who.username, AuditAction.INVITATION_CREATE, ("project", code), email=email
    )
    view = _view(session, row, now)
    return NewInvitation(**view.model_dump(), token=secret, path=f"/invitations/{secret}")


def list_for(session: Session, who: Principal, code: str, now: datetime) -> list[InvitationView]:
    """The project's invitations, newest first (its PIs and admins)."""
    _managed(session, who, code)
    rows = session.scalars(
        select(ProjectInvitation)
        .where(ProjectInvitation.project_code == code)
        .order_by(ProjectInvitation.id.desc())
    )
    return [_view(session, r, now) for r in rows]


def revoke(
    session: Session, who: Principal, code: str, invitation_id: int, now: datetime
) -> InvitationView:
    _managed(session, who, code)
    row = session.get(ProjectInvitation, invitation_id)
    if row is None or row.project_code != code:
        raise NotFound(f"invitation {invitation_id} not found")
    _close(session, row, InvitationStatus.REVOKED, now, who.user_id)
    audit.record(session, who.username, AuditAction.INVITATION_REVOKE, ("invitation", row.id))
    return _view(session, row, now)


def lookup(session: Session, token: str, now: datetime) -> InvitationView:
    """What a link invites to (shown before joining); unknown links are not found."""
    return _view(session, _by_token(session, token), now)


def accept(session: Session, who: Principal, token: str, now: datetime) -> InvitationView:
    """Join the project with a pending invitation; the link is used up (also by a member)."""
    row = _by_token(session, token)
    _close(session, row, InvitationStatus.ACCEPTED, now, who.user_id)
    if not _is_member(session, row.project_code, who.user_id):  # members keep their role
        session.add(
            ProjectMember(project_code=row.project_code, user_id=who.user_id, role=row.role)
        )
    session.flush()
    if not who.has(Role(row.role)):
        identity.grant_role(session, who.username, Role(row.role), None, who.username)
    audit.record(
        session, who.username, AuditAction.INVITATION_ACCEPT, ("project", row.project_code)
    )
    return _view(session, row, now)


def remove_member(session: Session, who: Principal, code: str, username: str) -> list[MemberView]:
    """A PI (or an admin) removes a member; the project's last PI stays."""
    project = _managed(session, who, code)
    user_id = session.scalar(select(User.id).where(User.username == username))
    member = next((m for m in project.members if m.user_id == user_id), None)
    if member is None:
        raise NotFound(f"{username!r} is not a member of {code}")
    pis = [m for m in project.members if m.role == Role.PI]
    if member.role == Role.PI and len(pis) == 1:
        raise Conflict(f"{username} is the last PI of {code}; a project keeps one")
    project.members.remove(member)
    session.flush()
    audit.record(session, who.username, AuditAction.MEMBER_REMOVE, ("project", code), user=username)
    return projects.get_project(session, who, code).members


def is_pi(project: Project, who: Principal) -> bool:
    return any(m.user_id == who.user_id and m.role == Role.PI for m in project.members)


def _managed(session: Session, who: Principal, code: str) -> Project:
    """The project, once ``who`` is one of its PIs or an admin (unseen ones: not found)."""
    project = session.get(Project, code)
    if project is None or not projects.can_see_project(session, who, project):
        raise NotFound(f"project {code!r} not found")
    if not (who.is_admin or is_pi(project, who)):
        raise Forbidden(f"only the PIs of {code} manage its members")
    return project


def _close(
    session: Session, row: ProjectInvitation, to: InvitationStatus, now: datetime, by: int
) -> None:
    """The one transition out of pending: accepted (by ``by``) or revoked; expiry needs no
    write. A compare-and-set: the UPDATE matches only a row still pending in the database, so
    of two racing closes exactly one changes a row; the other gets the row's real status."""
    writes: dict[InvitationStatus, dict[str, datetime | int]] = {
        InvitationStatus.ACCEPTED: {"accepted_at": now, "accepted_by_id": by},
        InvitationStatus.REVOKED: {"revoked_at": now},
    }
    changes = writes.get(to)
    if changes is None:
        raise Invalid.field("status", "transition", f"an invitation cannot become {to}")
    closed = session.execute(
        update(ProjectInvitation)
        .where(
            ProjectInvitation.id == row.id,
            ProjectInvitation.accepted_at.is_(None),
            ProjectInvitation.revoked_at.is_(None),
            ProjectInvitation.expires_at > now,
        )
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    session.refresh(row)
    if getattr(closed, "rowcount", 0) != 1:
        raise Conflict(f"this invitation is {status_of(row, now)}; ask the PI for a new one")


def _by_token(session: Session, token: str) -> ProjectInvitation:
    row = session.scalar(
        select(ProjectInvitation).where(
            ProjectInvitation.token_hash == identity.hash_token(token.strip())
        )
    )
    if row is None:
        raise NotFound("no such invitation: the link is wrong or incomplete")
    return row


def _is_member(session: Session, code: str, user_id: int) -> bool:
    found = session.get(ProjectMember, (code, user_id))
    return found is not None


def _view(session: Session, row: ProjectInvitation, now: datetime) -> InvitationView:
    names = dict(
        session.execute(
            select(User.id, User.username).where(
                User.id.in_([row.inviter_id, row.accepted_by_id or row.inviter_id])
            )
        ).all()
    )
    project = session.get_one(Project, row.project_code)
    return InvitationView(
        id=row.id,
        project=row.project_code,
        project_title=project.title,
        email=row.email,
        role=row.role,
        inviter=names[row.inviter_id],
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=status_of(row, now),
        accepted_by=names.get(row.accepted_by_id) if row.accepted_by_id else None,
    )
