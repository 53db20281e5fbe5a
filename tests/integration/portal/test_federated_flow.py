"""Federated sign-in through the portal against a provider faked in-process (httpx's mock
transport): what the real provider of ``test_federated_browser.py`` cannot show. The provider's
calls run with no transaction open, kept discovery and keys, the home organisation linked at the
first sign-in only, throttled starts, and no self-made password for federated users."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import delete, func, select

from aifactory.db.engine import Database
from aifactory.db.models import Membership, OidcLogin, Organisation, User
from aifactory.domain.enums import OrganisationType
from aifactory.services import identity, oidc
from aifactory.settings import Settings
from aifactory.testing.people import Person

ISSUER, CLIENT = "https://op.example", "aif"
ORG = "Uni Example"


class FakeOp:
    """The provider's endpoints; ``during_token`` runs while the token endpoint is answering."""

    def __init__(self) -> None:
        self.key, self.kid = rsa.generate_private_key(public_exponent=65537, key_size=2048), "k1"
        self.calls: Counter[str] = Counter()
        self.person: dict[str, Any] = {}
        self.nonce = ""
        self.during_token: Callable[[], None] = lambda: None

    def rotate(self) -> None:
        self.key, self.kid = rsa.generate_private_key(public_exponent=65537, key_size=2048), "k2"

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": ISSUER, **_endpoints()})
        if path == "/jwks":
            public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
            return httpx.Response(200, json={"keys": [{**public, "kid": self.kid, "use": "sig"}]})
        if path == "/token":
            self.during_token()
            return httpx.Response(200, json={"id_token": self._id_token(), "access_token": "at"})
        return httpx.Response(200, json=self.person)  # userinfo

    def _id_token(self) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "sub": self.person["sub"],
            "aud": CLIENT,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
            "nonce": self.nonce,
        }
        return jwt.encode(claims, self.key, "RS256", {"kid": self.kid})


def _endpoints() -> dict[str, str]:
    return {
        "authorization_endpoint": ISSUER + "/auth",
        "token_endpoint": ISSUER + "/token",
        "jwks_uri": ISSUER + "/jwks",
        "userinfo_endpoint": ISSUER + "/userinfo",
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        oidc_issuer=ISSUER,
        oidc_client_id=CLIENT,
        oidc_client_secret="secret",
        auth_address_failures=4,
    )


@pytest.fixture
def op(monkeypatch: pytest.MonkeyPatch, db: Database) -> Iterator[FakeOp]:
    fake = FakeOp()
    transport = httpx.MockTransport(fake.handle)
    monkeypatch.setattr(oidc, "client", lambda: httpx.Client(transport=transport))
    oidc.forget_cached()
    with db.session() as s:
        identity.create_organisation(s, ORG, OrganisationType.ACADEMIA, "FI")
        s.scalars(
            select(Organisation).where(Organisation.name == ORG)
        ).one().home_domain = "uni.example"
    yield fake
    oidc.forget_cached()


def _sign_in(portal: TestClient, op: FakeOp, sub: str, **claims: Any) -> httpx.Response:
    portal.cookies.clear()
    op.person = {"sub": sub, "email": f"{sub}@uni.example", **claims}
    start = portal.get("/login/federated")
    assert start.status_code == 303, start.text
    query = parse_qs(urlsplit(start.headers["location"]).query)
    op.nonce = query["nonce"][0]
    return portal.get("/auth/callback", params={"state": query["state"][0], "code": "c"})


def _organisations(db: Database, username: str) -> list[int]:
    with db.session() as s:
        user = s.scalars(select(User).where(User.username == username)).one()
        return [m.organisation_id for m in user.memberships]


def test_the_provider_is_asked_with_no_transaction_open(
    portal: TestClient, op: FakeOp, db: Database
) -> None:
    seen: list[tuple[int, bool]] = []

    def write_meanwhile() -> None:
        """Another request's write must get through while the provider takes its time, and the
        used-up pending login must already be committed."""
        done = threading.Event()

        def write() -> None:
            with db.session() as s:
                identity.create_organisation(s, "Written Meanwhile", OrganisationType.SME, "FI")
            done.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(timeout=5)
        with db.session() as s:
            pending = s.scalar(select(func.count()).select_from(OidcLogin))
        seen.append((int(pending or 0), done.is_set()))

    op.during_token = write_meanwhile
    answer = _sign_in(portal, op, "alice")
    assert answer.status_code == 303, answer.text
    assert seen == [(0, True)]
    assert portal.get("/projects").status_code == 200  # signed in


def test_the_home_organisation_is_linked_at_the_first_sign_in_only(
    portal: TestClient, op: FakeOp, db: Database
) -> None:
    home = {"schac_home_organization": "uni.example"}
    assert _sign_in(portal, op, "bob", **home).status_code == 303
    org_ids = _organisations(db, "bob")
    assert len(org_ids) == 1
    with db.session() as s:  # an admin takes bob out of the organisation
        s.execute(delete(Membership).where(Membership.organisation_id == org_ids[0]))
    assert _sign_in(portal, op, "bob", **home).status_code == 303
    assert _organisations(db, "bob") == []


def test_discovery_and_keys_are_kept_and_fetched_again_for_a_new_key(
    portal: TestClient, op: FakeOp
) -> None:
    for _ in range(2):
        assert _sign_in(portal, op, "carol").status_code == 303
    assert op.calls["/.well-known/openid-configuration"] == 1
    assert op.calls["/jwks"] == 1
    op.rotate()  # the provider signs with a key (kid) the portal has not seen
    assert _sign_in(portal, op, "carol").status_code == 303
    assert (op.calls["/.well-known/openid-configuration"], op.calls["/jwks"]) == (1, 2)


def test_sign_ins_started_and_not_finished_are_throttled_per_address(
    portal: TestClient, op: FakeOp
) -> None:
    assert _sign_in(portal, op, "dora").status_code == 303  # a finished one clears the count
    portal.cookies.clear()
    for _ in range(4):
        assert portal.get("/login/federated").status_code == 303
    locked = portal.get("/login/federated")
    assert locked.status_code == 429
    assert "try again in" in locked.text
    assert portal.get("/login").status_code == 200  # the password form is not locked


def test_federated_users_cannot_set_their_own_password(
    portal: TestClient, op: FakeOp, db: Database, admin: Person
) -> None:
    assert _sign_in(portal, op, "erik").status_code == 303
    with db.session() as s:
        token = identity.create_token(s, "erik", "script", 1).token
    url, body = "/api/v1/users/erik/password", {"password": "a long enough password"}
    own = portal.put(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert own.status_code == 422, own.text
    details = own.json()["error"]["details"]
    assert [(d["field"], d["rule"]) for d in details] == [("password", "not_federated")]
    with db.session() as s:
        assert s.scalars(select(User).where(User.username == "erik")).one().password_hash is None
    assert portal.put(url, json=body, headers=admin.headers).status_code == 204
