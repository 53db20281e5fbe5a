"""Who is calling from where: the client's address, for the audit log and sign-in throttles.

The address is the socket peer. Behind a reverse proxy that is the proxy's address; run uvicorn
with ``--proxy-headers`` and ``--forwarded-allow-ips`` so that the peer is the real client.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from aifactory.services import audit


class RequestOrigin:
    """Set ``audit.origin`` for the request; endpoints' worker threads inherit the context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        token = audit.origin.set(str(client[0]) if client else "")
        try:
            await self.app(scope, receive, send)
        finally:
            audit.origin.reset(token)
