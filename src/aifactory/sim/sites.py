"""Site lists for federation runs, from either of two YAML layouts.

Simple sites file::

    sites:
      - name: north
        country: FI
        gpus: 256                 # or: nodes: 64, gpus_per_node: 4
        policy: easy              # optional; the run's --policy otherwise
        gpu_model: H100           # optional, also gpu_memory_gb, charge_factor,
        budget_gpu_hours: 50000   # budget_gpu_hours (absent = unlimited), operational

The federation YAML (``src/aifactory/data/federation.yaml``)::

    factories:
      - name: LUMI AIF
        country: FI
        status: operational       # selected | deploying | operational
        systems:
          - name: LUMI-AI
            partitions:
              - {name: gpu, gpu_model: MI300X, nodes: 100, gpus_per_node: 8,
                 gpu_memory_gb: 192, charge_factor: 1.0}

Each partition becomes one site named ``factory/system/partition``; it is operational when its
factory's status is ``operational`` (or always, with ``assume_operational``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aifactory.errors import Invalid
from aifactory.sim.model import SiteSpec
from aifactory.sim.policies import LOCAL_POLICIES
from aifactory.sim.tracefile import trace_error

__all__ = ["load_sites", "parse_sites"]


def _int(entry: dict[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid.field(
            f"{where}.{key}", "type", f"must be a non-negative integer, got {value!r}"
        )
    return value


def _opt_float(entry: dict[str, Any], key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid.field(f"{where}.{key}", "type", f"must be a number, got {value!r}")
    return float(value)


def _simple_site(entry: Any, where: str) -> SiteSpec:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise Invalid.field(where, "required", "each site needs a mapping with a name")
    if "gpus" in entry:
        nodes, per_node = _int(entry, "gpus", where), 1
    else:
        nodes, per_node = _int(entry, "nodes", where), _int(entry, "gpus_per_node", where)
    policy = entry.get("policy")
    if policy is not None and policy not in LOCAL_POLICIES:
        valid = ", ".join(LOCAL_POLICIES)
        raise Invalid.field(
            f"{where}.policy", "unknown", f"unknown policy {policy!r}; valid: {valid}"
        )
    return SiteSpec(
        name=str(entry["name"]),
        nodes=nodes,
        units_per_node=per_node,
        country=str(entry.get("country", "EU")),
        policy=policy,
        operational=bool(entry.get("operational", True)),
        gpu_model=entry.get("gpu_model"),
        gpu_memory_gb=_opt_float(entry, "gpu_memory_gb", where),
        charge_factor=_opt_float(entry, "charge_factor", where) or 1.0,
        budget_gpu_hours=_opt_float(entry, "budget_gpu_hours", where),
    )


def _factory_sites(factory: Any, where: str, assume_operational: bool) -> list[SiteSpec]:
    if not isinstance(factory, dict) or not factory.get("name"):
        raise Invalid.field(where, "required", "each factory needs a mapping with a name")
    operational = assume_operational or factory.get("status") == "operational"
    out: list[SiteSpec] = []
    for s, system in enumerate(factory.get("systems") or []):
        for p, part in enumerate(system.get("partitions") or []):
            at = f"{where}.systems[{s}].partitions[{p}]"
            name = "/".join(
                str(x) for x in (factory["name"], system.get("name"), part.get("name")) if x
            )
            site = _simple_site({**part, "name": name, "country": factory.get("country", "EU")}, at)
            out.append(SiteSpec(**{**_as_dict(site), "operational": operational}))
    return out


def _as_dict(site: SiteSpec) -> dict[str, Any]:
    return {k: getattr(site, k) for k in SiteSpec.__slots__}


def parse_sites(data: Any, *, assume_operational: bool = False) -> list[SiteSpec]:
    """Sites from parsed YAML in either layout.

    Raises:
        Invalid: Neither layout, a malformed entry, duplicate names, or a site with no capacity.
    """
    if isinstance(data, dict) and isinstance(data.get("sites"), list):
        sites = [_simple_site(e, f"sites[{i}]") for i, e in enumerate(data["sites"])]
    elif isinstance(data, dict) and isinstance(data.get("factories"), list):
        sites = [
            site
            for i, f in enumerate(data["factories"])
            for site in _factory_sites(f, f"factories[{i}]", assume_operational)
        ]
    else:
        raise Invalid("expected a top-level 'sites:' or 'factories:' list")
    if not sites:
        raise Invalid("the file lists no sites")
    names = [s.name for s in sites]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Invalid(f"duplicate site names: {', '.join(duplicates)}")
    for site in sites:
        if site.capacity <= 0:
            raise Invalid(f"site {site.name!r} has zero capacity")
    return sites


def load_sites(path: Path | str, *, assume_operational: bool = False) -> list[SiteSpec]:
    """Read a sites or federation YAML file; errors name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise trace_error(path, f"cannot read sites file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise trace_error(path, f"invalid YAML: {getattr(exc, 'problem', exc)}", line) from None
    try:
        return parse_sites(data, assume_operational=assume_operational)
    except Invalid as exc:
        raise trace_error(path, str(exc)) from None
