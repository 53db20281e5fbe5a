"""Proposal state machine per mode, peer review helpers and ordering."""

from datetime import date, datetime
from decimal import Decimal as D

import pytest

from aifactory.domain.access_modes import PeerReviewRules, load_access_modes
from aifactory.domain.enums import AccessModeCode as M
from aifactory.domain.enums import ProposalStatus as S
from aifactory.domain.proposals import (
    FINAL,
    QueueEntry,
    Review,
    aggregate_reviews,
    assign_cutoff,
    batch_by_cutoff,
    check_reviewer,
    fifo_order,
    forward,
    has_conflict,
    legal_moves,
    statuses,
    transition,
    validate_scores,
)
from aifactory.errors import Conflict, Invalid

MODES = load_access_modes()
AT = datetime(2026, 11, 25, 12, 0)


def walk(mode: M) -> list[S]:
    """Follow the positive path from draft to acceptance."""
    path, status = [S.DRAFT], S.DRAFT
    while status is not S.ACCEPTED:
        status = forward(MODES[mode], status)
        path.append(status)
    return path


def test_playground_and_fast_lane_skip_peer_review() -> None:
    expected = [S.DRAFT, S.SUBMITTED, S.TECHNICAL_ASSESSMENT, S.ACCEPTED]
    assert walk(M.PLAYGROUND) == expected
    assert walk(M.FAST_LANE) == expected


def test_large_scale_and_ai_for_science_go_through_peer_review() -> None:
    expected = [S.DRAFT, S.SUBMITTED, S.TECHNICAL_ASSESSMENT, S.PEER_REVIEW, S.ACCEPTED]
    assert walk(M.LARGE_SCALE) == expected
    assert walk(M.AI_FOR_SCIENCE) == expected


def test_hosting_call_has_no_technical_assessment() -> None:
    assert walk(M.HOSTING) == [S.DRAFT, S.SUBMITTED, S.PEER_REVIEW, S.ACCEPTED]


def test_transition_returns_the_record() -> None:
    record = transition(
        MODES[M.PLAYGROUND], S.SUBMITTED, S.TECHNICAL_ASSESSMENT, "op@bsc", AT, "picked up"
    )
    assert (record.from_status, record.to_status, record.actor, record.at, record.comment) == (
        S.SUBMITTED,
        S.TECHNICAL_ASSESSMENT,
        "op@bsc",
        AT,
        "picked up",
    )


def test_infeasible_technical_assessment_rejects() -> None:
    ls = MODES[M.LARGE_SCALE]
    assert transition(ls, S.TECHNICAL_ASSESSMENT, S.REJECTED, "op", AT).to_status is S.REJECTED


def test_skipping_peer_review_in_large_scale_is_illegal() -> None:
    with pytest.raises(Conflict) as info:
        transition(MODES[M.LARGE_SCALE], S.TECHNICAL_ASSESSMENT, S.ACCEPTED, "op", AT)
    err = info.value
    assert "from technical_assessment to accepted" in err.message
    assert err.extra["from"] == "technical_assessment" and err.extra["to"] == "accepted"
    assert "peer_review" in err.extra["allowed"]


def test_playground_has_no_peer_review_state() -> None:
    with pytest.raises(Conflict, match="from technical_assessment to peer_review"):
        transition(MODES[M.PLAYGROUND], S.TECHNICAL_ASSESSMENT, S.PEER_REVIEW, "op", AT)


def test_draft_cannot_be_decided() -> None:
    with pytest.raises(Conflict, match="from draft to accepted"):
        transition(MODES[M.PLAYGROUND], S.DRAFT, S.ACCEPTED, "op", AT)


@pytest.mark.parametrize("mode", list(M))
def test_withdraw_is_allowed_from_every_state_before_a_decision(mode: M) -> None:
    moves = legal_moves(MODES[mode])
    for status in statuses(MODES[mode]):
        assert (S.WITHDRAWN in moves[status]) is (status not in FINAL)


def test_states_a_mode_does_not_use_have_no_moves() -> None:
    pg = MODES[M.PLAYGROUND]
    assert S.PEER_REVIEW not in statuses(pg)
    assert legal_moves(pg)[S.PEER_REVIEW] == frozenset()


@pytest.mark.parametrize("decided", sorted(FINAL))
@pytest.mark.parametrize("target", list(S))
def test_final_states_allow_no_move(decided: S, target: S) -> None:
    with pytest.raises(Conflict, match="already final"):
        transition(MODES[M.LARGE_SCALE], decided, target, "op", AT)


