"""Security headers on every response of the web app (portal pages, static files and the API).

One pure-ASGI middleware (``SecurityHeaders``), installed by the composition
(``aifactory.server.build_app``). It only adds a header the response does not already carry, so
a route may still choose its own. Responses sent by Starlette's last-resort 500 handler bypass
every middleware; ``aifactory.portal.routes`` adds the same headers to them
(``security_headers``).

- ``Content-Security-Policy``: everything from this origin only, no inline script or style, no
  plugins, no ``<base>``, forms post only here, and no framing (``frame-ancestors``; clickjacking).
  The portal's templates carry no inline script, event handler or style attribute: behaviour is
  in ``static/portal.js``, looks in ``static/portal.css``. The API docs pages FastAPI renders
  (``/docs``, ``/redoc``) load their bundle from a CDN with an inline start-up script; they get a
  policy that allows exactly that, and nothing else of the portal's is loosened.
- ``X-Frame-Options: DENY`` (older browsers), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin`` (project and job addresses never leak to other sites) and a
  ``Permissions-Policy`` turning off the powerful features the portal never uses.
- ``Cache-Control: no-store`` on every response except static files, the health check and the
  API description, so that after sign-out the browser's Back button refetches the page (and
  gets the sign-in redirect) instead of showing the previous user's data from its cache.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_COMMON = [
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
]
PORTAL_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        *_COMMON,
    ]
)
_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        f"script-src 'self' 'unsafe-inline' {_CDN}",
        f"style-src 'self' 'unsafe-inline' {_CDN} https://fonts.googleapis.com",
        "font-src 'self' https://fonts.gstatic.com",
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        *_COMMON,
    ]
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
#: Responses that carry no user data and may be cached (besides ``/static/``).
CACHEABLE_PATHS = frozenset({"/api/v1/health", "/openapi.json"}) | DOCS_PATHS
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
_ALWAYS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
}


def cacheable(path: str) -> bool:
    return path.startswith("/static/") or path in CACHEABLE_PATHS


def security_headers(path: str) -> dict[str, str]:
    """The headers a response to ``path`` (the app's route path) gets."""
    out = dict(_ALWAYS)
    out["Content-Security-Policy"] = DOCS_CSP if path in DOCS_PATHS else PORTAL_CSP
    if not cacheable(path):
        out["Cache-Control"] = "no-store"
    return out


def route_path(scope: Scope) -> str:
    """The path the app routes on: without a proxy's ``root_path``, the same inside a mount."""
    path: str = scope.get("path", "")
    root: str = scope.get("app_root_path", scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


class SecurityHeaders:
    """Pure-ASGI middleware adding ``security_headers`` to every HTTP response it sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(route_path(scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
