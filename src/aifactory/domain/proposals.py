"""Proposal lifecycle as one transition function over a table of legal moves per mode.

The path is ``draft -> submitted -> [technical_assessment] -> [peer_review] -> accepted |
rejected``, where the bracketed stages appear only when the mode lists that step. Any review
stage may reject (e.g. technical assessment finds the request infeasible); only the last stage
accepts. ``withdrawn`` is reachable from every state before a decision. Decided and withdrawn
proposals are final. Eligibility is checked before ``submitted`` and is not a state.

Also here: pure peer review helpers and FIFO / cut-off ordering.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from itertools import pairwise

from aifactory.domain.access_modes import AccessMode, GpuHourLimits, PeerReviewRules
from aifactory.domain.enums import AssessmentStep
from aifactory.domain.enums import ProposalStatus as S
from aifactory.errors import Conflict, FieldError, Invalid

DECISIONS = frozenset({S.ACCEPTED, S.REJECTED})
FINAL = DECISIONS | {S.WITHDRAWN}
_STAGES: tuple[tuple[AssessmentStep, S], ...] = (
    (AssessmentStep.TECHNICAL_ASSESSMENT, S.TECHNICAL_ASSESSMENT),
    (AssessmentStep.PEER_REVIEW, S.PEER_REVIEW),
)

MoveTable = Mapping[S, frozenset[S]]


@cache
def _table(steps: frozenset[AssessmentStep]) -> MoveTable:
    stages = [S.SUBMITTED, *(status for step, status in _STAGES if step in steps)]
    table: dict[S, set[S]] = {S.DRAFT: {S.SUBMITTED, S.WITHDRAWN}}
    for current, following in pairwise(stages):
        table[current] = {following, S.WITHDRAWN}
        if current is not S.SUBMITTED:
            table[current].add(S.REJECTED)
    table[stages[-1]] = {S.ACCEPTED, S.REJECTED, S.WITHDRAWN}
    return {status: frozenset(table.get(status, ())) for status in S}


def legal_moves(mode: AccessMode) -> MoveTable:
    """The table of legal moves for ``mode``: each status to the statuses it may move to."""
    return _table(frozenset(mode.steps))


def statuses(mode: AccessMode) -> tuple[S, ...]:
    """The statuses a proposal in ``mode`` can take, in lifecycle order."""
    review = tuple(status for step, status in _STAGES if step in mode.steps)
    return (S.DRAFT, S.SUBMITTED, *review, S.ACCEPTED, S.REJECTED, S.WITHDRAWN)


def forward(mode: AccessMode, current: S) -> S:
    """The positive next status from ``current`` (e.g. feasible technical assessment).

    Raises:
        Conflict: ``current`` is final.
    """
    moves = legal_moves(mode)[current] - {S.WITHDRAWN, S.REJECTED}
    if not moves:
        raise Conflict(f"proposal is {current}; no further status in mode {mode.code}")
    (target,) = moves
    return target


@dataclass(frozen=True)
class TransitionRecord:
    """One recorded status change: who moved it, when, from and to, and why."""

    from_status: S
    to_status: S
    actor: str
    at: datetime
    comment: str = ""


def transition(
    mode: AccessMode,
    current: S,
    target: S,
    actor: str,
    at: datetime,
    comment: str = "",
) -> TransitionRecord:
    """The one way a proposal changes status; returns the record to store.

    Args:
        mode: The mode of the proposal's call (decides which stages exist).
        current: The proposal's status now.
        target: The status asked for.
        actor: Who asks (user id or name), recorded.
        at: When, recorded.
        comment: Why, recorded.

    Raises:
        Conflict: The move is not legal in this mode; the message names from and to, and
            ``extra`` holds ``from``, ``to`` and the ``allowed`` targets.
    """
    allowed = legal_moves(mode)[current]
    if target not in allowed:
        why = "already final" if current in FINAL else f"allowed: {', '.join(sorted(allowed))}"
        msg = f"illegal proposal transition from {current} to {target} in mode {mode.code} ({why})"
        raise Conflict(
            msg,
            [FieldError("status", "legal_transition", msg)],
            {"from": str(current), "to": str(target), "allowed": sorted(allowed)},
        )
    return TransitionRecord(current, target, actor, at, comment)


# ---- peer review -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """One reviewer's scores, keyed by criterion id."""

    reviewer: str
    organisation: str
    scores: Mapping[str, Decimal]
    comment: str = ""


