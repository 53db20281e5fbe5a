"""The access path's invariants, by property over its state machine and by example via the API.

Invariants (docs/access.md, "Invariants"): what an allocation is granted is at most what was
requested, and what was requested is within the call's limit; nobody assesses, reviews or
decides a proposal they applied with or one of their organisation's; every assessment,
decision and award is in the audit log.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import (
    Allocation,
    AuditEvent,
    LedgerRow,
    Membership,
    Proposal,
    ProposalTransition,
    User,
)
from aifactory.domain.calls import effective_gpu_hours
from aifactory.domain.enums import OrganisationType, ResearchKind, Role
from aifactory.domain.enums import ProposalStatus as S
from aifactory.domain.ledger import from_milli
from aifactory.domain.proposal_sections import Sections
from aifactory.errors import AIFactoryError
from aifactory.services import access, decisions, identity, proposals
from aifactory.services.permissions import Principal
from aifactory.services.proposals import ProposalInput
from aifactory.services.setup import prepare
from aifactory.settings import load_settings
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.people import Person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"
NOW = at("2026-11-25T09:00")
LATER = NOW + timedelta(days=120)  # past every cut-off of the calls used here
CALLS = ["lumi-aif-pg", "lumi-aif-fl", "lumi-aif-ls"]
STAFF = {
    "op": [(Role.FACTORY_OPERATOR, "LUMI AIF")],
    "op_inside": [(Role.FACTORY_OPERATOR, "LUMI AIF")],
    "adm": [(Role.FEDERATION_ADMIN, None)],
    "adm_inside": [(Role.FEDERATION_ADMIN, None)],
    "rev": [(Role.REVIEWER, None)],
    "rev_inside": [(Role.REVIEWER, None)],
}


# --- by property -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def machine_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    folder: Path = tmp_path_factory.mktemp("invariants")
    db = prepare(load_settings(data_dir=folder))
    yield db
    db.engine.dispose()


_run = itertools.count()


class AccessMachine(RuleBasedStateMachine):
    """Random walks through create, submit, assess, assign, review and decide, by anyone."""

    db: Database

    def __init__(self) -> None:
        super().__init__()
        self.tag = f"m{next(_run)}"
        self.proposals: list[int] = []

    @initialize()
    def people(self) -> None:
        org = f"Org {self.tag}"
        with self.db.session() as s:
            identity.create_organisation(s, org, OrganisationType.STARTUP, "FI", 12, 10**6, 10**6)
            for name, roles in {"app": [(Role.APPLICANT, None)], **STAFF}.items():
                identity.create_user(s, self._name(name), f"{name}@x.eu", roles=roles)
                if name == "app" or name.endswith("_inside"):
                    identity.add_membership(s, self._name(name), org)

    def _name(self, who: str) -> str:
        return f"{who}-{self.tag}"

    def _as(self, who: str) -> Principal:
        with self.db.session() as s:
            user = s.scalars(select(User).where(User.username == self._name(who))).one()
            return identity.principal_of(user)

    def _try(self, act: str, who: str, *args: object) -> None:
        call = getattr(decisions, act) if hasattr(decisions, act) else getattr(proposals, act)
        try:
            with self.db.session() as s:
                call(s, self._as(who), *args)
        except AIFactoryError:
            pass  # refusals are fine; the invariants say what must never happen

    @rule(
        call=st.sampled_from(CALLS),
        hours=st.decimals(min_value=-10, max_value=200_000, places=1),
    )
    def create(self, call: str, hours: Decimal) -> None:
        data = ProposalInput(
            call_id=call,
            title="t",
            organisation=f"Org {self.tag}",
            research_kind=ResearchKind.OPEN_RD,
            gpu_hours=hours,
            duration_months=access.mode_of(access.get_call(call)).durations_months[0],
            partition="LUMI-AI/gpu",
            sections=Sections.model_validate(SECTIONS),
        )
        try:
            with self.db.session() as s:
                self.proposals.append(proposals.create(s, self._as("app"), data, NOW).id)
        except AIFactoryError:
            pass

    @precondition(lambda self: self.proposals)
    @rule(data=st.data())
    def submit(self, data: st.DataObject) -> None:
        self._try("submit", "app", data.draw(st.sampled_from(self.proposals)), NOW)

    @precondition(lambda self: self.proposals)
    @rule(
        data=st.data(),
        who=st.sampled_from(["op", "op_inside", "adm", "adm_inside", "app"]),
        feasible=st.booleans(),
        hours=st.none() | st.decimals(min_value=-5, max_value=300_000, places=0),
    )
    def assess(self, data: st.DataObject, who: str, feasible: bool, hours: Decimal | None) -> None:
        proposal = data.draw(st.sampled_from(self.proposals))
        self._try("assess", who, proposal, feasible, NOW, hours)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), reviewer=st.sampled_from(["rev", "rev_inside", "app", "op"]))
    def assign(self, data: st.DataObject, reviewer: str) -> None:
        proposal = data.draw(st.sampled_from(self.proposals))
        self._try("assign_reviewer", "adm", proposal, self._name(reviewer), NOW)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), who=st.sampled_from(["rev", "rev_inside"]), score=st.integers(0, 5))
    def review(self, data: st.DataObject, who: str, score: int) -> None:
        proposal = data.draw(st.sampled_from(self.proposals))
        scores = {c: Decimal(score) for c in ("excellence", "impact", "feasibility")}
        self._try("review", who, proposal, scores, LATER)

    @precondition(lambda self: self.proposals)
    @rule(data=st.data(), who=st.sampled_from(["adm", "adm_inside"]), accept=st.booleans())
    def decide(self, data: st.DataObject, who: str, accept: bool) -> None:
        proposal = data.draw(st.sampled_from(self.proposals))
        self._try("decide", who, proposal, accept, LATER, "")

    @precondition(lambda self: self.proposals)
    @rule(data=st.data())
    def member_joins(self, data: st.DataObject) -> None:
        """The clean reviewer joins the applicant's organisation mid-way (a conflict arises)."""
        with self.db.session() as s:
            identity.add_membership(s, self._name("rev"), f"Org {self.tag}")

    @invariant()
    def granted_within_requested_within_limit(self) -> None:
        with self.db.session() as s:
            for proposal in s.scalars(select(Proposal).where(Proposal.project_code.is_not(None))):
                call = access.get_call(proposal.call_id)
                limits = effective_gpu_hours(call, access.mode_of(call))
                granted = s.scalar(
                    select(func.sum(LedgerRow.amount_milli))
                    .join(Allocation, Allocation.id == LedgerRow.allocation_id)
                    .where(LedgerRow.kind == "grant")
                    .where(Allocation.project_code == proposal.project_code)
                )
                requested = from_milli(proposal.gpu_hours_milli or 0)
                assert 0 < from_milli(granted or 0) <= requested
                assert limits is not None and limits.violation(requested) is None

    @invariant()
    def nobody_judges_their_own(self) -> None:
        judging = {S.ACCEPTED, S.REJECTED, S.PEER_REVIEW}
        with self.db.session() as s:
            rows = s.execute(
                select(ProposalTransition.actor, Proposal.applicant_id, Proposal.organisation_id)
                .join(Proposal, Proposal.id == ProposalTransition.proposal_id)
                .where(ProposalTransition.to_status.in_(judging))
            ).all()
            members = set(s.execute(select(Membership.user_id, Membership.organisation_id)))
            ids = {name: uid for name, uid in s.execute(select(User.username, User.id))}
        for actor, applicant, org in rows:
            if actor in ("system",):
                continue
            assert ids[actor] != applicant and (ids[actor], org) not in members, actor

    @invariant()
    def every_judgement_and_award_is_audited(self) -> None:
        with self.db.session() as s:
            awarded = set(s.scalars(select(Proposal.id).where(Proposal.project_code.is_not(None))))
            audited = set(
                s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "award"))
            )
            assert {str(p) for p in awarded} <= audited


