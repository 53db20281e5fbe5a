"""Batch script rendering: directives, launch lines, and injection through every string field.

Injection checks run the rendered script for real with bash, a stub ``srun`` recording what it
received, so "safe" means "bash did exactly what the spec said", not "the text looks right".
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aifactory.errors import Invalid
from aifactory.executors.base import ExecJob
from aifactory.executors.slurm.script import (
    ScriptOptions,
    job_name,
    parse_job_name,
    render_script,
)

PAYLOADS = [
    "x\n#SBATCH --uid=0",
    "x\r\n#SBATCH --partition=admin",
    "$(touch PWNED)",
    "`touch PWNED`",
    "'; touch PWNED; echo '",
    '"; touch PWNED; echo "',
    "a b --account=other",
    "%u/../../x",
    "../../../etc/passwd",
    "/etc/shadow",
    "x\x1b[2J",
    "-x --wrap=id",
]

STUB = """#!{python}
import json, os, sys
with open(os.environ["STUB_OUT"], "w") as out:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}, out)
"""


def options(root: Path, **kw: Any) -> ScriptOptions:
    return ScriptOptions(job_root=str(root), **kw)


def spec(**kw: Any) -> ExecJob:
    base: dict[str, Any] = {"job_id": "job-1", "argv": ["python3", "train.py"]}
    return ExecJob(**{**base, **kw})


def sbatch_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith("#SBATCH")]


def header(text: str) -> list[str]:
    """The lines sbatch reads directives from: up to the first command."""
    lines = []
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line)
    return [ln for ln in lines if ln.strip()]


def run_rendered(tmp_path: Path, text: str) -> dict[str, Any]:
    """Run the script with bash and a recording srun; return what srun saw."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    srun = stubs / "srun"
    srun.write_text(STUB.format(python=sys.executable))
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "srun.json"
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "STUB_OUT": str(out), "SLURM_JOB_ID": "42"}
    proc = subprocess.run(
        ["bash", "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.rglob("PWNED")), "a payload was executed"
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_directives_cover_partition_account_nodes_gpus_time_name_and_logs(tmp_path: Path) -> None:
    r = render_script(
        spec(nodes=2, gpus_per_node=4, time_limit_s=90),
        options(tmp_path, partition="gpu", account="ehpc-aif-1", gpu_type="h100"),
    )
    lines = sbatch_lines(r.text)
    for expected in [
        "--job-name=aif-job-1-1",
        "--nodes=2",
        "--partition=gpu",
        "--account=ehpc-aif-1",
        "--gpus-per-node=h100:4",
        "--time=2",
        f"--output={tmp_path}/aif-job-1-1.out",
        f"--error={tmp_path}/aif-job-1-1.err",
    ]:
        assert f"#SBATCH {expected}" in lines
    assert header(r.text) == lines, "every directive is in the header sbatch reads"


def test_gres_style_and_no_gpus(tmp_path: Path) -> None:
    r = render_script(spec(gpus_per_node=2), options(tmp_path, gpu_type="h100", gpu_request="gres"))
    assert "#SBATCH --gres=gpu:h100:2" in r.text
    r = render_script(spec(), options(tmp_path))
    assert "--gpus" not in r.text and "--gres" not in r.text


def test_time_limit_rounds_up_to_whole_minutes_with_a_one_minute_floor(tmp_path: Path) -> None:
    assert render_script(spec(time_limit_s=5), options(tmp_path)).time_limit_min == 1
    assert render_script(spec(time_limit_s=61), options(tmp_path)).time_limit_min == 2
    assert render_script(spec(), options(tmp_path)).time_limit_min is None


def test_no_user_value_adds_a_line_to_the_script(tmp_path: Path) -> None:
    evil = "a\n#SBATCH --uid=0\r\x00".replace("\x00", "")
    r = render_script(spec(argv=["echo", evil], env={"V": evil}), options(tmp_path))
    plain = render_script(spec(argv=["echo", "a"], env={"V": "a"}), options(tmp_path))
    assert len(r.text.splitlines()) == len(plain.text.splitlines())


def test_argv_and_env_reach_srun_exactly(tmp_path: Path) -> None:
    argv = ["python3", "-c", "print('a b')", "$HOME", "it's"]
    r = render_script(spec(argv=argv, env={"LR": "0.1 $(x)", "MULTI": "a\nb"}), options(tmp_path))
    seen = run_rendered(tmp_path, r.text)
    assert seen["argv"][-len(argv) :] == argv
    assert (seen["env"]["LR"], seen["env"]["MULTI"]) == ("0.1 $(x)", "a\nb")
    assert seen["cwd"] == str(tmp_path / "job-1")


def test_user_script_travels_encoded_and_runs_once_as_the_batch_step(tmp_path: Path) -> None:
    # sbatch semantics: the script is the batch step, run once under its own interpreter line
    # with its arguments; its own srun lines (not ours) launch the parallel steps.
    user = (
        "#!/bin/bash -e\n#SBATCH --uid=0\n"
        'printf "%s|" "$-" "$#" "$@" >> ran.txt\nsrun --ntasks=8 hostname\n'
    )
    job = spec(argv=None, script=user, args=("a b", "$(touch PWNED)"), nodes=2)
    r = render_script(job, options(tmp_path))
    assert len(sbatch_lines(r.text)) == len(header(r.text))
    assert "--uid" not in r.text
    seen = run_rendered(tmp_path, r.text)
    assert seen["argv"] == ["--ntasks=8", "hostname"]  # the user's own srun, once
    job_dir = tmp_path / "job-1"
    ran = (job_dir / "ran.txt").read_text().split("|")
    assert ran[1:4] == ["2", "a b", "$(touch PWNED)"]  # two arguments, passed verbatim
    assert "e" in ran[0]  # the interpreter line's own flag (-e) was kept
    script_file = next(job_dir.glob(".aif-attempt-*.sh"))
    assert script_file.read_text() == user
    assert script_file.stat().st_mode & 0o777 == 0o700


def test_torchrun_takes_rendezvous_from_the_first_node(tmp_path: Path) -> None:
    r = render_script(spec(nodes=2, gpus_per_node=4, launcher="torchrun"), options(tmp_path))
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in r.text
    assert "--nnodes=2" in r.text and "--nproc-per-node=4" in r.text
    assert '--rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"' in r.text


def test_job_name_round_trips_and_is_unambiguous() -> None:
    assert job_name("a-1", 2) == "aif-a-1-2"
    assert parse_job_name("aif-a-1-2") == ("a-1", 2)
    assert parse_job_name("wrap") is None


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ["partition", "account", "gpu_type"])
def test_injection_through_site_names_is_refused(tmp_path: Path, field: str, payload: str) -> None:
    with pytest.raises(Invalid):
        render_script(spec(gpus_per_node=1), options(tmp_path, **{field: payload}))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_job_id_is_refused(tmp_path: Path, payload: str) -> None:
    with pytest.raises(Invalid):
        render_script(spec(job_id=payload), options(tmp_path))


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("field", ["workdir", "log_dir", "stdout_path", "stderr_path"])
def test_injection_through_paths_is_refused_or_stays_in_the_job_dir(
    tmp_path: Path, field: str, payload: str
) -> None:
    try:
        r = render_script(spec(**{field: payload}), options(tmp_path))
    except Invalid:
        return
    job_dir = str(tmp_path / "job-1")
    for path in (r.workdir, r.stdout, r.stderr):
        assert (
            path == job_dir or path.startswith(job_dir + "/") or path.startswith(f"{tmp_path}/aif-")
        )
    assert len(sbatch_lines(r.text)) == len(header(r.text))
    run_rendered(tmp_path, r.text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_argv_and_env_values_stays_data(tmp_path: Path, payload: str) -> None:
    r = render_script(spec(argv=["echo", payload], env={"V": payload}), options(tmp_path))
    assert len(sbatch_lines(r.text)) == len(header(r.text))
    seen = run_rendered(tmp_path, r.text)
    assert seen["argv"][-1] == payload and seen["env"]["V"] == payload


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_script_text_stays_data(tmp_path: Path, payload: str) -> None:
    text = f"echo {payload}\n"
    r = render_script(spec(argv=None, script=text), options(tmp_path))
    assert len(sbatch_lines(r.text)) == len(header(r.text))
    # Everything up to the hand-over to the user's own script runs no part of its text.
    before_exec = r.text[: r.text.rindex("\nexec ")] + "\n}"
    proc = subprocess.run(["bash", "-c", before_exec], cwd=tmp_path, check=False)
    assert proc.returncode == 0
    assert not list(tmp_path.rglob("PWNED")), "a payload was executed"
    assert next((tmp_path / "job-1").glob(".aif-attempt-*.sh")).read_bytes().decode() == text


@pytest.mark.parametrize("payload", ["X;Y", "A B", "1X", "X\nY", "X=1"])
def test_injection_through_env_keys_is_refused(tmp_path: Path, payload: str) -> None:
    with pytest.raises(Invalid):
        render_script(spec(env={payload: "v"}), options(tmp_path))


def test_program_name_cannot_be_an_option(tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        render_script(spec(argv=["--export=ALL", "x"]), options(tmp_path))


def test_job_root_must_be_plain_absolute(tmp_path: Path) -> None:
    with pytest.raises(Invalid):
        render_script(spec(), ScriptOptions(job_root="relative/dir"))
    with pytest.raises(Invalid):
        render_script(spec(), ScriptOptions(job_root="/tmp/a b"))


def test_job_files_are_private(tmp_path: Path) -> None:
    r = render_script(spec(), options(tmp_path))
    run_rendered(tmp_path, r.text)
    assert oct(os.stat(tmp_path / "job-1").st_mode & 0o777) == "0o700"


def test_every_resource_the_job_asked_for_reaches_sbatch(tmp_path: Path) -> None:
    job = spec(
        nodes=2,
        gpus_per_node=4,
        tasks_per_node=4,
        cpus_per_task=8,
        memory_per_gpu_mb=81920,
        exclusive=True,
        constraint="a100&[ib|roce]",
        time_limit_s=7200,
        time_min_s=61,
        array_task=7,
    )
    lines = sbatch_lines(render_script(job, options(tmp_path)).text)
    for expected in (
        "--nodes=2",
        "--ntasks-per-node=4",
        "--cpus-per-task=8",
        "--gpus-per-node=4",
        "--mem-per-gpu=81920M",
        "--exclusive",
        "--constraint=a100&[ib|roce]",
        "--time=120",
        "--time-min=2",
        "--array=7",
        "--no-requeue",
    ):
        assert f"#SBATCH {expected}" in lines


def test_whole_node_memory_is_mem_0_and_unasked_values_are_left_to_the_site(
    tmp_path: Path,
) -> None:
    lines = sbatch_lines(render_script(spec(memory_mb=0), options(tmp_path)).text)
    assert "#SBATCH --mem=0" in lines
    plain = "\n".join(sbatch_lines(render_script(spec(), options(tmp_path)).text))
    for absent in ("--mem", "--cpus-per-task", "--ntasks-per-node", "--exclusive", "--array"):
        assert absent not in plain


@pytest.mark.parametrize("payload", [*PAYLOADS, "a b", "a%j", "$(id)"])
def test_injection_through_constraint_is_refused(tmp_path: Path, payload: str) -> None:
    with pytest.raises(Invalid):
        render_script(spec(constraint=payload), options(tmp_path))


def test_a_script_cut_short_in_transit_runs_none_of_its_lines(tmp_path: Path) -> None:
    r = render_script(spec(argv=None, script="touch ran\n"), options(tmp_path))
    cut = r.text[: r.text.rindex("exec ")]  # sbatch got EOF mid-script (ssh dropped)
    proc = subprocess.run(["bash", "-c", cut], cwd=tmp_path, capture_output=True, check=False)
    assert proc.returncode != 0
    assert not (tmp_path / "job-1").exists()  # not even the mkdir at its start ran
