"""OpenID Connect, the relying party's side: discovery, PKCE, the code exchange, id_token checks.

Works with any standard provider configured by its issuer URL (MyAccessID in EuroHPC). The
id_token is verified with PyJWT against the provider's published keys (JWKS): signature, ``iss``,
``aud`` (and ``azp`` when several audiences), ``exp`` and the ``nonce`` this sign-in sent.
Network failures and provider errors become ``BackendUnavailable``; a token that fails a check
becomes ``Unauthenticated`` naming the check. Discovery documents and key sets are kept in this
process for ``CACHE_TTL_S`` per issuer; an id_token naming a key (``kid``) not in the kept set
fetches the set once more (the provider rotated its keys). Nothing here touches the database:
callers make these calls outside any transaction.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from aifactory.errors import BackendUnavailable, Unauthenticated
from aifactory.settings import Settings

TIMEOUT_S = 10.0
LEEWAY_S = 60  # clock skew allowed on exp/iat/nbf
#: Signature algorithms accepted (never "none", never HMAC with a public key).
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
CALLBACK_PATH = "/auth/callback"
CACHE_TTL_S = 300.0  # how long a discovery document or key set is kept
#: The key type (``kty``) each family of accepted algorithms signs with.
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


@dataclass(frozen=True)
class OidcConfig:
    """The relying party's registration at one provider (from settings)."""

    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    label: str
    redirect_url: str | None


@dataclass(frozen=True)
class Provider:
    """What the provider's discovery document says about its endpoints."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None


def config_of(settings: Settings) -> OidcConfig | None:
    """The configured provider, or None when federated sign-in is off."""
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    scopes = settings.oidc_scopes.split()
    if "openid" not in scopes:
        scopes.insert(0, "openid")
    return OidcConfig(
        issuer=settings.oidc_issuer.rstrip("/"),
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        scopes=" ".join(scopes),
        label=settings.oidc_label,
        redirect_url=settings.oidc_redirect_url,
    )


def _get_json(http: httpx.Client, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = http.get(url, **kwargs)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"the sign-in provider is unreachable ({what})") from exc
    if response.status_code != 200:
        msg = f"the sign-in provider answered {response.status_code} ({what})"
        raise BackendUnavailable(msg)
    return _json_object(response, what)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise BackendUnavailable(f"the sign-in provider sent no JSON ({what})") from exc
    if not isinstance(body, dict):
        raise BackendUnavailable(f"the sign-in provider sent no JSON object ({what})")
    return body


def discover(http: httpx.Client, issuer: str) -> Provider:
    """Read ``/.well-known/openid-configuration``; its issuer must be the one configured."""
    doc = _get_json(http, issuer + "/.well-known/openid-configuration", "discovery")
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise BackendUnavailable(f"the provider's discovery names issuer {doc.get('issuer')!r}")
    try:
        return Provider(
            issuer=str(doc["issuer"]),
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            jwks_uri=str(doc["jwks_uri"]),
            userinfo_endpoint=doc.get("userinfo_endpoint"),
        )
    except KeyError as exc:
        raise BackendUnavailable(f"the provider's discovery lacks {exc.args[0]}") from exc


class _Cache:
    """Documents per (kind, URL), each kept for ``CACHE_TTL_S`` (monotonic clock, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[float, Any]] = {}

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            item = self._items.get(key)
        return item[1] if item is not None and item[0] > time.monotonic() else None

    def put(self, key: tuple[str, str], value: Any) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + CACHE_TTL_S, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_CACHE = _Cache()


def forget_cached() -> None:
    """Drop every kept discovery document and key set (tests; a changed provider)."""
    _CACHE.clear()


def provider_of(http: httpx.Client, issuer: str) -> Provider:
    """The issuer's discovery, read at most once per ``CACHE_TTL_S``."""
    kept: Provider | None = _CACHE.get(("discovery", issuer))
    if kept is None:
        kept = discover(http, issuer)
        _CACHE.put(("discovery", issuer), kept)
    return kept


def keys_of(http: httpx.Client, provider: Provider, fresh: bool = False) -> dict[str, Any]:
    """The provider's key set, read at most once per ``CACHE_TTL_S`` unless ``fresh``."""
    kept: dict[str, Any] | None = None if fresh else _CACHE.get(("jwks", provider.jwks_uri))
    if kept is None:
        kept = fetch_jwks(http, provider)
        _CACHE.put(("jwks", provider.jwks_uri), kept)
    return kept


def check_id_token(
    http: httpx.Client,
    provider: Provider,
    token: str,
    client_id: str,
    nonce: str,
    now: datetime,
) -> dict[str, Any]:
    """``verify_id_token`` with the kept key set, fetched again once for an unknown ``kid``."""
    jwks = keys_of(http, provider)
    if not _publishes(token, jwks):
        jwks = keys_of(http, provider, fresh=True)
    return verify_id_token(token, jwks, provider.issuer, client_id, nonce, now)


