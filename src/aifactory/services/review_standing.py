"""Where a proposal in peer review stands: scores, means, threshold, and whether it can be
decided now (and if not, why and from when). Read-only; the decision itself is
``services.decisions``, which checks the same two conditions again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from aifactory.domain import proposals as flow
from aifactory.domain.access_modes import Criterion
from aifactory.domain.words import plural
from aifactory.errors import Invalid
from aifactory.services import access
from aifactory.services.access_views import DecisionBatchView, ProposalView


@dataclass(frozen=True)
class CriterionMean:
    criterion: Criterion
    mean: Decimal | None  # None until a review is in
    passed: bool | None


@dataclass(frozen=True)
class Standing:
    """One proposal's peer review, as the decisions page shows it."""

    criteria: tuple[CriterionMean, ...]
    weighted_mean: Decimal | None
    threshold: Decimal
    reviews_in: int
    reviews_needed: int
    cutoff_passed: bool
    verdict: str  # what the reviews say (when enough are in), e.g. "weighted mean 4.20 >= 3"
    passes: bool | None
    why_not: str  # "" when it may be decided now

    @property
    def decidable(self) -> bool:
        return not self.why_not


def standing(p: ProposalView, today: date) -> Standing | None:
    """``None`` for a mode without peer review."""
    rules = access.mode_of(access.get_call(p.call_id)).peer_review
    if rules is None:
        return None
    done = [r for r in p.reviews if r.submitted and r.scores]
    means = []
    for c in rules.criteria:
        values = [r.scores[c.id] for r in done if r.scores and c.id in r.scores]
        mean = sum(values, Decimal(0)) / len(values) if values else None
        ok = None if mean is None else (c.min_score is None or mean >= c.min_score)
        means.append(CriterionMean(c, mean, ok))
    outcome = None
    if len(done) >= rules.min_reviewers:
        reviews = [flow.Review(r.reviewer, "", r.scores or {}) for r in done]
        try:
            outcome = flow.aggregate_reviews(rules, reviews)
        except Invalid:  # scores of criteria the mode no longer has: the decision says so
            outcome = None
    weighted = outcome.weighted_mean if outcome else _weighted(means)
    passed = p.cutoff is None or today >= p.cutoff
    return Standing(
        criteria=tuple(means),
        weighted_mean=weighted,
        threshold=rules.threshold,
        reviews_in=len(done),
        reviews_needed=rules.min_reviewers,
        cutoff_passed=passed,
        verdict=outcome.reason if outcome else "",
        passes=outcome.passed if outcome else None,
        why_not=_why_not(p, len(done), rules.min_reviewers, passed),
    )


def _weighted(means: list[CriterionMean]) -> Decimal | None:
    if not means or any(m.mean is None for m in means):
        return None
    total = sum((m.criterion.weight for m in means), Decimal(0))
    return sum((m.criterion.weight * (m.mean or 0) for m in means), Decimal(0)) / total


def _why_not(p: ProposalView, done: int, needed: int, cutoff_passed: bool) -> str:
    reasons = []
    if not cutoff_passed:
        reasons.append(f"its cut-off is {p.cutoff}: it is decided from that day, with its batch")
    if done < needed:
        assigned = len(p.reviews)
        reasons.append(
            f"{done} of {needed} reviews are in ({plural(assigned, 'reviewer')} assigned); "
            "it can be decided once the rest are in"
        )
    return "; ".join(reasons)


def batch_report(result: DecisionBatchView) -> str:
    """What deciding a cut-off did, in one sentence or two."""
    return result.summary()
