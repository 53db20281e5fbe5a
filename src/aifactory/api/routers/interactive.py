"""Interactive sessions: ``/api/v1/sessions`` (start, list, show, ``/stop``) and the proxy to each
session's JupyterLab at ``/sessions/<id>/`` (HTTP and WebSockets, for its owner only).

The proxy admits the portal's sign-in cookie (browsers) or ``Authorization: Bearer <API
token>`` (scripts), and the session's owner alone: anyone else, an admin too, gets the same 404
as for a session that does not exist. Without credentials a browser's page request
(``GET`` accepting ``text/html``) is sent to the portal's sign-in page, which brings it back;
anything else gets 401. Neither the cookie nor the API token reaches JupyterLab (``api/proxy.py``
strips them): every request there carries the session's own token instead, which the browser
never sees. Because of that token JupyterLab skips its own XSRF and origin checks, so the proxy
makes them: a cookie-authenticated request that may change something (not ``GET``/``HEAD``/
``OPTIONS``) must come from this site (``Origin`` or ``Sec-Fetch-Site``), and a browser's
WebSocket must come from this origin (``forward_websocket``).

Database work runs in short transactions in worker threads, never while a request streams.
"""

from __future__ import annotations

import asyncio
import re
from typing import cast
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from aifactory.api.deps import (
    CurrentPrincipal,
    NowDep,
    SessionDep,
    get_db,
    get_principal,
    site_capacity,
)
from aifactory.api.errors import ERROR_RESPONSES, STATUS, error_json
from aifactory.api.params import IdPath
from aifactory.api.proxy import forward_http, forward_websocket, proxy_client, request_target
from aifactory.db.types import utcnow
from aifactory.domain.serving import SessionSpec
from aifactory.errors import AIFactoryError, Forbidden, Unauthenticated
from aifactory.services import interactive, sessions
from aifactory.services.interactive import SessionView, Target
from aifactory.services.permissions import Principal

router = APIRouter(prefix="/sessions", tags=["sessions"], responses=ERROR_RESPONSES)
proxy = APIRouter(prefix="/sessions", include_in_schema=False)
#: The portal's sign-in cookie (``portal.web.SESSION_COOKIE``; the API does not import the portal).
PORTAL_COOKIE = "aif_session"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
#: JupyterLab needs inline scripts and styles, ``eval`` (its settings' schema validator), blobs
#: and data URLs; everything still comes from this origin only, and only it may frame the pages
#: (the portal's pages keep their strict policy: this applies to ``/sessions/`` alone).
SESSION_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self' blob: data:",
        "frame-ancestors 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)
SESSION_HEADERS = [
    ("content-security-policy", SESSION_CSP),
    ("x-frame-options", "SAMEORIGIN"),  # older browsers: as frame-ancestors says
]


# --- /api/v1/sessions ------------------------------------------------------------------------


