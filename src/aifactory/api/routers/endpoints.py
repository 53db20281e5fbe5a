"""Inference endpoints: create, list, show, roll to a new spec, stop; their gateway keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from aifactory.api.deps import CurrentPrincipal, SessionDep, site_capacity
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath
from aifactory.services import endpoints
from aifactory.services.endpoints import EndpointKeyView, EndpointView, NewEndpointKey

router = APIRouter(prefix="/endpoints", tags=["endpoints"], responses=ERROR_RESPONSES)
Name = Annotated[str, Field(min_length=1, max_length=64)]
ProjectQuery = Annotated[str | None, Query(max_length=32, description="when a name is in several")]


class EndpointRequestBody(BaseModel):
    """An endpoint spec (see docs/serving.md) and, from the CLI, where it was run from."""

    spec: dict[str, Any]
    submit_dir: str | None = Field(default=None, max_length=1024, pattern=r"^/[^\x00-\x1f\x7f]*$")


class KeyRequest(BaseModel):
    name: str = Field(default="", max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")


@router.post("", status_code=201)
def create_endpoint(
    body: EndpointRequestBody, request: Request, session: SessionDep, who: CurrentPrincipal
) -> EndpointView:
    """Accept an endpoint: 201, its replicas start shortly; 422 for a bad spec, naming the
    field; 409 when no factory the project may use can run a replica."""
    capacity = site_capacity(request, session)
    return endpoints.create(session, who, body.spec, capacity, body.submit_dir)


@router.get("")
def list_endpoints(
    session: SessionDep, who: CurrentPrincipal, all: bool = False
) -> list[EndpointView]:
    return endpoints.list_endpoints(session, who, everything=all)


@router.get("/{name}")
def get_endpoint(
    name: str, session: SessionDep, who: CurrentPrincipal, project: ProjectQuery = None
) -> EndpointView:
    return endpoints.get(session, who, name, project)


@router.put("/{name}")
def update_endpoint(
    name: str,
    body: EndpointRequestBody,
    request: Request,
    session: SessionDep,
    who: CurrentPrincipal,
    project: ProjectQuery = None,
) -> EndpointView:
    """A rolling update to a new spec: new replicas start, old ones go as new ones get ready."""
    capacity = site_capacity(request, session)
    return endpoints.update(session, who, name, body.spec, capacity, body.submit_dir, project)


@router.delete("/{name}")
def stop_endpoint(
    name: str, session: SessionDep, who: CurrentPrincipal, project: ProjectQuery = None
) -> EndpointView:
    """Stop serving; its replicas are drained and cancelled."""
    return endpoints.stop(session, who, name, project)


@router.post("/{name}/keys", status_code=201)
def create_key(
    name: str,
    body: KeyRequest,
    session: SessionDep,
    who: CurrentPrincipal,
    project: ProjectQuery = None,
) -> NewEndpointKey:
    """A new gateway key; the key is in this answer only (only its hash is stored)."""
    return endpoints.create_key(session, who, name, body.name, project)


@router.get("/{name}/keys")
def list_keys(
    name: str, session: SessionDep, who: CurrentPrincipal, project: ProjectQuery = None
) -> list[EndpointKeyView]:
    return endpoints.list_keys(session, who, name, project)


@router.delete("/{name}/keys/{key_id}")
def revoke_key(
    name: str,
    key_id: IdPath,
    session: SessionDep,
    who: CurrentPrincipal,
    project: ProjectQuery = None,
) -> EndpointKeyView:
    return endpoints.revoke_key(session, who, name, key_id, project)
