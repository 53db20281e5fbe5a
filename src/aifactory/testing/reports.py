"""A federation's usage for report tests: two factories of different shares, two countries.

``seed_usage`` awards, through the API, a Finnish start-up's project on LUMI AIF (FI; shares
EU 0.5, national 0.4, commercial 0.1) and a Portuguese start-up's commercial project on LUMI AIF;
the Finnish project gets a second allocation on Meluxina-AI (LU; 0.5 / 0.3 / 0.2), with the
shares an award takes from that factory; then charges each allocation for a job.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.services import ledger
from aifactory.testing.access import at, award, entitle, member_of, set_clock
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
    meluxina = entitle(db, lumi, "Meluxina-AI", GRANTED["meluxina"])
    ids = {"lumi": lumi, "meluxina": meluxina, "commercial": commercial}
    with db.session() as s:
        for job, (name, alloc) in enumerate(ids.items(), start=100):
            ledger.reserve(s, alloc, USED[name], "test", (job, 1))
            ledger.settle(s, alloc, USED[name], USED[name], "test", (job, 1))
    return Seeded(anna, joao, code, ids)
