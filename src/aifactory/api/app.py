"""The FastAPI application: /api/v1 routers, error handlers, OpenAPI at /openapi.json."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

import aifactory
from aifactory.api import errors
from aifactory.api.limits import BodySizeLimit, ConcurrencyLimit
from aifactory.api.origin import RequestOrigin
from aifactory.api.routers import (
    access,
    audit,
    claim_rules,
    endpoints,
    gateway,
    identity,
    interactive,
    jobs,
    metrics,
    planning,
    projects,
    registry,
    self_service,
    site_accounts,
    status,
)
from aifactory.db.engine import Database
from aifactory.db.types import utcnow
from aifactory.settings import Settings


class Health(BaseModel):
    status: str
    version: str


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """Build the API around one database; the caller owns migrations and seeding.

    The web portal is added by the composition (``aifactory.server.build_app``), so the API
    never imports the portal (the portal builds on the API's dependencies).
    """
    app = FastAPI(
        title="aifactory",
        version=aifactory.__version__,
        description="Control plane of a federation of AI Factories.",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.db = db or Database(settings.effective_database_url)
    app.state.clock = utcnow
    errors.install(app)
    # an upload may carry a few PDFs (the apply form) besides its fields
    app.add_middleware(BodySizeLimit, uploads=4 * settings.attachment_max_bytes + 2**20)
    app.add_middleware(
        ConcurrencyLimit,
        limit=settings.api_concurrency,
        queue_timeout_s=settings.api_queue_timeout_s,
        queue_limit=settings.api_queue_limit,
    )
    app.add_middleware(RequestOrigin)

    api = APIRouter(prefix="/api/v1")

    @api.get("/health", tags=["meta"])
    def health() -> Health:
        """Liveness; the only endpoint that needs no token."""
        return Health(status="ok", version=aifactory.__version__)

    api.include_router(jobs.router)  # first: routes are matched in order, submissions most often
    api.include_router(registry.router)
    api.include_router(identity.router)
    api.include_router(site_accounts.router)
    api.include_router(access.router)
    api.include_router(projects.router)
    api.include_router(status.router)
    api.include_router(audit.router)
    api.include_router(claim_rules.router)
    api.include_router(endpoints.router)
    api.include_router(interactive.router)
    api.include_router(self_service.router)
    api.include_router(planning.router)
    app.include_router(api)
    app.include_router(gateway.router)  # /v1: OpenAI's paths, for OpenAI's SDKs
    app.include_router(metrics.router)  # /metrics: Prometheus's path, for its scrapers
    app.include_router(interactive.proxy)  # /sessions/<id>/: each session's JupyterLab
    return app