def _same_org(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def has_conflict(reviewer_organisation: str, applicant_organisation: str) -> bool:
    """Whether the reviewer belongs to the applicant's organisation (case-insensitive)."""
    return _same_org(reviewer_organisation, applicant_organisation)


def check_grant(requested: Decimal, granted: Decimal, limits: GpuHourLimits | None) -> None:
    """The award invariant: 0 < granted <= requested, and requested within the call's limits.

    An assessment may lower what is awarded, never raise it above the request; the request was
    checked against the call when it was made and is checked again here, so no path (an
    operator's assessment, a decision, a changed call) can award beyond the mode's limit.

    Raises:
        Invalid: ``gpu_hours`` with rule ``within_request`` or ``gpu_hour_limits``.
    """
    if granted <= 0:
        raise Invalid.field("gpu_hours", "positive", f"{granted} GPU-hours is not > 0")
    if granted > requested:
        msg = (
            f"{granted} GPU-h is more than the {requested} GPU-h requested; "
            "an award may lower the request, never raise it"
        )
        raise Invalid.field("gpu_hours", "within_request", msg)
    problem = limits.violation(requested) if limits is not None else None
    if problem:
        raise Invalid.field("gpu_hours", "gpu_hour_limits", problem)


def check_reviewer(reviewer: str, reviewer_organisation: str, applicant_organisation: str) -> None:
    """Refuse a reviewer from the applicant's own organisation.

    Raises:
        Conflict: Rule ``reviewer_conflict_of_interest``, naming reviewer and organisation.
    """
    if has_conflict(reviewer_organisation, applicant_organisation):
        msg = (
            f"reviewer {reviewer} belongs to the applicant's organisation {applicant_organisation}"
        )
        raise Conflict(
            f"conflict of interest: {msg}",
            [FieldError("reviewer", "reviewer_conflict_of_interest", msg)],
        )


def validate_scores(rules: PeerReviewRules, scores: Mapping[str, Decimal]) -> None:
    """Check one review scores exactly the mode's criteria, each within the scale.

    Raises:
        Invalid: One entry per missing, unknown or out-of-scale criterion.
    """
    ids = {c.id for c in rules.criteria}
    errors = [
        FieldError(f"scores.{c}", "known_criterion", f"unknown criterion {c}")
        for c in sorted(set(scores) - ids)
    ]
    errors += [
        FieldError(f"scores.{c}", "required", f"criterion {c} not scored")
        for c in sorted(ids - set(scores))
    ]
    scale = f"{rules.scale_min}..{rules.scale_max}"
    errors += [
        FieldError(f"scores.{c}", "score_scale", f"score {v} outside {scale}")
        for c, v in sorted(scores.items())
        if c in ids and not rules.scale_min <= v <= rules.scale_max
    ]
    if errors:
        raise Invalid("invalid review scores", errors)


@dataclass(frozen=True)
class CriterionOutcome:
    """Mean score of one criterion over all reviews, against its minimum."""

    criterion: str
    mean: Decimal
    min_score: Decimal | None
    passed: bool


@dataclass(frozen=True)
class PeerReviewOutcome:
    """Aggregated peer review: per-criterion means, weighted mean, verdict and reason."""

    criteria: tuple[CriterionOutcome, ...]
    weighted_mean: Decimal
    threshold: Decimal
    reviews: int
    passed: bool
    reason: str


def _mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)


def aggregate_reviews(rules: PeerReviewRules, reviews: Sequence[Review]) -> PeerReviewOutcome:
    """Aggregate reviews into a threshold decision.

    Passes when every criterion's mean reaches its ``min_score`` and the weighted mean of the
    criterion means reaches the threshold.

    Raises:
        Conflict: Fewer reviews than ``min_reviewers``.
        Invalid: A review with bad scores, or two reviews by the same reviewer.
    """
    if len(reviews) < rules.min_reviewers:
        raise Conflict(
            f"{len(reviews)} review(s) received; {rules.min_reviewers} needed to decide",
            [FieldError("reviews", "min_reviewers", f"need {rules.min_reviewers} reviews")],
        )
    if len({r.reviewer for r in reviews}) != len(reviews):
        raise Invalid.field("reviews", "one_review_per_reviewer", "a reviewer reviewed twice")
    for review in reviews:
        validate_scores(rules, review.scores)
    outcomes = []
    for c in rules.criteria:
        mean = _mean([r.scores[c.id] for r in reviews])
        outcomes.append(
            CriterionOutcome(c.id, mean, c.min_score, c.min_score is None or mean >= c.min_score)
        )
    total_weight = sum((c.weight for c in rules.criteria), Decimal(0))
    weighted = sum(
        (c.weight * o.mean for c, o in zip(rules.criteria, outcomes, strict=True)), Decimal(0)
    )
    weighted_mean = weighted / total_weight
    below = [o.criterion for o in outcomes if not o.passed]
    passed = not below and weighted_mean >= rules.threshold
    cmp = ">=" if weighted_mean >= rules.threshold else "<"
    reason = f"weighted mean {weighted_mean:.2f} {cmp} threshold {rules.threshold}"
    if below:
        reason += f"; below criterion minimum: {', '.join(below)}"
    return PeerReviewOutcome(
        tuple(outcomes), weighted_mean, rules.threshold, len(reviews), passed, reason
    )


# ---- ordering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueEntry:
    """A submitted proposal as ordering sees it."""

    proposal_id: str
    submitted_at: datetime


def fifo_order(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    """Submission order (ties broken by proposal id, so the order is total and stable)."""
    return sorted(entries, key=lambda e: (e.submitted_at, e.proposal_id))


def assign_cutoff(submitted_at: date | datetime, cutoffs: Sequence[date]) -> date | None:
    """The first cut-off on or after the submission day, or ``None`` after the last one."""
    day = submitted_at.date() if isinstance(submitted_at, datetime) else submitted_at
    return min((c for c in cutoffs if c >= day), default=None)


def batch_by_cutoff(
    entries: Iterable[QueueEntry], cutoffs: Sequence[date]
) -> dict[date, list[QueueEntry]]:
    """Group proposals by cut-off (batches in date order, each in submission order).

    Raises:
        Invalid: A proposal submitted after the last cut-off.
    """
    batches: dict[date, list[QueueEntry]] = {}
    for entry in fifo_order(entries):
        cutoff = assign_cutoff(entry.submitted_at, cutoffs)
        if cutoff is None:
            msg = f"proposal {entry.proposal_id} submitted after the last cut-off"
            raise Invalid.field("cutoff", "known_cutoff", msg)
        batches.setdefault(cutoff, []).append(entry)
    return dict(sorted(batches.items()))
