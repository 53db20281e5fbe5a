"""``GET /metrics``: the federation's operational metrics in Prometheus's text format.

Not public: a bearer token of a federation admin, or the scrape token ``AIF_METRICS_TOKEN``
(compared as SHA-256 digests in constant time). The figures span every factory, so a factory
operator's token is refused. They come from the database at scrape time
(``services/metrics.py``), so any API worker answers for all of them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from aifactory.api.deps import NowDep, SessionDep, get_principal, get_settings
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.services.metrics import DatabaseCollector, check_reader

router = APIRouter(tags=["meta"], responses=ERROR_RESPONSES)
_bearer = HTTPBearer(auto_error=False)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


async def may_scrape(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The scrape token, or an API token of a federation admin (the figures span every
    factory, so an operator of one factory may not read them)."""
    scrape = get_settings(request).metrics_token
    if scrape is not None and credentials is not None:
        given = _digest(credentials.credentials)
        if hmac.compare_digest(given, _digest(scrape.get_secret_value())):
            return
    check_reader(await get_principal(request, credentials))


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(may_scrape)],
    include_in_schema=False,  # Prometheus's format and path, not part of the REST API
)
def metrics(session: SessionDep, now: NowDep) -> Response:
    """Jobs, submissions, hand-over latency, leases, controllers, sites and the ledger."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(session, now))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
