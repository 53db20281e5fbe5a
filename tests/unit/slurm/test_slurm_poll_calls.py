"""A poll of any number of live jobs is one ``squeue --jobs``, plus one ``sacct`` for those it
lacks; the squeue answers only for the polled jobs (not ``--json``, which lists every job)."""

from __future__ import annotations

from slurmhelpers import fixture, output

from aifactory.executors.base import ExecState
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.backends import CliBackend
from aifactory.executors.slurm.squeue_states import SqueueStates
from aifactory.executors.slurm.transport import CommandResult

IDS = fixture("factory2_ids")  # finished jobs the recorded sacct output holds
LIVE = fixture("factory2_states_ids")  # jobs the recorded `squeue --Format` output holds


class RecordedSlurm:
    """Answers ``squeue`` and ``sacct`` with outputs recorded from a real cluster."""

    def __init__(self, squeue: str | None) -> None:
        self.squeue = squeue
        self.timeout_s = 30.0
        self.argvs: list[list[str]] = []

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.argvs.append(list(argv))
        if "squeue" in argv and self.squeue is None:
            return CommandResult(0, "", "")  # nothing matches
        stdout, stderr, rc = output(self.squeue if "squeue" in argv else "factory2_sacct")
        return CommandResult(rc, stdout, stderr)

    def as_user(self, login: str) -> RecordedSlurm:
        return self

    def commands(self) -> list[str]:
        return [next(a for a in argv if a in ("squeue", "sacct")) for argv in self.argvs]


def executor(transport: RecordedSlurm) -> SlurmExecutor:
    backend = CliBackend(transport)  # type: ignore[arg-type]
    return SlurmExecutor(backend=backend, job_root="/jobs", require_site_account=False)


def test_jobs_the_controller_holds_take_one_squeue_of_only_those_jobs() -> None:
    transport = RecordedSlurm("factory2_squeue_states")
    live = [LIVE[k] for k in ("ok", "failed", "gpus", "held", "cancelled")]
    statuses = executor(transport).poll(live)
    assert set(statuses) == set(live)
    assert transport.commands() == ["squeue"]
    assert "--json" not in transport.argvs[0]
    assert f"--jobs={','.join(live)}" in transport.argvs[0]


def test_the_poll_reads_states_exit_codes_and_times_like_the_json_did() -> None:
    statuses = executor(RecordedSlurm("factory2_squeue_states")).poll(list(LIVE.values()))
    assert statuses[LIVE["ok"]].state is ExecState.COMPLETED
    assert statuses[LIVE["ok"]].exit_code == 0 and statuses[LIVE["ok"]].ended_at
    failed = statuses[LIVE["failed"]]
    assert (failed.state, failed.exit_code) == (ExecState.FAILED, 3)  # raw status 768
    assert "NonZeroExitCode" in failed.message
    running = statuses[LIVE["gpus"]]
    assert running.state is ExecState.RUNNING and running.started_at and running.ended_at is None
    held = statuses[LIVE["held"]]
    assert held.state is ExecState.QUEUED and held.started_at is None
    assert statuses[LIVE["cancelled"]].state is ExecState.CANCELLED
    assert LIVE["unknown"] not in statuses


def test_the_parser_reads_gpus_names_and_unknown_ids() -> None:
    jobs = {j.job_id: j for j in SqueueStates(list(LIVE.values())).parse(
        *output("factory2_squeue_states"))}  # fmt: skip
    assert jobs[LIVE["gpus"]].gpus == 2 and jobs[LIVE["gpus"]].nodes == "f2n1"
    assert jobs[LIVE["held"]].gpus == 0  # asked for none
    assert jobs[LIVE["failed"]].name == "aif-rec-fail-1"
    assert SqueueStates([LIVE["unknown"]]).parse(*output("factory2_squeue_states_unknown")) == []
    assert SqueueStates(["1"]).parse(*output("factory2_squeue_states")) == []  # not asked for


def test_jobs_the_controller_forgot_are_looked_up_in_one_sacct() -> None:
    transport = RecordedSlurm("factory2_squeue_states_unknown")  # holds none of them
    statuses = executor(transport).poll([*IDS.values(), "404"])
    assert transport.commands() == ["squeue", "sacct"]
    assert transport.argvs[1][-1] == "--jobs=5012,5013,5014,5015,404"
    assert statuses[IDS["ok"]].state is ExecState.COMPLETED
    assert statuses[IDS["failed"]].exit_code == 3
    assert "404" not in statuses


def test_many_names_are_looked_up_in_one_squeue_and_one_sacct() -> None:
    transport = RecordedSlurm(None)
    found = CliBackend(transport).find_many(["aif-a-1", "aif-b-1"])  # type: ignore[arg-type]
    assert found == {}
    assert transport.commands() == ["squeue", "sacct"]
    assert "--name=aif-a-1,aif-b-1" in transport.argvs[0]
    assert "--name=aif-a-1,aif-b-1" in transport.argvs[1]
