"""Site accounts: people's own logins at the factories, mapped by admins and operators."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Factory, ProjectMember, User
from aifactory.domain.enums import Role
from aifactory.services import audit, site_accounts
from aifactory.services.permissions import Principal
from aifactory.services.site_accounts import NoSiteAccount
from aifactory.testing.access import award, member_of
from aifactory.testing.people import Person, make_person

API = "/api/v1"


def _path(user: str, factory: str | None = None) -> str:
    return f"{API}/users/{user}/site-accounts" + (f"/{factory}" if factory else "")


def _logins(api: TestClient, who: Person, user: str = "anna") -> dict[str, str]:
    response = api.get(_path(user), headers=who.headers)
    assert response.status_code == 200, response.text
    return {v["factory"]: v["login"] for v in response.json()}


def test_operators_map_logins_at_their_own_factory_and_people_see_their_own(
    api: TestClient, admin: Person, operator: Person, applicant: Person, db: Database
) -> None:
    put = api.put(_path("anna", "BSC AIF"), headers=admin.headers, json={"login": "anna01"})
    assert put.status_code == 200 and put.json()["login"] == "anna01"
    by_op = api.put(_path("anna", "LUMI AIF"), headers=operator.headers, json={"login": "akoski"})
    assert by_op.status_code == 200
    again = api.put(_path("anna", "LUMI AIF"), headers=operator.headers, json={"login": "akoski2"})
    assert again.json() == {**by_op.json(), "login": "akoski2"}
    elsewhere = api.put(_path("anna", "BSC AIF"), headers=operator.headers, json={"login": "x"})
    assert elsewhere.status_code == 403
    own = api.put(_path("anna", "LUMI AIF"), headers=applicant.headers, json={"login": "me"})
    assert own.status_code == 403
    assert _logins(api, applicant) == {"BSC AIF": "anna01", "LUMI AIF": "akoski2"}
    assert _logins(api, admin) == _logins(api, applicant)
    assert _logins(api, operator) == {"LUMI AIF": "akoski2"}  # only their factory's
    bsc = make_person(db, "bea", [(Role.FACTORY_OPERATOR, "BSC AIF")])
    assert _logins(api, bsc) == {"BSC AIF": "anna01"}
    assert api.get(_path("ada"), headers=applicant.headers).status_code == 403
    with db.session() as s:
        events = audit.query(s, _admin(), action="site_account_set").events
    assert [(e.actor, e.detail["login"], e.detail["previous"]) for e in reversed(events)] == [
        ("ada", "anna01", None),
        ("olli", "akoski", None),
        ("olli", "akoski2", "akoski"),
    ]


@pytest.mark.parametrize(
    ("login", "code"),
    [("root", 422), ("Anna", 422), ("a b", 422), ("-x", 422), ("a\nb", 422), ("x" * 33, 422)],
)
def test_privileged_and_odd_logins_are_refused(
    api: TestClient, admin: Person, applicant: Person, login: str, code: int
) -> None:
    response = api.put(_path("anna", "LUMI AIF"), headers=admin.headers, json={"login": login})
    assert response.status_code == code, response.text


def test_a_login_belongs_to_one_person_per_factory(
    api: TestClient, admin: Person, applicant: Person, operator: Person
) -> None:
    body = {"login": "shared"}
    assert api.put(_path("anna", "LUMI AIF"), headers=admin.headers, json=body).status_code == 200
    taken = api.put(_path("olli", "LUMI AIF"), headers=admin.headers, json=body)
    assert taken.status_code == 409 and "already belongs to anna" in taken.text
    assert api.put(_path("olli", "BSC AIF"), headers=admin.headers, json=body).status_code == 200
    unknown = api.put(_path("nobody", "LUMI AIF"), headers=admin.headers, json=body)
    assert unknown.status_code == 404
    assert api.put(_path("anna", "Atlantis"), headers=admin.headers, json=body).status_code == 404


def test_removing_a_login(api: TestClient, admin: Person, operator: Person, db: Database) -> None:
    api.put(_path("olli", "LUMI AIF"), headers=admin.headers, json={"login": "olli"})
    assert api.delete(_path("olli", "LUMI AIF"), headers=operator.headers).status_code == 204
    assert _logins(api, operator, "olli") == {}
    again = api.delete(_path("olli", "LUMI AIF"), headers=operator.headers)
    assert again.status_code == 404 and "has no site account at LUMI AIF" in again.text
    with db.session() as s:
        (event,) = audit.query(s, _admin(), action="site_account_remove").events
    assert (event.actor, event.object_id, event.detail) == (
        "olli",
        "olli",
        {"factory": "LUMI AIF", "login": "olli"},
    )


def test_agents_get_members_logins_and_a_clear_refusal_without_one(
    api: TestClient, admin: Person, operator: Person, db: Database
) -> None:
    pia = member_of(db, "pia", "Id Oy")
    project, _ = award(api, pia, operator, organisation="Id Oy")
    api.put(_path("pia", "LUMI AIF"), headers=admin.headers, json={"login": "pkoski"})
    api.put(_path("olli", "BSC AIF"), headers=admin.headers, json={"login": "olli"})
    with db.session() as s:
        lumi = s.scalars(select(Factory.id).where(Factory.name == "LUMI AIF")).one()
        pia_id, olli_id = (
            s.scalars(select(User.id).where(User.username == name)).one()
            for name in ("pia", "olli")
        )
        s.add(ProjectMember(project_code=project, user_id=olli_id, role=Role.PROJECT_MEMBER))
        s.flush()
        assert site_accounts.member_logins(s, lumi, [project, "none"]) == {
            project: ["pkoski"],  # olli has no login at LUMI AIF
            "none": [],
        }
        assert site_accounts.run_as(s, pia_id, lumi, "LUMI AIF", required=True) == "pkoski"
        assert site_accounts.run_as(s, olli_id, lumi, "LUMI AIF", required=False) is None
        # An executor without per-person identity (the local one): nothing to run as.
        assert site_accounts.run_as(s, pia_id, lumi, "LUMI AIF", required=None) is None
        with pytest.raises(NoSiteAccount) as refused:
            site_accounts.run_as(s, olli_id, lumi, "LUMI AIF", required=True)
    assert str(refused.value) == "no site account at LUMI AIF for olli; ask the factory's operator"


def _admin() -> Principal:
    return Principal(0, "test", frozenset({(Role.FEDERATION_ADMIN, None)}))
