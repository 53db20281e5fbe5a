"""Staff see an operations banner when the controllers are not running; others never do."""

from __future__ import annotations

from fastapi.testclient import TestClient
from portal_support import set_password, sign_in

from aifactory.agents.runner import AgentRunner
from aifactory.db.engine import Database
from aifactory.settings import Settings
from aifactory.testing.people import Person

NO_CONTROLLER = "No controller is running"


def test_staff_see_that_no_controller_runs_and_applicants_do_not(
    portal: TestClient, db: Database, admin: Person, applicant: Person
) -> None:
    for person in (admin, applicant):
        set_password(db, person.username)
    sign_in(portal, applicant.username)
    assert NO_CONTROLLER not in portal.get("/").text
    portal.cookies.clear()
    sign_in(portal, admin.username)
    page = portal.get("/").text
    assert NO_CONTROLLER in page and 'class="ops-alert"' in page


def test_the_banner_goes_once_controllers_run(
    portal: TestClient, db: Database, settings: Settings, operator: Person
) -> None:
    set_password(db, operator.username)
    sign_in(portal, operator.username)
    assert NO_CONTROLLER in portal.get("/").text
    runner = AgentRunner(settings, db)
    runner.tick()  # takes every lease now
    runner.start()
    try:
        page = portal.get("/").text
    finally:
        runner.stop()
    assert NO_CONTROLLER not in page
    assert "no controller holds" not in page
