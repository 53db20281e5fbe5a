"""Every way a submission can fail, classified; unclear ones settled by looking, never guessed.

A fake backend stands for Slurm: its ``submit`` can be told to fail in each of the ways a real
sbatch fails (the words are Slurm's and OpenSSH's own), and to have submitted the job anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from aifactory.errors import AIFactoryError, BackendUnavailable, Invalid
from aifactory.executors.base import ExecJob, ExecState
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.backends import CliBackend
from aifactory.executors.slurm.commands import Sacct, Sbatch
from aifactory.executors.slurm.failures import (
    Submission,
    classify_submit,
    command_error,
    is_deferred,
    submit_error,
)
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.script import RenderedScript, ScriptOptions, render_script
from aifactory.executors.slurm.transport import CommandResult

SSH_CUT = "Connection to 127.0.0.1 closed by remote host."


@pytest.mark.parametrize(
    ("rc", "stderr", "kind"),
    [
        # refused for good: the job fails and frees its budget
        (1, "sbatch: error: Batch job submission failed: Requested node configuration is "
            "not available", Submission.REFUSED),
        (1, "sbatch: error: Batch job submission failed: Invalid partition name specified",
         Submission.REFUSED),
        (1, "sbatch: error: Batch job submission failed: Invalid account or "
            "account/partition combination specified", Submission.REFUSED),
        (1, "sbatch: error: Batch job submission failed: Requested time limit is invalid "
            "(missing or exceeds some limit)", Submission.REFUSED),
        # Slurm said "not now" and kept nothing
        (1, "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n"
            "sbatch: error: Batch job submission failed: Resource temporarily unavailable",
         Submission.TEMPORARY),
        (1, "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
            "(job submit limit, user's size and/or time limits)", Submission.TEMPORARY),
        # nothing reached slurmctld
        (1, "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)", Submission.UNREACHABLE),
        (255, "ssh: connect to host login1 port 22: Connection refused", Submission.UNREACHABLE),
        (255, "aifsvc@login1: Permission denied (publickey).", Submission.UNREACHABLE),
        (255, "Host key verification failed.", Submission.UNREACHABLE),
        # it may have been submitted
        (255, SSH_CUT, Submission.AMBIGUOUS),
        (255, "client_loop: send disconnect: Broken pipe", Submission.AMBIGUOUS),
        (255, "", Submission.AMBIGUOUS),  # LogLevel=ERROR: ssh says nothing at all
        (1, "sbatch: error: Batch job submission failed: Socket timed out on send/recv "
            "operation", Submission.AMBIGUOUS),
        (1, "sbatch: error: Batch job submission failed: Zero Bytes were transmitted or "
            "received", Submission.AMBIGUOUS),
        (137, "", Submission.AMBIGUOUS),  # killed by `timeout --signal=KILL`
        (-9, "", Submission.AMBIGUOUS),  # killed locally
    ],
)  # fmt: skip
def test_each_sbatch_failure_has_one_meaning(rc: int, stderr: str, kind: Submission) -> None:
    assert classify_submit(rc, "", stderr) is kind
    error = submit_error("sbatch", rc, "", stderr)
    if kind is Submission.REFUSED:
        assert isinstance(error, Invalid)
    else:
        assert isinstance(error, BackendUnavailable)
        assert error.extra["submission"] == kind.value


@pytest.mark.parametrize("rc", [255, 137, -9])
def test_a_read_over_a_broken_connection_is_unavailable_not_a_rejection(rc: int) -> None:
    assert isinstance(command_error("squeue", rc, "", SSH_CUT), BackendUnavailable)


def test_sbatch_runs_under_a_deadline_and_an_unreadable_yes_is_ambiguous() -> None:
    assert Sbatch().build() == ["sbatch", "--parsable"]
    assert Sbatch(deadline_s=58.5).build() == ["timeout", "--signal=KILL", "58", "sbatch",
                                               "--parsable"]  # fmt: skip
    with pytest.raises(BackendUnavailable) as err:
        Sbatch().parse("sbatch: warning: something\n", "", 0)
    assert err.value.extra["submission"] == "ambiguous"
    assert Sbatch().parse("42;factory2\n", "", 0) == "42"


# --- the protocol, on a fake Slurm -------------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FlakySlurm:
    """A Slurm whose sbatch fails as scripted: each entry of ``failures`` is one call's fate."""

    def __init__(self, *failures: tuple[AIFactoryError | Exception, bool]) -> None:
        self.failures = list(failures)  # (error to raise, whether the job was submitted anyway)
        self.by_id: dict[str, SlurmJob] = {}
        self.sbatch_calls = 0
        self.finds = 0
        self.find_error: Exception | None = None
        self.admin = None

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        pass

    def _create(self, name: str) -> str:
        job_id = str(5000 + len(self.by_id))
        self.by_id[job_id] = SlurmJob(job_id, name=name, nodes="f2n1")
        return job_id

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        self.sbatch_calls += 1
        if self.failures:
            error, submitted = self.failures.pop(0)
            if submitted:
                self._create(rendered.name)
            raise error
        return self._create(rendered.name)

    def find(self, name: str) -> SlurmJob | None:
        self.finds += 1
        if self.find_error is not None:
            raise self.find_error
        return next((j for j in self.by_id.values() if j.name == name), None)

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        return {i: self.by_id[i] for i in job_ids if i in self.by_id}

    def cancel(self, job_id: str) -> None:
        pass

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        return self.jobs(list(job_ids))

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        return {n: j for n in names if (j := self.find(n)) is not None}

    def accounting(self, job_id: str) -> SlurmJob | None:
        return self.by_id.get(job_id)

    def runs(self, job_id: str) -> list[SlurmJob]:
        return []

    def nodes(self) -> list[SlurmNode]:
        return []


