"""Parsers of the Slurm command objects, on real outputs recorded by record_fixtures.py."""

from __future__ import annotations

import pytest
from slurmhelpers import fixture, output

from aifactory.errors import BackendUnavailable, Invalid, NotFound
from aifactory.executors.base import ExecState
from aifactory.executors.slurm.backends import latest_submission
from aifactory.executors.slurm.commands import (
    Sacct,
    Sbatch,
    Scancel,
    ScontrolShowJob,
    Sinfo,
    Squeue,
    parse_exit_code,
    scontrol_fields,
)
from aifactory.executors.slurm.models import (
    base_state,
    decode_wait_status,
    exec_state,
    gpus_from_tres,
)

CLUSTERS = ["factory1", "factory2"]


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_sbatch_parsable_gives_the_job_id(cluster: str) -> None:
    assert Sbatch().parse(*output(f"{cluster}_sbatch_ok")).isdigit()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("sbatch_bad_partition", "Invalid partition name specified"),
        ("sbatch_too_many_gpus", "Requested node configuration is not available"),
    ],
)
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_rejected_sbatch_raises_invalid_with_slurms_message(
    cluster: str, name: str, words: str
) -> None:
    with pytest.raises(Invalid) as err:
        Sbatch().parse(*output(f"{cluster}_{name}"))
    assert words in err.value.message


def test_sbatch_with_controller_down_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="Unable to contact slurm controller"):
        Sbatch().parse(*output("factory1_sbatch_down"))


def test_squeue_with_controller_down_is_backend_unavailable_despite_rc_0() -> None:
    stdout, stderr, rc = output("factory1_squeue_down")
    assert rc == 0
    with pytest.raises(BackendUnavailable):
        Squeue().parse(stdout, stderr, rc)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_squeue_json_maps_states_and_exit_codes(cluster: str) -> None:
    ids = fixture(f"{cluster}_ids")
    jobs = {
        j.job_id: j
        for j in Squeue(job_ids=list(ids.values())).parse(*output(f"{cluster}_squeue_json"))
    }
    assert set(jobs) == set(ids.values())
    ok, failed = jobs[ids["ok"]], jobs[ids["failed"]]
    assert (ok.exec_state, ok.exit_code, ok.gpus) == (ExecState.COMPLETED, 0, 4)
    assert ok.start is not None and ok.end is not None
    # squeue --json reports the raw wait status (768); the model has the exit code.
    assert (failed.exec_state, failed.exit_code) == (ExecState.FAILED, 3)
    assert jobs[ids["cancelled"]].exec_state is ExecState.RUNNING
    pending = jobs[ids["pending_cancelled"]]
    assert pending.exec_state is ExecState.QUEUED and pending.start is None


def test_squeue_filters_by_name_because_slurm_2205_ignores_filters_with_json() -> None:
    jobs = Squeue(name="aif-fixture-fail-1").parse(*output("factory1_squeue_json"))
    assert [j.name for j in jobs] == ["aif-fixture-fail-1"]


def test_rejected_submission_in_squeue_is_not_an_earlier_submission() -> None:
    jobs = Squeue().parse(*output("factory1_squeue_json"))
    rejected = [j for j in jobs if j.state == "FAILED" and j.never_ran]
    assert rejected, "the recorded squeue output holds the rejected --gpus-per-node=9 job"
    assert latest_submission(rejected) is None


def test_sacct_parsable2_reads_exit_codes_gpus_and_rejections() -> None:
    ids = fixture("factory2_ids")
    jobs = {j.job_id: j for j in Sacct(job_ids=list(ids.values())).parse(*output("factory2_sacct"))}
    assert jobs[ids["ok"]].gpus == 4 and jobs[ids["ok"]].exit_code == 0
    assert jobs[ids["failed"]].exit_code == 3
    assert jobs[ids["cancelled"]].state == "CANCELLED"
    assert jobs[ids["cancelled"]].exec_state is ExecState.CANCELLED
    assert jobs[ids["pending_cancelled"]].never_ran


def test_sacct_without_accounting_storage_is_empty_not_an_error() -> None:
    assert Sacct(job_ids=["1"]).parse(*output("factory1_sacct")) == []


