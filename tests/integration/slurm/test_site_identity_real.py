"""Per-person identity on real Slurm (factory2: slurmdbd, AccountingStorageEnforce=associations).

Real Unix users aif-alice (project A) and aif-bob (project B) stand in for two people's own
logins. Through each transport (local with runuser, slurmrestd with per-person JWTs, SSH with
``sudo -n -u``) a job of A runs as alice and cannot read B's job directory, checkpoint or log,
cannot cancel B's job and cannot submit under B's account; the service's own user is in
neither account. Then the same through the site agent: a job runs as its owner's login, and a
job whose owner has none is refused with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import HARNESS, new_id, settings, wait
from sqlalchemy import select
from unix_users import ensure_unix_user, map_login

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.models import ProjectMember, User
from aifactory.domain.enums import Role
from aifactory.errors import Invalid
from aifactory.executors.base import ExecJob, ExecState
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.accounts import SiteAccounts
from aifactory.executors.slurm.transport import LocalTransport
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import run_until, spec
from aifactory.testing.people import make_person

ALICE, BOB = "aif-alice", "aif-bob"
SUDOERS = Path("/etc/sudoers.d/aif-site-identity-test")
# Bob's job leaves a checkpoint in its own job directory and keeps running.
BOB_SCRIPT = """id -un
echo secret-of-bob > "$AIF_JOB_DIR/checkpoint.pt"
sleep 120
"""
# Alice's job tries everything a job of project A must not be able to do to project B.
ALICE_SCRIPT = """echo "whoami=$(id -un)"
try() { if "$@" >/dev/null 2>&1; then echo yes; else echo denied; fi; }
echo "list=$(try ls "$BOB_DIR")"
echo "checkpoint=$(try cat "$BOB_DIR/checkpoint.pt")"
echo "log=$(try cat "$BOB_OUT")"
echo "scancel=$(scancel "$BOB_ID" 2>&1 | tail -n1)"
echo "sbatch=$(sbatch -A "$B_ACCOUNT" -o /dev/null --wrap true 2>&1 | tail -n1)"
"""


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def ids(harness: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Two people, two project accounts (unique names) holding one of them each."""
    for login in (ALICE, BOB):
        ensure_unix_user(login)
    conf = harness["FACTORY2_CONF"]
    prefix = f"aifid{uuid.uuid4().hex[:8]}-"
    accounts = SiteAccounts(LocalTransport(conf), account_prefix=prefix)
    a = accounts.ensure_account("proj-a", 600, [ALICE])
    b = accounts.ensure_account("proj-b", 600, [BOB])
    yield {"conf": conf, "prefix": prefix, "accounts": accounts, "A": a, "B": b}
    # Every account this module made (the site agent's carry the same prefix).
    listed = _sh("env", f"SLURM_CONF={conf}", "sacctmgr", "-n", "-P", "show", "account")
    mine = [n for n in (ln.split("|")[0] for ln in listed.stdout.split()) if n.startswith(prefix)]
    for account in mine:
        _sh("env", f"SLURM_CONF={conf}", "scancel", "-A", account)
    time.sleep(1)
    for account in mine:
        _sh("env", f"SLURM_CONF={conf}", "sacctmgr", "-i", "delete", "account", account)


@pytest.fixture(scope="module")
def sudo_rule(harness: dict[str, str]) -> Iterator[None]:
    """What a site configures for the SSH transport: the service account may run sbatch and
    mkdir as these people (and keep SLURM_CONF), nothing else."""
    if shutil.which("sudo") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "sudo"],
            capture_output=True,
            check=False,
            env=env,
        )
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (the SSH transport submits through sudo -n -u)")
    service = harness["SSHD_USER"]
    commands = ", ".join(str(shutil.which(c)) for c in ("sbatch", "mkdir"))
    SUDOERS.write_text(
        f'Defaults:{service} env_keep += "SLURM_CONF"\n'
        f"{service} ALL=({ALICE},{BOB}) NOPASSWD: {commands}\n"
    )
    SUDOERS.chmod(0o440)
    yield
    SUDOERS.unlink(missing_ok=True)


