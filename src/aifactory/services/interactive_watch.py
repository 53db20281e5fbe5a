"""What the serving controller does for one live session per pass (``interactive.reconcile``).

:func:`observe` only looks: the session's job, the address its launcher announced in the job's
log (``AIF_SERVICE_URL=``), and JupyterLab's ``api/status`` (asked with the session's token; its
``last_activity`` counts API calls, kernel messages and terminal input). :func:`settle` then
changes the session as follows, and names the job to cancel, if any:

- the job ended: the session ends (with the stop or cull reason, or the job's own);
- stopping: the job's cancellation is asked for (a flagged job is left as it is) until it ends;
- JupyterLab answers: a starting session is ready; a ready one idle longer than its
  ``idle_timeout`` is culled (its job cancelled, charged for the time it ran);
- not answering yet: the reason shows what the job waits for; a job running for
  ``STARTUP_TIMEOUT_S`` without JupyterLab answering is cancelled.

A ready session whose check fails is left as it is: a busy server is not an idle one, and a
dead one ends with its job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from aifactory.db.models import InteractiveSession, Job
from aifactory.db.wake import wake
from aifactory.domain.jobs import TERMINAL, JobState
from aifactory.domain.serving import SessionSpec
from aifactory.domain.sessions import SessionState, check_move, describe, idle_seconds
from aifactory.services.endpoints import SERVING
from aifactory.services.job_queries import announced_url, flag_cancel

#: A session's recorded activity is moved forward only by steps at least this long.
TOUCH_S = 30.0
STARTUP_TIMEOUT_S = 600.0  # JupyterLab answering after its job started


@dataclass(frozen=True)
class Seen:
    """What one look at a session found (nothing written yet)."""

    job: Job | None
    address: str | None  # where JupyterLab listens, once announced
    status: dict[str, Any] | None  # JupyterLab's api/status answer; None: not asked or failed


def observe(row: InteractiveSession, job: Job | None, http: httpx.Client) -> Seen:
    """Look at the session's job, log and JupyterLab; no database writes."""
    if job is None or job.state != JobState.RUNNING or row.state == SessionState.STOPPING:
        return Seen(job, row.address, None)
    address = row.address or announced_url(job)
    if address is None:
        return Seen(job, None, None)
    return Seen(job, address, _status(http, address, row))


def settle(row: InteractiveSession, seen: Seen, now: datetime) -> Job | None:
    """Change the session as ``seen`` says (see the module's docstring); returns its job when
    that is to be cancelled. Only the row's attributes change here, so a pass that finds
    nothing new writes nothing (on SQLite it never takes the write lock)."""
    job = seen.job
    if job is None or job.state in TERMINAL:
        move(row, SessionState.ENDED, _end_reason(row, job), now)
        return None
    if row.state == SessionState.STOPPING:
        return job  # asked again until it ends (``flag_cancel`` skips a flagged job)
    if row.address != seen.address:
        row.address = seen.address
    if seen.status is not None:
        return _answering(row, job, seen.status, now)
    if row.state != SessionState.STARTING:
        return None
    started = job.started_at or job.updated_at
    if job.state == JobState.RUNNING and now - started > timedelta(seconds=STARTUP_TIMEOUT_S):
        why = f"JupyterLab did not answer within {describe(STARTUP_TIMEOUT_S)} of its start"
        move(row, SessionState.STOPPING, why, now)
        return job
    waiting = "starting JupyterLab" if job.state == JobState.RUNNING else _job_words(job)
    if row.reason != waiting:
        row.reason = waiting
    return None


def _answering(
    row: InteractiveSession, job: Job, status: dict[str, Any], now: datetime
) -> Job | None:
    if row.state == SessionState.STARTING:
        move(row, SessionState.READY, "", now)
        return None
    used = _when(status.get("last_activity"))
    if used is not None and (used - row.last_activity_at).total_seconds() >= TOUCH_S:
        row.last_activity_at = used
    idle = idle_seconds(now, row.last_activity_at, used)
    if idle <= SessionSpec.model_validate(row.spec).idle_timeout:
        return None
    move(row, SessionState.STOPPING, f"culled after {describe(idle)} idle", now)
    return job


def move(row: InteractiveSession, target: SessionState, reason: str, now: datetime) -> None:
    """The one way a session's state changes (illegal moves raise ``Conflict``)."""
    check_move(SessionState(row.state), target)
    row.state, row.reason = target, reason
    if target == SessionState.READY:
        row.ready_at = row.last_activity_at = now
    elif target == SessionState.ENDED:
        row.ended_at = now


def request_stop(session: Session, row: InteractiveSession, reason: str, now: datetime) -> None:
    """Move the session to ``stopping`` and ask for its job's cancellation."""
    move(row, SessionState.STOPPING, reason, now)
    job = session.get(Job, row.job_id) if row.job_id is not None else None
    if job is not None:
        flag_cancel(session, job)
    wake(session, SERVING)


def _end_reason(row: InteractiveSession, job: Job | None) -> str:
    if job is None:
        return "its job is gone"
    if row.state == SessionState.STOPPING and row.reason:
        return row.reason  # stopped by its owner, or culled: the job's cancel is the means
    if job.state == JobState.TIMED_OUT:
        return f"its time ran out (job {job.id} timed out)"
    if job.state == JobState.COMPLETED:
        return f"JupyterLab exited (job {job.id} completed)"
    return _job_words(job)


def _job_words(job: Job) -> str:
    return f"job {job.id} {job.state}" + (f": {job.reason}" if job.reason else "")


def _status(http: httpx.Client, address: str, row: InteractiveSession) -> dict[str, Any] | None:
    url = f"{address}/sessions/{row.id}/api/status"
    try:
        answer = http.get(url, headers={"Authorization": f"token {row.token}"})
        body = answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _when(value: Any) -> datetime | None:
    """JupyterLab's ISO time (``2026-01-01T10:00:00.123456Z``), or None."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else None
