"""Local jobs run as the job user: own home, scrubbed environment, records out of their reach.

These start real processes as the job user, so they need root (CI runs as root); a server that
is not root runs jobs as itself, which the last tests check without switching users.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exechelpers import Wait

from aifactory.errors import Invalid
from aifactory.executors import ExecJob, ExecState, LocalExecutor, _jobuser
from aifactory.executors._jobfs import UnsafePath, ensure_dir

USER = _jobuser.DEFAULT_JOB_USER
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")


@pytest.fixture
def job_root() -> Iterator[Path]:
    # Not under tmp_path: pytest keeps that 0700, and the job user must pass through.
    root = Path(tempfile.mkdtemp(prefix="aif-homes-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def isolated(state_dir: Path, job_root: Path) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(state_dir, gpus=2, kill_grace_s=0.5, job_user=USER, job_root=job_root)
    yield ex
    for backend_id in ex.recover():
        ex.cancel(backend_id)
    deadline = time.monotonic() + 5
    while ex.recover() and time.monotonic() < deadline:
        time.sleep(0.05)


def py(code: str, job_id: str = "j1", **kw: object) -> ExecJob:
    return ExecJob(job_id=job_id, argv=["python", "-c", code], **kw)  # type: ignore[arg-type]


def run(ex: LocalExecutor, wait: Wait, spec: ExecJob, *states: ExecState) -> tuple[str, str]:
    backend_id = ex.submit(spec)
    wait(ex, backend_id, *(states or (ExecState.COMPLETED,)))
    out, err = ex.log_paths(backend_id)
    return out.read_text(), err.read_text()


REPORT = """\
import json, os, sys
home = os.environ["HOME"]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "cwd": os.getcwd(), "env": dict(os.environ), "umask": os.umask(0)}))
"""


@root_only
def test_the_job_runs_as_the_job_user_in_a_private_home_of_its_own(
    isolated: LocalExecutor, wait: Wait, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIF_DATABASE_URL", "postgresql://user:secret@db/aif")
    monkeypatch.setenv("SOME_TOKEN", "t0ken")
    out, _ = run(isolated, wait, py(REPORT, env={"MINE": "1"}, gpus_per_node=1))
    seen = json.loads(out)
    user = pwd.getpwnam(USER)
    assert (seen["uid"], seen["gid"], seen["groups"]) == (user.pw_uid, user.pw_gid, [])
    home = isolated.home("j1.1")
    assert seen["cwd"] == str(home) and seen["env"]["HOME"] == str(home)
    assert seen["env"]["USER"] == USER and seen["env"]["MINE"] == "1"
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "0" and seen["umask"] == 0o077
    assert "AIF_DATABASE_URL" not in seen["env"] and "SOME_TOKEN" not in seen["env"]
    info = home.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, 0o700)
    assert stat.S_IMODE(home.parent.stat().st_mode) == 0o711  # pass through, never list
    for records in (state_dir, state_dir / "jobs" / "j1.1"):
        info = records.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o700)


@root_only
def test_the_job_cannot_forge_its_records_list_other_homes_or_signal_its_wrapper(
    isolated: LocalExecutor, wait: Wait, state_dir: Path
) -> None:
    run(isolated, wait, py("open('secret.txt', 'w').write('victim')", job_id="victim"))
    victim_home = isolated.home("victim.1")
    assert (victim_home / "secret.txt").read_text() == "victim"
    exit_record = state_dir / "jobs" / "attacker.1" / "exit.json"
    probe = f"""
import json, os
def attempt(name, action):
    try:
        action()
        print(name, "OK", flush=True)
    except OSError as exc:
        print(name, "DENIED", exc.errno, flush=True)
attempt("forge", lambda: open({str(exit_record)!r}, "w").write(json.dumps(
    {{"outcome": "exited", "exit_code": 0}})))