def test_second_decision_is_a_conflict_naming_from_and_to() -> None:
    with pytest.raises(Conflict, match="from accepted to rejected"):
        transition(MODES[M.PLAYGROUND], S.ACCEPTED, S.REJECTED, "op", AT)


def test_forward_from_final_state_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        forward(MODES[M.PLAYGROUND], S.ACCEPTED)


# ---- peer review ----

_RULES = MODES[M.LARGE_SCALE].peer_review
assert _RULES is not None
RULES: PeerReviewRules = _RULES


def review(who: str, excellence: str, impact: str, feasibility: str, org: str = "Uni X") -> Review:
    return Review(
        who, org, {"excellence": D(excellence), "impact": D(impact), "feasibility": D(feasibility)}
    )


def test_reviewer_from_the_applicant_organisation_is_refused() -> None:
    assert has_conflict(" Tiny AI ", "tiny ai")
    with pytest.raises(Conflict) as info:
        check_reviewer("r1", "Tiny AI", "tiny ai")
    assert info.value.details[0].rule == "reviewer_conflict_of_interest"
    check_reviewer("r2", "Other Org", "Tiny AI")


def test_scores_above_threshold_pass() -> None:
    outcome = aggregate_reviews(RULES, [review("a", "4", "4", "4"), review("b", "4", "3", "5")])
    assert outcome.passed
    assert outcome.weighted_mean == D(4)
    assert [c.mean for c in outcome.criteria] == [D(4), D("3.5"), D("4.5")]
    assert "weighted mean 4.00 >= threshold 3.5" in outcome.reason


def test_weighted_mean_below_threshold_fails() -> None:
    outcome = aggregate_reviews(RULES, [review("a", "3", "3", "3"), review("b", "4", "3", "3")])
    assert not outcome.passed
    assert "< threshold" in outcome.reason


def test_a_criterion_below_its_minimum_fails_even_with_a_high_mean() -> None:
    outcome = aggregate_reviews(RULES, [review("a", "5", "5", "2"), review("b", "5", "5", "2")])
    assert outcome.weighted_mean >= RULES.threshold
    assert not outcome.passed
    assert "below criterion minimum: feasibility" in outcome.reason


def test_too_few_reviews_cannot_be_decided() -> None:
    with pytest.raises(Conflict, match="1 review"):
        aggregate_reviews(RULES, [review("a", "5", "5", "5")])


def test_same_reviewer_twice_is_refused() -> None:
    with pytest.raises(Invalid, match="reviewed twice"):
        aggregate_reviews(RULES, [review("a", "5", "5", "5"), review("a", "4", "4", "4")])


def test_bad_scores_list_each_problem() -> None:
    with pytest.raises(Invalid) as info:
        validate_scores(RULES, {"excellence": D(6), "impact": D(3), "novelty": D(1)})
    assert {(d.field, d.rule) for d in info.value.details} == {
        ("scores.excellence", "score_scale"),
        ("scores.feasibility", "required"),
        ("scores.novelty", "known_criterion"),
    }


# ---- ordering ----


def test_fifo_orders_by_submission_then_id() -> None:
    a = QueueEntry("p-b", datetime(2026, 1, 2, 9))
    b = QueueEntry("p-a", datetime(2026, 1, 2, 9))
    c = QueueEntry("p-c", datetime(2026, 1, 1, 23))
    assert [e.proposal_id for e in fifo_order([a, b, c])] == ["p-c", "p-a", "p-b"]


def test_cutoff_batches_include_submissions_on_the_cutoff_day() -> None:
    cutoffs = [date(2026, 1, 15), date(2026, 2, 1)]
    entries = [
        QueueEntry("late", datetime(2026, 1, 15, 23, 59)),
        QueueEntry("next", datetime(2026, 1, 16, 0, 1)),
        QueueEntry("early", datetime(2026, 1, 3)),
    ]
    batches = batch_by_cutoff(entries, cutoffs)
    assert list(batches) == cutoffs
    assert [e.proposal_id for e in batches[date(2026, 1, 15)]] == ["early", "late"]
    assert [e.proposal_id for e in batches[date(2026, 2, 1)]] == ["next"]


def test_submission_after_last_cutoff_cannot_be_batched() -> None:
    assert assign_cutoff(date(2026, 3, 1), [date(2026, 2, 1)]) is None
    with pytest.raises(Invalid):
        batch_by_cutoff([QueueEntry("x", datetime(2026, 3, 1))], [date(2026, 2, 1)])
