"""The idempotency lookup: plain-format squeue filtered by name (outputs as Slurm 22.05 prints)."""

from __future__ import annotations

import pytest

from aifactory.errors import BackendUnavailable
from aifactory.executors.slurm.backends import latest_submission
from aifactory.executors.slurm.commands import SqueueByName


def test_argv_filters_by_name_in_plain_format() -> None:
    assert SqueueByName("aif-7-ab12cd34-1").build() == [
        "squeue", "--noheader", "--states=all", "--name=aif-7-ab12cd34-1", "--format=%A|%T|%N|%j",
    ]  # fmt: skip


def test_a_rejected_submission_is_not_taken_for_the_real_one() -> None:
    out = "5001|FAILED||aif-7-x-1\n5002|RUNNING|f2n1|aif-7-x-1\n5003|COMPLETED|n1|other\n"
    jobs = SqueueByName("aif-7-x-1").parse(out, "", 0)
    assert [j.job_id for j in jobs] == ["5001", "5002"]
    found = latest_submission(jobs)
    assert found is not None and found.job_id == "5002"
    only_rejected = SqueueByName("aif-7-x-1").parse("5001|FAILED||aif-7-x-1\n", "", 0)
    assert latest_submission(only_rejected) is None


def test_nothing_found_is_an_empty_answer_and_a_dead_controller_is_unavailable() -> None:
    assert SqueueByName("aif-1-x-1").parse("", "", 0) == []
    err = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    with pytest.raises(BackendUnavailable):
        SqueueByName("aif-1-x-1").parse("", err, 1)
