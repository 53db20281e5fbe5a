"""Per-person identity in the Slurm executor: transports acting as a person, per-person JWTs,
project accounts holding exactly the members' logins, and sites that require a site account."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.errors import BackendUnavailable, Invalid
from aifactory.executors.base import ExecJob
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.accounts import SiteAccounts
from aifactory.executors.slurm.backends import RestBackend
from aifactory.executors.slurm.rest import RestClient, ScontrolToken, UserTokens
from aifactory.executors.slurm.script import RenderedScript, ScriptOptions, render_script
from aifactory.executors.slurm.transport import CommandResult, LocalTransport, SshTransport

BAD_LOGINS = ["root", "Alice", "a b", "alice\n", "-u", "x" * 33, "", "a=b", "alice;id"]


@pytest.mark.parametrize("login", BAD_LOGINS)
def test_transports_refuse_privileged_or_odd_logins(login: str) -> None:
    with pytest.raises(Invalid):
        LocalTransport().as_user(login)
    with pytest.raises(Invalid):
        SshTransport(host="h", user="svc", key_file="/k").as_user(login)


def test_local_transport_switches_user_with_runuser_as_root_else_sudo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = LocalTransport("/etc/s.conf").as_user("alice")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert t.person_argv(["sbatch", "--parsable"]) == [
        "runuser",
        "-u",
        "alice",
        "--",
        "sbatch",
        "--parsable",
    ]
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert t.person_argv(["sbatch"]) == ["sudo", "-n", "-u", "alice", "--", "sbatch"]
    assert LocalTransport().person_argv(["sbatch"]) == ["sbatch"]


def test_the_user_switch_goes_inside_a_timeout_wrapper(monkeypatch: pytest.MonkeyPatch) -> None:
    """timeout kills its whole process group, so it still reaches sbatch through the switch,
    and the site's sudo rule only has to name sbatch."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    argv = ["timeout", "--signal=KILL", "28", "sbatch", "--parsable"]
    switch = ["runuser", "-u", "alice", "--"]
    assert LocalTransport().as_user("alice").person_argv(argv) == [*argv[:3], *switch, *argv[3:]]
    remote = SshTransport(host="h", user="s", key_file="/k").as_user("alice").ssh_argv(argv)[-1]
    sudo = ["sudo", "-n", "-u", "alice", "--"]
    assert shlex.split(remote.split(" && ", 1)[1]) == [*argv[:3], *sudo, *argv[3:]]


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")
def test_a_command_run_as_a_person_runs_as_that_user_with_an_owner_only_umask() -> None:
    t = LocalTransport(base_env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).as_user("nobody")
    out = t.run(["sh", "-c", 'id -un; umask; pwd; printf %s "$SLURM_X"'])
    assert out.stdout.split("\n") == ["nobody", "0077", "/", ""]


def test_ssh_runs_a_persons_command_through_sudo_with_umask_077(tmp_path: Path) -> None:
    t = SshTransport(
        host="login", user="svc", key_file="/k", remote_env={"SLURM_CONF": "/etc/s s.conf"}
    ).as_user("alice")
    remote = t.ssh_argv(["sbatch", "a b", "$(id)", "it's"])[-1]
    assert remote.startswith("umask 077 && env 'SLURM_CONF=/etc/s s.conf' sudo -n -u alice -- ")
    # What the login node's shell does with it, with a sudo that reports what it was given.
    fake = tmp_path / "sudo"
    fake.write_text('#!/bin/sh\numask\nprintf "%s\\0" "$SLURM_CONF" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    out = subprocess.run(
        ["sh", "-c", remote],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    ).stdout
    mask, rest = out.split("\n", 1)
    assert mask == "0077"
    assert rest.split("\0")[:-1] == [
        "/etc/s s.conf",
        *["-n", "-u", "alice", "--", "sbatch", "a b", "$(id)", "it's"],
    ]
    # The service's own commands are unchanged.
    plain = SshTransport(host="login", user="svc", key_file="/k").ssh_argv(["squeue"])[-1]
    assert shlex.split(plain) == ["squeue"]


