"""A small reverse proxy for the API layer: HTTP (streamed, SSE included) and WebSockets.

For upstreams the control plane does not trust with its users' credentials: model-server
replicas behind the OpenAI-compatible gateway, and interactive sessions (JupyterLab run as a
user's job). The caller has authorized the request and chosen the upstream (base URL) and the
path; the URL is the base with its path replaced, so any path (``//host``) stays on it.

Request headers removed, and why:

- ``Authorization`` and ``Cookie``, always: they carry the user's platform token or portal
  session, which must never reach user-run code. The caller adds the upstream's own credential
  with ``set_headers`` and may name cookies to pass on (``forward_cookies``, e.g. Jupyter's
  ``_xsrf``); never the control plane's own.
- Hop-by-hop headers (RFC 9110 §7.6.1), which describe the client's connection: ``Connection``
  and every header it names, ``Keep-Alive``, ``Proxy-*``, ``TE``, ``Trailer``,
  ``Transfer-Encoding``, ``Upgrade``; also ``Expect`` (uvicorn answers it here).
- ``Host`` (the upstream's is set from its URL; the client's goes in ``X-Forwarded-Host``), and
  the client's spoofable ``Forwarded``, ``X-Forwarded-*`` and ``X-Real-IP``, replaced by
  ``X-Forwarded-For`` (the peer address), ``-Proto`` and ``-Host`` set here.
- ``Content-Length`` when the caller gives the body (httpx sets its own) or there is none. A
  streamed body keeps it (uvicorn delivers exactly that many bytes); a chunked one is rechunked.
- For WebSockets also ``Sec-WebSocket-*`` (a new handshake; subprotocols are relayed) and
  ``Origin``: the upstream gets its own, as Jupyter compares it with its Host, so the check
  against cross-site WebSocket hijacking is made here (``forward_websocket``).

Response headers lose the hop-by-hop ones only; the body is relayed raw (``Content-Encoding``
and ``Content-Length`` stay true). ``Set-Cookie`` passes back (Jupyter sets ``_xsrf``), scoped
by the upstream (Jupyter's ``base_url``); the browser keeps it for the control plane's origin,
so an upstream can set or shadow any cookie there. Make the httpx client with ``proxy_client``:
it keeps no cookies and ignores proxies from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import MappingProxyType
from typing import Final
from urllib.parse import quote, urlsplit

import httpx
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Send
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Origin, Subprotocol

log = logging.getLogger(__name__)
RawHeaders = list[tuple[bytes, bytes]]
NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
#: Largest WebSocket message taken from an upstream (uvicorn's own cap on clients is 16 MiB).
WS_MAX_MESSAGE: Final = 64 * 1024 * 1024
_HOP_BY_HOP: Final = frozenset(
    b"connection keep-alive te trailer trailers transfer-encoding upgrade".split()
)
_NEVER_FORWARDED: Final = frozenset(b"authorization cookie host expect forwarded x-real-ip".split())
_DROPPED_PREFIXES: Final = (b"proxy-", b"x-forwarded-")
_WS_DROPPED: Final = frozenset(b"origin content-length".split())
#: Characters left as they are in a path; the rest (spaces, non-ASCII, controls, '#') are
#: percent-encoded, so a path can neither break the request line nor lose a part as a fragment.
_PATH_SAFE: Final = "/?:@!$&'()*+,;=%~"
#: An upstream failing before its answer's headers: (kind, status, detail), the first that fits.
_FAILURES: Final[tuple[tuple[type[httpx.HTTPError], int, str], ...]] = (
    (httpx.ConnectError, 502, "upstream unreachable"),
    (httpx.ConnectTimeout, 502, "upstream unreachable"),
    (httpx.TimeoutException, 504, "upstream did not answer in time"),
    (httpx.HTTPError, 502, "upstream failed before answering"),
)
_CLIENT_GONE: Final = (WebSocketDisconnect, WebSocketDisconnected, OSError)  # sent to, it left
_HTTP_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def proxy_client(max_connections: int = 200) -> httpx.AsyncClient:
    """An httpx client fit for ``forward_http``; share one per app, close it at shutdown.

    It keeps no cookies (a shared jar would hand one user's upstream cookies to the next
    request), ignores ``HTTP_PROXY`` and friends, and never follows redirects.
    """
    return httpx.AsyncClient(
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
    )


def request_target(conn: HTTPConnection) -> str:
    """The request's path and query exactly as the client sent them (still percent-encoded).

    Prefer it, or a prefix-rewritten copy of it, to the decoded ``request.url.path`` as the
    ``path`` to forward: decoding turns ``%2F`` into ``/`` and ``%3F`` into ``?``.
    """
    target = bytes(conn.scope.get("raw_path") or conn.url.path.encode()).decode("latin-1")
    query = bytes(conn.scope.get("query_string", b"")).decode("latin-1")
    return f"{target}?{query}" if query else target


async def forward_http(
    request: Request,
    upstream: str,
    path: str,
    *,
    client: httpx.AsyncClient,
    set_headers: Mapping[str, str] = NO_HEADERS,
    drop_headers: Iterable[str] = (),
    forward_cookies: Iterable[str] = (),
    body: bytes | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float | None = 300.0,
) -> Response:
    """Send ``request`` to ``upstream`` + ``path`` and stream the answer back as it arrives.

    Args:
        request: The incoming request, already authorized.
        upstream: The upstream's base URL (``http://127.0.0.1:41234``), without a path.
        path: Path and query to request upstream, percent-encoded (see ``request_target``).
        client: The shared client from ``proxy_client``.
        set_headers: Headers added to the request, replacing any of the same name.
        drop_headers: Further request headers never to forward.
        forward_cookies: Names of the client's cookies to pass on; all others are dropped.
        body: The body to send instead of streaming the request's own.
        connect_timeout: Seconds to connect, or to wait for a pooled connection.
        read_timeout: Seconds the upstream may stay silent (``None``: no limit).

    Returns:
        A ``StreamingResponse`` relaying the upstream's status, headers and raw body chunk by
        chunk; 502 JSON if the upstream is unreachable or fails, 504 JSON if it stays silent.

    Raises:
        ValueError: ``path`` does not start with ``/`` or ``upstream`` is not an http(s) origin.
    """
    url = _upstream_url(upstream, path, _HTTP_SCHEMES)
    content, framing = _outgoing_body(request, body)
    headers = _request_headers(request, set_headers, [*drop_headers, *framing], forward_cookies)
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
    ext = {"timeout": timeout.as_dict()}
    outgoing = httpx.Request(request.method, url, headers=headers, content=content, extensions=ext)
    answer = await _send(client, outgoing)
    return answer if isinstance(answer, Response) else _Relayed(answer)


async def forward_websocket(
    websocket: WebSocket,
    upstream: str,
    path: str,
    *,
    set_headers: Mapping[str, str] = NO_HEADERS,
    drop_headers: Iterable[str] = (),
    forward_cookies: Iterable[str] = (),
    allowed_origins: Collection[str] = (),
    open_timeout: float = 10.0,
) -> None:
    """Connect ``websocket`` (not yet accepted) to ``upstream`` + ``path`` and relay messages.

    The client is accepted with the subprotocol the upstream chose. Messages (text, binary) flow
    both ways until one side closes; the other is closed with its code (1000 for none, 1001 for
    an abnormal end). An unreachable or refusing upstream gets the client a 502 denial response
    (close 1011 where the server lacks that extension). A browser's foreign ``Origin`` gets 403:
    the upstream is sent its own origin, so the check against cross-site use is made here.

    Args:
        websocket: The incoming WebSocket, already authorized and not yet accepted.
        upstream: The upstream's base URL, ``http(s)://`` or ``ws(s)://``, without a path.
        path: Path and query to request upstream, percent-encoded (see ``request_target``).
        set_headers: Handshake headers added, replacing any of the same name.
        drop_headers: Further handshake headers never to forward.
        forward_cookies: Names of the client's cookies to pass on; all others are dropped.
        allowed_origins: Browser origins allowed besides the request's own host (``Host``).
        open_timeout: Seconds for the upstream's connection and handshake.

    Raises:
        ValueError: ``path`` does not start with ``/`` or ``upstream`` is not an origin.
    """
    url = _upstream_url(upstream, path, _WS_SCHEMES)
    if _foreign_origin(websocket, allowed_origins):
        await _refuse(websocket, 403, "origin not allowed")
        return
    headers = _request_headers(websocket, set_headers, drop_headers, forward_cookies, ws=True)
    try:
        upstream_ws = await _connect(
            url, headers, websocket.scope.get("subprotocols"), open_timeout
        )
    except (OSError, TimeoutError, WebSocketException) as exc:
        log.warning("proxy: WebSocket upstream %s failed: %r", url, exc)
        await _refuse(websocket, 502, f"upstream unreachable or refused: {type(exc).__name__}")
        return
    try:
        await _pump(websocket, upstream_ws)
    finally:
        await upstream_ws.close()


def _foreign_origin(websocket: WebSocket, allowed_origins: Collection[str]) -> bool:
    """Whether a browser on another site opened ``websocket`` (``Origin`` not this host's)."""
    origin = websocket.headers.get("origin")
    own = origin is None or urlsplit(origin).netloc == websocket.headers.get("host")
    return not own and origin not in allowed_origins


def _upstream_url(upstream: str, path: str, schemes: Mapping[str, str]) -> httpx.URL:
    """``upstream`` with its path replaced by ``path``: the host can only be the upstream's."""
    if not path.startswith("/"):
        raise ValueError(f"proxy path must start with '/': {path!r}")
    base = httpx.URL(upstream)
    if base.scheme not in schemes or not base.host or base.path not in ("", "/") or base.query:
        raise ValueError(f"proxy upstream must be a bare origin (scheme://host:port): {upstream!r}")
    target = quote(path, safe=_PATH_SAFE).encode("ascii")
    return base.copy_with(scheme=schemes[base.scheme], raw_path=target)


def _outgoing_body(
    request: Request, body: bytes | None
) -> tuple[bytes | AsyncIterator[bytes] | None, list[str]]:
    """What to send upstream, and the framing headers of the client's to drop with it."""
    if body is not None:
        return body, ["content-length"]  # httpx sets the body's own
    if "content-length" in request.headers or "transfer-encoding" in request.headers:
        return request.stream(), []
    return None, ["content-length"]


def _request_headers(
    conn: HTTPConnection,
    set_headers: Mapping[str, str],
    drop_headers: Iterable[str],
    forward_cookies: Iterable[str],
    *,
    ws: bool = False,
) -> RawHeaders:
    """The client's headers minus everything the module docstring lists, plus ours."""
    dropped = {name.lower().encode("latin-1") for name in [*drop_headers, *set_headers]}
    dropped |= _NEVER_FORWARDED | (_WS_DROPPED if ws else frozenset())
    kept = [
        (name, value)
        for name, value in _without_hop_by_hop(conn.headers.raw)
        if name.lower() not in dropped and not (ws and name.lower().startswith(b"sec-websocket-"))
    ]
    cookies = "; ".join(f"{n}={conn.cookies[n]}" for n in forward_cookies if n in conn.cookies)
    if cookies:
        kept.append((b"cookie", cookies.encode("latin-1")))
    scheme = _HTTP_SCHEMES.get(conn.url.scheme, "http")
    kept += [
        (b"x-forwarded-for", (conn.client.host if conn.client else "").encode("latin-1")),
        (b"x-forwarded-proto", scheme.encode("latin-1")),
        (b"x-forwarded-host", conn.headers.get("host", "").encode("latin-1")),
    ]
    kept += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in set_headers.items()]
    if not ws and all(name.lower() != b"accept-encoding" for name, _ in kept):
        kept.append((b"accept-encoding", b"identity"))  # else httpx adds its own, gzip included
    return kept