def _executor(slurm: FlakySlurm, clock: Clock) -> SlurmExecutor:
    ex = SlurmExecutor(backend=slurm, job_root="/jobs", command_timeout_s=30)
    ex.submitter.clock, ex.submitter.sleep = clock, clock.sleep
    return ex


SPEC = ExecJob(job_id="7-abc", argv=["true"], run_as="anna")


def _cut() -> BackendUnavailable:
    error = submit_error("sbatch", 255, "", SSH_CUT)
    assert isinstance(error, BackendUnavailable)
    return error


def test_an_sbatch_whose_answer_was_lost_is_found_by_name_and_not_repeated() -> None:
    slurm, clock = FlakySlurm((_cut(), True)), Clock()
    job_id = _executor(slurm, clock).submit(SPEC)
    assert slurm.by_id[job_id].name == "aif-7-abc-1"
    assert (slurm.sbatch_calls, len(slurm.by_id)) == (1, 1)


@pytest.mark.parametrize(
    "error",
    [
        BackendUnavailable("sbatch did not answer within 30s"),  # the transport's own time-out
        RuntimeError("connection dropped"),  # anything unforeseen is just as unclear
    ],
)
def test_an_unclear_sbatch_that_did_not_submit_waits_until_it_cannot_arrive(
    error: Exception,
) -> None:
    slurm, clock = FlakySlurm((error, False)), Clock()
    ex = _executor(slurm, clock)
    with pytest.raises(BackendUnavailable) as first:
        ex.submit(SPEC)
    assert is_deferred(first.value) and first.value.extra["retry_after_s"] == 35
    clock.now += 20  # still inside the first sbatch's deadline (30 s) + margin (5 s)
    with pytest.raises(BackendUnavailable) as second:
        ex.submit(SPEC)
    assert is_deferred(second.value) and slurm.sbatch_calls == 1  # looked, did not resubmit
    clock.now += 16
    job_id = ex.submit(SPEC)  # now "not there" is certain: submitted once more
    assert slurm.sbatch_calls == 2 and list(slurm.by_id) == [job_id]


def test_an_unclear_sbatch_that_arrives_late_is_found_and_not_repeated() -> None:
    slurm, clock = FlakySlurm((_cut(), False)), Clock()
    ex = _executor(slurm, clock)
    with pytest.raises(BackendUnavailable):
        ex.submit(SPEC)
    late = slurm._create("aif-7-abc-1")  # the cut sbatch reached slurmctld after all
    clock.now += 60
    assert ex.submit(SPEC) == late and slurm.sbatch_calls == 1


def test_an_unclear_sbatch_on_a_site_that_stops_answering_is_looked_up_on_the_next_pass() -> None:
    slurm, clock = FlakySlurm((_cut(), True)), Clock()
    slurm.find_error = BackendUnavailable("squeue: Slurm is unreachable")
    ex = _executor(slurm, clock)
    with pytest.raises(BackendUnavailable) as err:
        ex.submit(SPEC)
    assert not is_deferred(err.value)  # the site is down, not just this job
    slurm.find_error = None
    assert ex.submit(SPEC) in slurm.by_id and slurm.sbatch_calls == 1


def test_temporary_refusals_are_retried_with_backoff_then_deferred_then_refused() -> None:
    busy = submit_error("sbatch", 1, "", "Batch job submission failed: Resource temporarily "
                                         "unavailable")  # fmt: skip
    slurm, clock = FlakySlurm(*[(busy, False)] * 100), Clock()
    ex = _executor(slurm, clock)
    with pytest.raises(BackendUnavailable) as err:
        ex.submit(SPEC)
    assert clock.slept == [1.0, 2.0] and slurm.sbatch_calls == 3  # retried at once, twice
    assert is_deferred(err.value) and err.value.extra["retry_after_s"] == 5
    calls = slurm.sbatch_calls
    with pytest.raises(BackendUnavailable):
        ex.submit(SPEC)  # too early: no sbatch, no lookup
    assert slurm.sbatch_calls == calls
    waits = []
    while True:
        clock.now += 130  # past each wait (at most 120 s)
        try:
            ex.submit(SPEC)
        except Invalid as refused:
            assert "Resource temporarily unavailable" in refused.message
            break
        except BackendUnavailable as later:
            waits.append(later.extra["retry_after_s"])
    assert waits[:3] == [10, 20, 40] and max(waits) == 120  # doubling, capped
    assert not slurm.by_id