def test_access_invariants_hold_on_every_path(machine_db: Database) -> None:
    AccessMachine.db = machine_db
    runner = AccessMachine.TestCase
    runner.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    runner().runTest()
    with machine_db.session() as s:  # the walk reached awards, not only refusals
        assert s.scalar(
            select(func.count()).select_from(Proposal).where(Proposal.project_code.is_not(None))
        )


# --- by example, through the API -------------------------------------------------------------


def _submitted(api: TestClient, anna: Person, hours: int, call: str = "lumi-aif-pg") -> int:
    body = {
        "call_id": call,
        "title": "My model",
        "organisation": "Nordic Tokens Oy",
        "research_kind": "open_rd",
        "gpu_hours": hours,
        "duration_months": 2,
        "partition": "LUMI-AI/gpu",
    }
    proposal = ok(api.post(f"{API}/proposals", headers=anna.headers, json=body), 201)
    ok(api.post(f"{API}/proposals/{proposal['id']}/submit", headers=anna.headers))
    return int(proposal["id"])


def test_an_operator_cannot_award_more_than_was_requested(
    db: Database, api: TestClient, operator: Person, admin: Person
) -> None:
    set_clock(api, NOW)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    pid = _submitted(api, anna, 2000)
    huge = api.post(
        f"{API}/proposals/{pid}/assessment",
        headers=operator.headers,
        json={"feasible": True, "gpu_hours": 9999999},
    )
    assert huge.status_code == 422
    assert huge.json()["error"]["details"][0] == {
        "field": "gpu_hours",
        "rule": "within_request",
        "message": huge.json()["error"]["details"][0]["message"],
    }
    fewer = ok(
        api.post(
            f"{API}/proposals/{pid}/assessment",
            headers=operator.headers,
            json={"feasible": True, "gpu_hours": 1500},
        )
    )
    project = ok(api.get(f"{API}/projects/{fewer['project_code']}", headers=anna.headers))
    assert Decimal(str(project["allocations"][0]["granted"])) == 1500
    award = ok(api.get(f"{API}/audit", params={"action": "award"}, headers=admin.headers))
    assert award["events"][0]["object_id"] == str(pid)
    assert award["events"][0]["actor"] == "olli"
    assert award["events"][0]["detail"]["project"] == fewer["project_code"]


