"""The ``checkpoints`` capability: list complete files, read them, stage a copy into an attempt.

The local executor walks the job's home without following links (a job cannot make the control
plane copy a file it may not read); the Slurm executor does the same through its transport, as
the person the job runs as, with the paths as argv elements, never inside a script's text.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aifactory.errors import Invalid, NotFound
from aifactory.executors import ExecJob, LocalExecutor
from aifactory.executors.checkpoints import access, complete, fingerprint
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.backends import CliBackend
from aifactory.executors.slurm.transport import CommandResult


def _job(attempt: int = 1) -> ExecJob:
    return ExecJob(job_id="ck-1", attempt=attempt, argv=["true"])


def test_files_being_written_are_not_part_of_a_complete_checkpoint() -> None:
    assert complete("ckpt.pt") and complete("shard/0.pt")
    assert not complete(".ckpt.pt.123.tmp") and not complete("step.tmp")
    assert not complete(".partial/0.pt") and not complete("")
    assert fingerprint({"a": (1, 2)}) != fingerprint({"a": (1, 3)})
    assert fingerprint({"a": (1, 2), "b": (3, 4)}) == fingerprint({"b": (3, 4), "a": (1, 2)})


def test_local_lists_reads_and_stages_inside_the_job_home(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", gpus=1)
    assert access(ex) is ex
    job = _job()
    assert ex.checkpoint_files(job, "ckpt") == {}  # nothing written yet
    source = tmp_path / "copy"
    (source / "shard").mkdir(parents=True)
    (source / "step").write_text("7")
    (source / "shard" / "0.pt").write_bytes(b"\x00\x01weights")
    ex.stage_checkpoint(
        _job(2), "ckpt", {"step": source / "step", "shard/0.pt": source / "shard" / "0.pt"}
    )
    directory = ex.home(ex.backend_id_for("ck-1", 2)) / "ckpt"
    assert (directory / "step").read_text() == "7"
    (directory / ".step.tmp").write_text("8")  # a save in progress
    files = ex.checkpoint_files(job, "ckpt")
    assert set(files) == {"step", "shard/0.pt"}
    assert ex.read_checkpoint_file(job, "ckpt", "shard/0.pt") == b"\x00\x01weights"
    with pytest.raises(NotFound):
        ex.read_checkpoint_file(job, "ckpt", "gone")


def test_local_never_follows_a_link_the_job_planted(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", gpus=1)
    secret = tmp_path / "secret"
    secret.write_text("not the job's")
    home = ex.home(ex.backend_id_for("ck-1", 1))
    home.mkdir(parents=True)
    (home / "ckpt").mkdir()
    (home / "ckpt" / "leak").symlink_to(secret)
    (home / "elsewhere").symlink_to(tmp_path)
    assert ex.checkpoint_files(_job(), "ckpt") == {}
    with pytest.raises(NotFound):
        ex.read_checkpoint_file(_job(), "ckpt", "leak")
    assert ex.checkpoint_files(_job(), "elsewhere") == {}  # the directory itself is a link
    ex.stage_checkpoint(_job(), "ckpt", {"leak": tmp_path / "state" / "homes.key"})
    assert secret.read_text() == "not the job's"  # the link was replaced, its target untouched
    assert not (home / "ckpt" / "leak").is_symlink()


def test_local_with_a_job_user_refuses_a_checkpoint_dir_outside_the_home(
    tmp_path: Path,
) -> None:
    ex = LocalExecutor(tmp_path / "state", gpus=1)
    ex.user = object()  # type: ignore[assignment]  # as if jobs ran as the job user
    with pytest.raises(Invalid) as info:
        ex.checkpoint_files(_job(), "/etc")
    assert info.value.details[0].rule == "inside_job_home"


class Shell:
    """Runs argv lists here, as the cluster's login node would, and records them."""

    def __init__(self) -> None:
        self.argvs: list[tuple[str | None, list[str]]] = []
        self.login: str | None = None
        self.timeout_s = 30.0

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.argvs.append((self.login, list(argv)))
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def as_user(self, login: str) -> Shell:
        self.login = login
        return self


def test_slurm_reads_and_stages_through_its_transport_as_the_person(tmp_path: Path) -> None:
    shell = Shell()
    ex = SlurmExecutor(backend=CliBackend(shell), job_root=str(tmp_path / "jobs"))  # type: ignore[arg-type]
    assert access(ex) is ex
    job = ExecJob(job_id="ck-2", attempt=2, argv=["true"], run_as="anna")
    source = tmp_path / "copy.pt"
    payload = bytes(range(256)) * 10
    source.write_bytes(payload)
    weird = "it's $(rm -rf) ckpt"  # a path a shell would misread; it stays one argument
    ex.stage_checkpoint(job, weird, {"model.pt": source})
    assert ex.checkpoint_files(job, weird).keys() == {"model.pt"}
    assert ex.read_checkpoint_file(job, weird, "model.pt") == payload
    assert {login for login, _ in shell.argvs} == {"anna"}
    stage = next(argv for _, argv in shell.argvs if argv[0] == "sh")
    assert weird not in stage[2]  # the script's text holds no path
    absolute = tmp_path / "abs"
    absolute.mkdir()
    (absolute / ".x.tmp").write_text("half")
    os.link(source, absolute / "linked")  # two links: not a plain file of its own
    (absolute / "ok").write_text("1")
    assert ex.checkpoint_files(job, str(absolute)).keys() == {"ok"}
    assert ex.checkpoint_files(job, str(tmp_path / "missing")) == {}
