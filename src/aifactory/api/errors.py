"""The one JSON error shape, and the only place that maps error codes to HTTP status codes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from aifactory.errors import AIFactoryError, FieldError

log = logging.getLogger(__name__)
#: Seconds a client is asked to wait before retrying a 503 (every 503 carries Retry-After).
RETRY_AFTER_S = 1

STATUS: dict[str, int] = {
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "unauthenticated": 401,
    "invalid": 422,
    "quota_exceeded": 409,
    "too_many_attempts": 429,
    "backend_unavailable": 503,
}
HTTP_CODES: dict[int, str] = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "invalid",
    422: "invalid",
    503: "backend_unavailable",
}


class ErrorDetail(BaseModel):
    field: str
    rule: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


def error_json(
    status: int,
    code: str,
    message: str,
    details: list[FieldError],
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": [d.as_dict() for d in details]}}
    out = dict(headers or {})
    if status == 401:
        out["WWW-Authenticate"] = "Bearer"
    if status == 503:
        out.setdefault("Retry-After", str(RETRY_AFTER_S))
    return JSONResponse(body, status_code=status, headers=out)


def pydantic_details(errors: Any) -> list[FieldError]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
        out.append(FieldError(".".join(loc) or "body", str(e.get("type", "invalid")), e["msg"]))
    return out


def install(app: FastAPI) -> None:
    """Register the handlers: domain errors, validation errors, HTTP errors and the last resort."""

    @app.exception_handler(AIFactoryError)
    async def _domain(_: Request, exc: AIFactoryError) -> JSONResponse:
        wait = exc.extra.get("retry_after_s")
        headers = {"Retry-After": str(wait)} if wait is not None else None
        return error_json(STATUS.get(exc.code, 400), exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = pydantic_details(exc.errors())
        return error_json(
            422,
            "invalid",
            "invalid input: " + "; ".join(f"{d.field}: {d.message}" for d in details),
            details,
        )

    @app.exception_handler(ValidationError)
    async def _model(_: Request, exc: ValidationError) -> JSONResponse:
        details = pydantic_details(exc.errors())
        return error_json(422, "invalid", "invalid input", details)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # Services check uniqueness first; this catches the race between check and insert.
        log.warning("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_json(409, "conflict", "conflicts with existing data; nothing was stored", [])

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        # A controller changed the object between this request's read and its write.
        log.info("concurrent change on %s %s: %s", request.method, request.url.path, exc)
        msg = "it changed while this request ran; nothing was stored, read it again and retry"
        return error_json(409, "conflict", msg, [])

    @app.exception_handler(DataError)
    @app.exception_handler(OverflowError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # A value the database cannot hold or compare (a NUL character on PostgreSQL, an id
        # beyond its integer range): bad input, refused before anything was stored.
        log.info("unstorable value on %s %s: %s", request.method, request.url.path, exc)
        msg = (
            "invalid input: a value cannot be stored or looked up (text with a NUL character, "
            "or a number beyond the database's range)"
        )
        return error_json(422, "invalid", msg, [FieldError("request", "storable", msg)])

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # The database is busy (SQLite's write lock held too long) or unreachable: nothing was
        # stored; the client may retry. Never a 500 for a state of the backend.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
        msg = "the database is busy or unreachable; nothing was stored, retry shortly"
        return error_json(503, "backend_unavailable", msg, [])

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every database connection stayed in use for the pool's timeout: overloaded.
        log.warning("no database connection free on %s %s", request.method, request.url.path)
        msg = "the server is overloaded (no database connection free); nothing was stored, retry"
        return error_json(503, "overloaded", msg, [])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_json(exc.status_code, code, str(exc.detail), [], headers)

    @app.exception_handler(Exception)
    async def _last_resort(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_json(500, "internal", "internal error; the server log has the details", [])


def allowed_methods(request: Request) -> list[str]:
    """Every method any route serves on this path (Starlette only names the matched route's).

    Each method is tried against the routes: included routers hide their routes' methods.
    """
    routes = request.app.router.routes
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code}
    for status, code in {
        400: "malformed request body",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        413: "too_large",
        422: "invalid",
        429: "too_many_attempts (failed sign-ins; retry after Retry-After seconds)",
        503: "overloaded or backend_unavailable (retry after Retry-After seconds)",
    }.items()
}
