"""The OpenAI-compatible gateway: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

A client of any OpenAI SDK points its base URL at ``<server>/v1`` and uses an endpoint's key
(``aif endpoints keys create NAME``). The gateway checks the key and the budget, meters the
request, picks the ready replica with the fewest open requests and relays the answer, streamed
event by event when the client asked for a stream. Errors have OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) so SDKs raise their usual exceptions.
An endpoint scaled to zero gets a replica back on its first request, which waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aifactory.api.deps import get_db
from aifactory.db.types import utcnow
from aifactory.domain.serving import EndpointState
from aifactory.errors import AIFactoryError
from aifactory.services import gateway
from aifactory.services.gateway import Caller, Target

log = logging.getLogger(__name__)
# Not in /openapi.json: its contract is OpenAI's API (their clients and their specification),
# authenticated by endpoint keys, not by the platform's tokens that document describes.
router = APIRouter(prefix="/v1", tags=["gateway"], include_in_schema=False)
WAIT_FOR_REPLICA_S = 600.0  # a cold start: the replica's job is placed, started and loads
WAIT_STEP_S = 0.25
MAX_TRIES = 3  # replicas tried for one request before it fails with 502
RETRY_SAME_S = 0.2  # before trying again the only replica, which just failed
_STATUS = {
    "unauthenticated": (401, "invalid_request_error", "invalid_api_key"),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "quota_exceeded": (402, "insufficient_quota", "insufficient_quota"),
    "invalid": (400, "invalid_request_error", "invalid_request"),
}


def openai_error(
    status: int, message: str, kind: str, code: str, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _from(exc: AIFactoryError) -> JSONResponse:
    status, kind, code = _STATUS.get(exc.code, (400, "invalid_request_error", exc.code))
    return openai_error(status, exc.message, kind, code)


async def _db(request: Request, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One short transaction in a worker thread."""

    def run() -> Any:
        with get_db(request).session() as s:
            return fn(s, *args, **kwargs)

    return await run_in_threadpool(run)