def _executor(h: dict[str, str], kind: str, prefix: str) -> SlurmExecutor:
    base = {
        **settings(h, f"f2-{kind}"),
        "require_site_account": True,
        "account_prefix": prefix,
    }
    if kind == "rest":  # people's tokens are minted here, as root; the service acts as root
        root_token = _sh(*HARNESS, "token", "root", "3600").stdout.strip()
        base["admin_transport"] = "local"
        base["slurm_conf"] = h["FACTORY2_CONF"]
        base["rest"] = {**base["rest"], "user": "root", "token": root_token}
    return SlurmExecutor(**base)


@pytest.fixture(params=["local", "rest", "ssh"])
def person_executor(
    request: pytest.FixtureRequest, harness: dict[str, str], ids: dict[str, Any]
) -> SlurmExecutor:
    if request.param == "ssh":
        request.getfixturevalue("sudo_rule")
    return _executor(harness, str(request.param), ids["prefix"])


@pytest.fixture
def admin(harness: dict[str, str], ids: dict[str, Any]) -> SlurmExecutor:
    """The service's own credentials (root here): polls and cancels anyone's job."""
    return SlurmExecutor(**{**settings(harness, "f2-local"), "account_prefix": ids["prefix"]})


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def _owner_and_mode(path: str) -> tuple[str, int]:
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, st.st_mode & 0o777


def test_a_job_of_one_project_cannot_touch_another_projects_job(
    person_executor: SlurmExecutor, admin: SlurmExecutor, ids: dict[str, Any]
) -> None:
    ex, conf = person_executor, ids["conf"]
    bob = ExecJob(job_id=new_id(), script=BOB_SCRIPT, run_as=BOB, project="proj-b")
    bob_id = ex.submit(bob)
    try:
        wait(admin, bob_id, state="running")
        bob_dir = f"{ex.config.job_root}/{bob.job_id}"
        _wait_for(Path(bob_dir, "checkpoint.pt"))
        bob_paths = ex.log_paths_for(bob)
        assert bob_paths is not None
        assert _owner_and_mode(bob_dir) == (BOB, 0o700)
        assert _owner_and_mode(bob_paths[0]) == (BOB, 0o600)
        env = {"BOB_DIR": bob_dir, "BOB_OUT": bob_paths[0], "BOB_ID": bob_id}
        env |= {"B_ACCOUNT": ids["B"], "SLURM_CONF": conf}
        alice = ExecJob(
            job_id=new_id(), script=ALICE_SCRIPT, env=env, run_as=ALICE, project="proj-a"
        )
        status = wait(admin, ex.submit(alice), timeout=60)
        alice_paths = ex.log_paths_for(alice)
        assert alice_paths is not None
        report = dict(
            line.split("=", 1)
            for line in Path(alice_paths[0]).read_text().splitlines()
            if "=" in line
        )
        assert status.state is ExecState.COMPLETED, report
        assert report["whoami"] == ALICE
        assert (report["list"], report["checkpoint"], report["log"]) == ("denied",) * 3
        assert "Access/permission denied" in report["scancel"]
        assert "Invalid account" in report["sbatch"]
        # The same through the executor's own door: alice's job under B's account is refused.
        with pytest.raises(Invalid, match="Invalid account"):
            ex.submit(ExecJob(job_id=new_id(), argv=["true"], run_as=ALICE, project="proj-b"))
        # And alice at the login node: scancel of bob's job is refused, bob's job goes on.
        refused = _sh("runuser", "-u", ALICE, "--", "env", f"SLURM_CONF={conf}", "scancel", bob_id)
        assert "Access/permission denied" in refused.stderr
        assert admin.poll([bob_id])[bob_id].state is ExecState.RUNNING
    finally:
        admin.cancel(bob_id)
    assert wait(admin, bob_id).state is ExecState.CANCELLED


def test_project_accounts_hold_exactly_their_members_and_not_the_service(
    ids: dict[str, Any], admin: SlurmExecutor
) -> None:
    accounts: SiteAccounts = ids["accounts"]
    shown = {p: accounts.show(p) for p in ("proj-a", "proj-b")}
    assert {p: s.users for p, s in shown.items() if s} == {"proj-a": (ALICE,), "proj-b": (BOB,)}
    # Bob joins project A, then leaves it: from then on Slurm refuses his jobs under A.
    accounts.ensure_account("proj-a", 600, [ALICE, BOB])
    joined = admin.submit(ExecJob(job_id=new_id(), argv=["true"], run_as=BOB, project="proj-a"))
    assert wait(admin, joined).state is ExecState.COMPLETED
    accounts.ensure_account("proj-a", 600, [ALICE])
    shown_a = accounts.show("proj-a")
    assert shown_a is not None and shown_a.users == (ALICE,)
    with pytest.raises(Invalid, match="Invalid account"):
        admin.submit(ExecJob(job_id=new_id(), argv=["true"], run_as=BOB, project="proj-a"))


