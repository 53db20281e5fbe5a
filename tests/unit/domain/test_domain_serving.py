"""Endpoints' pure decisions: how many replicas, which to start and drain, specs, addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifactory.domain.serving import (
    SCALE_IN_AFTER_S,
    EndpointSpec,
    Load,
    Replica,
    Replicas,
    ReplicaState,
    SessionSpec,
    desired_replicas,
    parse_model,
    plan,
    service_url,
)
from aifactory.errors import Invalid

READY, STARTING = ReplicaState.READY, ReplicaState.STARTING


def test_scales_out_with_the_requests_in_flight_within_the_maximum() -> None:
    r = Replicas(min=1, max=4, target_inflight=8)
    assert desired_replicas(r, None, Load(inflight=0, idle_s=None, live=1)) == 1
    assert desired_replicas(r, None, Load(inflight=9, idle_s=0, live=1)) == 2
    assert desired_replicas(r, None, Load(inflight=100, idle_s=0, live=2)) == 4


def test_never_scales_in_while_requests_keep_coming_and_drops_to_min_when_idle() -> None:
    r = Replicas(min=0, max=4, target_inflight=8)
    assert desired_replicas(r, 60, Load(inflight=1, idle_s=0, live=3)) == 3
    assert desired_replicas(r, 60, Load(inflight=0, idle_s=30, live=3)) == 3
    assert desired_replicas(r, 60, Load(inflight=0, idle_s=61, live=3)) == 0


def test_a_request_for_an_endpoint_at_zero_brings_one_replica_back() -> None:
    r = Replicas(min=0, max=2, target_inflight=8)
    assert desired_replicas(r, 60, Load(inflight=1, idle_s=600, live=0)) == 1


def test_without_scale_to_zero_an_idle_endpoint_drops_back_to_its_minimum() -> None:
    r = Replicas(min=1, max=3, target_inflight=1)
    assert desired_replicas(r, None, Load(inflight=0, idle_s=60, live=3)) == 3
    assert desired_replicas(r, None, Load(inflight=0, idle_s=SCALE_IN_AFTER_S + 1, live=3)) == 1
    assert desired_replicas(r, None, Load(inflight=0, idle_s=None, live=1)) == 1


@given(
    lo=st.integers(0, 5),
    extra=st.integers(0, 5),
    inflight=st.integers(0, 200),
    idle=st.none() | st.floats(0, 10_000),
    live=st.integers(0, 12),
)
def test_the_count_stays_within_min_and_max(
    lo: int, extra: int, inflight: int, idle: float | None, live: int
) -> None:
    r = Replicas(min=lo, max=max(1, lo + extra), target_inflight=4)
    n = desired_replicas(r, 30, Load(inflight=inflight, idle_s=idle, live=live))
    assert r.min <= n <= r.max
    if inflight:
        assert n >= 1


def test_a_rolling_update_starts_one_more_then_drains_old_as_new_get_ready() -> None:
    old = [Replica(1, 1, READY), Replica(2, 1, READY)]
    step = plan(2, 2, old)
    assert step.start == 1 and step.drain == ()
    step = plan(2, 2, [*old, Replica(3, 2, STARTING)])
    assert step.start == 0 and step.drain == ()  # nothing new is ready yet: keep serving
    step = plan(2, 2, [*old, Replica(3, 2, READY)])
    assert step.drain == (1,) and step.start == 0
    step = plan(2, 2, [Replica(2, 1, READY), Replica(3, 2, READY)])
    assert step.start == 1 and step.drain == ()
    step = plan(2, 2, [Replica(2, 1, READY), Replica(3, 2, READY), Replica(4, 2, READY)])
    assert step == type(step)(start=0, drain=(2,))


def test_scaling_in_drains_starting_replicas_first_and_newest_first() -> None:
    live = [Replica(1, 1, READY), Replica(2, 1, READY), Replica(3, 1, STARTING)]
    assert plan(1, 1, live).drain == (3, 2)
    assert plan(1, 0, live).drain == (3, 2, 1)


@given(
    versions=st.lists(st.tuples(st.integers(1, 3), st.booleans()), max_size=8),
    desired=st.integers(0, 6),
)
def test_a_plan_never_drains_below_what_is_ready_of_the_new_version(
    versions: list[tuple[int, bool]], desired: int
) -> None:
    replicas = [Replica(i, v, READY if r else STARTING) for i, (v, r) in enumerate(versions)]
    step = plan(3, desired, replicas)
    kept = [r for r in replicas if r.id not in step.drain]
    new = [r for r in kept if r.version == 3]
    assert len(new) + step.start >= min(desired, len(new) + step.start)
    assert len(new) <= desired or desired == 0
    ready_kept = [r for r in kept if r.state is READY]
    if desired and any(r.state is READY for r in replicas):
        assert ready_kept  # an update or a scale-in never leaves no ready replica
    assert len(kept) + step.start <= max(desired + 1, len(kept))


def test_the_announced_address_is_found_in_a_log() -> None:
    log = "loaded model\nAIF_SERVICE_URL=http://127.0.0.1:41234\nGET /health 200\n"
    assert service_url(log) == "http://127.0.0.1:41234"
    assert service_url("AIF_SERVICE_URL=http://[::1]:8000") == "http://[::1]:8000"
    assert service_url("loading...") is None
    assert service_url("AIF_SERVICE_URL=file:///etc/passwd") is None
    assert service_url("AIF_SERVICE_URL=http://h:1/x?y") is None  # an origin, nothing else


def _spec(**changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "gpt-char",
        "project": "P",
        "replica": {"command": ["serve"], "resources": {"gpus_per_node": 1}},
    }
    return spec | changes


def test_an_endpoint_spec_names_each_broken_rule() -> None:
    with pytest.raises(Invalid) as bad:
        parse_model(
            EndpointSpec,
            _spec(name="Big Name", replicas={"min": 3, "max": 2}, startup_timeout="soon"),
            "endpoint spec",
        )
    fields = {d.field for d in bad.value.details}
    assert {"name", "replicas", "startup_timeout"} <= fields
    with pytest.raises(Invalid, match="come from the endpoint"):
        parse_model(EndpointSpec, _spec(replica={"name": "x", "command": "y"}), "endpoint spec")
    with pytest.raises(Invalid, match="scale_to_zero_after"):
        parse_model(EndpointSpec, _spec(replicas={"min": 0, "max": 1}), "endpoint spec")
    ok = parse_model(EndpointSpec, _spec(scale_to_zero_after="15m"), "endpoint spec")
    assert ok.scale_to_zero_after == 900


def test_a_session_spec_takes_durations_as_people_write_them() -> None:
    spec = parse_model(SessionSpec, {"project": "P", "time": "2h", "idle_timeout": "30m"}, "s")
    assert (spec.time, spec.idle_timeout, spec.kind) == (7200, 1800, "jupyter")
    with pytest.raises(Invalid) as bad:
        parse_model(SessionSpec, {"project": "P", "kind": "vnc", "gpus": -1}, "session spec")
    assert {d.field for d in bad.value.details} == {"kind", "gpus"}