def _client(request: Request) -> httpx.AsyncClient:
    """The app's pooled client to the replicas (one per event loop)."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = getattr(
        request.app.state, "gateway_client", None
    )
    if held is None or held[0] is not loop:
        timeout = httpx.Timeout(connect=5.0, read=600.0, write=60.0, pool=60.0)
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        held = (loop, httpx.AsyncClient(timeout=timeout, limits=limits))
        request.app.state.gateway_client = held
    return held[1]


def _key(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@router.get("/models")
async def models(request: Request) -> Response:
    """The model this key may use (OpenAI's model list)."""
    try:
        caller: Caller = await _db(request, gateway.authenticate, _key(request))
    except AIFactoryError as exc:
        return _from(exc)
    item = {
        "id": caller.endpoint,
        "object": "model",
        "created": int(caller.created_at.timestamp()),
        "owned_by": caller.project,
    }
    return JSONResponse({"object": "list", "data": [item]})


@router.post("/completions")
async def completions(request: Request) -> Response:
    """A text completion (OpenAI ``/v1/completions``), relayed to a replica."""
    return await _relay(request, "/v1/completions")


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    """A chat completion (OpenAI ``/v1/chat/completions``), relayed to a replica."""
    return await _relay(request, "/v1/chat/completions")


async def _relay(request: Request, path: str) -> Response:
    try:
        caller: Caller = await _db(request, gateway.authenticate, _key(request))
    except AIFactoryError as exc:
        return _from(exc)
    try:
        payload = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        return openai_error(
            400, f"the body is not valid JSON: {exc}", "invalid_request_error", "invalid_json"
        )
    if not isinstance(payload, dict):
        return openai_error(
            400, "the body must be a JSON object", "invalid_request_error", "invalid_json"
        )
    stream = payload.get("stream") is True
    wants_usage = stream and bool((payload.get("stream_options") or {}).get("include_usage"))
    if stream:  # usage is how a stream is metered: always ask for it, pass it on if asked
        payload["stream_options"] = dict(payload.get("stream_options") or {}) | {
            "include_usage": True
        }
    try:
        gateway.check_model(caller, payload.get("model"))
        row, first = await _db(
            request, gateway.open_request, caller, path.rsplit("/", 1)[-1], stream, utcnow()
        )
    except AIFactoryError as exc:
        return _from(exc)
    body = json.dumps(payload).encode()
    return await _send(request, caller, (row, first), path, body, stream, wants_usage)


async def _send(
    request: Request,
    caller: Caller,
    opened: tuple[int, Target | None],
    path: str,
    body: bytes,
    stream: bool,
    wants_usage: bool,
) -> Response:
    """Send to a ready replica (another one if it fails before its answer began to stream, or
    the same one again after a moment when it is the only one), waiting for one while the
    endpoint starts."""
    (row, target), avoid = opened, None
    deadline, tries = time.monotonic() + WAIT_FOR_REPLICA_S, 0
    client = _client(request)
    while True:
        if target is None:
            target = await _db(request, gateway.pick, caller.endpoint_id, row, avoid)
        if target is None and avoid is not None:  # none but the one that just failed
            avoid = None
            await asyncio.sleep(RETRY_SAME_S)
            continue
        if target is None:
            refusal = await _no_replica(request, caller, row, deadline)
            if refusal is not None:
                return refusal
            continue
        headers = {"authorization": f"Bearer {target.token}", "content-type": "application/json"}
        started = time.monotonic()
        try:
            upstream = await client.send(
                client.build_request("POST", target.address + path, content=body, headers=headers),
                stream=True,
            )
            if stream and upstream.status_code == 200:
                events = _events(request, upstream, row, target, started, wants_usage)
                return StreamingResponse(events, media_type="text/event-stream")
            try:  # a whole answer is read before any of it is sent: a failure can be retried
                content = await upstream.aread()
            finally:
                await upstream.aclose()
        except httpx.TransportError as exc:
            tries += 1
            log.warning("%s: replica %s failed: %r", caller.endpoint, target.replica_id, exc)
            await _db(request, gateway.suspect, target.replica_id)
            if tries >= MAX_TRIES:
                problem = f"{tries} replicas of {caller.endpoint!r} failed to answer: {exc!r}"
                await _db(request, gateway.close_request, row, utcnow(), status=502, error=problem)
                return openai_error(502, problem, "server_error", "replica_failed")
            avoid, target = target.replica_id, None
            continue
        return await _whole(request, upstream, content, row, target, started)


async def _no_replica(
    request: Request, caller: Caller, row: int, deadline: float
) -> Response | None:
    """None to keep waiting for a replica; else the answer that ends the wait."""
    state, reason = await _db(request, gateway.waiting_reason, caller.endpoint_id)
    problem = None
    if state == EndpointState.EXHAUSTED:
        problem = f"budget exhausted: {reason}"
        await _db(request, gateway.close_request, row, utcnow(), status=402, error=problem)
        return openai_error(402, problem, "insufficient_quota", "insufficient_quota")
    if state == EndpointState.FAILING:
        problem = f"endpoint {caller.endpoint!r} is failing: {reason}"
    elif state == EndpointState.STOPPED:
        problem = f"endpoint {caller.endpoint!r} is stopped"
    elif time.monotonic() > deadline:
        problem = (
            f"no replica of {caller.endpoint!r} got ready in {WAIT_FOR_REPLICA_S:.0f} s ({reason})"
        )
    elif await request.is_disconnected():
        problem = "the client went away while the endpoint started"
    if problem is None:
        await asyncio.sleep(WAIT_STEP_S)
        return None
    await _db(request, gateway.close_request, row, utcnow(), status=503, error=problem)
    response = openai_error(503, problem, "server_error", "endpoint_unavailable")
    response.headers["Retry-After"] = "10"
    return response


async def _whole(
    request: Request,
    upstream: httpx.Response,
    content: bytes,
    row: int,
    target: Target,
    started: float,
) -> Response:
    usage: dict[str, Any] = {}
    if upstream.status_code == 200:
        try:
            usage = json.loads(content).get("usage") or {}
        except (ValueError, AttributeError):
            usage = {}
    error = _error_of(upstream, content)
    await _finish(request, row, upstream.status_code, usage, target, started, error)
    media = upstream.headers.get("content-type", "application/json")
    return Response(content, status_code=upstream.status_code, media_type=media)


async def _events(
    request: Request,
    upstream: httpx.Response,
    row: int,
    target: Target,
    started: float,
    wants_usage: bool,
) -> AsyncIterator[bytes]:
    """The replica's server-sent events, as they come; the usage event is read for metering
    (and dropped unless the client asked for it)."""
    usage: dict[str, Any] = {}
    buffer, status, error = b"", 200, ""
    try:
        async for chunk in upstream.aiter_raw():
            buffer += chunk
            *events, buffer = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
            out = []
            for event in events:
                found = _usage_of(event)
                if found is not None:
                    usage = found
                    if not wants_usage and _only_usage(event):
                        continue
                out.append(event + b"\n\n")
            if out:
                yield b"".join(out)
        if buffer.strip():
            yield buffer
    except httpx.HTTPError as exc:  # the replica went away mid-answer: the stream just ends
        status, error = 502, f"the replica's stream broke: {exc!r}"
    except BaseException:  # the client went away (cancelled): metered all the same
        status, error = 499, "the client closed the stream"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
            await _finish(request, row, status, usage, target, started, error)


def _usage_of(event: bytes) -> dict[str, Any] | None:
    data = event.partition(b"data:")[2].strip()
    if not data or data == b"[DONE]" or b'"usage"' not in data:
        return None
    try:
        usage = json.loads(data).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _only_usage(event: bytes) -> bool:
    try:
        return bool(json.loads(event.partition(b"data:")[2]).get("choices") == [])
    except (ValueError, AttributeError):
        return False


def _error_of(upstream: httpx.Response, content: bytes) -> str:
    return "" if upstream.status_code < 400 else content[:500].decode("utf-8", "replace")


async def _finish(
    request: Request,
    row: int,
    status: int,
    usage: dict[str, Any],
    target: Target,
    started: float,
    error: str,
) -> None:
    elapsed = time.monotonic() - started
    await _db(
        request,
        gateway.close_request,
        row,
        utcnow(),
        status=status,
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
        gpu_seconds=elapsed * target.gpus,
        error=error,
    )
