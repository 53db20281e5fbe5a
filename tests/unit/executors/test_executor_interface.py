"""The executor interface: spec validation, the registry, and how launches are built."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aifactory.errors import Invalid
from aifactory.executors import (
    EXECUTORS,
    Capability,
    ExecJob,
    ExecState,
    LocalExecutor,
    make_executor,
    register,
)
from aifactory.executors._launch import LaunchRules


def test_unknown_executor_name_is_invalid_and_lists_the_valid_names() -> None:
    with pytest.raises(Invalid) as err:
        make_executor("kubernetes")
    assert "unknown executor 'kubernetes'" in str(err.value)
    assert "local" in str(err.value)
    assert err.value.details[0].field == "executor"


def test_make_executor_builds_a_registered_backend_from_config(tmp_path: Path) -> None:
    ex = make_executor("local", state_dir=tmp_path, gpus=8)
    assert isinstance(ex, LocalExecutor) and ex.gpus == 8
    assert Capability.GPUS in ex.capabilities and "gpus" in ex.capabilities
    assert "multi_node" not in ex.capabilities


def test_bad_executor_config_is_invalid_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="bad config"):
        make_executor("local", state_dir=tmp_path, gpu_count=8)
    with pytest.raises(Invalid):
        make_executor("local", state_dir=tmp_path, gpus=-1)


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register("local")(LocalExecutor)
    assert EXECUTORS["local"] is LocalExecutor


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"argv": None}, "command"),
        ({"script": "echo hi"}, "command"),
        ({"argv": []}, "argv"),
        ({"argv": ["ok", 3]}, "argv"),
        ({"attempt": 0}, "attempt"),
        ({"job_id": ""}, "job_id"),
        ({"nodes": 0}, "nodes"),
        ({"gpus_per_node": -1}, "gpus_per_node"),
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"env": {"BAD-NAME": "x"}}, "env.BAD-NAME"),
        ({"env": {"OK": "nul\0"}}, "env.OK"),
        ({"launcher": "mpirun"}, "launcher"),
    ],
)
def test_exec_job_rejects_bad_specs_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"job_id": "j", "argv": ["true"]}
    with pytest.raises(Invalid) as err:
        ExecJob(**{**base, **kwargs})  # type: ignore[arg-type]
    assert err.value.details[0].field == field


def test_exec_job_is_frozen_round_trips_and_counts_gpus() -> None:
    spec = ExecJob(job_id="j", argv=["a", "b"], env={"X": "1"}, nodes=2, gpus_per_node=4)
    assert spec.gpus == 8 and spec.key == ("j", 1) and spec.argv == ("a", "b")
    assert ExecJob.from_dict(spec.as_dict()) == spec
    with pytest.raises(TypeError):
        spec.env["Y"] = "2"  # type: ignore[index]


def test_terminal_states() -> None:
    assert not ExecState.QUEUED.terminal and not ExecState.RUNNING.terminal
    assert all(s.terminal for s in ExecState if s not in (ExecState.QUEUED, ExecState.RUNNING))


def test_backend_ids_are_derived_from_the_key_and_safe_as_file_names() -> None:
    assert LocalExecutor.backend_id_for("job-42", 2) == "job-42.2"
    hashed = LocalExecutor.backend_id_for("../evil id", 1)
    assert "/" not in hashed and " " not in hashed and hashed.endswith(".1")


RULES = LaunchRules(
    python="/opt/py/bin/python",
    torchrun_cpu_procs=3,
    env_passthrough=(),
    workdir_base=Path("/base"),
)
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nnodes=1"]


@pytest.mark.parametrize(
    ("argv", "gpus", "expected"),
    [
        (["python", "t.py", "--x"], 2, ["/opt/py/bin/python", *TORCHRUN, "--nproc_per_node=2"]),
        (["python3", "-m", "pkg.t"], 0, ["/opt/py/bin/python", *TORCHRUN, "--nproc_per_node=3"]),
        (["/usr/bin/python3", "t.py"], 1, ["/usr/bin/python3", *TORCHRUN, "--nproc_per_node=1"]),
        (["t.py"], 1, ["/opt/py/bin/python", *TORCHRUN, "--nproc_per_node=1"]),
        (["./run.sh"], 4, ["/opt/py/bin/python", *TORCHRUN, "--nproc_per_node=4", "--no-python"]),
    ],
)
def test_torchrun_launcher_runs_one_process_per_gpu_or_the_cpu_count(
    argv: list[str], gpus: int, expected: list[str], tmp_path: Path
) -> None:
    spec = ExecJob(job_id="t", argv=argv, gpus_per_node=gpus, launcher="torchrun")
    rest = argv[1:] if "python" in Path(argv[0]).name else argv
    assert RULES.argv(spec, tmp_path) == [*expected, *rest]


def test_torchrun_starts_the_tasks_asked_for_on_every_simulated_node(tmp_path: Path) -> None:
    spec = ExecJob(
        job_id="t", argv=["t.py"], nodes=2, gpus_per_node=4, tasks_per_node=2, launcher="torchrun"
    )
    assert RULES.argv(spec, tmp_path) == [
        "/opt/py/bin/python", *TORCHRUN, "--nproc_per_node=4", "t.py"
    ]  # fmt: skip


def test_a_script_without_an_interpreter_line_runs_in_bash_with_its_arguments(
    tmp_path: Path,
) -> None:
    spec = ExecJob(job_id="t", attempt=2, script="echo $1\n", args=["a b"])
    assert RULES.argv(spec, tmp_path) == ["/bin/bash", str(tmp_path / ".aif-job.2.sh"), "a b"]
    shebang = ExecJob(job_id="t", script="#!/usr/bin/env python3\nprint(1)\n", args=["x"])
    assert RULES.argv(shebang, tmp_path) == [str(tmp_path / ".aif-job.1.sh"), "x"]


def test_bare_python_means_the_configured_interpreter(tmp_path: Path) -> None:
    spec = ExecJob(job_id="t", argv=["python", "-c", "pass"])
    assert RULES.argv(spec, tmp_path) == ["/opt/py/bin/python", "-c", "pass"]
    other = ExecJob(job_id="t", argv=[sys.executable, "x"])
    assert RULES.argv(other, tmp_path) == [sys.executable, "x"]


def test_without_a_job_user_relative_workdir_and_logs_hang_off_the_base(tmp_path: Path) -> None:
    spec = ExecJob(job_id="t", argv=["true"], workdir="w", log_dir="logs")
    assert RULES.workdir(spec, tmp_path / "home") == Path("/base/w")
    logs = RULES.logs(spec, tmp_path / "records", tmp_path / "home")
    assert logs == ("/base/w/logs/stdout.log", "/base/w/logs/stderr.log")


def test_logs_default_to_the_records_the_job_cannot_reach(tmp_path: Path) -> None:
    spec = ExecJob(job_id="t", argv=["true"])
    assert RULES.workdir(spec, tmp_path / "home") == tmp_path / "home"
    logs = RULES.logs(spec, tmp_path / "records", tmp_path / "home")
    assert logs == (str(tmp_path / "records/stdout.log"), str(tmp_path / "records/stderr.log"))
