"""Start estimates from a site's queue state, and the broker's ranking with preferences."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aifactory.broker.placement import (
    MIN_WAIT_S,
    PREFER_TOLERANCE_S,
    JobRequest,
    SiteView,
    estimate_start,
    get_placement_policy,
    preference_rank,
    start_basis,
)
from aifactory.domain.jobspec import parse_spec
from aifactory.domain.words import start_words
from aifactory.errors import Invalid
from aifactory.services.candidates import job_request

NOW = 1_000_000.0
HOUR = 3600.0


def site(name: str = "F/S/p", **kw: object) -> SiteView:
    base = SiteView(
        name=name, country="FI", operational=True, gpu_model=None, gpu_memory_gb=None,
        gpus_per_node=8, nodes=1, free_gpus=8, total_gpus=8, queued_gpu_seconds=0.0,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


JOB = JobRequest(nodes=1, gpus_per_node=4, time_limit_s=HOUR)


def test_a_site_with_the_gpus_free_and_nothing_ahead_starts_now() -> None:
    view = site(free_gpus=4, running_ends=((NOW + HOUR, 4),))
    assert estimate_start(JOB, view, NOW) == NOW
    assert start_basis(JOB, view) == "free"


def test_a_full_site_starts_when_enough_running_jobs_have_ended() -> None:
    # 8 GPUs held: 2 until +1 h, 2 until +2 h, 4 until +3 h; 4 are needed: at +2 h.
    ends = ((NOW + HOUR, 2), (NOW + 3 * HOUR, 4), (NOW + 2 * HOUR, 2))
    view = site(free_gpus=0, running_ends=ends)
    assert estimate_start(JOB, view, NOW) == NOW + 2 * HOUR
    assert start_basis(JOB, view) == "queue"


def test_work_queued_ahead_adds_its_gpu_seconds_spread_over_the_partition() -> None:
    view = site(free_gpus=0, running_ends=((NOW + HOUR, 8),), queued_gpu_seconds=8 * HOUR)
    assert estimate_start(JOB, view, NOW) == NOW + 2 * HOUR
    # Free GPUs, but others wait ahead for them: not now either.
    ahead = site(free_gpus=8, queued_gpu_seconds=4 * HOUR)
    assert estimate_start(JOB, ahead, NOW) == NOW + HOUR / 2
    assert start_basis(JOB, ahead) == "queue"


@pytest.mark.parametrize(
    "ends",
    [
        (),  # busy by jobs the estimate cannot see (another scheduler's users, say)
        ((NOW - 600, 8),),  # every holder is past its time limit and not reaped yet
    ],
)
def test_a_full_site_is_never_now(ends: tuple[tuple[float, int], ...]) -> None:
    view = site(free_gpus=0, running_ends=ends)
    assert estimate_start(JOB, view, NOW) >= NOW + MIN_WAIT_S


def test_the_sites_own_scheduler_estimate_wins() -> None:
    view = site(free_gpus=0, running_ends=((NOW + HOUR, 8),), est_start_s=NOW + 5 * HOUR)
    assert estimate_start(JOB, view, NOW) == NOW + 5 * HOUR
    assert start_basis(JOB, view) == "slurm"


def test_the_broker_ranks_by_expected_start_then_charge_factor() -> None:
    full = site("A/s/p", free_gpus=0, running_ends=((NOW + HOUR, 8),), charge_factor=0.5)
    free = site("B/s/p", charge_factor=2.0)
    cheap = site("C/s/p", charge_factor=1.0)
    decision = get_placement_policy("broker").place(JOB, (full, free, cheap), NOW)
    assert decision.ranked == ("C/s/p", "B/s/p", "A/s/p")
    assert decision.est_start_s["A/s/p"] == NOW + HOUR


def test_a_preferred_site_wins_ties_and_near_starts_but_not_long_waits() -> None:
    other = site("A/s/p")
    near = site("B/s/p", free_gpus=0, running_ends=((NOW + PREFER_TOLERANCE_S / 2, 8),))
    far = replace(near, running_ends=((NOW + 2 * PREFER_TOLERANCE_S, 8),))
    policy = get_placement_policy("broker")
    prefer = replace(JOB, prefer=("B",))
    assert policy.place(prefer, (other, site("B/s/p")), NOW).chosen == "B/s/p"  # a tie
    assert policy.place(prefer, (other, near), NOW).chosen == "B/s/p"
    assert policy.place(prefer, (other, far), NOW).chosen == "A/s/p"
    assert policy.place(JOB, (other, near), NOW).chosen == "A/s/p"  # no preference: soonest


def test_preferences_name_a_factory_a_system_or_a_partition_in_order() -> None:
    job = replace(JOB, prefer=("LUMI AIF/LUMI-AI/gpu", "IT4LIA"))
    assert preference_rank(job, "LUMI AIF/LUMI-AI/gpu") == 0
    assert preference_rank(job, "IT4LIA/Leonardo/booster") == 1
    assert preference_rank(job, "IT4LIAX/s/p") is None
    assert preference_rank(job, "LUMI AIF/LUMI-AI/gpu-small") is None


@pytest.mark.parametrize(
    ("seconds", "basis", "words"),
    [
        (0.0, "free", "starts now"),
        (7800.0, "slurm", "estimated start in 2 h 10 min (Slurm)"),
        (600.0, "queue", "estimated start in 10 min (from the queue)"),
        (0.0, "queue", "estimated start in 1 s (from the queue)"),  # never "now" when waiting
        (0.0, "placed", "placed"),
    ],
)
def test_start_words_say_the_estimate_and_where_it_comes_from(
    seconds: float, basis: str, words: str
) -> None:
    assert start_words(seconds, basis) == words


@pytest.mark.parametrize(
    ("prefer", "ok"),
    [
        (["LUMI AIF"], True),
        (["MIMER/MIMER", "LUMI AIF/LUMI-AI/gpu"], True),
        (["LUMI AIF/LUMI-AI/gpu/extra"], False),  # more than factory/system/partition
        (["/gpu"], False),
        (["x"] * 17, False),  # at most 16
    ],
)
def test_a_job_spec_names_its_preferred_sites_as_placement_does(
    prefer: list[str], ok: bool
) -> None:
    data = {"name": "j", "project": "P", "command": "true", "prefer_sites": prefer}
    if ok:
        spec = parse_spec(data)
        assert job_request(spec).prefer == tuple(prefer)
        return
    with pytest.raises(Invalid) as refused:
        parse_spec(data)
    assert any(d.field.startswith("prefer_sites") for d in refused.value.details)
