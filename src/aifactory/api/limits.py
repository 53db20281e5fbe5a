"""Request limits: body size (a job spec may be at most 1 MiB) and requests in progress."""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aifactory.domain.jobspec import MAX_SPEC_BYTES


class TooLarge(Exception):
    pass


def _body(limit: int) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": (f"request body over {limit} bytes (a job spec may be at most 1 MiB)"),
                "details": [
                    {"field": "body", "rule": "max_size", "message": f"at most {limit} bytes"}
                ],
            }
        }
    ).encode()


class BodySizeLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int = MAX_SPEC_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = _body(self.limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class ConcurrencyLimit:
    """At most ``limit`` requests in progress at once; the rest wait, holding no thread.

    A request takes a database connection in its dependencies and keeps it until its endpoint
    has run in a worker thread. Without a bound, a burst of requests could take every pooled
    connection while their endpoints wait for threads, and every thread wait for a connection:
    a stall until the pool's timeout. Keeping the requests in progress below the pool's size
    (``Settings.api_concurrency``) rules that out; the waiting ones queue in the event loop.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a semaphore belongs to one loop (tests start several)
            self._loop, self._slots = loop, asyncio.Semaphore(self.limit)
        async with self._slots:
            await self.app(scope, receive, send)
