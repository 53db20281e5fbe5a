"""Validation of the federation YAML: the shipped file and the rules operators' edits follow."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aifactory.settings import FederationSpec, PartitionSpec, load_federation


def _raw() -> dict[str, Any]:
    spec = load_federation()
    return spec.model_dump(mode="json")


def test_shipped_federation_loads_and_quotes_norway() -> None:
    spec = load_federation()
    codes = {c.code for c in spec.countries}
    assert "NO" in codes  # a bare NO in YAML 1.1 is the boolean false
    lumi = next(f for f in spec.factories if f.name == "LUMI AIF")
    assert "NO" in lumi.members


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["factories"][0]["members"].append("XX"), "unknown countries"),
        (lambda d: d["factories"].append(copy.deepcopy(d["factories"][0])), "duplicate factories"),
        (lambda d: d["countries"].append(dict(d["countries"][0])), "duplicate countries"),
        (lambda d: d["factories"][0]["members"].append("ES"), "host country"),
        (lambda d: d["federation"]["funding"].pop(), "add up"),
        (lambda d: d["factories"][0]["capacity_split"].update(eu=0.9), "sum to 1"),
        (
            lambda d: d["factories"][0]["systems"][0]["partitions"][0].update(nodes=-4),
            "greater than or equal to 1",
        ),
    ],
)
def test_invalid_federation_files_are_rejected_with_the_rule(mutate: Any, message: str) -> None:
    data = _raw()
    mutate(data)
    with pytest.raises(ValidationError, match=message):
        FederationSpec.model_validate(data)


def test_yaml_round_trip_keeps_every_fact() -> None:
    data = _raw()
    assert FederationSpec.model_validate(yaml.safe_load(yaml.safe_dump(data))) == load_federation()


@pytest.mark.parametrize(
    "field", ["nodes", "gpus_per_node", "gpu_memory_gb", "cpus_per_node", "memory_gb"]
)
def test_partition_capacities_cannot_be_negative(field: str) -> None:
    good = {"name": "gpu", "gpu_model": "H100", "nodes": 1, "gpus_per_node": 4, "gpu_memory_gb": 80}
    with pytest.raises(ValidationError) as info:
        PartitionSpec.model_validate({**good, field: -1})
    assert info.value.errors()[0]["loc"] == (field,)
