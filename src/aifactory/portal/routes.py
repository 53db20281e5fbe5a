"""Mount the portal: server-rendered pages at ``/`` and their assets at ``/static``."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from aifactory.portal import applying, auth, federation, reporting, staff, workload


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
    for module in (auth, federation, applying, staff, workload, reporting):
        app.include_router(module.router, include_in_schema=False)