@router.post("", status_code=201)
def start_session(
    body: SessionSpec, request: Request, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> SessionView:
    """Start JupyterLab (``kind: jupyter``) or a terminal in it (``shell``) as a job of the
    project, run as you: 201 while it starts (follow ``state`` until ``ready``; it is then at
    ``path``); 422 for a bad spec or a project not yours; 409 when no factory could run it."""
    capacity = site_capacity(request, session)
    return interactive.start(session, who, body.model_dump(), capacity, now)


@router.get("")
def list_sessions(
    session: SessionDep, who: CurrentPrincipal, all: bool = False
) -> list[SessionView]:
    """Your sessions, newest first: live ones (``all=true``: ended ones too)."""
    return interactive.list_sessions(session, who, everything=all)


@router.get("/{session_id}")
def get_session(session_id: IdPath, session: SessionDep, who: CurrentPrincipal) -> SessionView:
    """One of your sessions (404 for anyone else's, as for one that does not exist)."""
    return interactive.get(session, who, session_id)


@router.post("/{session_id}/stop")
def stop_session(
    session_id: IdPath, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> SessionView:
    """Stop a session: its job is cancelled and charged for the time it ran. The session stays
    listed (``all=true``) with why it ended, as a cancelled job does; stopping one that is
    stopping or has ended changes nothing."""
    return interactive.stop(session, who, session_id, now)


# --- the proxy at /sessions/<id>/ --------------------------------------------------------------


@proxy.get("/{session_id}")
async def session_root(session_id: IdPath) -> Response:
    """A session's bare address goes to its JupyterLab."""
    return RedirectResponse(f"/sessions/{session_id}/lab", status_code=307)


@proxy.api_route("/{session_id}/{path:path}", methods=METHODS)
async def session_http(session_id: IdPath, path: str, request: Request) -> Response:
    """Relay one request to the session's JupyterLab (streamed both ways).

    Refusals are JSON in the API's shape, except to a browser asking for a page: it gets the
    portal's (the sign-in page when it has no credentials, a 404 page for another's session).
    """
    try:
        target, by_cookie = await _authorized(request, session_id)
        if by_cookie and request.method not in SAFE_METHODS and _cross_site(request):
            raise Forbidden("a cross-site request to a session was refused")
    except AIFactoryError as exc:
        if _page_request(request):
            raise  # the portal's error pages (installed by the composition) answer it
        wait = exc.extra.get("retry_after_s")
        headers = {"Retry-After": str(wait)} if wait is not None else None
        return error_json(STATUS.get(exc.code, 400), exc.code, exc.message, exc.details, headers)
    response = await forward_http(
        request,
        target.address,
        request_target(request),
        client=_client(request),
        set_headers=_upstream_auth(target),
        forward_cookies=_jupyter_cookies(target),
    )
    _session_headers(response)
    return response


@proxy.websocket("/{session_id}/{path:path}")
async def session_websocket(websocket: WebSocket, session_id: IdPath, path: str) -> None:
    """Relay a WebSocket (kernels, terminals, events) to the session's JupyterLab."""
    try:
        target, _ = await _authorized(websocket, session_id)
    except AIFactoryError as exc:
        await _deny(websocket, exc)
        return
    await forward_websocket(
        websocket,
        target.address,
        request_target(websocket),
        set_headers=_upstream_auth(target),
        forward_cookies=_jupyter_cookies(target),
    )


async def _authorized(conn: HTTPConnection, session_id: int) -> tuple[Target, bool]:
    """The session's upstream for this caller, and whether the caller came by cookie.

    Raises:
        Unauthenticated: No credentials, or invalid ones.
        NotFound, Conflict, BackendUnavailable: As ``interactive.authorize``.
    """
    scheme, _, token = conn.headers.get("authorization", "").partition(" ")
    who: Principal | None = None
    if scheme.lower() == "bearer" and token.strip():
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=token.strip())
        # The API's own check (cache, throttle on unknown tokens); it reads only app state and
        # headers, which a WebSocket has as well.
        who = await get_principal(cast(Request, conn), credentials)
    secret = conn.cookies.get(PORTAL_COOKIE, "")
    if who is None and not secret:
        raise Unauthenticated("sign in to the portal, or send 'Authorization: Bearer <token>'")
    target = await run_in_threadpool(_lookup, conn, who, secret, session_id)
    return target, who is None


def _lookup(conn: HTTPConnection, who: Principal | None, secret: str, session_id: int) -> Target:
    """One short transaction: the cookie's person (unless known) and the session's target."""
    now = utcnow()  # real time: sign-in expiry and the controller's idle clock use it too
    with get_db(cast(Request, conn)).session() as s:
        if who is None:
            who = sessions.resolve(s, secret, now).principal
        return interactive.authorize(s, who, session_id, now)


def _session_headers(response: Response) -> None:
    """Our policy on the session's pages, replacing JupyterLab's and keeping off the portal's.

    Header names are lowercased too (ASGI's rule; an upstream's may come in any case), so that
    ``SecurityHeaders`` sees these and adds only what is missing.
    """
    ours = {name.encode("latin-1"): value.encode("latin-1") for name, value in SESSION_HEADERS}
    kept = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in ours]
    response.raw_headers = kept + list(ours.items())


def _upstream_auth(target: Target) -> dict[str, str]:
    return {"authorization": f"token {target.token}"}


def _jupyter_cookies(target: Target) -> list[str]:
    """JupyterLab's own cookies: its XSRF cookie and the login cookie it names after its host
    (which keeps the browser one user there across requests)."""
    netloc = httpx.URL(target.address).netloc.decode("ascii")
    return ["_xsrf", _NOT_ALNUM.sub("-", f"username-{netloc}")]


def _client(request: Request) -> httpx.AsyncClient:
    """The app's pooled client to the sessions (one per event loop)."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = getattr(
        request.app.state, "session_proxy_client", None
    )
    if held is None or held[0] is not loop:
        held = (loop, proxy_client())
        request.app.state.session_proxy_client = held
    return held[1]


def _page_request(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def _cross_site(conn: HTTPConnection) -> bool:
    """Whether a browser sent this from another site (its ``Origin``, else ``Sec-Fetch-Site``);
    a request with neither is not a browser's cross-site one."""
    origin = conn.headers.get("origin")
    if origin is not None:
        return urlsplit(origin).netloc != conn.headers.get("host")
    return conn.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


async def _deny(websocket: WebSocket, exc: AIFactoryError) -> None:
    """Turn a WebSocket away before accepting it: the API's error answer where the server can
    send one (uvicorn does), else a policy-violation close."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        status = STATUS.get(exc.code, 400)
        await websocket.send_denial_response(error_json(status, exc.code, exc.message, []))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])
