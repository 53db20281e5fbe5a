"""The burn-down spans the allocation period, whatever the ledger's span; charts carry their
numbers in words (``<desc>``, ``aria-label``)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from aifactory.portal.charts import burn_down
from aifactory.portal.charts_time import usage_over_time, utilisation_chart
from aifactory.services.access_views import LedgerEntryView
from aifactory.services.timeseries import CapacitySeries, UsageSeries

NS = "{http://www.w3.org/2000/svg}"
START, END = date(2026, 1, 1), date(2026, 1, 31)


def _entry(i: int, kind: str, hours: str, at: datetime) -> LedgerEntryView:
    return LedgerEntryView(id=i, kind=kind, gpu_hours=Decimal(hours), at=at, actor="t",
                           job_ref=None, note="")  # fmt: skip


def _svg(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_the_burn_down_spans_the_period_with_the_ideal_line_and_today() -> None:
    at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    entries = [  # nineteen minutes of ledger: the x-axis must still span the whole month
        _entry(1, "grant", "1000", at),
        _entry(2, "reserve", "-50", at.replace(minute=10)),
        _entry(3, "release", "50", at.replace(minute=19)),
        _entry(4, "charge", "-40", at.replace(minute=19)),
    ]
    now = datetime(2026, 1, 16, tzinfo=UTC)
    root = _svg(burn_down(entries, now, "Allocation 1", START, END))
    assert (root.get("data-x-start"), root.get("data-x-end")) == ("2026-01-01", "2026-01-31")
    ideal = root.find(f"{NS}line[@class='ideal']")
    today = root.find(f"{NS}line[@class='today']")
    left, right = float(ideal.get("x1")), float(ideal.get("x2"))  # type: ignore[union-attr]
    assert float(ideal.get("y2")) > float(ideal.get("y1"))  # type: ignore[union-attr, arg-type]
    # 15 of the period's 31 days have passed
    passed = float(today.get("x1")) - left  # type: ignore[union-attr, arg-type]
    assert passed == pytest.approx((right - left) * 15 / 31, abs=0.1)
    used = root.find(f"{NS}polyline[@class='line used']").get("points")  # type: ignore[union-attr]
    assert used.split()[-1].split(",")[0] == today.get("x1")  # drawn up to today, not beyond  # type: ignore[union-attr]
    desc = root.find(f"{NS}desc").text or ""  # type: ignore[union-attr]
    assert "Allocation period 2026-01-01 to 2026-01-31" in desc and "used 40.000" in desc
    assert "ideal remaining today 516.129" in desc  # 1000 * 16/31 days left
    assert desc in (root.get("aria-label") or "")


def test_usage_and_utilisation_charts_name_every_series_with_its_total() -> None:
    days = [date(2026, 1, 1), date(2026, 1, 2)]
    series = UsageSeries(group_by="funding", bucket="day", start=days[0], end=days[1],
                         buckets=days, values={"eu": [Decimal("1.5"), Decimal(0)],
                                               "national": [Decimal(0), Decimal(2)]},
                         totals={"eu": Decimal("1.5"), "national": Decimal(2)})  # fmt: skip
    root = _svg(usage_over_time(series, "Usage", {"eu": "EU"}))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "EU 1.5" in texts and "national 2" in texts
    assert len(root.findall(f"{NS}rect")) == 2 + 2  # two bars, two legend keys
    capacity = [CapacitySeries(factory="LUMI AIF", days=days, gpus=[10, 10],
                               used=[Decimal(24), Decimal(0)])]  # fmt: skip
    assert capacity[0].utilisation == [0.1, 0.0]
    chart = str(utilisation_chart(capacity, "Use"))
    assert re.search(r"LUMI AIF 10 GPUs, 24 GPU-h", chart)