attempt("records", lambda: os.listdir({str(state_dir)!r}))
attempt("list_homes", lambda: os.listdir(os.path.dirname(os.getcwd())))
attempt("victim_by_name", lambda: os.listdir(os.path.join(os.path.dirname(os.getcwd()), "victim")))
attempt("signal_wrapper", lambda: os.kill(os.getppid(), 0))
attempt("wrapper_environ", lambda: open(f"/proc/{{os.getppid()}}/environ").read())
raise SystemExit(3)
"""
    out, _ = run(isolated, wait, py(probe, job_id="attacker"), ExecState.FAILED)
    verdicts = dict(line.split(" ", 2)[:2] for line in out.splitlines())
    assert verdicts == dict.fromkeys(
        ("forge", "records", "list_homes", "victim_by_name", "signal_wrapper", "wrapper_environ"),
        "DENIED",
    ), out
    status = isolated.poll(["attacker.1"])["attacker.1"]
    assert (status.state, status.exit_code) == (ExecState.FAILED, 3)  # its real exit code


@root_only
def test_paths_leaving_the_home_are_invalid_and_relative_ones_are_made_for_the_job(
    isolated: LocalExecutor, wait: Wait
) -> None:
    for field, value in [("workdir", "/etc"), ("workdir", "a/../../x"), ("stdout_path", "/o")]:
        with pytest.raises(Invalid) as err:
            isolated.submit(py("pass", job_id="bad", **{field: value}))
        assert err.value.details[0].field == field
    spec = py("import os; print(os.getcwd())", workdir="run/one", stdout_path="logs/out.txt")
    run(isolated, wait, spec)
    cwd = isolated.home("j1.1") / "run" / "one"
    assert (cwd / "logs" / "out.txt").read_text() == f"{cwd}\n"  # relative to the workdir
    owner = pwd.getpwnam(USER).pw_uid
    for made in (cwd.parent, cwd, cwd / "logs" / "out.txt"):
        assert made.stat().st_uid == owner


@root_only
def test_links_a_job_plants_in_its_home_never_redirect_the_wrapper(
    isolated: LocalExecutor, wait: Wait, tmp_path: Path
) -> None:
    target = tmp_path / "root-owned.txt"  # what a job would like root to overwrite
    target.write_text("untouched")
    plant = (
        f"import os; os.symlink({str(target)!r}, '.aif-job.2.sh'); "
        f"os.symlink({str(target)!r}, 'out.log'); os.mkdir('d'); os.symlink('/etc', 'd/sub')"
    )
    run(isolated, wait, py(plant, job_id="sly"))
    script = ExecJob(job_id="sly", attempt=2, script="echo second attempt\n")
    out, _ = run(isolated, wait, script)
    assert out == "second attempt\n" and target.read_text() == "untouched"
    home = isolated.home("sly.2")
    assert not (home / ".aif-job.2.sh").is_symlink()
    for n, (field, value) in enumerate([("stdout_path", "out.log"), ("workdir", "d/sub")], 3):
        spec = py("print('x')", job_id="sly", attempt=n, **{field: value})
        status = wait(isolated, isolated.submit(spec), ExecState.FAILED)
        assert status.exit_code == 126 and "cannot prepare" in status.message
    assert target.read_text() == "untouched"


@root_only
def test_a_script_keeps_its_interpreter_line_and_gets_its_arguments(
    isolated: LocalExecutor, wait: Wait
) -> None:
    script = f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:])\n"
    out, _ = run(isolated, wait, ExecJob(job_id="s", script=script, args=["a b", "$HOME"]))
    assert out == "['a b', '$HOME']\n"
    bash = 'echo "$0 $1 $#"\n'
    out, _ = run(isolated, wait, ExecJob(job_id="b", script=bash, args=["x y"]))
    home = isolated.home("b.1")
    assert out == f"{home / '.aif-job.1.sh'} x y 1\n"
    info = (home / ".aif-job.1.sh").stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (pwd.getpwnam(USER).pw_uid, 0o700)


@root_only
def test_a_closed_directory_on_the_way_is_opened_for_the_job_user_alone(
    tmp_path: Path,
) -> None:
    user = _jobuser.resolve(USER)
    assert user is not None
    closed = Path(tempfile.mkdtemp(prefix="aif-closed-"))  # 0700, root's
    try:
        (closed / "inner").mkdir(mode=0o755)
        assert not _jobuser._can_search(closed, user)
        assert _jobuser.open_paths(user, [closed / "inner"]) == [closed]
        assert _jobuser._can_search(closed, user) and _jobuser.open_paths(user, [closed]) == []
        other = _jobuser.JobUser("other", user.uid + 1, user.gid + 1)
        assert not _jobuser._can_search(closed, other)  # search for that one user only
        assert stat.S_IMODE(closed.stat().st_mode) & 0o007 == 0
    finally:
        shutil.rmtree(closed)


def test_a_server_that_is_not_root_runs_jobs_as_itself_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, state_dir: Path
) -> None:
    monkeypatch.setattr(_jobuser.os, "geteuid", lambda: 4242)
    monkeypatch.setattr(_jobuser, "_warned", set())
    with caplog.at_level(logging.WARNING, logger=_jobuser.__name__):
        assert _jobuser.resolve("someone") is None
        assert _jobuser.resolve("someone") is None
    warnings = [r for r in caplog.records if "only root can switch" in r.getMessage()]
    assert len(warnings) == 1
    with pytest.raises(_jobuser.CannotSwitch):
        _jobuser.resolve("someone", require=True)
    monkeypatch.setattr(_jobuser.os, "geteuid", lambda: 4242)
    with pytest.raises(Invalid) as err:
        LocalExecutor(state_dir, job_user="someone", require_job_user=True)
    assert err.value.details[0].field == "job_user"


def test_the_platforms_own_settings_cannot_be_passed_through(state_dir: Path) -> None:
    with pytest.raises(Invalid) as err:
        LocalExecutor(state_dir, env_passthrough=("PATH", "AIF_DATABASE_URL"))
    assert err.value.details[0].field == "env_passthrough"


def test_directories_everyone_may_write_or_of_another_owner_are_not_used(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(UnsafePath, match="shared"):
        ensure_dir(shared, 0o700)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    ensure_dir(loose, 0o700)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(UnsafePath, match="link"):
        ensure_dir(link, 0o700)
    with pytest.raises(Invalid) as err:
        LocalExecutor(tmp_path / "state", job_root=shared)
    assert err.value.details[0].field == "job_root"
