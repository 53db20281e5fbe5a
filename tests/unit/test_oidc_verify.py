"""id_token verification (``services/oidc.py``) with keys made here: what a provider could get
wrong or an attacker could forge, which the end-to-end tests against a real provider cannot."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from aifactory.db.models import ClaimRule
from aifactory.errors import Unauthenticated
from aifactory.services import claim_rules, oidc

ISSUER, CLIENT, NONCE = "https://proxy.myaccessid.org", "aif-portal", "n-0S6_WzA2Mj"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER = _key(), _key()


def _jwks(key: rsa.RSAPrivateKey = KEY, kid: str = "k1") -> dict[str, Any]:
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


def _token(key: rsa.RSAPrivateKey = KEY, kid: str = "k1", **changes: Any) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice@uni.example",
        "aud": CLIENT,
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "nonce": NONCE,
    }
    claims.update(changes)
    present = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(present, key, "RS256", {"kid": kid})


def _verify(token: str, jwks: dict[str, Any] | None = None, now: datetime = NOW) -> dict[str, Any]:
    return oidc.verify_id_token(token, jwks or _jwks(), ISSUER, CLIENT, NONCE, now)


def test_a_good_token_gives_its_claims() -> None:
    assert _verify(_token())["sub"] == "alice@uni.example"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: _token(OTHER), "signature does not verify"),
        (lambda: _token(iss="https://evil.example"), "another issuer"),
        (lambda: _token(aud="someone-else"), "another client"),
        (lambda: _token(aud=[CLIENT, "other"], azp="other"), "another client"),
        (lambda: _token(nonce="replayed"), "nonce"),
        (lambda: _token(nonce=None), "nonce"),
        (lambda: _token(exp=int((NOW - timedelta(hours=1)).timestamp())), "expired"),
        (lambda: _token(kid="unknown"), "key the provider does not publish"),
        (lambda: _token(sub=None), "invalid"),
    ],
)
def test_a_bad_token_is_refused_naming_the_check(token: Any, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        _verify(token())


def test_a_tampered_payload_is_refused() -> None:
    head, body, sig = _token().split(".")
    claims = json.loads(jwt.utils.base64url_decode(body))
    claims["sub"] = "admin"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(Unauthenticated, match="signature"):
        _verify(f"{head}.{forged}.{sig}")


def _unnamed(alg: str = "RS256") -> str:
    """A token whose header names no key (``kid``)."""
    claims = {"iss": ISSUER, "sub": "bo", "aud": CLIENT, "exp": 2_000_000_000, "nonce": NONCE}
    return jwt.encode({**claims, "iat": int(NOW.timestamp())}, KEY, alg)


def test_without_a_kid_only_keys_that_fit_the_algorithm_are_tried() -> None:
    ec_key = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    rsa_key = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    other = json.loads(RSAAlgorithm.to_jwk(OTHER.public_key()))
    jwks = {
        "keys": [
            ec_key,  # another type: skipped
            {**rsa_key, "use": "enc"},  # not for signatures: skipped
            {**rsa_key, "alg": "RS512"},  # bound to another algorithm: skipped
            {**other, "use": "sig"},  # fits, but did not sign: the next one is tried
            rsa_key,  # fits (no "use", no "alg")
        ]
    }
    assert _verify(_unnamed(), jwks)["sub"] == "bo"
    assert _verify(_unnamed("PS256"), jwks)["sub"] == "bo"  # an RSA key without "alg" fits PS*
    with pytest.raises(Unauthenticated, match="does not publish"):
        _verify(_unnamed(), {"keys": [ec_key, {**rsa_key, "use": "enc"}]})
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        _verify(_unnamed(), {"keys": [other]})


def test_unsigned_and_hmac_tokens_are_refused() -> None:
    claims = {"iss": ISSUER, "sub": "x", "aud": CLIENT, "exp": 2_000_000_000, "nonce": NONCE}
    unsigned = jwt.encode(claims, None, "none")
    with pytest.raises(Unauthenticated, match="algorithm 'none'"):
        _verify(unsigned)
    hmac = jwt.encode(claims, "a shared secret of enough length here", "HS256")
    with pytest.raises(Unauthenticated, match="algorithm 'HS256'"):
        _verify(hmac)


def test_the_injected_clock_decides_expiry_too() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        _verify(_token(), now=NOW + timedelta(hours=2))


def test_pkce_challenge_is_the_s256_of_the_verifier() -> None:
    verifier, challenge = oidc.pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = jwt.utils.base64url_encode(hashlib.sha256(verifier.encode()).digest())
    assert challenge == digest.decode()


@pytest.mark.parametrize(
    ("value", "claim", "matches"),
    [
        ("urn:x:reviewers#a", ["urn:x:reviewers#a", "urn:y"], True),
        ("urn:x:reviewers#a", "urn:x:reviewers#a", True),
        ("urn:x:reviewers#a", ["urn:x:reviewers#ab"], False),
        ("urn:x:reviewers#*", ["urn:x:reviewers#login.myaccessid.org"], True),
        ("urn:x:reviewers#*", ["urn:x:other#a"], False),
        ("urn:x:reviewers#a", None, False),
    ],
)
def test_rule_values_match_exactly_or_by_prefix(value: str, claim: Any, matches: bool) -> None:
    rule = ClaimRule(claim="eduperson_entitlement", value=value, role="reviewer")
    assert claim_rules.matches(rule, {"eduperson_entitlement": claim}) is matches
