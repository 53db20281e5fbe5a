"""SlurmExecutor logic on a fake backend: idempotent submit, poll, cancel, usage, config."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from aifactory.errors import Invalid, NotFound
from aifactory.executors.base import EXECUTORS, ExecJob, ExecState, make_executor
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.script import RenderedScript


class FakeBackend:
    def __init__(self) -> None:
        self.jobs_by_id: dict[str, SlurmJob] = {}
        self.submitted: list[RenderedScript] = []
        self.cancelled: list[str] = []
        self.prepared: list[str] = []

    admin = None

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        self.prepared.append(rendered.job_dir)

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        self.submitted.append(rendered)
        job_id = str(100 + len(self.jobs_by_id))
        self.jobs_by_id[job_id] = SlurmJob(job_id=job_id, name=rendered.name)
        return job_id

    def find(self, name: str) -> SlurmJob | None:
        return next((j for j in self.jobs_by_id.values() if j.name == name), None)

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        return {i: self.jobs_by_id[i] for i in job_ids if i in self.jobs_by_id}

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        return self.jobs(list(job_ids))

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        return {n: j for n in names if (j := self.find(n)) is not None}

    def accounting(self, job_id: str) -> SlurmJob | None:
        return replace(self.jobs_by_id[job_id], gpus=8)

    def runs(self, job_id: str) -> list[SlurmJob]:
        return [self.jobs_by_id[job_id]]

    def nodes(self) -> list[SlurmNode]:
        return []


def executor(**kw: Any) -> tuple[SlurmExecutor, FakeBackend]:
    backend = FakeBackend()
    settings: dict[str, Any] = {
        "job_root": "/jobs",
        "partitions": {"h100": "gpu"},
        "default_partition": "h100",
        "require_site_account": False,
    }
    return SlurmExecutor(backend=backend, **{**settings, **kw}), backend


def test_registered_as_slurm_and_built_from_config() -> None:
    assert EXECUTORS["slurm"] is SlurmExecutor
    ex = make_executor("slurm", job_root="/jobs", transport="local", slurm_conf="/etc/slurm.conf")
    assert isinstance(ex, SlurmExecutor) and "gpus" in ex.capabilities


@pytest.mark.parametrize(
    "settings",
    [
        {"job_root": "/j", "transport": "ssh"},
        {"job_root": "/j", "transport": "rest"},
        {"job_root": "/j", "bogus": 1},
        {},
    ],
)
def test_bad_settings_are_invalid(settings: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        SlurmExecutor(backend=FakeBackend(), **settings)


def test_submit_is_idempotent_per_job_and_attempt() -> None:
    ex, backend = executor()
    spec = ExecJob(job_id="j1", argv=["true"])
    first = ex.submit(spec)
    assert ex.submit(spec) == first
    assert len(backend.submitted) == 1
    assert ex.submit(ExecJob(job_id="j1", attempt=2, argv=["true"])) != first


def test_submit_maps_project_to_account_and_partition_through_the_site_map() -> None:
    ex, backend = executor(account_prefix="aif-")
    ex.submit(ExecJob(job_id="j1", argv=["true"]), project="EHPC-AIF-2026PG01-0001")
    r = backend.submitted[0]
    assert (r.account, r.partition) == ("aif-ehpc-aif-2026pg01-0001", "gpu")
    with pytest.raises(Invalid, match="unknown partition"):
        ex.submit(ExecJob(job_id="j2", argv=["true"]), partition="a100")


def test_poll_maps_states_and_leaves_unknown_ids_out() -> None:
    ex, backend = executor()
    backend.jobs_by_id["7"] = SlurmJob("7", state="TIMEOUT", exit_code=0, start=1.0, end=61.0)
    backend.jobs_by_id["8"] = SlurmJob("8", state="PREEMPTED", start=1.0, end=2.0)
    backend.jobs_by_id["9"] = SlurmJob("9", state="RUNNING", start=1.0, end=99.0)
    status = ex.poll(["7", "8", "9", "404"])
    assert set(status) == {"7", "8", "9"}
    assert status["7"].state is ExecState.TIMED_OUT and status["7"].ended_at == 61.0
    assert (status["8"].state, status["8"].message) == (ExecState.PREEMPTED, "preempted")
    assert status["9"].ended_at is None and status["9"].exit_code is None


def test_cancel_unknown_is_not_found_and_terminal_is_a_no_op() -> None:
    ex, backend = executor()
    with pytest.raises(NotFound):
        ex.cancel("404")
    backend.jobs_by_id["1"] = SlurmJob("1", state="COMPLETED")
    backend.jobs_by_id["2"] = SlurmJob("2", state="RUNNING")
    ex.cancel("1")
    ex.cancel("2")
    assert backend.cancelled == ["2"]


def test_usage_from_times_and_gpus_falls_back_to_accounting() -> None:
    ex, backend = executor()
    backend.jobs_by_id["1"] = SlurmJob("1", state="COMPLETED", start=10.0, end=70.0, gpus=None)
    backend.jobs_by_id["2"] = SlurmJob("2", state="PENDING")
    usage = ex.usage("1")
    assert usage is not None and (usage.gpus, usage.elapsed_s, usage.gpu_seconds) == (
        8,
        60.0,
        480.0,
    )
    assert ex.usage("2") is None
    with pytest.raises(NotFound):
        ex.usage("404")
