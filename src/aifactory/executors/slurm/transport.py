"""How argv lists reach a cluster: a local subprocess or SSH to a login node.

Both run an argv list and return ``(rc, stdout, stderr)``; neither ever builds a shell string
from unquoted values. SSH is the one place a shell is unavoidable (sshd hands the command to the
remote user's shell), so every element is :func:`shlex.quote`-d there.

``as_user(login)`` gives the same transport acting as a person's site account, for the commands
that must run as that person (``sbatch``, ``mkdir`` of the job directory): locally through
``runuser`` when the service runs as root (else ``sudo -n -u``), over SSH through
``sudo -n -u LOGIN`` on the login node, which the site allows with a sudoers rule. Those
commands run with umask 077, so Slurm creates the job's output files owner-only.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aifactory.errors import BackendUnavailable, Invalid

__all__ = [
    "LOGIN",
    "CommandResult",
    "LocalTransport",
    "SshTransport",
    "Transport",
    "check_login",
]

#: A person's login at a site: a POSIX user name as Slurm stores it (lower case).
LOGIN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: Logins no job may run as, whatever a mapping says.
PRIVILEGED = frozenset({"root"})
#: The umask of commands run as a person: output files and directories owner-only.
PERSON_UMASK = 0o077


def _switched(argv: Sequence[str], switch: Sequence[str]) -> list[str]:
    """``argv`` with ``switch`` (``runuser``/``sudo`` and its options) before the command.

    A leading ``timeout [OPTIONS] DURATION`` stays outside: it signals its whole process
    group, so the command is still killed through the switch, and the person's rule at the
    site names only the command itself (``sbatch``), not ``timeout``.
    """
    if argv and argv[0] == "timeout":
        i = 1
        while i < len(argv) and argv[i].startswith("-"):
            i += 1
        return [*argv[: i + 1], *switch, *argv[i + 1 :]]
    return [*switch, *argv]


def check_login(login: str) -> str:
    """Return ``login`` if it is a plain, unprivileged login name, else raise :class:`Invalid`."""
    if not isinstance(login, str) or not LOGIN.fullmatch(login):
        raise Invalid.field("login", "pattern", f"{login!r} must match {LOGIN.pattern}")
    if login in PRIVILEGED:
        raise Invalid.field("login", "unprivileged", f"jobs never run as {login}")
    return login


@dataclass(frozen=True)
class CommandResult:
    """What a command returned."""

    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    """Runs one Slurm client command somewhere the cluster's clients work."""

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        """Run ``argv`` (feeding ``stdin``) and return its result.

        Raises:
            BackendUnavailable: The command could not be started or timed out.
        """
        ...

    def as_user(self, login: str) -> Transport:
        """The same transport, running commands as the site account ``login``.

        Raises:
            Invalid: ``login`` is not a plain, unprivileged login name.
        """
        ...