class Recorder:
    """A transport answering from a table of argv[0:2] -> CommandResult."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
        self.calls.append(list(argv))
        for prefix, result in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return result
        return CommandResult(0, "", "")

    def as_user(self, login: str) -> Recorder:
        return self


def test_project_account_holds_exactly_the_given_logins() -> None:
    shown = "aif-p1|||\naif-p1|alice||\naif-p1|aifsvc||\naif-p1|carol||\n"
    rec = Recorder({("sacctmgr", "-n", "-P", "show"): CommandResult(0, shown, "")})
    SiteAccounts(rec, account_prefix="aif-").ensure_account("P1", 60, ["alice", "bob"])
    changes = [c for c in rec.calls if c[2] in ("add", "delete") and c[3] == "user"]
    assert changes == [
        ["sacctmgr", "-i", "add", "user", "bob", "account=aif-p1"],
        ["sacctmgr", "-i", "delete", "user", "where", "name=aifsvc", "account=aif-p1"],
        ["sacctmgr", "-i", "delete", "user", "where", "name=carol", "account=aif-p1"],
    ]


def test_removing_a_missing_association_is_success() -> None:
    gone = CommandResult(1, " Nothing deleted\n", "")
    rec = Recorder({("sacctmgr", "-i", "delete"): gone})
    SiteAccounts(rec).remove_user("p1", "alice")  # no error


def test_scontrol_token_argv_and_output() -> None:
    command = ScontrolToken("alice", 600)
    assert command.build() == ["scontrol", "token", "username=alice", "lifespan=600"]
    assert command.parse("SLURM_JWT=eyJ.abc.def\n", "", 0) == "eyJ.abc.def"
    with pytest.raises(Invalid):
        ScontrolToken("root", 600).build()
    with pytest.raises(BackendUnavailable):
        command.parse("", "", 0)
    with pytest.raises(Invalid, match="permission"):
        command.parse("", "scontrol: error: permission denied", 1)


def test_user_tokens_are_cached_until_a_quarter_of_their_life_is_left() -> None:
    now = [0.0]
    minted: list[str] = []

    class Minter(Recorder):
        def run(self, argv: list[str], stdin: str | None = None) -> CommandResult:
            minted.append(argv[2])
            return CommandResult(0, f"SLURM_JWT=tok{len(minted)}\n", "")

    tokens = UserTokens(Minter(), lifespan_s=400, clock=lambda: now[0])
    assert tokens.token("alice") == "tok1"
    now[0] = 290.0  # 110 s of 400 left: still more than a quarter
    assert tokens.token("alice") == "tok1"
    assert tokens.token("bob") == "tok2"
    now[0] = 301.0  # 99 s left: renewed
    assert tokens.token("alice") == "tok3"
    tokens.forget("alice")
    assert tokens.token("alice") == "tok4"
    assert minted == ["username=alice", "username=bob", "username=alice", "username=alice"]


def _rendered() -> RenderedScript:
    return render_script(ExecJob(job_id="r", argv=["true"]), ScriptOptions(job_root="/jobs"))


def _rest(status: int = 200) -> tuple[RestBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if status == 401:
            return httpx.Response(401, text="Authentication failure")
        return httpx.Response(200, json={"errors": [], "job_id": 5001})

    client = RestClient("http://slurm", "svc", "svc-token", transport=httpx.MockTransport(handler))
    minter = Recorder({("scontrol", "token"): CommandResult(0, "SLURM_JWT=alice-jwt\n", "")})
    return RestBackend(client, admin=minter, tokens=UserTokens(minter)), seen


def test_rest_submits_a_persons_job_with_that_persons_own_token() -> None:
    backend, seen = _rest()
    assert backend.submit(_rendered(), "alice") == "5001"
    assert backend.submit(_rendered()) == "5001"
    as_alice, as_service = seen
    assert as_alice.headers["X-SLURM-USER-NAME"] == "alice"
    assert as_alice.headers["X-SLURM-USER-TOKEN"] == "alice-jwt"
    assert json.loads(as_alice.content)["job"]["environment"]["SLURM_UMASK"] == "0077"
    assert as_service.headers["X-SLURM-USER-NAME"] == "svc"
    assert "SLURM_UMASK" not in json.loads(as_service.content)["job"]["environment"]


def test_a_refused_person_token_is_minted_again_next_time() -> None:
    backend, _ = _rest(401)
    assert backend.tokens is not None
    with pytest.raises(BackendUnavailable):
        backend.submit(_rendered(), "alice")
    assert "alice" not in backend.tokens._tokens
    with pytest.raises(Invalid, match="admin_transport"):
        RestBackend(backend.client).submit(_rendered(), "alice")


class Backend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.admin = Recorder()

    def find(self, name: str) -> None:
        return None

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        self.calls.append(("prepare", run_as))

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        self.calls.append(("submit", run_as))
        return "1"


def _executor(**settings: Any) -> tuple[SlurmExecutor, Backend]:
    backend = Backend()
    return SlurmExecutor(backend=backend, job_root="/jobs", **settings), backend


def test_a_site_requiring_site_accounts_refuses_a_job_without_one() -> None:
    ex, backend = _executor()
    assert ex.requires_site_account
    with pytest.raises(Invalid, match="runs jobs only as their owner's own site account"):
        ex.submit(ExecJob(job_id="j1", argv=["true"]))
    with pytest.raises(Invalid):
        ex.submit(ExecJob(job_id="j1", argv=["true"], run_as="root"))
    assert backend.calls == []
    ex.submit(ExecJob(job_id="j1", argv=["true"], run_as="alice"))
    assert backend.calls == [("prepare", "alice"), ("submit", "alice")]


def test_the_service_user_joins_project_accounts_only_where_accounts_are_not_required() -> None:
    for required, expected in ((True, ["alice"]), (False, ["alice", "svc"])):
        ex, backend = _executor(require_site_account=required)
        ex.service_user = "svc"
        assert ex.ensure_account("p1", 1.0, ["alice"])
        added = [c[4] for c in backend.admin.calls if c[2:4] == ["add", "user"]]
        assert added == expected


@pytest.mark.parametrize(
    "settings",
    [
        {"transport": "rest", "rest": {"url": "http://r", "user": "svc", "token": "t"}},
        {"admin_transport": "local"},
        {
            "transport": "rest",
            "admin_transport": "ssh",
            "rest": {"url": "http://r", "user": "svc", "token": "t"},
        },
    ],
)
def test_bad_identity_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        SlurmExecutor(job_root="/jobs", **settings)


def test_a_rest_site_mints_person_tokens_through_its_admin_transport() -> None:
    ex = SlurmExecutor(
        job_root="/jobs",
        transport="rest",
        admin_transport="local",
        slurm_conf="/etc/s.conf",
        rest={"url": "http://r", "user": "svc", "token": "t", "user_token_lifespan_s": 900},
    )
    assert isinstance(ex.backend, RestBackend) and ex.backend.tokens is not None
    assert isinstance(ex.backend.admin, LocalTransport) and ex.backend.tokens.lifespan_s == 900
    assert ex.service_user == "svc"
