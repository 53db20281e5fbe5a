"""/plan: staff compare the federation before and after a change; applicants may not."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from portal_support import set_password, sign_in

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.testing.people import make_person


def _cell(html: str, label: str) -> tuple[str, str]:
    found = re.search(
        rf"<th scope=\"row\">{re.escape(label)}</th><td class=\"n\">([^<]*)</td>"
        r"<td class=\"n\">([^<]*)</td>",
        html,
    )
    assert found, f"no row {label!r}"
    return found.group(1), found.group(2)


def test_an_admin_doubles_a_factory_and_sees_before_and_after(
    db: Database, portal: TestClient
) -> None:
    make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
    set_password(db, "ada")
    sign_in(portal, "ada")
    form = portal.get("/plan")
    assert form.status_code == 200 and "at most 1,500 jobs" in form.text
    assert 'href="/plan"' in form.text  # in the admin's navigation
    page = portal.get(
        "/plan", params={"run": "1", "target": "LUMI AIF", "factor": "2", "add_gpus": "512"}
    )
    assert page.status_code == 200, page.text
    assert _cell(page.text, "GPUs") == ("2,688", "4,224")  # LUMI 1,024 -> 2,048, +512
    assert _cell(page.text, "utilisation New factory")[0] == "-"
    assert "<svg" in page.text and "Wait before and after" in page.text


def test_bad_input_is_named_on_the_form(db: Database, portal: TestClient) -> None:
    make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
    set_password(db, "ada")
    sign_in(portal, "ada")
    page = portal.get("/plan", params={"run": "1", "factor": "-1", "add_gpus": "13"})
    assert page.status_code == 422
    assert "give a factor between 0 and 100" in page.text
    assert "give a multiple of 8 GPUs" in page.text


def test_the_planning_page_is_forbidden_to_an_applicant(db: Database, portal: TestClient) -> None:
    make_person(db, "anna", [(Role.APPLICANT, None)])
    set_password(db, "anna")
    sign_in(portal, "anna")
    page = portal.get("/plan", params={"run": "1", "factor": "2"})
    assert page.status_code == 403
    assert "Compare before and after" not in page.text
    assert 'href="/plan"' not in portal.get("/").text