def _run(
    argv: Sequence[str],
    stdin: str | None,
    env: Mapping[str, str],
    timeout: float,
    *,
    person: bool = False,
) -> CommandResult:
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, no shell
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=timeout,
            check=False,
            # A person's command must not depend on the service's working directory (which
            # that person may not be allowed to enter) and leaves owner-only files.
            cwd="/" if person else None,
            umask=PERSON_UMASK if person else -1,
        )
    except FileNotFoundError as exc:
        raise BackendUnavailable(f"{argv[0]} is not installed here: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendUnavailable(f"{argv[0]} did not answer within {timeout:g}s") from exc
    return CommandResult(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True)
class LocalTransport:
    """Runs Slurm clients on this host.

    Attributes:
        slurm_conf: Path of the cluster's ``slurm.conf`` (sets ``SLURM_CONF``); ``None`` uses
            the host's default configuration.
        timeout_s: Seconds before a hanging command counts as an unreachable backend.
        base_env: Environment for the commands; ``None`` copies this process's once, at
            construction (settings are read once, never at import time).
        run_as: The site account commands run as (``None``: this process's user). As root
            that is ``runuser -u LOGIN --``; otherwise ``sudo -n -u LOGIN --``, which needs a
            sudoers rule (with ``env_keep`` for ``SLURM_CONF``).
    """

    slurm_conf: str | None = None
    timeout_s: float = 60.0
    base_env: Mapping[str, str] | None = None
    run_as: str | None = None
    _env: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        env = dict(os.environ if self.base_env is None else self.base_env)
        if self.slurm_conf is not None:
            env["SLURM_CONF"] = self.slurm_conf
        object.__setattr__(self, "_env", env)

    def as_user(self, login: str) -> LocalTransport:
        """This transport acting as ``login``."""
        return replace(self, run_as=check_login(login))

    def person_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run as :attr:`run_as` (unchanged without one)."""
        if self.run_as is None:
            return list(argv)
        if os.geteuid() == 0:
            # runuser keeps the environment (SLURM_CONF) and sets HOME/SHELL/USER/LOGNAME.
            return _switched(argv, ["runuser", "-u", self.run_as, "--"])
        return _switched(argv, ["sudo", "-n", "-u", self.run_as, "--"])

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        """Run ``argv`` as a subprocess of this process (as :attr:`run_as` when set)."""
        person = self.run_as is not None
        return _run(self.person_argv(argv), stdin, self._env, self.timeout_s, person=person)


@dataclass(frozen=True)
class SshTransport:
    """Runs Slurm clients on a login node through OpenSSH, key-only, never interactive.

    Attributes:
        host: Login node.
        user: Remote user (jobs run as this user).
        key_file: Private key for ``-i``.
        port: sshd port.
        known_hosts_file: Pinned host keys; when set, unknown or changed host keys are refused.
        remote_env: Variables set for every remote command (e.g. ``SLURM_CONF``), via ``env``.
        connect_timeout_s: ssh ``ConnectTimeout``.
        timeout_s: Seconds for the whole command.
        run_as: The site account remote commands run as, through ``sudo -n -u LOGIN --`` on
            the login node (``None``: :attr:`user` itself).
    """

    host: str
    user: str
    key_file: str
    port: int = 22
    known_hosts_file: str | None = None
    remote_env: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: int = 10
    timeout_s: float = 60.0
    run_as: str | None = None

    def as_user(self, login: str) -> SshTransport:
        """This transport acting as ``login`` (``sudo -n -u LOGIN`` on the login node)."""
        return replace(self, run_as=check_login(login))

    def ssh_argv(self, argv: Sequence[str]) -> list[str]:
        """The local ssh argv whose remote side runs exactly ``argv``.

        The remote sshd passes the command line to the user's shell, so each element is quoted;
        ``--`` ends ssh's own options before the destination's command.
        """
        opts = ["-p", str(self.port), "-i", self.key_file, "-o", "BatchMode=yes"]
        opts += ["-o", f"ConnectTimeout={self.connect_timeout_s}", "-o", "LogLevel=ERROR"]
        if self.known_hosts_file:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
            opts += ["-o", "StrictHostKeyChecking=yes"]
        remote = list(argv)
        if self.run_as is not None:
            # -n: fail rather than ask for a password. sudo resets the environment, so a site
            # that needs SLURM_CONF keeps it with env_keep in its sudoers rule.
            remote = _switched(remote, ["sudo", "-n", "-u", self.run_as, "--"])
        if self.remote_env:
            remote = ["env", *(f"{k}={v}" for k, v in sorted(self.remote_env.items())), *remote]
        command = shlex.join(remote)
        if self.run_as is not None:
            # sudo applies the union of this umask and its own: owner-only output files.
            command = f"umask {PERSON_UMASK:03o} && {command}"
        return ["ssh", *opts, f"{self.user}@{self.host}", "--", command]

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        """Run ``argv`` on the login node (rc 255: ssh itself failed)."""
        # stdin=None must still not inherit ours: ssh would read from the test runner's tty.
        return _run(self.ssh_argv(argv), stdin or "", os.environ, self.timeout_s)
