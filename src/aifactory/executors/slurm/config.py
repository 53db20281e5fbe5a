"""Per-site configuration of the Slurm executor (one block of ``sites.yaml``).

Example::

    executor: slurm
    transport: ssh                 # local | ssh | rest
    job_root: /scratch/aifactory   # on the cluster's shared file system
    partitions: {h100: gpu, h100-long: gpu-long}
    default_partition: h100
    account_prefix: ""             # Slurm account = prefix + project id, lower case
    gpu_type: h100
    require_site_account: true     # jobs run only as their owner's site login
    ssh: {host: login1.example.eu, user: aifsvc, key_file: /etc/aif/ssh/id_ed25519,
          known_hosts_file: /etc/aif/ssh/known_hosts}

A REST site that runs people's jobs also names an ``admin_transport`` (``local`` with
``slurm_conf``, or ``ssh`` with an ``ssh`` block) where ``scontrol token`` and ``sacctmgr`` run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aifactory.errors import Invalid
from aifactory.executors.slurm.script import SLURM_NAME, GpuRequest, check_name

__all__ = ["RestSettings", "SlurmSiteConfig", "SshSettings"]


class SshSettings(BaseModel):
    """SSH to a login node (key-only; host key pinned through ``known_hosts_file``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    user: str
    key_file: str
    port: int = Field(default=22, ge=1, le=65535)
    known_hosts_file: str | None = None
    remote_env: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: int = Field(default=10, ge=1)


class RestSettings(BaseModel):
    """slurmrestd v0.0.38 with JWT; give ``token`` or ``token_file`` (read once, at start)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    user: str
    token: str | None = Field(default=None, repr=False)
    token_file: str | None = None
    job_env: dict[str, str] = Field(default_factory=dict)
    #: Lifetime of the per-person tokens minted for submissions (renewed at a quarter left).
    user_token_lifespan_s: int = Field(default=3600, ge=120)

    def read_token(self) -> str:
        """The JWT (from ``token`` or the first line of ``token_file``)."""
        if self.token:
            return self.token
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        raise Invalid.field("rest.token", "required", "set token or token_file")


class SlurmSiteConfig(BaseModel):
    """Everything the Slurm executor needs to know about one site.

    ``require_site_account`` (default true): every job runs as its owner's own login at the
    site (``ExecJob.run_as``) and a job without one is refused; false lets such jobs run as
    the service's own user, which then also joins the project accounts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str = "slurm"
    transport: Literal["local", "ssh", "rest"] = "local"
    job_root: str
    slurm_conf: str | None = None
    ssh: SshSettings | None = None
    rest: RestSettings | None = None
    partitions: dict[str, str] = Field(default_factory=dict)
    default_partition: str | None = None
    account_prefix: str = ""
    gpu_type: str | None = None
    gpu_request: GpuRequest = "gpus-per-node"
    accounting: bool = True
    command_timeout_s: float = Field(default=60.0, gt=0)
    lookup_window: str = "now-14days"
    require_site_account: bool = True
    admin_transport: Literal["local", "ssh"] | None = None

    @model_validator(mode="after")
    def _transport_settings(self) -> SlurmSiteConfig:
        needed = {"ssh": self.ssh, "rest": self.rest}
        if self.transport in needed and needed[self.transport] is None:
            raise ValueError(f"transport {self.transport!r} needs a {self.transport!r} block")
        if self.admin_transport is not None and self.transport != "rest":
            raise ValueError(
                "admin_transport is for transport 'rest' (local and ssh sites use theirs)"
            )
        if self.admin_transport == "ssh" and self.ssh is None:
            raise ValueError("admin_transport 'ssh' needs an 'ssh' block")
        if self.transport == "rest" and self.require_site_account and not self.admin_transport:
            raise ValueError(
                "a REST site that runs jobs as their owners needs admin_transport (where "
                "scontrol token mints their tokens); or set require_site_account: false"
            )
        for value in (*self.partitions.values(), self.gpu_type):
            if value is not None and not SLURM_NAME.match(value):
                raise ValueError(f"{value!r} is not a valid Slurm name")
        return self

    def account_for(self, project: str | None) -> str | None:
        """The Slurm account of a project (Slurm stores account names in lower case)."""
        if project is None:
            return None
        return check_name("account", f"{self.account_prefix}{project}".lower())

    def partition_for(self, name: str | None) -> str | None:
        """The Slurm partition for a platform partition name (``None``: the site default).

        Raises:
            Invalid: The name is not in the site's partition map.
        """
        name = name if name is not None else self.default_partition
        if name is None:
            return None
        if not self.partitions:
            return check_name("partition", name)
        if name not in self.partitions:
            valid = ", ".join(sorted(self.partitions))
            raise Invalid.field("partition", "known", f"unknown partition {name!r}; valid: {valid}")
        return self.partitions[name]
