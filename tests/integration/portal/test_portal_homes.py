"""Role homes at / and the charts over time on /reports, over HTTP on SQLite and PostgreSQL.

One federation (``homes_support``) serves both checks: building it is most of the cost."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from homes_support import CHARGED_AT, VIEW_AT, populate
from portal_support import sign_in

from aifactory.db.engine import Database
from aifactory.testing.access import set_clock

SECTIONS = ("applicant", "member", "reviewer", "operator", "admin")


def _home(portal: TestClient, username: str) -> str:
    portal.cookies.clear()
    sign_in(portal, username)
    page = portal.get("/")
    assert page.status_code == 200, page.text
    return page.text


def _sections(html: str) -> list[str]:
    return re.findall(r'<section class="home-section" id="home-(\w+)"', html)


def _section(html: str, key: str) -> str:
    start = html.index(f'id="home-{key}"')
    end = html.find('<section class="home-section"', start)
    return html[start : end if end > 0 else len(html)]


def test_each_role_sees_its_own_sections_with_next_steps_and_clocks(
    db: Database, portal: TestClient
) -> None:
    made = populate(portal, db)
    set_clock(portal, VIEW_AT)
    anna = _home(portal, "anna")
    assert sorted(_sections(anna)) == ["applicant", "member"]
    mine = _section(anna, "applicant")
    assert "waiting for technical assessment by LUMI AIF" in mine
    assert f'href="/projects/{made["code"]}">awarded: project {made["code"]}' in mine
    assert "submit before the cut-off on" in mine and "Unfinished draft" in mine
    projects = _section(anna, "member")
    a = made["allocation"]
    assert f'data-x-start="{a["start_date"]}" data-x-end="{a["end_date"]}"' in projects
    axis = re.findall(
        r'<text x="[0-9.]+" y="[0-9.]+" text-anchor="(start|end)">(\d{4}-\d\d-\d\d)<', projects
    )
    assert axis == [
        ("start", a["start_date"]),
        ("end", a["end_date"]),
    ]  # the period, not the ledger's
    assert "<dd>12.5</dd>" in projects  # used
    olli = _section(_home(portal, "olli"), "operator")
    assert "Second idea" in olli and "past the service-level deadline" in olli
    assert 'class="late"' in olli and "Site health" in olli
    rita = _home(portal, "rita")
    assert _sections(rita) == ["reviewer"]
    assert "Foundation model for driving" in rita and "overdue by" in rita
    ada = _home(portal, "ada")
    assert _sections(ada) == ["admin"]
    admin = _section(ada, "admin")
    assert "GPU-hours per day by factory" in admin and "LUMI AIF 12.5" in admin
    assert re.search(r"technical assessment</span></th><td class=\"n\">1</td>", admin)
    nemo = _home(portal, "nemo")
    assert _sections(nemo) == [] and "You hold no role" in nemo
    _home(portal, "ada")
    _reports_show_usage_over_time_and_capacity(portal)  # still signed in as ada
    portal.cookies.clear()
    public = portal.get("/")
    assert "15 Member States + 2 participating states" in public.text
    assert portal.get("/federation").status_code == 200


def _reports_show_usage_over_time_and_capacity(portal: TestClient) -> None:
    day = CHARGED_AT.date().isoformat()
    page = portal.get(f"/reports?series_by=funding&bucket=day&start={day}&end={day}")
    assert page.status_code == 200, page.text
    table = page.text[page.text.index('id="series-table"') :]
    row = re.search(rf"<th scope=\"row\">{day}</th>((?:<td class=\"n\">[0-9.]+</td>)+)", table)
    assert row, table[:2000]
    assert sum(float(v) for v in re.findall(r">([0-9.]+)<", row.group(1))) == 12.5
    assert "EU" in page.text and "Capacity and utilisation per factory" in page.text
    assert re.search(r"LUMI AIF</th><td class=\"n\">[0-9,]+</td><td class=\"n\">[0-9,]+</td>"
                     r"<td class=\"n\">12.5</td>", page.text)  # fmt: skip
    bad = portal.get("/reports?series_by=colour&bucket=month")
    assert bad.status_code == 422
    assert 'data-field="series_by"' in bad.text and 'data-field="bucket"' in bad.text