def _without_hop_by_hop(raw: Sequence[tuple[bytes, bytes]]) -> RawHeaders:
    """``raw`` minus hop-by-hop headers, those ``Connection`` names, and proxy/forwarding ones."""
    named = {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in raw
        if name.lower() not in _HOP_BY_HOP | named
        and not name.lower().startswith(_DROPPED_PREFIXES)
    ]


class _Relayed(StreamingResponse):
    """The upstream's answer, its body relayed raw as each chunk arrives.

    An upstream breaking off mid-body is logged and the client's response left unfinished:
    uvicorn drops the connection, so the client sees the body cut short, not a clean end. The
    upstream response is closed at once either way (its connection too if the client left).
    """

    def __init__(self, answer: httpx.Response) -> None:
        super().__init__(
            answer.aiter_raw(), answer.status_code, background=BackgroundTask(answer.aclose)
        )
        # Lowercased, as ASGI requires: middleware matching header names (the security
        # headers) would otherwise miss an upstream's "Content-Security-Policy" and add a second.
        self.raw_headers = [(k.lower(), v) for k, v in _without_hop_by_hop(answer.headers.raw)]
        self.answer = answer

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            log.warning("proxy: upstream %s broke off mid-body: %r", self.answer.url, exc)
            return
        finally:
            await self.answer.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send(client: httpx.AsyncClient, outgoing: httpx.Request) -> httpx.Response | Response:
    """The upstream's answer (headers read, body not yet), or the error response to give."""
    try:
        return await client.send(outgoing, stream=True, follow_redirects=False)
    except httpx.HTTPError as exc:
        status, detail = next((s, d) for kind, s, d in _FAILURES if isinstance(exc, kind))
        log.warning("proxy: %s: %s %s: %r", detail, outgoing.method, outgoing.url, exc)
        return JSONResponse({"detail": detail}, status_code=status)
    except ClientDisconnect:
        return Response(status_code=400)  # the client left while sending; nobody reads this


