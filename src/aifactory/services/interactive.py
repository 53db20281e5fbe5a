"""Interactive sessions (JupyterLab, a terminal) run as jobs and proxied to their owner.

A session is a job of its project owned by the person who started it, so it runs under their
site identity, is placed and budgeted like any job, and is charged GPUs x elapsed time when it
ends. The job runs ``interactive_launch.py`` (sent as its script), which starts JupyterLab on the
port and with the token chosen here and prints ``AIF_SERVICE_URL=`` once it answers. The serving
controller calls :func:`reconcile` every second while a session is live: it reads that line,
checks ``<base>api/status`` with the token, marks the session ready, keeps its last activity,
culls it after ``idle_timeout`` without use and ends it with its job. The proxy
(``api/routers/interactive.py``) asks :func:`authorize` for the address and the token: owners
only; everyone else, admins included, hears "no such session".
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib.resources import files
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aifactory.db.models import InteractiveSession, Job, User
from aifactory.db.wake import wake
from aifactory.domain.jobspec import JobSpec, parse_spec
from aifactory.domain.ledger import from_milli
from aifactory.domain.serving import SessionSpec, parse_model
from aifactory.domain.sessions import LIVE, SessionState
from aifactory.errors import AIFactoryError, BackendUnavailable, Conflict, NotFound
from aifactory.services import submissions
from aifactory.services.endpoints import SERVING
from aifactory.services.interactive_watch import (
    TOUCH_S,
    observe,
    request_stop,
    settle,
)
from aifactory.services.job_queries import flag_cancel
from aifactory.services.permissions import Principal
from aifactory.services.views import View

log = logging.getLogger(__name__)
PORTS = (20000, 60000)  # the platform picks the session's port in this range
LIST_LIMIT = 200


class SessionView(View):
    id: int
    project: str
    owner: str
    kind: str
    state: str
    reason: str
    gpus: int
    time_limit_s: int
    idle_timeout_s: int
    job_id: int | None
    job_state: str | None
    charged_gpu_hours: Decimal
    path: str  # where the proxy serves it: ``/sessions/<id>/lab``
    created_at: datetime
    ready_at: datetime | None
    last_activity_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Target:
    """Where the proxy sends a session's requests, and the credential it adds."""

    session_id: int
    address: str
    token: str


def base_path(session_id: int) -> str:
    """The prefix JupyterLab serves under, the same behind the proxy and at the site."""
    return f"/sessions/{session_id}/"


@cache
def launcher_script() -> str:
    """The job's script: ``interactive_launch.py`` under the site's ``python3``."""
    source = files("aifactory").joinpath("interactive_launch.py").read_text(encoding="utf-8")
    return "#!/usr/bin/env python3\n" + source


def session_job_spec(row: InteractiveSession, spec: SessionSpec, port: int) -> JobSpec:
    """The job a session runs. Only validated values and platform-chosen ones go in: the kind
    (one of two words) and the base path travel as arguments, never as script text."""
    resources: dict[str, Any] = {"nodes": 1, "gpus_per_node": spec.gpus, "time_limit": spec.time}
    if spec.cpus is not None:
        resources["cpus"] = spec.cpus
    if spec.memory_gb is not None:
        resources["memory_gb"] = spec.memory_gb
    data: dict[str, Any] = {
        "name": f"session-{row.id}",
        "project": spec.project,
        "resources": resources,
        "script": launcher_script(),
        "args": [spec.kind, base_path(row.id)],
        "environment": {
            "AIF_SERVICE_HOST": "127.0.0.1",
            "AIF_SERVICE_PORT": str(port),
            "AIF_SERVICE_TOKEN": row.token,
            "AIF_SESSION_ID": str(row.id),
        },
        "retry": {"max_attempts": 1},  # a session that ends stays ended
    }
    if spec.allowed_countries:
        data["allowed_countries"] = spec.allowed_countries
    return parse_spec(data)


def start(
    session: Session,
    who: Principal,
    data: Mapping[str, Any],
    capacity: Mapping[str, int | None],
    now: datetime,
) -> SessionView:
    """Start a session: its row and its job in this one transaction (both or neither).

    Raises:
        Invalid: The spec breaks a rule (each named by its field), or the project is not one
            of the caller's.
        Conflict: No factory the project may use could ever run it (nothing is stored).
    """
    spec: SessionSpec = parse_model(SessionSpec, data, "session spec")
    submissions.check_member(session, who, spec.project)
    row = InteractiveSession(
        owner_id=who.user_id,
        project_code=spec.project,
        kind=spec.kind,
        spec=spec.model_dump(mode="json"),
        state=SessionState.STARTING,
        token=secrets.token_urlsafe(32),
        reason="submitted",
        created_at=now,
        last_activity_at=now,
    )
    session.add(row)
    session.flush()
    port = PORTS[0] + secrets.randbelow(PORTS[1] - PORTS[0])
    job = submissions.submit(session, who, session_job_spec(row, spec, port), now, capacity).job
    row.job_id = job.id
    row.reason = job.reason or "submitted"
    session.flush()
    wake(session, SERVING)
    return view(session, row)