def _publishes(token: str, jwks: dict[str, Any]) -> bool:
    """Whether the key set has the token's ``kid`` (True without one, or when unreadable: the
    verification then says what is wrong)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return True
    keys = jwks.get("keys")
    listed = keys if isinstance(keys, list) else []
    return kid is None or any(isinstance(k, dict) and k.get("kid") == kid for k in listed)


def pkce_pair() -> tuple[str, str]:
    """A fresh code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    provider: Provider, cfg: OidcConfig, redirect_uri: str, state: str, nonce: str, challenge: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": cfg.client_id,
        "redirect_uri": redirect_uri,
        "scope": cfg.scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    sep = "&" if "?" in provider.authorization_endpoint else "?"
    return provider.authorization_endpoint + sep + urlencode(query)


def exchange_code(
    http: httpx.Client,
    provider: Provider,
    cfg: OidcConfig,
    code: str,
    verifier: str,
    redirect_uri: str,
) -> dict[str, Any]:
    """The token endpoint's answer to the code (client_secret_basic authentication)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    try:
        response = http.post(
            provider.token_endpoint, data=form, auth=(cfg.client_id, cfg.client_secret)
        )
    except httpx.HTTPError as exc:
        raise BackendUnavailable("the sign-in provider is unreachable (token)") from exc
    if 400 <= response.status_code < 500:
        error = _oauth_error(response)
        raise Unauthenticated(f"the sign-in provider refused the sign-in code ({error})")
    if response.status_code != 200:
        raise BackendUnavailable(f"the sign-in provider answered {response.status_code} (token)")
    tokens = _json_object(response, "token")
    if not isinstance(tokens.get("id_token"), str) or not isinstance(
        tokens.get("access_token"), str
    ):
        raise BackendUnavailable("the sign-in provider sent no id_token or access_token")
    return tokens


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    return str(error)[:80] if error else f"HTTP {response.status_code}"


def fetch_jwks(http: httpx.Client, provider: Provider) -> dict[str, Any]:
    return _get_json(http, provider.jwks_uri, "keys")


def verify_id_token(
    token: str, jwks: dict[str, Any], issuer: str, client_id: str, nonce: str, now: datetime
) -> dict[str, Any]:
    """The id_token's claims once its signature, issuer, audience, expiry and nonce check out."""
    claims = _decode(token, _signing_keys(token, jwks), issuer, client_id)
    if not isinstance(claims["exp"], int | float) or claims["exp"] + LEEWAY_S < now.timestamp():
        raise Unauthenticated("the sign-in provider's id_token has expired")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise Unauthenticated("the id_token was issued to another client")
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise Unauthenticated("the id_token does not carry this sign-in's nonce")
    return claims


def _decode(token: str, keys: list[jwt.PyJWK], issuer: str, client_id: str) -> dict[str, Any]:
    """The claims, checked with the first of ``keys`` whose signature verifies."""
    try:
        for key in keys[:-1]:
            try:
                return _decode_with(token, key, issuer, client_id)
            except jwt.InvalidSignatureError:
                continue  # another key of the same type may have signed it
        return _decode_with(token, keys[-1], issuer, client_id)
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated("the id_token comes from another issuer") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthenticated("the id_token was issued to another client") from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthenticated("the id_token's signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the id_token is invalid ({exc})") from exc


def _decode_with(token: str, key: jwt.PyJWK, issuer: str, client_id: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=ALGORITHMS,
        audience=client_id,
        issuer=issuer,
        leeway=LEEWAY_S,
        # expiry is checked by the caller against the injected clock, not the wall clock
        options={
            "require": ["iss", "sub", "aud", "exp", "iat"],
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        },
    )
    return claims


def _signing_keys(token: str, jwks: dict[str, Any]) -> list[jwt.PyJWK]:
    """The published keys that may have signed the token: its ``kid`` (when it names one), a
    key type that fits its algorithm (RSA for RS*/PS*, EC for ES*, OKP for EdDSA), meant for
    signatures (``use`` "sig" or absent) and not bound to another algorithm."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"the id_token is unreadable ({exc})") from exc
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise Unauthenticated(f"the id_token's algorithm {alg!r} is not accepted")
    listed = jwks.get("keys")
    usable = [
        key
        for data in (listed if isinstance(listed, list) else [])
        if isinstance(data, dict) and _fits(data, alg, kid)
        for key in _readable(data, alg)
    ]
    if not usable:
        raise Unauthenticated("the id_token is signed with a key the provider does not publish")
    return usable


def _fits(data: dict[str, Any], alg: str, kid: str | None) -> bool:
    return (
        (kid is None or data.get("kid") == kid)
        and data.get("kty") == KEY_TYPES[alg[:2]]
        and data.get("use", "sig") == "sig"
        and data.get("alg", alg) == alg
    )


def _readable(data: dict[str, Any], alg: str) -> list[jwt.PyJWK]:
    """The key bound to the token's algorithm, or none when the provider's entry is broken."""
    try:
        return [jwt.PyJWK(data, alg)]
    except jwt.PyJWTError:
        return []


def userinfo(http: httpx.Client, provider: Provider, access_token: str, sub: str) -> dict[str, Any]:
    """The userinfo endpoint's claims (empty without one); its ``sub`` must be the id_token's."""
    if not provider.userinfo_endpoint:
        return {}
    headers = {"Authorization": f"Bearer {access_token}"}
    info = _get_json(http, provider.userinfo_endpoint, "userinfo", headers=headers)
    if info.get("sub") != sub:
        raise Unauthenticated("the provider's userinfo is about someone else")
    return info


def client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
