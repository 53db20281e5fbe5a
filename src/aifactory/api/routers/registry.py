"""Factories, systems, partitions, countries and the federation summary."""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.api.deps import CurrentPrincipal, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.schemas import FactoryStatusIn, FactoryUpdate, PartitionUpdate
from aifactory.services import registry
from aifactory.services.permissions import Action, authorize
from aifactory.services.views import (
    CountryView,
    FactoryView,
    FederationSummary,
    PartitionView,
    SystemView,
)
from aifactory.settings import CountrySpec, FactorySpec, PartitionSpec, SystemSpec

router = APIRouter(tags=["registry"], responses=ERROR_RESPONSES)


@router.get("/federation/summary")
def federation_summary(session: SessionDep, who: CurrentPrincipal) -> FederationSummary:
    authorize(who, Action.READ_REGISTRY)
    return registry.federation_summary(session)


@router.get("/countries")
def list_countries(session: SessionDep, who: CurrentPrincipal) -> list[CountryView]:
    authorize(who, Action.READ_REGISTRY)
    return registry.list_countries(session)


@router.post("/countries", status_code=201)
def add_country(body: CountrySpec, session: SessionDep, who: CurrentPrincipal) -> CountryView:
    authorize(who, Action.MANAGE_FEDERATION)
    return registry.add_country(session, body)


@router.get("/factories")
def list_factories(session: SessionDep, who: CurrentPrincipal) -> list[FactoryView]:
    authorize(who, Action.READ_REGISTRY)
    return registry.list_factories(session)


@router.post("/factories", status_code=201)
def create_factory(body: FactorySpec, session: SessionDep, who: CurrentPrincipal) -> FactoryView:
    authorize(who, Action.MANAGE_FEDERATION)
    return registry.create_factory(session, body)


@router.get("/factories/{name}")
def get_factory(name: str, session: SessionDep, who: CurrentPrincipal) -> FactoryView:
    authorize(who, Action.READ_REGISTRY)
    return registry.get_factory(session, name)


@router.patch("/factories/{name}")
def update_factory(
    name: str, body: FactoryUpdate, session: SessionDep, who: CurrentPrincipal
) -> FactoryView:
    authorize(who, Action.EDIT_FACTORY, registry.factory_id(session, name))
    changes = {k: getattr(body, k) for k in body.model_fields_set if getattr(body, k) is not None}
    return registry.update_factory(session, name, changes)


@router.post("/factories/{name}/status")
def set_factory_status(
    name: str, body: FactoryStatusIn, session: SessionDep, who: CurrentPrincipal
) -> FactoryView:
    """Move a factory along its life (e.g. ``draining`` to empty a site); operators and admins."""
    authorize(who, Action.EDIT_FACTORY, registry.factory_id(session, name))
    return registry.set_factory_status(session, name, body.status, who.username)


@router.post("/factories/{name}/systems", status_code=201)
def add_system(
    name: str, body: SystemSpec, session: SessionDep, who: CurrentPrincipal
) -> SystemView:
    authorize(who, Action.EDIT_FACTORY, registry.factory_id(session, name))
    return registry.add_system(session, name, body)


@router.post("/factories/{name}/systems/{system}/partitions", status_code=201)
def add_partition(
    name: str, system: str, body: PartitionSpec, session: SessionDep, who: CurrentPrincipal
) -> PartitionView:
    authorize(who, Action.EDIT_FACTORY, registry.factory_id(session, name))
    return registry.add_partition(session, name, system, body)


@router.patch("/factories/{name}/systems/{system}/partitions/{partition}")
def update_partition(
    name: str,
    system: str,
    partition: str,
    body: PartitionUpdate,
    session: SessionDep,
    who: CurrentPrincipal,
) -> PartitionView:
    authorize(who, Action.EDIT_FACTORY, registry.factory_id(session, name))
    changes = body.model_dump(exclude_none=True)
    return registry.update_partition(session, name, system, partition, changes)