def test_sacct_argv_prints_epoch_times_and_puts_the_name_last() -> None:
    argv = Sacct(name="aif-x-1", since="now-1days").build()
    assert argv[:2] == ["env", "SLURM_TIME_FORMAT=%s"]
    assert "--parsable2" in argv and "--name=aif-x-1" in argv
    assert any(a.startswith("--format=") and a.endswith(",JobName") for a in argv)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_scontrol_show_job_reads_failed_job(cluster: str) -> None:
    ids = fixture(f"{cluster}_ids")
    job = ScontrolShowJob(ids["failed"]).parse(*output(f"{cluster}_scontrol_failed"))
    assert (job.state, job.exit_code, job.reason) == ("FAILED", 3, "NonZeroExitCode")
    assert job.name == "aif-fixture-fail-1"


def test_scontrol_unknown_job_is_not_found() -> None:
    with pytest.raises(NotFound):
        ScontrolShowJob("999999").parse(*output("factory1_scontrol_unknown"))


def test_scontrol_fields_keep_spaces_inside_values() -> None:
    fields = scontrol_fields("JobId=7 JobName=my job Command=/bin/x a b WorkDir=/tmp")
    assert fields == {"JobId": "7", "JobName": "my job", "Command": "/bin/x a b", "WorkDir": "/tmp"}


def test_scancel_ok_and_controller_down() -> None:
    Scancel("5").parse(*output("factory1_scancel_ok"))
    with pytest.raises(BackendUnavailable):
        Scancel("1").parse(*output("factory1_scancel_down"))


def test_scancel_of_unknown_id_is_silent_in_2205() -> None:
    # Recorded fact: rc 0, no output. The executor checks existence itself before cancelling.
    assert output("factory1_scancel_unknown") == ("", "", 0)


@pytest.mark.parametrize(
    ("cluster", "gpus", "gpu_type", "count"), [("factory1", 4, None, 4), ("factory2", 8, "h100", 2)]
)
def test_sinfo_json_reads_gpus_per_node(
    cluster: str, gpus: int, gpu_type: str | None, count: int
) -> None:
    nodes = Sinfo().parse(*output(f"{cluster}_sinfo_json"))
    assert len(nodes) == count
    assert all((n.gpus, n.gpu_type, n.partitions) == (gpus, gpu_type, ("debug",)) for n in nodes)
    assert Sinfo(partitions=["other"]).parse(*output(f"{cluster}_sinfo_json")) == []


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("PENDING", ExecState.QUEUED),
        ("RUNNING", ExecState.RUNNING),
        ("COMPLETING", ExecState.RUNNING),
        ("COMPLETED", ExecState.COMPLETED),
        ("FAILED", ExecState.FAILED),
        ("OUT_OF_MEMORY", ExecState.FAILED),
        ("CANCELLED by 0", ExecState.CANCELLED),
        ("CANCELLED+", ExecState.CANCELLED),
        ("TIMEOUT", ExecState.TIMED_OUT),
        ("NODE_FAIL", ExecState.NODE_FAILED),
        ("BOOT_FAIL", ExecState.NODE_FAILED),
        ("PREEMPTED", ExecState.PREEMPTED),
        ("DEADLINE", ExecState.FAILED),
        ("CD", ExecState.COMPLETED),
        ("SOMETHING_NEW", ExecState.QUEUED),
    ],
)
def test_state_mapping(raw: str, state: ExecState) -> None:
    assert exec_state(raw) is state


def test_base_state_strips_decorations() -> None:
    assert base_state("CANCELLED by 1000") == "CANCELLED"


@pytest.mark.parametrize(("status", "code"), [(0, 0), (768, 3), (9, 137), (15, 143), (36608, 143)])
def test_wait_status_decoding(status: int, code: int) -> None:
    assert decode_wait_status(status) == code


@pytest.mark.parametrize(("text", "code"), [("0:0", 0), ("3:0", 3), ("0:15", 143), ("", None)])
def test_exit_code_text(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


@pytest.mark.parametrize(
    ("tres", "gpus"),
    [
        ("cpu=2,gres/gpu=4,mem=1G", 4),
        ("gres/gpu=3,gres/gpu:h100=3", 3),
        ("gres/gpu:h100=2", 2),
        ("cpu=1", 0),
    ],
)
def test_gpus_from_tres(tres: str, gpus: int) -> None:
    assert gpus_from_tres(tres) == gpus
