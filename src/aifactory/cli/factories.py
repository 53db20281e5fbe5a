"""`aif factories set-status | create | add-system | add-partition | add-member` and
`aif federation add-country`: growing the federation and draining a site, through the API.

The usual way a factory enters the federation is a hosting proposal (call ``hc-2025``, `aif
proposals create --hosting FILE`): its award creates everything at once. These commands are for
what comes after (a new partition, a status change) and for federation admins' corrections.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit

FactoryArg = Annotated[str, typer.Argument(help="factory name, e.g. 'LUMI AIF'")]
STATUS_HELP = "selected, deploying, operational, draining (no new work) or retired (final)"


def install(factories_app: typer.Typer, federation_app: typer.Typer) -> None:
    factories_app.command("set-status")(friendly(set_status))
    factories_app.command("create")(friendly(create))
    factories_app.command("add-system")(friendly(add_system))
    factories_app.command("add-partition")(friendly(add_partition))
    factories_app.command("add-member")(friendly(add_member))
    federation_app.command("add-country")(friendly(add_country))


def set_status(
    name: FactoryArg,
    status: Annotated[str, typer.Argument(help=STATUS_HELP)],
    as_json: JsonOpt = False,
) -> None:
    """Move a factory along its life: `draining` stops new work there (operators, admins).

    Legal moves: selected -> deploying -> operational <-> draining; any -> retired (final)."""
    with client() as c:
        factory = c.set_factory_status(name, status)
    emit(factory, as_json, f"{factory.name} is [bold]{factory.status}[/bold]")


def create(
    path: Annotated[Path, typer.Argument(help="YAML or JSON file: one factory, as in the API")],
    as_json: JsonOpt = False,
) -> None:
    """Add a factory with its systems and partitions (federation admins)."""
    with client() as c:
        factory = c.create_factory(_read(path))
    emit(factory, as_json, f"created factory [bold]{factory.name}[/bold] ({factory.status})")


def add_system(
    factory: FactoryArg,
    system: Annotated[str, typer.Argument(help="system name, unique in the federation")],
    kind: Annotated[str, typer.Option(help="new, upgrade or associated")] = "new",
    year: Annotated[int | None, typer.Option(help="deployment year")] = None,
    description: Annotated[str, typer.Option(help="one line about it")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a system to a factory (operators of that factory, admins)."""
    spec: dict[str, Any] = {"name": system, "kind": kind, "description": description}
    if year is not None:
        spec["deployment_year"] = year
    with client() as c:
        view = c.add_system(factory, spec)
    emit(view, as_json, f"added system [bold]{view.name}[/bold] to {factory}")


def add_partition(
    factory: FactoryArg,
    system: Annotated[str, typer.Argument(help="system name")],
    partition: Annotated[str, typer.Argument(help="partition name, e.g. gpu")],
    gpu_model: Annotated[str, typer.Option(help="e.g. H200")],
    nodes: Annotated[int, typer.Option(help="number of nodes")],
    gpus_per_node: Annotated[int, typer.Option(help="GPUs in each node")],
    gpu_memory_gb: Annotated[float, typer.Option(help="memory of one GPU, GB")],
    charge_factor: Annotated[float, typer.Option(help="GPU-hours charged per hour")] = 1.0,
    cpus_per_node: Annotated[int, typer.Option(help="CPU cores per node")] = 0,
    memory_gb: Annotated[float, typer.Option(help="memory per node, GB")] = 0.0,
    max_time_hours: Annotated[float, typer.Option(help="longest job, hours")] = 48.0,
    as_json: JsonOpt = False,
) -> None:
    """Add a partition (GPU model, nodes, GPUs per node...) to a system of a factory."""
    spec = {
        "name": partition,
        "gpu_model": gpu_model,
        "nodes": nodes,
        "gpus_per_node": gpus_per_node,
        "gpu_memory_gb": gpu_memory_gb,
        "charge_factor": charge_factor,
        "cpus_per_node": cpus_per_node,
        "memory_gb": memory_gb,
        "max_time_hours": max_time_hours,
    }
    with client() as c:
        view = c.add_partition(factory, system, spec)
    gpus = view.nodes * view.gpus_per_node
    emit(view, as_json, f"added partition [bold]{system}/{view.name}[/bold]: {gpus:,} GPUs")


def add_member(
    factory: FactoryArg,
    country: Annotated[str, typer.Argument(help="ISO 3166 code of the joining country")],
    as_json: JsonOpt = False,
) -> None:
    """Add a country to a factory's consortium (operators of that factory, admins).

    A hosting proposal of kind join does this with the country's funding; this is the
    correction."""
    with client() as c:
        members = c.get_factory(factory).members
        view = c.update_factory(factory, {"members": sorted({*members, country})})
    emit(view, as_json, f"{view.name} consortium: {', '.join([view.country, *view.members])}")


def add_country(
    code: Annotated[str, typer.Argument(help="ISO 3166 alpha-2 code, e.g. MD")],
    name: Annotated[str, typer.Argument(help="English short name")],
    status: Annotated[str, typer.Argument(help="member_state, participating_state or other")],
    as_json: JsonOpt = False,
) -> None:
    """Add a country to the registry with its status towards EuroHPC (federation admins)."""
    with client() as c:
        view = c.add_country(code, name, status)
    emit(view, as_json, f"added {view.name} ({view.code}, {view.status})")


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml  # only when a YAML file is read

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        from aifactory.errors import Invalid

        raise Invalid.field("file", "mapping", f"{path} holds no mapping of factory fields")
    return data
