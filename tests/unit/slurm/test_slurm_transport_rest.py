"""SSH argv quoting (checked through a real shell) and the REST client on recorded answers."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

import httpx
import pytest
from slurmhelpers import fixture

from aifactory.errors import BackendUnavailable, Invalid, NotFound
from aifactory.executors.base import ExecJob, ExecState
from aifactory.executors.slurm.backends import latest_submission
from aifactory.executors.slurm.rest import RestClient, job_properties
from aifactory.executors.slurm.script import ScriptOptions, render_script
from aifactory.executors.slurm.transport import LocalTransport, SshTransport

NASTY = ["sbatch", "a b", "$(id)", "`id`", "it's", '"q"', "x;y", "a\nb", "*", "~", "-", "--", ""]


def ssh() -> SshTransport:
    return SshTransport(
        host="login",
        user="alice",
        key_file="/k",
        port=2222,
        known_hosts_file="/kh",
        remote_env={"SLURM_CONF": "/etc/s s.conf"},
    )


def test_ssh_argv_uses_key_batch_mode_and_pinned_host_key() -> None:
    argv = ssh().ssh_argv(["squeue", "--json"])
    assert argv[:5] == ["ssh", "-p", "2222", "-i", "/k"]
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert argv[-3:-1] == ["alice@login", "--"]


@pytest.mark.parametrize("item", NASTY)
def test_ssh_remote_command_survives_the_remote_shell_unchanged(item: str) -> None:
    remote = ssh().ssh_argv(["printf", "%s\\0", item])[-1]
    # What sshd does on the far side: hand the string to the user's shell.
    out = subprocess.run(
        ["sh", "-c", remote],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.split("\0")[:-1] == [item]
    assert shlex.split(remote)[:2] == ["env", "SLURM_CONF=/etc/s s.conf"]


def test_local_transport_sets_slurm_conf_and_reports_missing_programs() -> None:
    t = LocalTransport("/etc/x.conf", base_env={"PATH": "/usr/bin:/bin"})
    assert t.run(["sh", "-c", 'printf %s "$SLURM_CONF"']).stdout == "/etc/x.conf"
    with pytest.raises(BackendUnavailable):
        t.run(["/nonexistent/sbatch"])


def mock_client(routes: dict[tuple[str, str], dict[str, Any]]) -> RestClient:
    def handler(request: httpx.Request) -> httpx.Response:
        rec = routes[(request.method, request.url.path)]
        body = rec["body"]
        if isinstance(body, str):
            return httpx.Response(rec["status"], text=body)
        return httpx.Response(rec["status"], json=body)

    return RestClient("http://slurm", "alice", "tok", transport=httpx.MockTransport(handler))


def rendered() -> Any:
    return render_script(
        ExecJob(job_id="r", argv=["true"], nodes=2, gpus_per_node=2, time_limit_s=60),
        ScriptOptions(job_root="/jobs", partition="debug", gpu_type="h100"),
    )


def test_rest_job_properties_repeat_every_directive() -> None:
    props = job_properties(rendered())
    assert props["nodes"] == "2" and props["gpus_per_node"] == "h100:2" and props["time_limit"] == 1
    assert (
        props["name"] == "aif-r-1"
        and props["partition"] == "debug"
        and "PATH" in props["environment"]
    )


def test_rest_submit_returns_the_job_id() -> None:
    rec = fixture("rest_submit_ok")
    client = mock_client({("POST", rec["path"]): rec})
    assert client.submit(rendered()) == str(rec["body"]["job_id"])


def test_rest_submit_rejection_is_invalid_with_slurms_words() -> None:
    rec = fixture("rest_submit_too_many_gpus")
    client = mock_client({("POST", rec["path"]): rec})
    with pytest.raises(Invalid, match="Requested node configuration is not available"):
        client.submit(rendered())


def test_rest_jobs_translate_to_the_same_models() -> None:
    rec = fixture("rest_jobs")
    jobs = [
        j for j in mock_client({("GET", rec["path"]): rec}).jobs() if j.name == "aif-fixture-rest-1"
    ]
    # Two records share the name: the exit-3 job and the rejected too-many-GPUs submission.
    ran, rejected = sorted(jobs, key=lambda j: j.never_ran)
    assert (ran.exec_state, ran.exit_code) == (ExecState.FAILED, 3)
    assert rejected.never_ran and latest_submission(jobs) == ran


def test_rest_unknown_job_is_not_found_and_missing_token_unavailable() -> None:
    rec = fixture("rest_job_unknown")
    with pytest.raises(NotFound):
        mock_client({("GET", rec["path"]): rec}).job("999999")
    rec = fixture("rest_no_token")
    with pytest.raises(BackendUnavailable):
        mock_client({("GET", rec["path"]): rec}).jobs()


def test_rest_unreachable_is_backend_unavailable() -> None:
    client = RestClient("http://127.0.0.1:9", "alice", "tok", timeout_s=2)
    with pytest.raises(BackendUnavailable):
        client.jobs()


def test_rest_fixture_is_json() -> None:
    assert json.dumps(fixture("rest_jobs"))
