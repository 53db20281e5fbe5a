"""Mount the portal: server-rendered pages at ``/``, their assets at ``/static``, HTML errors.

Errors outside the API are pages, not JSON: an unknown address gets the portal's 404 page, an
unhandled exception on a page its 500 page (no traceback; the server log has it). The API under
``/api/``, its description and its docs keep the JSON error shape of ``aifactory.api.errors``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import WebSocketRequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from aifactory.errors import AIFactoryError, Unauthenticated
from aifactory.portal import (
    account,
    applying,
    auth,
    federated_login,
    federation,
    homes,
    hosting_page,
    invitations_page,
    organisations_page,
    planning,
    reporting,
    security,
    serving,
    sessions_page,
    signup,
    staff,
    web,
    workload,
)
from aifactory.portal.headers import route_path, security_headers
from aifactory.services import sessions
from aifactory.services.sessions import SignedIn

log = logging.getLogger(__name__)
Handler = Callable[[Request, Exception], Response | Awaitable[Response]]
#: What the page says for HTTP-level errors; other statuses show the error's own message.
MESSAGES = {
    404: "There is no page at this address.",
    405: "This address does not take this kind of request.",
    500: "Something went wrong on our side. Nothing was shown about it here; "
    "the server log has the details.",
}
KEPT_HEADERS = ("allow", "retry-after")


def install(app: FastAPI) -> None:
    """Add the portal's routes to an app built by ``create_app`` (same DB, same services).

    Pages stay out of the OpenAPI schema: they are HTML for people, not the API contract.
    Calling it twice on one app changes nothing.
    """
    if getattr(app.state, "portal_installed", False):
        return
    app.state.portal_installed = True
    static = str(files("aifactory.portal") / "static")
    app.mount("/static", StaticFiles(directory=static), name="static")
    for module in (
        auth,
        federated_login,
        homes,
        federation,
        applying,
        hosting_page,
        staff,
        workload,
        serving,
        sessions_page,
        reporting,
        planning,
        security,
        signup,
        account,
        organisations_page,
        invitations_page,
    ):
        app.include_router(module.router, include_in_schema=False)
    for key, handler in list(app.exception_handlers.items()):
        if key is not WebSocketRequestValidationError:
            app.exception_handlers[key] = html_outside_api(handler)


def serves_json(path: str) -> bool:
    """The API, its description and its docs answer errors in JSON; the rest is the portal."""
    if path in ("/api", "/openapi.json", "/docs", "/redoc"):
        return True
    return path.startswith(("/api/", "/docs/"))


def html_outside_api(handler: Handler) -> Handler:
    """Wrap one of the API's error handlers: outside the API, the error becomes a page.

    It also sets the security headers itself: the last-resort (500) handler runs outside every
    middleware, so ``SecurityHeaders`` never sees its response.
    """

    async def handle(request: Request, exc: Exception) -> Response:
        path = route_path(request.scope)
        if isinstance(exc, AIFactoryError) and not serves_json(path):
            response = web.error_page(request, exc)
        else:
            response = await _call(handler, request, exc)
            if not serves_json(path):
                response = await _as_page(request, response)
        for name, value in security_headers(path).items():
            response.headers.setdefault(name, value)
        return response

    return handle


async def _call(handler: Handler, request: Request, exc: Exception) -> Response:
    result = handler(request, exc)
    return await result if inspect.isawaitable(result) else result


async def _as_page(request: Request, response: Response) -> Response:
    """The portal's error page with the status (and Allow/Retry-After) of the JSON answer."""
    status = response.status_code
    message = MESSAGES.get(status) or _json_message(response)
    kept = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
    user = await run_in_threadpool(_user, request) if status in (404, 405) else None
    return web.status_page(request, status, message, user, kept)


def _json_message(response: Response) -> str:
    try:
        body: dict[str, Any] = json.loads(bytes(response.body))
        return str(body["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "The request could not be served."


def _user(request: Request) -> SignedIn | None:
    """Who is signed in, for the page layout of an address no route served (best effort)."""
    known: SignedIn | None = getattr(request.state, "user", None)
    secret = request.cookies.get(web.SESSION_COOKIE)
    if known is not None or not secret:
        return known
    try:
        with request.app.state.db.session() as session:
            return sessions.resolve(session, secret, request.app.state.clock())
    except Unauthenticated:
        return None
    except Exception:  # the page layout must not turn a 404 into a 500
        log.exception("could not read the portal session for an error page")
        return None
