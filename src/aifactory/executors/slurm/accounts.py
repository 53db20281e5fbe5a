"""Per-project Slurm accounts with a GPU budget, through ``sacctmgr -i`` on the accounting cluster.

Slurm's banking pattern: each project is an account whose ``GrpTRESMins=gres/gpu=<minutes>``
caps the GPU-minutes its jobs may use (needs ``AccountingStorageTRES=gres/gpu`` and
``AccountingStorageEnforce=limits`` in slurm.conf). The limit follows the platform's ledger: a
top-up raises it, expiry sets it to 0. Every operation is idempotent: "Nothing new added" is
success, because a site agent re-applies the desired state after any crash.

An account's users are exactly the project members' site logins: logins that are no longer
members lose their association (with ``AccountingStorageEnforce=associations`` they can then
no longer submit under the account); the control plane's own user is never added.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from aifactory.errors import NotFound
from aifactory.executors.slurm.failures import command_error
from aifactory.executors.slurm.models import gpus_from_tres
from aifactory.executors.slurm.script import SLURM_NAME, check_name
from aifactory.executors.slurm.transport import Transport

__all__ = [
    "AccountLimit",
    "SacctmgrAddAccount",
    "SacctmgrAddUser",
    "SacctmgrRemoveUser",
    "SacctmgrSetLimit",
    "SacctmgrShowAccount",
    "SiteAccounts",
    "gpu_minutes",
]

_NOTHING_NEW = "nothing new added"
_NOTHING_MODIFIED = "nothing modified"
_NOTHING_DELETED = "nothing deleted"
_USER = SLURM_NAME


def gpu_minutes(gpu_hours: float) -> int:
    """GPU-hours (the ledger's unit) as whole GPU-minutes, rounded down so Slurm never
    grants more than the ledger holds."""
    return max(0, math.floor(gpu_hours * 60 + 1e-9))


def _limit(minutes: int) -> str:
    return f"GrpTRESMins=gres/gpu={int(minutes)}"


def _check(verb: str, stdout: str, stderr: str, rc: int, *, ok_if: str = "") -> None:
    if rc == 0 or (ok_if and ok_if in (stdout + stderr).lower()):
        return
    raise command_error(verb, rc, stdout, stderr)


@dataclass(frozen=True)
class SacctmgrAddAccount:
    """``sacctmgr -i add account NAME GrpTRESMins=gres/gpu=M``; existing is success."""

    account: str
    minutes: int
    description: str = "aifactory project"

    def build(self) -> list[str]:
        """Argv (values validated, so none can add another ``key=value``)."""
        desc = re.sub(r"[^A-Za-z0-9_.-]", "-", self.description)
        argv = ["sacctmgr", "-i", "add", "account", self.account, f"Description={desc}"]
        return [*argv, _limit(self.minutes)]

    def parse(self, stdout: str, stderr: str, returncode: int) -> bool:
        """``True`` when created, ``False`` when it already existed."""
        _check("sacctmgr add account", stdout, stderr, returncode, ok_if=_NOTHING_NEW)
        return _NOTHING_NEW not in (stdout + stderr).lower()


@dataclass(frozen=True)
class SacctmgrSetLimit:
    """``sacctmgr -i modify account NAME set GrpTRESMins=gres/gpu=M``."""

    account: str
    minutes: int

    def build(self) -> list[str]:
        """Argv."""
        where = ["where", f"name={self.account}"]
        return ["sacctmgr", "-i", "modify", "account", *where, "set", _limit(self.minutes)]

    def parse(self, stdout: str, stderr: str, returncode: int) -> None:
        """Nothing on success.

        Raises:
            NotFound: No such account (sacctmgr says "Nothing modified").
        """
        if _NOTHING_MODIFIED in (stdout + stderr).lower():
            raise NotFound(f"no Slurm account {self.account}", extra={"account": self.account})
        _check("sacctmgr modify account", stdout, stderr, returncode)


@dataclass(frozen=True)
class SacctmgrAddUser:
    """``sacctmgr -i add user NAME account=ACCOUNT``; an existing association is success."""

    user: str
    account: str

    def build(self) -> list[str]:
        """Argv."""
        return ["sacctmgr", "-i", "add", "user", self.user, f"account={self.account}"]

    def parse(self, stdout: str, stderr: str, returncode: int) -> bool:
        """``True`` when the association was created."""
        _check("sacctmgr add user", stdout, stderr, returncode, ok_if=_NOTHING_NEW)
        return _NOTHING_NEW not in (stdout + stderr).lower()


@dataclass(frozen=True)
class SacctmgrRemoveUser:
    """``sacctmgr -i delete user where name=NAME account=ACCOUNT``: the association only.

    Removing a user's last association removes the user from slurmdbd; a missing association
    ("Nothing deleted") is success.
    """

    user: str
    account: str

    def build(self) -> list[str]:
        """Argv."""
        where = ["where", f"name={self.user}", f"account={self.account}"]
        return ["sacctmgr", "-i", "delete", "user", *where]

    def parse(self, stdout: str, stderr: str, returncode: int) -> bool:
        """``True`` when an association was deleted."""
        _check("sacctmgr delete user", stdout, stderr, returncode, ok_if=_NOTHING_DELETED)
        return _NOTHING_DELETED not in (stdout + stderr).lower()


@dataclass(frozen=True)
class AccountLimit:
    """An account's GPU budget and its users as slurmdbd holds them."""

    account: str
    gpu_minutes: int | None
    users: tuple[str, ...]


@dataclass(frozen=True)
class SacctmgrShowAccount:
    """``sacctmgr -n -P show assoc where account=NAME format=account,user,grptresmins``."""

    account: str

    def build(self) -> list[str]:
        """Argv."""
        where = ["where", f"account={self.account}"]
        return ["sacctmgr", "-n", "-P", "show", "assoc", *where, "format=account,user,grptresmins"]

    def parse(self, stdout: str, stderr: str, returncode: int) -> AccountLimit | None:
        """The account's limit and users, ``None`` when it does not exist."""
        _check("sacctmgr show assoc", stdout, stderr, returncode)
        minutes: int | None = None
        users: list[str] = []
        found = False
        for line in stdout.splitlines():
            cols = line.split("|")
            if len(cols) < 3 or cols[0] != self.account:
                continue
            found = True
            if cols[1]:
                users.append(cols[1])
            elif "gres/gpu" in cols[2]:
                minutes = gpus_from_tres(cols[2])
        return AccountLimit(self.account, minutes, tuple(sorted(users))) if found else None


class SiteAccounts:
    """Project accounts on one accounting cluster.

    Args:
        transport: Where ``sacctmgr`` runs (an operator/admin login on the accounting cluster).
        account_prefix: Prepended to project ids (Slurm keeps account names lower case).
    """

    def __init__(self, transport: Transport, *, account_prefix: str = "") -> None:
        self.transport = transport
        self.account_prefix = account_prefix

    def account_name(self, project: str) -> str:
        """The Slurm account of ``project``."""
        return check_name("account", f"{self.account_prefix}{project}".lower())

    def _run(
        self,
        command: SacctmgrAddAccount | SacctmgrSetLimit | SacctmgrAddUser | SacctmgrRemoveUser,
    ) -> object:
        result = self.transport.run(command.build())
        return command.parse(result.stdout, result.stderr, result.returncode)

    def ensure_account(self, project: str, gpu_minutes: int, users: Sequence[str] = ()) -> str:
        """Create the project's account if needed, set its limit, and make its users exactly
        ``users``: the missing ones are added, the others removed.

        Returns:
            The Slurm account name.
        """
        wanted = sorted({check_name("user", u, _USER).lower() for u in users})
        account = self.account_name(project)
        self._run(SacctmgrAddAccount(account, gpu_minutes))
        # Applied even when the account existed, so a repeated call converges on the ledger.
        self._run(SacctmgrSetLimit(account, gpu_minutes))
        current = self.show(project)
        present = set(current.users) if current is not None else set()
        for user in wanted:
            if user not in present:
                self.add_user(project, user)
        for user in sorted(present - set(wanted)):
            self.remove_user(project, user)
        return account

    def add_user(self, project: str, user: str) -> None:
        """Give ``user`` an association with the project's account."""
        self._run(SacctmgrAddUser(check_name("user", user, _USER), self.account_name(project)))

    def remove_user(self, project: str, user: str) -> None:
        """End ``user``'s association with the project's account (jobs already queued stay)."""
        account = self.account_name(project)
        self._run(SacctmgrRemoveUser(check_name("user", user, _USER), account))

    def set_limit(self, project: str, gpu_minutes: int) -> None:
        """Set the GPU-minute budget (top-up: the new total; expiry: 0).

        Raises:
            NotFound: The account does not exist.
        """
        self._run(SacctmgrSetLimit(self.account_name(project), gpu_minutes))

    def show(self, project: str) -> AccountLimit | None:
        """The account as slurmdbd holds it, ``None`` if missing."""
        command = SacctmgrShowAccount(self.account_name(project))
        result = self.transport.run(command.build())
        return command.parse(result.stdout, result.stderr, result.returncode)
