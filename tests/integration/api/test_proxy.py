"""The reverse proxy (``aifactory.api.proxy``) between real sockets: client → front → upstream.

Both apps run under uvicorn in threads of this process, so streaming, disconnects and
WebSockets behave as in production (TestClient buffers and fakes them). Tests wait on progress
(a chunk read, an event set, a message received); timeouts only bound a failure.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from aifactory.api.proxy import forward_http, forward_websocket, proxy_client, request_target

GUARD_S = 30.0  # a failure bound only: every wait below ends on progress
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Served:
    """An ASGI app under uvicorn in a thread, on a loopback socket bound before it starts."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        # No proxy headers: uvicorn would trust a loopback client's X-Forwarded-For otherwise.
        config = uvicorn.Config(
            app, log_level="warning", timeout_graceful_shutdown=5, proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, args=([self.sock],), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started:  # waits on the server, not on a clock
            assert self.thread.is_alive(), "uvicorn did not start"
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(GUARD_S)
        self.sock.close()


class Upstream:
    """What the upstream saw, and the levers a test pulls on it from its own thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.release = asyncio.Event()  # used only on the upstream's loop
        self.second_sent = threading.Event()
        self.stream_closed = threading.Event()
        self.ws_closes: queue.Queue[tuple[str, int]] = queue.Queue()  # (path, code)

    def set_release(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.release.set)


def upstream_app(state: Upstream) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        seen = {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "body": body[:100].decode(errors="replace"),
        }
        response = JSONResponse(seen, status_code=int(request.query_params.get("status", 200)))
        response.headers.append("set-cookie", "_xsrf=abc; Path=/sessions/7/")
        response.headers.append("set-cookie", "other=1; Path=/sessions/7/")
        response.headers["connection"] = "x-upstream-hop"
        response.headers["x-upstream-hop"] = "secret"
        response.headers["keep-alive"] = "timeout=5"
        return response

    async def zipped(request: Request) -> Response:
        headers = {"content-encoding": "gzip", "content-type": "text/plain"}
        return Response(gzip.compress(b"hello " * 1000), headers=headers)

    async def sse(request: Request) -> Response:
        state.loop = asyncio.get_running_loop()

        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await state.release.wait()
            state.second_sent.set()
            yield b"data: second\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def sse_forever(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"data: first\n\n"
                await asyncio.Event().wait()
            finally:
                state.stream_closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def ws_echo(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept("jupyter.v1" if "jupyter.v1" in offered else None)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    state.ws_closes.put((websocket.url.path, message["code"]))
                    return
                if message.get("text") == "headers?":
                    await websocket.send_text(json.dumps(dict(websocket.headers)))
                elif message.get("text", "").startswith("close "):
                    await websocket.close(int(message["text"].split()[1]), "bye")
                    return
                elif message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:
            state.ws_closes.put((websocket.url.path, exc.code))

    return Starlette(
        routes=[
            Route("/echo/{rest:path}", echo, methods=METHODS),
            Route("/zipped", zipped),
            Route("/sse", sse),
            Route("/sse-forever", sse_forever),
            Mount("/hang", app=hang),
            Mount("/broken", app=broken),
            WebSocketRoute("/ws/{rest:path}", ws_echo),
        ]
    )


async def hang(scope: Scope, receive: Receive, send: Send) -> None:
    """Never answers; returns once the caller hangs up."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts a chunked body and returns without ending it: uvicorn drops the connection."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


def front_app(upstream: str, dead: str, client: httpx.AsyncClient) -> Starlette:
    """The control plane's side: routes forwarding as the gateway and sessions will."""
    credentials = {"Authorization": "token upstream-token"}

    def rest(request: Request | WebSocket) -> str:
        prefix = "/" + request.url.path.split("/")[1]
        return request_target(request).removeprefix(prefix)

    async def up(request: Request) -> Response:
        return await forward_http(
            request,
            upstream,
            rest(request),
            client=client,
            set_headers=credentials,
            drop_headers=["x-drop-me"],
            forward_cookies=["_xsrf"],
        )

    async def rewritten(request: Request) -> Response:
        return await forward_http(request, upstream, rest(request), client=client, body=b"new")

    async def impatient(request: Request) -> Response:
        return await forward_http(request, upstream, rest(request), client=client, read_timeout=0.3)

    async def down(request: Request) -> Response:
        return await forward_http(request, dead, rest(request), client=client)

    async def ws_up(websocket: WebSocket) -> None:
        await forward_websocket(
            websocket, upstream, rest(websocket), set_headers=credentials, forward_cookies=["_xsrf"]
        )

    async def ws_down(websocket: WebSocket) -> None:
        await forward_websocket(websocket, dead, rest(websocket))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/up/{path:path}", up, methods=METHODS),
            Route("/rewritten/{path:path}", rewritten, methods=METHODS),
            Route("/impatient/{path:path}", impatient),
            Route("/down/{path:path}", down),
            WebSocketRoute("/ws-up/{path:path}", ws_up),
            WebSocketRoute("/ws-down/{path:path}", ws_down),
        ],
        lifespan=lifespan,
    )


