"""What each role's home page lists: the next step per proposal, project, review or assessment.

Built from the existing read models (``proposals.list_visible``, ``projects.list_projects``,
``job_queries.list_jobs``, ``health.system_health``); this module only sorts and words them.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime

from pydantic import BaseModel
from sqlalchemy.orm import Session

from aifactory.domain.clock import as_date
from aifactory.domain.enums import ProposalStatus as S
from aifactory.domain.enums import Role
from aifactory.domain.jobs import JobState
from aifactory.services import access, health, job_queries, projects, proposals
from aifactory.services.access_views import ProjectView, ProposalView
from aifactory.services.health import SiteHealth
from aifactory.services.job_views import JobView
from aifactory.services.permissions import Principal

WAITING_JOBS = (JobState.PENDING, JobState.PLACED, JobState.SUBMITTED, JobState.QUEUED)


class Step(BaseModel):
    """One proposal and what happens next: in words, by when, and where to act."""

    proposal: ProposalView
    text: str
    due: date | None
    overdue: bool
    href: str


class Batch(BaseModel):
    """A call's cut-off whose proposals in peer review have all their required reviews."""

    call_id: str
    cutoff: date
    proposals: list[int]


def _next_cutoff(call_id: str, today: date) -> date | None:
    return access.call_view(access.get_call(call_id), today).next_cutoff


def next_step(p: ProposalView, today: date) -> Step:
    """The applicant's view of where a proposal stands."""
    href, due, text = f"/proposals/{p.id}", p.deadline, ""
    if p.status == S.DRAFT:
        due = _next_cutoff(p.call_id, today)
        text = f"submit before the cut-off on {due:%-d %b %Y}" if due else "submit when ready"
    elif p.status in (S.SUBMITTED, S.TECHNICAL_ASSESSMENT):
        text = f"waiting for technical assessment by {p.factory or 'the factory'}"
    elif p.status == S.PEER_REVIEW:
        text = "in peer review" + (f", cut-off {p.cutoff:%-d %b %Y}" if p.cutoff else "")
    elif p.status == S.ACCEPTED:
        text, due = f"awarded: project {p.project_code}", None
        href = f"/projects/{p.project_code}" if p.project_code else href
    else:
        text, due = str(p.status).replace("_", " "), None
    return Step(proposal=p, text=text, due=due, overdue=bool(due) and p.overdue, href=href)


def applicant(session: Session, who: Principal, now: datetime) -> list[Step]:
    """My proposals, undecided first, then by deadline."""
    mine = [p for p in proposals.list_visible(session, who, now) if p.applicant == who.username]
    steps = [next_step(p, as_date(now)) for p in mine]
    closed = (S.ACCEPTED, S.REJECTED, S.WITHDRAWN)
    return sorted(steps, key=lambda s: (s.proposal.status in closed, s.due or date.max))


class ProjectHome(BaseModel):
    project: ProjectView
    running: list[JobView]
    waiting: list[JobView]


def member(session: Session, who: Principal) -> list[ProjectHome]:
    """Projects I belong to, with my running and waiting jobs there."""
    mine = [
        p
        for p in projects.list_projects(session, who)
        if any(m.username == who.username for m in p.members)
    ]

    def jobs(code: str, states: tuple[JobState, ...]) -> list[JobView]:
        found = [
            j
            for s in states
            for j in job_queries.list_jobs(session, who, project=code, state=s, limit=20).jobs
        ]
        return sorted(found, key=lambda j: j.id)

    return [
        ProjectHome(
            project=p, running=jobs(p.code, (JobState.RUNNING,)), waiting=jobs(p.code, WAITING_JOBS)
        )
        for p in mine
    ]


def reviews_due(session: Session, who: Principal, now: datetime) -> list[ProposalView]:
    """Proposals in peer review that wait for my scores, oldest deadline first."""
    queue = proposals.list_visible(session, who, now, S.PEER_REVIEW)
    due = [
        p for p in queue if any(r.reviewer == who.username and not r.submitted for r in p.reviews)
    ]
    return sorted(due, key=lambda p: (p.deadline or date.max, p.submitted_at or now))


def my_factories(who: Principal) -> list[int]:
    return [f for role, f in who.roles if role == Role.FACTORY_OPERATOR and f is not None]


class OperatorHome(BaseModel):
    assessments: list[ProposalView]
    overdue: int
    sites: list[SiteHealth]


def operator(
    session: Session, who: Principal, now: datetime, ttl_s: float, factories: list[str]
) -> OperatorHome:
    """Technical assessments waiting at my factories (FIFO) and those factories' sites."""
    queue = [
        p
        for p in proposals.list_visible(session, who, now, S.TECHNICAL_ASSESSMENT)
        if p.factory in factories
    ]
    sites = [
        s for s in health.system_health(session, who, now, ttl_s).sites if s.factory in factories
    ]
    return OperatorHome(assessments=queue, overdue=sum(1 for p in queue if p.overdue), sites=sites)


class AdminHome(BaseModel):
    by_status: dict[str, int]
    overdue_by_status: dict[str, int]
    overdue: list[ProposalView]
    batches: list[Batch]


def ready_batches(session: Session, review: list[ProposalView]) -> list[Batch]:
    """Cut-offs where every proposal in peer review has its required number of reviews."""
    groups: dict[tuple[str, date], list[ProposalView]] = {}
    for p in review:
        if p.cutoff is not None:
            groups.setdefault((p.call_id, p.cutoff), []).append(p)
    return [
        Batch(call_id=call, cutoff=cutoff, proposals=[p.id for p in ps])
        for (call, cutoff), ps in sorted(groups.items())
        if all(_reviews_in(p) for p in ps)
    ]


def _reviews_in(p: ProposalView) -> bool:
    rules = access.mode_of(access.get_call(p.call_id)).peer_review
    needed = rules.min_reviewers if rules else 1
    return sum(1 for r in p.reviews if r.submitted) >= needed


def admin(session: Session, who: Principal, now: datetime) -> AdminHome:
    """Every proposal counted by status, the overdue ones, and the batches ready to decide."""
    every = proposals.list_visible(session, who, now)
    late = sorted((p for p in every if p.overdue), key=lambda p: p.deadline or date.max)
    review = [p for p in every if p.status == S.PEER_REVIEW]
    order = {str(s): i for i, s in enumerate(S)}
    counts: Counter[str] = Counter(p.status for p in every)
    return AdminHome(
        by_status={s: counts[s] for s in sorted(counts, key=lambda s: order.get(s, 99))},
        overdue_by_status=dict(Counter(p.status for p in late)),
        overdue=late,
        batches=ready_batches(session, review),
    )
