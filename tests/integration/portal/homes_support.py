"""A federation with work for every role, for the role-home tests (HTTP and browser).

anna (applicant) holds an awarded project with charged hours, a draft and a proposal waiting
for LUMI AIF's technical assessment; boss's large-scale proposal is in peer review with rita
(reviewer) assigned; olli operates LUMI AIF; ada is the federation admin; nemo holds no role.
Proposals are made on 25 Nov 2026, hours charged on 2 Dec; ``VIEW_AT`` (20 Dec) is past the
proposals' service-level deadlines.
"""

from __future__ import annotations

from typing import Any

from portal_support import set_password
from sqlalchemy import update

from aifactory.db.engine import Database
from aifactory.db.models import LedgerRow
from aifactory.domain.enums import OrganisationType, Role
from aifactory.services import ledger
from aifactory.testing.access import at, award, member_of, ok, set_clock
from aifactory.testing.people import make_person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"
MADE_AT = at("2026-11-25T09:00")
CHARGED_AT = at("2026-12-02T12:00")
VIEW_AT = at("2026-12-20T10:00")
PEOPLE = ("anna", "olli", "rita", "ada", "nemo")


def _proposal(api: Any, who: Any, body: dict[str, Any], submit: bool = True) -> int:
    p = ok(api.post(f"{API}/proposals", headers=who.headers, json=body), 201)
    if submit:
        ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=who.headers))
    return int(p["id"])


def _in_peer_review(api: Any, db: Database, olli: Any, ada: Any) -> int:
    boss = member_of(db, "boss", "Big Motors AG", OrganisationType.LARGE_ENTERPRISE, "DE",
                     staff=5000)  # fmt: skip
    body = {"call_id": "lumi-aif-ls", "title": "Foundation model for driving",
            "organisation": "Big Motors AG", "research_kind": "commercial", "gpu_hours": 120000,
            "duration_months": 6, "partition": "LUMI-AI/gpu", "pi_contract_end": "2028-12-31",
            "sections": SECTIONS}  # fmt: skip
    pid = _proposal(api, boss, body)
    ok(api.post(f"{API}/proposals/{pid}/assessment", headers=olli.headers, json={"feasible": True}))
    ok(api.post(f"{API}/proposals/{pid}/reviewers", headers=ada.headers, json={"username": "rita"}))
    return pid


def populate(api: Any, db: Database) -> dict[str, Any]:
    """Everyone above, through the API at ``MADE_AT``; 12.5 GPU-hours charged on anna's award."""
    set_clock(api, MADE_AT)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    ada = make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
    member_of(db, "rita", "Review Institute", OrganisationType.ACADEMIA, "DE",
              [(Role.REVIEWER, None)])  # fmt: skip
    make_person(db, "nemo", [])
    code, allocation = award(api, anna, olli)
    review = _in_peer_review(api, db, olli, ada)
    body = {"call_id": "lumi-aif-pg", "title": "Second idea", "organisation": "Nordic Tokens Oy",
            "research_kind": "open_rd", "gpu_hours": 500, "duration_months": 1,
            "partition": "LUMI-AI/gpu"}  # fmt: skip
    waiting = _proposal(api, anna, body)
    later = {"call_id": "lumi-aif-ls", "title": "Unfinished draft", "gpu_hours": 120000,
             "duration_months": 6}  # fmt: skip
    draft = _proposal(api, anna, {**body, **later}, submit=False)
    with db.session() as s:
        ledger.reserve(s, allocation, 20_000, "test")
        ledger.settle(s, allocation, 20_000, 12_500, "test")
        # The ledger stamps entries in real time; pin them to known days so the charts' ranges
        # hold them whenever this runs (the day sums follow by trigger).
        rows = update(LedgerRow).where(LedgerRow.allocation_id == allocation)
        s.execute(rows.where(LedgerRow.kind == "grant").values(at=MADE_AT))
        s.execute(rows.where(LedgerRow.kind != "grant").values(at=CHARGED_AT))
    for name in PEOPLE:
        set_password(db, name)
    project = ok(api.get(f"{API}/projects/{code}", headers=anna.headers))
    return {"code": code, "allocation": project["allocations"][0], "review": review,
            "waiting": waiting, "draft": draft}  # fmt: skip
