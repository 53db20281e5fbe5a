"""Capacity planning: a federation from a registry snapshot, the changes to try on it, and the
workload to replay on both (``aif plan``, the portal's /plan page).

Pure: a snapshot is the plain JSON the API's ``GET /planning/snapshot`` returns (or the same
document read from a file), so planning works offline as well as against a live registry::

    {"snapshot": 1, "federation": "...", "factories": [
      {"name": "LUMI AIF", "country": "FI", "status": "operational",
       "capacity_split": {"eu": 0.5, "national": 0.4, "commercial": 0.1},
       "systems": [{"name": "LUMI-AI", "partitions": [
         {"name": "gpu", "gpu_model": "MI300X", "nodes": 128, "gpus_per_node": 8,
          "gpu_memory_gb": 192, "charge_factor": 1.0}]}]}]}

That is also the federation layout ``aif sim run --sites`` reads. Running the scenarios and
measuring them is :mod:`aifactory.sim.plan_run`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from aifactory.errors import Invalid
from aifactory.sim.model import SiteSpec

__all__ = [
    "SNAPSHOT_VERSION",
    "Change",
    "Factory",
    "Partition",
    "add_factory",
    "apply_changes",
    "parse_add_factory",
    "parse_scale",
    "parse_snapshot",
    "remove_factory",
    "scale",
    "sites_of",
]

SNAPSHOT_VERSION = 1
#: Shares of a factory added by ``--add-factory`` (the split most registry factories have).
NEW_FACTORY_SPLIT = (0.5, 0.4, 0.1)
_ADD = re.compile(r"^(?P<name>[^:]+):(?P<gpus>\d+)(:(?P<per_node>\d+))?(:(?P<country>[A-Z]{2}))?$")


@dataclass(frozen=True)
class Partition:
    """One uniform partition, named ``factory/system/partition`` as a simulator site."""

    system: str
    name: str
    nodes: int
    gpus_per_node: int
    gpu_model: str | None = None
    gpu_memory_gb: float | None = None
    charge_factor: float = 1.0

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Factory:
    """A factory as planning sees it: where, whether it runs, who pays, what it has."""

    name: str
    country: str
    operational: bool
    eu: float
    national: float
    commercial: float
    partitions: tuple[Partition, ...]

    @property
    def gpus(self) -> int:
        return sum(p.gpus for p in self.partitions)


@dataclass(frozen=True)
class Change:
    """One change of the "after" federation, as the user wrote it (for the report)."""

    kind: str
    text: str


# --- reading a snapshot ----------------------------------------------------------------------


def _number(entry: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise Invalid.field(
            f"{where}.{key}", "type", f"must be a non-negative number, got {value!r}"
        )
    return float(value)


def _partition(entry: Any, system: str, where: str) -> Partition:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise Invalid.field(where, "required", "each partition needs a mapping with a name")
    nodes, per_node = _number(entry, "nodes", where), _number(entry, "gpus_per_node", where)
    if nodes != int(nodes) or per_node != int(per_node) or per_node < 1:
        raise Invalid.field(
            where, "integer", "nodes and gpus_per_node must be whole, per node >= 1"
        )
    memory = entry.get("gpu_memory_gb")
    return Partition(
        system, str(entry["name"]), int(nodes), int(per_node), entry.get("gpu_model"),
        float(memory) if isinstance(memory, int | float) else None,
        _number(entry, "charge_factor", where, 1.0),
    )  # fmt: skip


def _factory(entry: Any, where: str, assume_operational: bool) -> Factory:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise Invalid.field(where, "required", "each factory needs a mapping with a name")
    split = entry.get("capacity_split") or {}
    if not isinstance(split, dict):
        raise Invalid.field(f"{where}.capacity_split", "type", "must be a mapping")
    parts = [
        _partition(p, str(system.get("name", "")), f"{where}.systems[{s}].partitions[{i}]")
        for s, system in enumerate(entry.get("systems") or [])
        if isinstance(system, dict)
        for i, p in enumerate(system.get("partitions") or [])
    ]
    return Factory(
        name=str(entry["name"]),
        country=str(entry.get("country", "EU")),
        operational=assume_operational or entry.get("status", "operational") == "operational",
        eu=_number(split, "eu", f"{where}.capacity_split", 0.5),
        national=_number(split, "national", f"{where}.capacity_split", 0.5),
        commercial=_number(split, "commercial", f"{where}.capacity_split", 0.0),
        partitions=tuple(parts),
    )


def parse_snapshot(data: Any, *, assume_operational: bool = False) -> list[Factory]:
    """The factories of a planning snapshot (or of the federation YAML's ``factories:``).

    Raises:
        Invalid: Not a snapshot, a malformed entry, duplicate names, or no GPUs at all.
    """
    if not isinstance(data, dict) or not isinstance(data.get("factories"), list):
        raise Invalid.field("registry", "format", "expected a snapshot with a 'factories:' list")
    factories = [
        _factory(f, f"factories[{i}]", assume_operational) for i, f in enumerate(data["factories"])
    ]
    names = [f.name for f in factories]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Invalid.field("registry", "unique", f"duplicate factories: {', '.join(duplicates)}")
    if not any(f.gpus for f in factories if f.operational):
        raise Invalid.field("registry", "capacity", "no operational factory has any GPUs")
    return factories


# --- changes ---------------------------------------------------------------------------------


def parse_scale(text: str) -> tuple[str, float]:
    """``TARGET=FACTOR`` of ``--scale``: a factory, ``factory/system``, ``factory/system/
    partition`` or ``*`` (every factory), and a factor > 0 applied to its nodes."""
    target, sep, factor = text.rpartition("=")
    try:
        value = float(factor)
    except ValueError:
        value = -1.0
    if not sep or not target.strip() or not value > 0 or value > 1000:
        raise Invalid.field(
            "--scale", "format",
            f"{text!r}: give PARTITION=FACTOR, PARTITION a factory, factory/system or "
            "factory/system/partition (or * for all), FACTOR a number in (0, 1000]",
        )  # fmt: skip
    return target.strip(), value


def _matches(factory: Factory, part: Partition, target: str) -> bool:
    if target == "*":
        return True
    path = (factory.name, part.system, part.name)
    wanted = tuple(target.split("/"))
    return path[: len(wanted)] == wanted


def scale(factories: list[Factory], target: str, factor: float) -> list[Factory]:
    """Multiply the nodes of every partition under ``target`` by ``factor`` (at least 1 node).

    Raises:
        Invalid: ``target`` names no partition (the message lists the factories).
    """
    hit = False
    out = []
    for f in factories:
        parts = []
        for p in f.partitions:
            if _matches(f, p, target):
                hit = True
                p = replace(p, nodes=max(1, round(p.nodes * factor)))
            parts.append(p)
        out.append(replace(f, partitions=tuple(parts)))
    if not hit:
        known = ", ".join(f.name for f in factories)
        raise Invalid.field(
            "--scale", "unknown", f"{target!r} names no factory, system or partition; "
            f"factories: {known} (write factory/system/partition for one partition)",
        )  # fmt: skip
    return out


def parse_add_factory(text: str) -> Factory:
    """``NAME:GPUS[:GPUS_PER_NODE[:COUNTRY]]`` of ``--add-factory``: one operational system
    ``NAME`` with one partition ``gpu`` (8 GPUs a node unless given)."""
    found = _ADD.match(text.strip())
    per_node = int(found["per_node"] or 8) if found else 0
    gpus = int(found["gpus"]) if found else 0
    if not found or per_node < 1 or gpus < per_node or gpus % per_node:
        raise Invalid.field(
            "--add-factory", "format",
            f"{text!r}: give NAME:GPUS[:GPUS_PER_NODE[:COUNTRY]], GPUS a positive multiple of "
            "GPUS_PER_NODE (default 8), COUNTRY a two-letter code",
        )  # fmt: skip
    name = found["name"].strip()
    eu, national, commercial = NEW_FACTORY_SPLIT
    part = Partition(name, "gpu", gpus // per_node, per_node)
    return Factory(name, found["country"] or "EU", True, eu, national, commercial, (part,))


def add_factory(factories: list[Factory], new: Factory) -> list[Factory]:
    """The federation with ``new`` in it. Raises ``Invalid`` if the name is taken."""
    if any(f.name == new.name for f in factories):
        raise Invalid.field("--add-factory", "unique", f"a factory named {new.name!r} exists")
    return [*factories, new]


def remove_factory(factories: list[Factory], name: str) -> list[Factory]:
    """The federation without ``name``. Raises ``Invalid`` if there is no such factory."""
    if not any(f.name == name for f in factories):
        known = ", ".join(f.name for f in factories)
        raise Invalid.field("--remove", "unknown", f"no factory {name!r}; factories: {known}")
    return [f for f in factories if f.name != name]


def apply_changes(
    factories: list[Factory],
    *,
    scales: Sequence[str] = (),
    added: Sequence[Factory] = (),
    removed: Sequence[str] = (),
) -> tuple[list[Factory], list[Change]]:
    """The "after" federation (removals, then additions, then scaling) and the change list.

    Raises:
        Invalid: A malformed or unknown ``--scale``, ``--add-factory`` or ``--remove``; or an
            "after" federation with no GPUs.
    """
    out = list(factories)
    changes: list[Change] = []
    for name in removed:
        out = remove_factory(out, name)
        changes.append(Change("remove", f"remove {name}"))
    for new in added:
        out = add_factory(out, new)
        changes.append(Change("add", f"add {new.name} ({new.gpus} GPUs, {new.country})"))
    for text in scales:
        target, factor = parse_scale(text)
        out = scale(out, target, factor)
        changes.append(Change("scale", f"scale {target} x{factor:g}"))
    if not any(f.gpus for f in out if f.operational):
        raise Invalid.field("--remove", "capacity", "the changed federation has no GPUs left")
    return out, changes


# --- to the simulator ------------------------------------------------------------------------


def sites_of(factories: list[Factory]) -> tuple[list[SiteSpec], list[int]]:
    """One simulator site per partition with GPUs, and the index of each site's factory."""
    sites: list[SiteSpec] = []
    owner: list[int] = []
    for i, f in enumerate(factories):
        for p in f.partitions:
            if p.gpus <= 0:
                continue
            name = "/".join(x for x in (f.name, p.system, p.name) if x)
            sites.append(
                SiteSpec(
                    name,
                    p.nodes,
                    p.gpus_per_node,
                    f.country,
                    operational=f.operational,
                    gpu_model=p.gpu_model,
                    gpu_memory_gb=p.gpu_memory_gb,
                    charge_factor=p.charge_factor,
                )
            )
            owner.append(i)
    return sites, owner