def test_an_operator_cannot_assess_a_proposal_of_their_own_organisation(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, NOW)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    olli = member_of(db, "olli", "Nordic Tokens Oy", roles=[(Role.FACTORY_OPERATOR, "LUMI AIF")])
    pid = _submitted(api, anna, 2000)
    own = api.post(
        f"{API}/proposals/{pid}/assessment", headers=olli.headers, json={"feasible": True}
    )
    assert own.status_code == 403
    assert own.json()["error"]["details"][0]["rule"] == "conflict_of_interest"
    state = ok(api.get(f"{API}/proposals/{pid}", headers=anna.headers))
    assert state["status"] == "technical_assessment" and state["project_code"] is None
    assert ok(
        api.post(
            f"{API}/proposals/{pid}/assessment", headers=admin.headers, json={"feasible": True}
        )
    )


def test_an_applicant_who_is_also_an_operator_cannot_assess_their_own(
    db: Database, api: TestClient
) -> None:
    set_clock(api, NOW)
    both = member_of(
        db,
        "anna",
        "Nordic Tokens Oy",
        roles=[(Role.APPLICANT, None), (Role.FACTORY_OPERATOR, "LUMI AIF")],
    )
    pid = _submitted(api, both, 2000)
    own = api.post(
        f"{API}/proposals/{pid}/assessment", headers=both.headers, json={"feasible": True}
    )
    assert own.status_code == 403 and "conflict of interest" in own.text