class World:
    def __init__(self, state: Upstream, front: str, client: httpx.AsyncClient) -> None:
        self.state, self.front, self.proxy_client = state, front, client
        self.ws = front.replace("http://", "ws://")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    state = Upstream()
    with socket.socket() as dead_sock:  # bound, never listening: connections are refused
        dead_sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{dead_sock.getsockname()[1]}"
        client = proxy_client()
        with (
            Served(upstream_app(state)) as upstream,
            Served(front_app(upstream.url, dead, client)) as front,
        ):
            yield World(state, front.url, client)


@pytest.fixture
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.front, timeout=GUARD_S) as client:
        yield client


def seen_headers(response: httpx.Response) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def test_get_passes_path_query_and_status(http: httpx.Client) -> None:
    response = http.get("/up/echo/a%20b/%2F?x=1&y=%2F&status=201")
    assert response.status_code == 201
    seen = response.json()
    assert (seen["method"], seen["raw_path"]) == ("GET", "/echo/a%20b/%2F")
    assert seen["query"] == "x=1&y=%2F&status=201"
    assert http.get("/up/nowhere").status_code == 404


def test_credentials_and_hop_by_hop_headers_stay_here(http: httpx.Client) -> None:
    headers = {
        "Authorization": "Bearer platform-token",
        "Cookie": "aif_session=portal-secret; _xsrf=abc",
        "Connection": "keep-alive, x-client-hop",
        "X-Client-Hop": "secret",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "X-Drop-Me": "1",
        "X-Forwarded-For": "6.6.6.6",
        "X-Kept": "yes",
    }
    response = http.get("/up/echo/h", headers=headers)
    seen = seen_headers(response)
    text = json.dumps(response.json())
    assert "platform-token" not in text and "portal-secret" not in text
    assert seen["authorization"] == ["token upstream-token"]
    assert seen["cookie"] == ["_xsrf=abc"]
    for name in ["x-client-hop", "keep-alive", "te", "proxy-authorization", "x-drop-me"]:
        assert name not in seen, name
    assert seen["x-kept"] == ["yes"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [http.base_url.netloc.decode()]
    assert seen["host"] != seen["x-forwarded-host"]  # the upstream's own


def test_response_headers_drop_hop_by_hop_and_keep_set_cookie(http: httpx.Client) -> None:
    response = http.get("/up/echo/c")
    assert response.headers.get_list("set-cookie") == [
        "_xsrf=abc; Path=/sessions/7/",
        "other=1; Path=/sessions/7/",
    ]
    assert "x-upstream-hop" not in response.headers
    assert "keep-alive" not in response.headers


def test_the_shared_client_keeps_no_cookies(world: World, http: httpx.Client) -> None:
    assert http.get("/up/echo/jar").headers.get_list("set-cookie")
    assert len(world.proxy_client.cookies.jar) == 0
    assert "cookie" not in seen_headers(http.get("/up/echo/jar"))


def test_without_accept_encoding_the_upstream_is_asked_for_identity(http: httpx.Client) -> None:
    request = http.build_request("GET", "/up/echo/e")
    del request.headers["accept-encoding"]
    assert seen_headers(http.send(request))["accept-encoding"] == ["identity"]


def test_compressed_bodies_pass_undecoded(http: httpx.Client) -> None:
    response = http.get("/up/zipped", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "hello " * 1000


def test_post_bodies_stream_through(http: httpx.Client) -> None:
    small = http.post("/up/echo/p", content=b"hello")
    assert small.json()["body"] == "hello"
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    response = http.put("/up/echo/big", content=big)
    seen = response.json()
    assert (seen["length"], seen["sha256"]) == (len(big), hashlib.sha256(big).hexdigest())
    assert seen_headers(response)["content-length"] == [str(len(big))]

    def chunks() -> Iterator[bytes]:
        yield from (big[i : i + 65536] for i in range(0, len(big), 65536))

    chunked = http.post("/up/echo/chunked", content=chunks())
    assert chunked.json()["sha256"] == hashlib.sha256(big).hexdigest()
    assert seen_headers(chunked)["transfer-encoding"] == ["chunked"]


def test_a_given_body_replaces_the_requests(http: httpx.Client) -> None:
    seen = http.post("/rewritten/echo/r", content=b"old body").json()
    assert (seen["body"], seen["length"]) == ("new", 3)


def test_a_get_without_body_is_sent_without_one(http: httpx.Client) -> None:
    seen = seen_headers(http.get("/up/echo/g"))
    assert "transfer-encoding" not in seen and "content-length" not in seen


def test_server_sent_events_arrive_while_the_upstream_still_produces(
    world: World, http: httpx.Client
) -> None:
    with http.stream("GET", "/up/sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == "data: first"
        assert not world.state.second_sent.is_set()  # the upstream waits for us
        world.state.set_release()
        assert [line for line in lines if line] == ["data: second"]


def test_a_client_leaving_mid_stream_closes_the_upstream_stream(
    world: World, http: httpx.Client
) -> None:
    with http.stream("GET", "/up/sse-forever") as response:
        assert next(response.iter_lines()) == "data: first"
    assert world.state.stream_closed.wait(GUARD_S)


def test_an_upstream_breaking_off_mid_body_cuts_the_client_off_too(http: httpx.Client) -> None:
    with http.stream("GET", "/up/broken/") as response:
        chunks = response.iter_raw()
        assert next(chunks) == b"partial"
        with pytest.raises(httpx.RemoteProtocolError):
            next(chunks)  # not a clean end: the client can tell the body is incomplete


def test_head_passes_the_headers_without_a_body(http: httpx.Client) -> None:
    response = http.head("/up/echo/h")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def test_an_unreachable_upstream_is_a_502(http: httpx.Client) -> None:
    response = http.get("/down/anything")
    assert response.status_code == 502
    assert "upstream unreachable" in response.json()["detail"]


def test_an_upstream_silent_past_the_read_timeout_is_a_504(http: httpx.Client) -> None:
    response = http.get("/impatient/hang/")
    assert response.status_code == 504
    assert "did not answer" in response.json()["detail"]


def test_paths_must_be_absolute_and_upstreams_bare_origins() -> None:
    request = Request({"type": "http", "method": "GET", "headers": [], "path": "/"})

    async def forward(upstream: str, path: str) -> Response:
        async with proxy_client() as client:
            return await forward_http(request, upstream, path, client=client)

    with pytest.raises(ValueError, match="must start with '/'"):
        asyncio.run(forward("http://127.0.0.1:1", "evil.com/x"))
    with pytest.raises(ValueError, match="bare origin"):
        asyncio.run(forward("http://127.0.0.1:1/base", "/x"))
    with pytest.raises(ValueError, match="bare origin"):
        asyncio.run(forward("file:///etc", "/passwd"))


def test_websocket_messages_flow_both_ways(world: World) -> None:
    headers = {"Authorization": "Bearer platform-token", "Cookie": "aif_session=s; _xsrf=abc"}
    with ws_connect(
        f"{world.ws}/ws-up/ws/k?token=q",
        subprotocols=["bogus", "jupyter.v1"],  # type: ignore[list-item]
        additional_headers=headers,
        origin=Origin(world.front),  # a browser on the control plane's own pages
        open_timeout=GUARD_S,
    ) as ws:
        assert ws.subprotocol == "jupyter.v1"
        ws.send("hello")
        assert ws.recv(GUARD_S) == "hello"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(GUARD_S) == b"\x00\xff" * 1000
        ws.send("headers?")
        seen = json.loads(ws.recv(GUARD_S))
    assert seen["authorization"] == "token upstream-token"
    assert seen["cookie"] == "_xsrf=abc"
    assert seen["origin"] == f"http://{seen['host']}"
    assert seen["x-forwarded-for"] == "127.0.0.1"


def test_an_upstream_close_reaches_the_client_with_its_code(world: World) -> None:
    with ws_connect(f"{world.ws}/ws-up/ws/c", open_timeout=GUARD_S) as ws:
        ws.send("close 4321")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(GUARD_S)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4321, "bye")


def test_a_client_close_reaches_the_upstream_with_its_code(world: World) -> None:
    with ws_connect(f"{world.ws}/ws-up/ws/d", open_timeout=GUARD_S) as ws:
        ws.send("ping")
        assert ws.recv(GUARD_S) == "ping"
        ws.close(4000, "done")
    while (close := world.state.ws_closes.get(timeout=GUARD_S))[0] != "/ws/d":
        pass  # an earlier test's
    assert close == ("/ws/d", 4000)


def test_an_unreachable_websocket_upstream_is_denied_with_502(world: World) -> None:
    with pytest.raises(InvalidStatus) as denied, ws_connect(f"{world.ws}/ws-down/ws/x"):
        pass
    assert denied.value.response.status_code == 502
    assert b"upstream unreachable" in denied.value.response.body


def test_a_websocket_from_a_foreign_origin_is_denied_with_403(world: World) -> None:
    foreign = Origin("http://evil.example")
    with (
        pytest.raises(InvalidStatus) as denied,
        ws_connect(f"{world.ws}/ws-up/ws/o", origin=foreign),
    ):
        pass
    assert denied.value.response.status_code == 403
