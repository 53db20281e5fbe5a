"""A poll of any number of live jobs is one ``squeue``, plus one ``sacct`` for those it lacks."""

from __future__ import annotations

from slurmhelpers import fixture, output

from aifactory.executors.base import ExecState
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.backends import CliBackend
from aifactory.executors.slurm.transport import CommandResult

IDS = fixture("factory2_ids")  # finished jobs the recorded squeue and sacct outputs both hold


class RecordedSlurm:
    """Answers ``squeue --json`` and ``sacct`` with outputs recorded from a real cluster."""

    def __init__(self, squeue: str) -> None:
        self.squeue = squeue
        self.timeout_s = 30.0
        self.argvs: list[list[str]] = []

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.argvs.append(list(argv))
        name = self.squeue if argv[:2] == ["squeue", "--json"] else "factory2_sacct"
        stdout, stderr, rc = output(name)
        return CommandResult(rc, stdout, stderr)

    def as_user(self, login: str) -> RecordedSlurm:
        return self

    def commands(self) -> list[str]:
        return [next(a for a in argv if a in ("squeue", "sacct")) for argv in self.argvs]


def executor(transport: RecordedSlurm) -> SlurmExecutor:
    backend = CliBackend(transport)  # type: ignore[arg-type]
    return SlurmExecutor(backend=backend, job_root="/jobs", require_site_account=False)


def test_jobs_the_controller_holds_take_one_squeue_however_many() -> None:
    transport = RecordedSlurm("factory2_squeue_json")
    live = [str(i) for i in range(5003, 5018)]
    statuses = executor(transport).poll(live)
    assert set(statuses) == set(live)
    assert transport.commands() == ["squeue"]


def test_jobs_the_controller_forgot_are_looked_up_in_one_sacct() -> None:
    transport = RecordedSlurm("factory1_squeue_json")  # holds none of factory2's jobs
    statuses = executor(transport).poll([*IDS.values(), "404"])
    assert transport.commands() == ["squeue", "sacct"]
    assert transport.argvs[1][-1] == "--jobs=5012,5013,5014,5015,404"
    assert statuses[IDS["ok"]].state is ExecState.COMPLETED
    assert statuses[IDS["failed"]].exit_code == 3
    assert "404" not in statuses
