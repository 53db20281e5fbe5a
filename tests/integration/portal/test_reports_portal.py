"""The portal's /reports over HTTP: both country groupings and the funding sources by name."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient
from portal_support import set_password, sign_in

from aifactory.db.engine import Database
from aifactory.testing.people import Person
from aifactory.testing.reports import seed_usage


def _table(html: str) -> str:
    match = re.search(r'<table id="report-table">.*?</table>', html, re.S)
    assert match, "no report table"
    return match.group(0)


def _options(html: str, name: str) -> list[str]:
    select = re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S)
    assert select, f"no {name} selector"
    return re.findall(r'<option value="([^"]*)"', select.group(0))


def test_reports_page_offers_both_countries_and_names_the_funding_sources(
    db: Database, api: TestClient, portal: TestClient, admin: Person
) -> None:
    seed_usage(api, db, admin)
    set_password(db, "ada")
    sign_in(portal, "ada")
    page = portal.get("/reports")
    assert page.status_code == 200
    assert {"factory-country", "user-country", "funding"} <= set(_options(page.text, "group_by"))
    assert "country" not in _options(page.text, "group_by")

    user = _table(portal.get("/reports?group_by=user-country").text)
    factory = _table(portal.get("/reports?group_by=factory-country").text)
    assert "Portugal" in user and "Luxembourg" not in user
    assert "Luxembourg" in factory and "Portugal" not in factory

    funding = portal.get("/reports?group_by=funding")
    table = _table(funding.text)
    for name in ("EU: Digital Europe (infrastructure)", "National", "Commercial"):
        assert f'<th scope="row">{name}</th>' in table
    assert "EU: Horizon Europe (services)" in table and "not GPU-hours" in table
    assert "150,000,000" in table and "161.725" in table
    assert "EU: Digital Europe (infrastructure)" in funding.text.split("<table")[0]  # the chart

    series = portal.get("/reports?series_by=funding").text
    assert "EU: Digital Europe (infrastructure)" in series.split('id="series-table"')[1]

    csv_text = portal.get("/reports.csv?group_by=factory-country").text
    rows = {r["factory-country"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    assert set(rows) == {"FI", "LU", "total"} and rows["LU"]["label"] == "Luxembourg"
