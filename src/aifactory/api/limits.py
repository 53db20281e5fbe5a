"""Request limits: body size (a job spec may be at most 1 MiB) and requests in progress."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifactory.api.errors import error_json
from aifactory.domain.jobspec import MAX_SPEC_BYTES
from aifactory.errors import FieldError


class BodySizeLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether or not Content-Length is sent.

    A declared length over the limit is refused before the app runs. A body sent without one
    (chunked) is counted as the app reads it: once past the limit, the 413 goes out from here,
    the app is told the client left (``http.disconnect``), and whatever it sends afterwards is
    dropped. (Raising inside ``receive`` instead would reach FastAPI's body reader, which turns
    any error into a 400.)
    """

    #: Streamed to a session's own server (a notebook saved, a file uploaded), which has limits
    #: of its own; nothing of it is parsed or stored here.
    EXEMPT = ("/sessions/",)

    def __init__(self, app: ASGIApp, limit: int = MAX_SPEC_BYTES, uploads: int = 0) -> None:
        self.app, self.limit, self.uploads = app, limit, max(uploads, limit)

    def _limit(self, path: str) -> int:
        """PDF attachments (the API's, and the apply form's) may be larger than a job spec."""
        upload = path.endswith("/attachments") or (
            path.startswith("/calls/") and path.endswith("/apply")
        )
        return self.uploads if upload else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, limit)
            return
        guard = _CountedBody(scope, receive, send, limit)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.refused:
                raise
            # The app failed on the disconnect it was given; the client has its 413 already.


class _CountedBody:
    """One request's body, counted as the app reads it; past the limit the 413 goes out."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self._scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.seen, self.refused, self.started = 0, False, False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.refused = True
                if not self.started:
                    await _refuse(self._scope, self._receive, self._send, self.limit)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return  # the app's answer to the disconnect; the 413 was sent instead
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """413 in the API's one error shape."""
    what = "a job spec may be at most 1 MiB" if limit == MAX_SPEC_BYTES else "attachments"
    msg = f"request body over {limit} bytes ({what})"
    details = [FieldError("body", "max_size", f"at most {limit} bytes")]
    await error_json(413, "too_large", msg, details)(scope, receive, send)


class ConcurrencyLimit:
    """At most ``limit`` requests in progress at once; the rest wait a bounded time, or get 503.

    A request takes a database connection in its dependencies and keeps it until its endpoint
    has run in a worker thread. Without a bound, a burst of requests could take every pooled
    connection while their endpoints wait for threads, and every thread wait for a connection:
    a stall until the pool's timeout. Keeping the requests in progress below the pool's size
    (``Settings.api_concurrency``) rules that out; the waiting ones queue in the event loop,
    holding no thread. A request that finds ``queue_limit`` others waiting, or that waits
    ``queue_timeout_s`` without a slot, is answered 503 ``overloaded`` with ``Retry-After``:
    under overload clients hear so quickly instead of piling up behind the backlog.
    """

    #: Long-lived proxied requests (the model gateway, interactive sessions): they hold no
    #: database connection while they stream, and one slot each would starve the API.
    EXEMPT = ("/v1/", "/sessions/")

    def __init__(
        self, app: ASGIApp, limit: int, queue_timeout_s: float = 5.0, queue_limit: int = 256
    ) -> None:
        self.app, self.limit = app, limit
        self.queue_timeout_s, self.queue_limit = queue_timeout_s, queue_limit
        self.waiting = 0  # requests waiting for a slot now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a semaphore belongs to one loop (tests start several)
            self._loop, self._slots, self.waiting = loop, asyncio.Semaphore(self.limit), 0
        refusal = await self._enter()
        if refusal is not None:
            await error_json(503, "overloaded", refusal, [])(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()

    async def _enter(self) -> str | None:
        """Take a slot; None once taken, else why not (the queue is full, or the wait too long)."""
        busy = f"the server is overloaded: {self.limit} requests in progress"
        if self._slots.locked() and self.waiting >= self.queue_limit:
            return f"{busy} and {self.waiting} waiting; retry shortly"
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await self._slots.acquire()
            return None
        except TimeoutError:
            return f"{busy}, none free within {self.queue_timeout_s:g} s; retry shortly"
        finally:
            self.waiting -= 1