def get(session: Session, who: Principal, session_id: int) -> SessionView:
    return view(session, _mine(session, who, session_id))


def list_sessions(session: Session, who: Principal, everything: bool = False) -> list[SessionView]:
    """The caller's own sessions, newest first: live ones, or with ``everything`` ended ones too
    (at most ``LIST_LIMIT``)."""
    query = select(InteractiveSession).where(InteractiveSession.owner_id == who.user_id)
    if not everything:
        query = query.where(InteractiveSession.state.in_(list(LIVE)))
    rows = session.scalars(query.order_by(InteractiveSession.id.desc()).limit(LIST_LIMIT))
    return [view(session, row) for row in rows]


def stop(session: Session, who: Principal, session_id: int, now: datetime) -> SessionView:
    """Stop a session: its job is cancelled (and charged for the time it ran). Stopping one
    that is stopping or has ended changes nothing."""
    row = _mine(session, who, session_id)
    if row.state in (SessionState.STARTING, SessionState.READY):
        request_stop(session, row, f"stopped by {who.username}", now)
    return view(session, row)


def authorize(session: Session, who: Principal, session_id: int, now: datetime) -> Target:
    """Where to send the owner's request to session ``session_id``; records its use.

    Raises:
        NotFound: No such session, or not the caller's (one answer for both).
        Conflict: It is stopping or has ended (the reason is given).
        BackendUnavailable: It is still starting (the client may retry).
    """
    row = _mine(session, who, session_id)
    if row.state in (SessionState.STOPPING, SessionState.ENDED):
        raise Conflict(f"session {session_id} is {row.state}: {row.reason}")
    if row.state != SessionState.READY or row.address is None:
        raise BackendUnavailable(f"session {session_id} is starting ({row.reason}); retry shortly")
    touch(session, row, now)
    return Target(row.id, row.address, row.token)


def touch(session: Session, row: InteractiveSession, now: datetime) -> None:
    """Record use through the proxy, at most every ``TOUCH_S`` seconds (a write per request
    would be waste; in between it is a read, which takes no write lock)."""
    if now - row.last_activity_at >= timedelta(seconds=TOUCH_S):
        session.execute(
            update(InteractiveSession)
            .where(InteractiveSession.id == row.id, InteractiveSession.last_activity_at < now)
            .values(last_activity_at=now)
            .execution_options(synchronize_session=False)
        )


def reconcile(
    session: Session, now: datetime, http: httpx.Client, capacity: Mapping[str, int | None]
) -> bool:
    """One pass over the live sessions; whether any is still live.

    Everything is looked at first (jobs, logs, each JupyterLab's status over HTTP) without
    writing, so no write lock is held while waiting on a session; then the sessions change and
    the jobs of those stopping are flagged for cancellation. A pass that finds nothing new
    writes nothing, so on SQLite it never takes the write lock.
    """
    rows = list(
        session.scalars(
            select(InteractiveSession)
            .where(InteractiveSession.state.in_(list(LIVE)))
            .order_by(InteractiveSession.id)
        )
    )
    if not rows:
        return False
    ids = [r.job_id for r in rows if r.job_id is not None]
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
    seen = [observe(row, jobs.get(row.job_id or 0), http) for row in rows]
    doomed = []
    for row, looked in zip(rows, seen, strict=True):
        try:
            job = settle(row, looked, now)
        except AIFactoryError:  # an illegal move: nothing of this session changed
            log.exception("session %s: pass failed; retrying", row.id)
            continue
        if job is not None:
            doomed.append(job)
    for job in doomed:
        flag_cancel(session, job)
    return any(row.state != SessionState.ENDED for row in rows)


def view(session: Session, row: InteractiveSession) -> SessionView:
    job = session.get(Job, row.job_id) if row.job_id is not None else None
    spec = SessionSpec.model_validate(row.spec)
    return SessionView(
        id=row.id,
        project=row.project_code,
        owner=session.get_one(User, row.owner_id).username,
        kind=row.kind,
        state=row.state,
        reason=row.reason,
        gpus=spec.gpus,
        time_limit_s=spec.time,
        idle_timeout_s=spec.idle_timeout,
        job_id=row.job_id,
        job_state=job.state if job is not None else None,
        charged_gpu_hours=from_milli(job.charged_milli if job is not None else 0),
        path=base_path(row.id) + "lab",
        created_at=row.created_at,
        ready_at=row.ready_at,
        last_activity_at=row.last_activity_at,
        ended_at=row.ended_at,
    )


def _mine(session: Session, who: Principal, session_id: int) -> InteractiveSession:
    """The caller's session ``session_id``; anyone else's is as unknown as a missing one."""
    row = session.get(InteractiveSession, session_id)
    if row is None or row.owner_id != who.user_id:
        raise NotFound(f"no session {session_id} of yours")
    return row
