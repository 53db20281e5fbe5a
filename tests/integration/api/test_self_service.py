"""Self-service over the API: organisations with linked enterprises, invitations, members."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.db.models import ProjectInvitation, ProjectMember, User
from aifactory.domain.enums import Role
from aifactory.errors import Conflict
from aifactory.services import identity, invitations
from aifactory.services.permissions import Principal
from aifactory.testing.access import at, award, member_of, ok, set_clock
from aifactory.testing.people import make_person

API = "/api/v1"
NOW = at("2026-11-25T09:00")
PARENT = {
    "name": "Parent Group",
    "share": "0.8",
    "staff": 900,
    "turnover_eur": 300_000_000,
    "balance_sheet_eur": 200_000_000,
}


def test_people_register_their_organisation_and_bad_input_names_each_field(
    db: Database, api: TestClient
) -> None:
    bob = make_person(db, "bob", [(Role.APPLICANT, None)])
    eve = make_person(db, "eve", [(Role.APPLICANT, None)])
    body = {
        "name": "Tiny Tensors Oy",
        "type": "startup",
        "country_code": "FI",
        "staff_headcount": 8,
        "annual_turnover_eur": 900_000,
        "balance_sheet_eur": 500_000,
    }
    org = ok(api.post(f"{API}/organisations", headers=bob.headers, json=body), 201)
    assert org["members"] == ["bob"]
    assert org["sme"]["size"] == "micro"
    assert ok(api.get(f"{API}/me", headers=bob.headers))["organisations"] == ["Tiny Tensors Oy"]

    linked = ok(
        api.patch(
            f"{API}/organisations/{org['id']}",
            headers=bob.headers,
            json={"enterprise_links": [PARENT]},
        )
    )
    assert linked["enterprise_links"][0]["relation"] == "linked"
    assert linked["sme"]["size"] == "not_sme"
    assert "Parent Group: linked (80 %), counted at 100 %" in linked["sme"]["contributions"]
    # others do not see it at all: the same 404 as an unknown id
    assert api.get(f"{API}/organisations/{org['id']}", headers=eve.headers).status_code == 404
    assert ok(api.get(f"{API}/organisations", headers=eve.headers)) == []
    assert [o["name"] for o in ok(api.get(f"{API}/organisations", headers=bob.headers))] == [
        "Tiny Tensors Oy"
    ]

    bad = {
        "name": "Broken Oy",
        "type": "startup",
        "country_code": "ZZ",
        "enterprise_links": [{**PARENT, "share": "1.5"}, PARENT, PARENT],
    }
    r = api.post(f"{API}/organisations", headers=bob.headers, json=bad)
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["error"]["details"]}
    assert any("share" in f for f in fields), fields
    good_links = {**bad, "enterprise_links": [PARENT, PARENT]}
    r = api.post(f"{API}/organisations", headers=bob.headers, json=good_links)
    fields = {d["field"]: d["rule"] for d in r.json()["error"]["details"]}
    assert fields == {
        "country_code": "known_country",
        "enterprise_links.1.name": "unique",
        "staff_headcount": "required",
    }
    taken = {"name": "Nordic Tokens Oy", "type": "startup", "country_code": "FI"}
    member_of(db, "anna", "Nordic Tokens Oy")
    assert api.post(f"{API}/organisations", headers=bob.headers, json=taken).status_code == 409


def test_a_pi_invites_the_invitee_joins_once_and_closed_links_fail(
    db: Database, api: TestClient
) -> None:
    set_clock(api, NOW)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    code, _ = award(api, anna, olli)
    carl = make_person(db, "carl", [(Role.APPLICANT, None)])
    made = ok(
        api.post(
            f"{API}/projects/{code}/invitations", headers=anna.headers, json={"email": "c@x.eu"}
        ),
        201,
    )
    assert made["status"] == "pending" and made["url"].endswith(made["path"])
    # only a PI invites; a stranger does not even see the project
    stranger = api.post(
        f"{API}/projects/{code}/invitations", headers=carl.headers, json={"email": "c@x.eu"}
    )
    assert stranger.status_code == 404
    bad = api.post(f"{API}/projects/{code}/invitations", headers=anna.headers, json={"email": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "email"

    joined = ok(
        api.post(f"{API}/invitations/accept", headers=carl.headers, json={"token": made["token"]})
    )
    assert joined["status"] == "accepted" and joined["accepted_by"] == "carl"
    members = ok(api.get(f"{API}/projects/{code}", headers=carl.headers))["members"]
    assert {"username": "carl", "role": "project_member"} in members
    again = api.post(
        f"{API}/invitations/accept", headers=carl.headers, json={"token": made["token"]}
    )
    assert again.status_code == 409
    # as a member (not a PI) carl may not manage members
    assert api.get(f"{API}/projects/{code}/invitations", headers=carl.headers).status_code == 403

    left = ok(api.delete(f"{API}/projects/{code}/members/carl", headers=anna.headers))
    assert [m["username"] for m in left] == ["anna"]
    last_pi = api.delete(f"{API}/projects/{code}/members/anna", headers=anna.headers)
    assert last_pi.status_code == 409 and "last PI" in last_pi.text
    assert api.get(f"{API}/projects/{code}", headers=carl.headers).status_code == 404

    url = f"{API}/projects/{code}/invitations"
    first = ok(api.post(url, headers=anna.headers, json={"email": "e@x.eu"}), 201)
    second = ok(api.post(url, headers=anna.headers, json={"email": "f@x.eu"}), 201)
    revoked = ok(api.delete(f"{url}/{first['id']}", headers=anna.headers))
    assert revoked["status"] == "revoked"
    listed = [(i["email"], i["status"]) for i in ok(api.get(url, headers=anna.headers))]
    assert listed == [("f@x.eu", "pending"), ("e@x.eu", "revoked"), ("c@x.eu", "accepted")]
    accept = f"{API}/invitations/accept"
    r = api.post(accept, headers=carl.headers, json={"token": first["token"]})
    assert r.status_code == 409 and "revoked" in r.text
    set_clock(api, NOW + timedelta(days=7, seconds=1))
    r = api.post(accept, headers=carl.headers, json={"token": second["token"]})
    assert r.status_code == 409 and "expired" in r.text
    r = api.post(accept, headers=carl.headers, json={"token": "inv_not-a-real-token"})
    assert r.status_code == 404


def test_racing_uses_of_one_link_let_exactly_one_through(db: Database, api: TestClient) -> None:
    """A request reads the invitation, then closes it: two requests that both read it pending
    (two sessions holding the row, interleaved by hand) must not both close it."""
    set_clock(api, NOW)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    code, _ = award(api, anna, olli)
    for name in ("carl", "dora"):
        make_person(db, name, [(Role.APPLICANT, None)])
    url = f"{API}/projects/{code}/invitations"
    shared = ok(api.post(url, headers=anna.headers, json={"email": "c@x.eu"}), 201)
    revoked = ok(api.post(url, headers=anna.headers, json={"email": "d@x.eu"}), 201)

    def who(session: Session, name: str) -> Principal:
        return identity.principal_of(
            session.scalars(select(User).where(User.username == name)).one()
        )

    def seen_pending(session: Session, invitation: int) -> ProjectInvitation:
        row = session.get_one(ProjectInvitation, invitation)
        assert invitations.status_of(row, NOW) == "pending"
        return row  # held, as a request holds what it read

    with db.session() as first, db.session() as second:
        held = [seen_pending(s, shared["id"]) for s in (first, second)]
        invitations.accept(first, who(first, "carl"), shared["token"], NOW)
        first.commit()
        with pytest.raises(Conflict, match="accepted"):
            invitations.accept(second, who(second, "dora"), shared["token"], NOW)
        assert held[1].accepted_by_id == held[0].accepted_by_id  # dora's stale copy refreshed
    with db.session() as session:
        joined = session.scalars(
            select(User.username)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_code == code, ProjectMember.role == Role.PROJECT_MEMBER)
        )
        assert list(joined) == ["carl"]

    with db.session() as pi, db.session() as invitee:  # a revocation racing a use
        held = [seen_pending(s, revoked["id"]) for s in (pi, invitee)]
        invitations.revoke(pi, who(pi, "anna"), code, revoked["id"], NOW)
        pi.commit()
        with pytest.raises(Conflict, match="revoked"):
            invitations.accept(invitee, who(invitee, "dora"), revoked["token"], NOW)
    listed = [(i["email"], i["status"]) for i in ok(api.get(url, headers=anna.headers))]
    assert listed == [("d@x.eu", "revoked"), ("c@x.eu", "accepted")]
