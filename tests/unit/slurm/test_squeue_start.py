"""``squeue --start``: parsed from a real recorded output; estimates per platform partition."""

from __future__ import annotations

import pytest
from slurmhelpers import fixture, output

from aifactory.errors import BackendUnavailable
from aifactory.executors.slurm.squeue_start import SqueueStart, by_partition


def test_squeue_start_reads_the_expected_starts_of_pending_jobs() -> None:
    ids = fixture("factory1_start_ids")
    recorded = fixture("factory1_squeue_start")
    assert SqueueStart().build() == recorded["argv"]
    jobs = {j.job_id: j for j in SqueueStart().parse(*output("factory1_squeue_start"))}
    behind, later = jobs[ids["behind"]], jobs[ids["later"]]
    assert behind.start is not None and behind.start > 1.7e9  # epoch seconds
    assert (behind.partition, behind.reason, behind.nodes) == ("debug", "Resources", 1)
    assert behind.name == "aif-fixture-behind|1"  # the name is last: a "|" in it stays
    assert later.start is None  # held: Slurm gives no estimate (N/A)
    assert ids["hold"] not in jobs  # running jobs are not listed


def test_squeue_start_with_the_controller_down_is_backend_unavailable() -> None:
    # Any Slurm client says the same when slurmctld is down (recorded from scancel).
    with pytest.raises(BackendUnavailable):
        SqueueStart().parse(*output("factory1_scancel_down"))


def test_estimates_per_platform_partition_take_the_latest_pending_start() -> None:
    jobs = SqueueStart().parse(*output("factory1_squeue_start"))
    found = by_partition(jobs, {"gpu": "debug", "other": "nosuch", "default": None})
    gpu = found["gpu"]
    assert gpu.pending == 2
    assert gpu.latest_start == max(j.start for j in jobs if j.start is not None)
    assert set(gpu.jobs) == {j.job_id for j in jobs if j.start is not None}
    assert found["other"].pending == 0 and found["other"].latest_start is None
    assert found["default"].pending == 2