# --- through the site agent ----------------------------------------------------------------


@pytest.fixture
def fed(harness: dict[str, str], ids: dict[str, Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """MIMER on factory2, requiring site accounts (the default); anna's login there is alice,
    bert (a member of the same project) has none."""
    options = {
        "cluster": "factory2",
        "slurm_conf": harness["FACTORY2_CONF"],
        "job_root": harness["JOB_ROOT"],
        "gpu_type": "h100",
        "gpu_request": "gres",
        "partitions": {"gpu": "debug"},
        "account_prefix": ids["prefix"],
        "command_timeout_s": 30.0,
    }
    sites = tmp_path / "sites.yaml"
    site = {"factory": "MIMER", "executor": "slurm", "options": options}
    sites.write_text(yaml.safe_dump({"sites": [site]}))
    app_settings = Settings(data_dir=tmp_path / "data", sites_file=sites)
    db = prepare(app_settings)
    with db.session() as s:
        registry.update_partition(
            s, "MIMER", "MIMER", "gpu", {"nodes": 2, "gpus_per_node": 8, "gpu_model": "H100"}
        )
    with TestClient(create_app(app_settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        bert = make_person(db, "bert", [(Role.PROJECT_MEMBER, None)])
        mimer_op = make_person(db, "op2", [(Role.FACTORY_OPERATOR, "MIMER")])
        project, _ = award(api, anna, mimer_op, call="mimer-pg", partition="MIMER/gpu", hours=100)
        with db.session() as s:
            bert_id = s.scalar(select(User.id).where(User.username == "bert"))
            assert bert_id is not None
            s.add(ProjectMember(project_code=project, user_id=bert_id, role=Role.PROJECT_MEMBER))
        map_login(db, "anna", "MIMER", ALICE)
        yield {
            "api": api,
            "anna": anna,
            "bert": bert,
            "project": project,
            "runner": AgentRunner(app_settings, db),
        }
    db.dispose()


def _job(fed: dict[str, Any], who: str, job_id: int) -> dict[str, Any]:
    response = fed["api"].get(f"/api/v1/jobs/{job_id}", headers=fed[who].headers)
    return ok(response)  # type: ignore[no-any-return]


def test_the_site_agent_runs_jobs_as_their_owners_login_and_refuses_owners_without_one(
    fed: dict[str, Any], ids: dict[str, Any]
) -> None:
    api, project = fed["api"], fed["project"]
    script = ["bash", "-c", "echo ran-as=$(id -un)"]
    anna_job = ok(
        api.post("/api/v1/jobs", headers=fed["anna"].headers, json=spec(project, script)), 201
    )
    bert_job = ok(
        api.post("/api/v1/jobs", headers=fed["bert"].headers, json=spec(project, script)), 201
    )
    ended = ("completed", "failed", "cancelled")
    run_until(
        fed["runner"],
        lambda: (
            _job(fed, "anna", anna_job["id"])["state"] in ended
            and _job(fed, "bert", bert_job["id"])["state"] in ended
        ),
        timeout=60,
        step=0.3,
    )
    done = _job(fed, "anna", anna_job["id"])
    assert done["state"] == "completed", done["reason"]
    logs = ok(api.get(f"/api/v1/jobs/{anna_job['id']}/logs", headers=fed["anna"].headers))
    assert f"ran-as={ALICE}" in logs["text"]
    refused = _job(fed, "bert", bert_job["id"])
    assert refused["state"] == "failed" and refused["attempts"] == []
    assert refused["reason"] == (
        "MIMER refused it: cannot be run as given: "
        "no site account at MIMER for bert; ask the factory's operator"
    )
    account = ids["accounts"].show(project)
    assert account is not None and account.users == (ALICE,)  # not root, not bert