async def _connect(
    url: httpx.URL, headers: RawHeaders, subprotocols: list[str] | None, open_timeout: float
) -> ClientConnection:
    """The upstream WebSocket, sent its own origin; no proxy from the environment."""
    return await connect(
        str(url),
        origin=Origin(str(url.copy_with(scheme=_HTTP_SCHEMES[url.scheme], raw_path=b""))),
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        additional_headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
        user_agent_header=None,
        proxy=None,
        compression=None,
        open_timeout=open_timeout,
        max_size=WS_MAX_MESSAGE,
    )


async def _refuse(websocket: WebSocket, status: int, detail: str) -> None:
    """Turn away a WebSocket not yet accepted: an HTTP error where the server allows one."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await websocket.close(code=1011 if status >= 500 else 1008, reason=detail)


async def _pump(client: WebSocket, upstream: ClientConnection) -> None:
    """Accept the client, relay both ways until one side closes, then close the other."""
    await client.accept(upstream.subprotocol)
    tasks = [
        asyncio.create_task(_client_to_upstream(client, upstream)),
        asyncio.create_task(_upstream_to_client(upstream, client)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("proxy: WebSocket relay failed: %r", outcome)


async def _client_to_upstream(client: WebSocket, upstream: ClientConnection) -> None:
    try:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(_close_code(message.get("code")), message.get("reason") or "")
                return
            text = message.get("text")
            await upstream.send(text if text is not None else message["bytes"])
    except ConnectionClosed:
        return  # the upstream left; the other direction closes the client


async def _upstream_to_client(upstream: ClientConnection, client: WebSocket) -> None:
    try:
        async for data in upstream:
            if isinstance(data, str):
                await client.send_text(data)
            else:
                await client.send_bytes(data)
    except ConnectionClosed:
        pass  # the upstream ended abnormally; its close code says how
    except _CLIENT_GONE:
        return  # the other direction closes the upstream
    if client.client_state is WebSocketState.CONNECTED:  # else the client closed first
        with contextlib.suppress(*_CLIENT_GONE):
            await client.close(_close_code(upstream.close_code), upstream.close_reason or "")


def _close_code(code: int | None) -> int:
    """A code one may send in a close frame: the one received, or its nearest meaning."""
    if code is None or code == 1005:  # no status given: a normal close
        return 1000
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code
    return 1001  # 1006 (no close frame: the peer vanished) and other reserved codes
