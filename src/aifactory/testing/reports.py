"""A federation's usage for report tests: two factories of different shares, two countries.

``seed_usage`` awards, through the API, a Finnish start-up's project on LUMI AIF (FI; shares
EU 0.5, national 0.4, commercial 0.1) and a Portuguese start-up's commercial project on LUMI AIF;
the Finnish project gets a second allocation on Meluxina-AI (LU; 0.5 / 0.3 / 0.2), with the
shares an award takes from that factory; then charges each allocation for a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Partition, System
from aifactory.domain.enums import LedgerKind, ResearchKind
from aifactory.domain.ledger import FundingSplit, attribution_for
from aifactory.services import ledger
from aifactory.testing.access import at, award, member_of, set_clock
from aifactory.testing.people import Person

#: Milli-GPU-hours charged per allocation (chosen so that every share is a whole milli-hour).
USED = {"lumi": 123_450, "meluxina": 200_000, "commercial": 10_000}
GRANTED = {"lumi": 1_000_000, "meluxina": 500_000, "commercial": 2_000_000}


@dataclass(frozen=True)
class Seeded:
    anna: Person  # Nordic Tokens Oy, FI
    joao: Person  # Lisboa AI Lda, PT
    project: str  # anna's, on two factories
    allocations: dict[str, int]  # lumi, meluxina (anna's project), commercial (joao's)


def seed_usage(api: TestClient, db: Database, admin: Person) -> Seeded:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy", country="FI")
    joao = member_of(db, "joao", "Lisboa AI Lda", country="PT")
    code, lumi = award(api, anna, admin, "lumi-aif-pg", "Nordic Tokens Oy", "LUMI-AI/gpu", 1000)
    _, commercial = award(
        api, joao, admin, "lumi-aif-pg", "Lisboa AI Lda", "LUMI-AI/gpu", 2000, "commercial"
    )
    meluxina = second_allocation(db, lumi, "Meluxina-AI", GRANTED["meluxina"])
    ids = {"lumi": lumi, "meluxina": meluxina, "commercial": commercial}
    with db.session() as s:
        for job, (name, alloc) in enumerate(ids.items(), start=100):
            ledger.reserve(s, alloc, USED[name], "test", (job, 1))
            ledger.settle(s, alloc, USED[name], USED[name], "test", (job, 1))
    return Seeded(anna, joao, code, ids)


def second_allocation(db: Database, like: int, factory_name: str, granted_milli: int) -> int:
    """Another allocation of ``like``'s project, on ``factory_name``'s first partition, with
    that factory's open R&D split (what an award on several systems gives each of them)."""
    with db.session() as s:
        base = s.get_one(Allocation, like)
        factory = s.scalars(select(Factory).where(Factory.name == factory_name)).one()
        partition = s.scalars(
            select(Partition.id)
            .join(System, System.id == Partition.system_id)
            .where(System.factory_id == factory.id)
            .order_by(Partition.id)
        ).first()
        shares = (factory.eu_share, factory.national_share, factory.commercial_share)
        split = attribution_for(
            ResearchKind.OPEN_RD, FundingSplit(*(Decimal(str(v)) for v in shares))
        )
        alloc = Allocation(
            project_code=base.project_code,
            factory_id=factory.id,
            partition_id=partition,
            start_date=base.start_date,
            end_date=base.start_date + timedelta(days=30),
            eu_share=split.eu,
            national_share=split.national,
            commercial_share=split.commercial,
            status="active",
        )
        s.add(alloc)
        s.flush()
        ledger.post(s, alloc.id, LedgerKind.GRANT, granted_milli, "test")
        return alloc.id
