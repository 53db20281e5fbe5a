"""Usage reports by project, factory, user country, funding source and access mode, JSON and CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import update

from aifactory.db.engine import Database
from aifactory.db.models import LedgerRow
from aifactory.services import ledger
from aifactory.testing.access import at, award, member_of, ok, set_clock
from aifactory.testing.people import Person

API = "/api/v1"
H = 1000


def test_usage_is_grouped_and_attributed_to_funding_sources(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    fi = member_of(db, "anna", "Nordic Tokens Oy", country="FI")
    pt = member_of(db, "joao", "Lisboa AI Lda", country="PT")
    _, a1 = award(api, fi, admin, "lumi-aif-pg", "Nordic Tokens Oy", "LUMI-AI/gpu", 1000)
    _, a2 = award(
        api,
        pt,
        admin,
        "bsc-aif-pg",
        "Lisboa AI Lda",
        "MareNostrum 5 AI/llm-train",
        2000,
        "commercial",
    )
    with db.session() as s:
        for alloc, used in ((a1, 100), (a2, 300)):
            ledger.reserve(s, alloc, used * H, "t")
            ledger.settle(s, alloc, used * H, used * H, "t")
        ledger.reserve(s, a1, 50 * H, "t", (99, 1))
        ledger.settle(s, a1, 50 * H, 50 * H, "t", (99, 1))
        s.execute(
            update(LedgerRow)
            .where(LedgerRow.job_ref == "job:99")
            .values(at=datetime(2026, 10, 1, tzinfo=UTC))
        )
    by_factory = ok(
        api.get(f"{API}/reports/usage?group_by=factory&start=2026-11-01", headers=admin.headers)
    )
    rows = {r["key"]: r for r in by_factory["rows"]}
    assert float(rows["LUMI AIF"]["used"]) == 100  # the October charge is outside the range
    assert float(rows["LUMI AIF"]["remaining"]) == 850
    assert float(rows["BSC AIF"]["used"]) == 300
    assert float(by_factory["total"]["used"]) == 400
    funding = {
        r["key"]: float(r["used"])
        for r in ok(
            api.get(f"{API}/reports/usage?group_by=funding&start=2026-11-01", headers=admin.headers)
        )["rows"]
    }
    assert funding == {"commercial": 310.0, "digital_europe": 50.0, "national": 40.0}
    country = {
        r["key"]: float(r["used"])
        for r in ok(api.get(f"{API}/reports/usage?group_by=user-country", headers=admin.headers))[
            "rows"
        ]
    }
    assert country == {"FI": 150.0, "PT": 300.0}
    mine = ok(api.get(f"{API}/reports/usage?group_by=project", headers=pt.headers))
    assert [r["key"] for r in mine["rows"]] == ["EHPC-AIF-2026PG11-0002"]
    response = api.get(f"{API}/reports/usage.csv?group_by=mode", headers=admin.headers)
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == ["mode", "allocations", "granted", "used", "reserved", "remaining", "label"]
    assert table[1][:2] == ["PG", "2"] and float(table[1][3]) == 450


def test_reversed_report_dates_are_refused(api: TestClient, admin: Person) -> None:
    response = api.get(
        f"{API}/reports/usage?start=2026-12-01&end=2026-11-01", headers=admin.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["rule"] == "date_order"