def test_a_temporary_refusal_that_clears_submits_once() -> None:
    busy = submit_error("sbatch", 1, "", "Job violates accounting/QOS policy (job submit limit)")
    slurm, clock = FlakySlurm((busy, False)), Clock()
    assert _executor(slurm, clock).submit(SPEC) in slurm.by_id
    assert slurm.sbatch_calls == 2 and clock.slept == [1.0]


def test_refused_and_unreachable_are_raised_as_they_are() -> None:
    refused = submit_error("sbatch", 1, "", "Invalid partition name specified")
    down = submit_error("sbatch", 1, "", "Unable to contact slurm controller (connect failure)")
    for error, kind in ((refused, Invalid), (down, BackendUnavailable)):
        slurm = FlakySlurm((error, False))
        with pytest.raises(kind) as err:
            _executor(slurm, Clock()).submit(SPEC)
        assert not is_deferred(err.value) and slurm.sbatch_calls == 1


# --- accounting: a record only stands for a job the controller forgot once it is finished ---


class ScriptedTransport:
    """Answers squeue --json and sacct from canned outputs."""

    def __init__(self, squeue: list[dict[str, Any]], sacct: str) -> None:
        self.squeue, self.sacct = squeue, sacct
        self.timeout_s = 30.0
        self.argvs: list[list[str]] = []

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.argvs.append(list(argv))
        if argv[:2] == ["squeue", "--json"]:
            return CommandResult(0, json.dumps({"jobs": self.squeue, "errors": []}), "")
        if "sacct" in argv:
            return CommandResult(0, self.sacct, "")
        raise AssertionError(argv)

    def as_user(self, login: str) -> ScriptedTransport:
        return self


def _sacct_line(job_id: str, state: str, start: int, end: int | str) -> str:
    elapsed = (end - start) if isinstance(end, int) else 5
    return f"{job_id}|{state}|0:0|{start}|{end}|{elapsed}|gres/gpu=8|f2n1|aif-7-abc-1\n"


@pytest.mark.parametrize(
    ("state", "end", "visible"),
    [("COMPLETED", 1060, True), ("NODE_FAIL", 1030, True), ("RUNNING", "Unknown", False),
     ("PENDING", "Unknown", False)],
)  # fmt: skip
def test_a_job_the_controller_forgot_counts_only_with_a_finished_record(
    state: str, end: int | str, visible: bool
) -> None:
    transport = ScriptedTransport([], _sacct_line("5001", state, 1000, end))
    found = CliBackend(transport).jobs(["5001"])  # type: ignore[arg-type]
    assert ("5001" in found) is visible


def test_sbatch_through_the_cli_backend_gets_a_deadline_below_the_transport_timeout() -> None:
    transport = ScriptedTransport([], "")
    transport.run = lambda argv, stdin=None: (  # type: ignore[method-assign]
        transport.argvs.append(list(argv)) or CommandResult(0, "5005\n", "")
    )
    rendered = render_script(SPEC, ScriptOptions(job_root="/jobs"))
    assert CliBackend(transport).submit(rendered) == "5005"  # type: ignore[arg-type]
    assert transport.argvs[-1][:3] == ["timeout", "--signal=KILL", "28"]


def test_every_run_of_a_job_slurm_requeued_is_charged() -> None:
    slurm = FlakySlurm()
    slurm.by_id["5001"] = SlurmJob(
        "5001", state="COMPLETED", start=2000.0, end=2100.0, gpus=8, restarts=2, nodes="f2n2"
    )
    earlier = [
        SlurmJob("5001", state="REQUEUED", start=1000.0, end=1040.0, elapsed_s=40.0),
        SlurmJob("5001", state="REQUEUED", start=1500.0, end=1530.0, elapsed_s=30.0),
        SlurmJob("5001", state="COMPLETED", start=2000.0, end=2100.0, elapsed_s=100.0),
    ]
    slurm.runs = lambda job_id: earlier  # type: ignore[method-assign]
    usage = _executor(slurm, Clock()).usage("5001")
    assert usage is not None and (usage.gpus, usage.elapsed_s) == (8, 170.0)
    assert Sacct(job_ids=["5001"], duplicates=True).build()[-2:] == ["--duplicates",
                                                                    "--jobs=5001"]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "exec_state", "message"),
    [
        ("PREEMPTED", ExecState.PREEMPTED, "preempted"),
        ("NODE_FAIL", ExecState.NODE_FAILED, "node failure"),
        ("BOOT_FAIL", ExecState.NODE_FAILED, "node failed to boot"),
        ("OUT_OF_MEMORY", ExecState.FAILED, "out of memory"),
        ("DEADLINE", ExecState.FAILED, "Slurm deadline reached"),
    ],
)
def test_how_a_slurm_job_ended_is_named(state: str, exec_state: ExecState, message: str) -> None:
    slurm = FlakySlurm()
    slurm.by_id["1"] = SlurmJob("1", state=state, start=1.0, end=2.0, reason="None")
    status = _executor(slurm, Clock()).poll(["1"])["1"]
    assert (status.state, status.message) == (exec_state, message)
