"""How argv lists reach a cluster: a local subprocess or SSH to a login node.

Both run an argv list and return ``(rc, stdout, stderr)``; neither ever builds a shell string
from unquoted values. SSH is the one place a shell is unavoidable (sshd hands the command to the
remote user's shell), so every element is :func:`shlex.quote`-d there.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aifactory.errors import BackendUnavailable

__all__ = ["CommandResult", "LocalTransport", "SshTransport", "Transport"]


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


def _run(
    argv: Sequence[str], stdin: str | None, env: Mapping[str, str], timeout: float
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
    """

    slurm_conf: str | None = None
    timeout_s: float = 60.0
    base_env: Mapping[str, str] | None = None
    _env: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        env = dict(os.environ if self.base_env is None else self.base_env)
        if self.slurm_conf is not None:
            env["SLURM_CONF"] = self.slurm_conf
        object.__setattr__(self, "_env", env)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        """Run ``argv`` as a subprocess of this process."""
        return _run(argv, stdin, self._env, self.timeout_s)


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
    """

    host: str
    user: str
    key_file: str
    port: int = 22
    known_hosts_file: str | None = None
    remote_env: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: int = 10
    timeout_s: float = 60.0

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
        if self.remote_env:
            remote = ["env", *(f"{k}={v}" for k, v in sorted(self.remote_env.items())), *remote]
        return ["ssh", *opts, f"{self.user}@{self.host}", "--", shlex.join(remote)]

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        """Run ``argv`` on the login node (rc 255: ssh itself failed)."""
        # stdin=None must still not inherit ours: ssh would read from the test runner's tty.
        return _run(self.ssh_argv(argv), stdin or "", os.environ, self.timeout_s)
