"""Slurm executor: FirecREST-style command objects, three transports, script rendering.

Importing this package registers the ``slurm`` executor (see :mod:`aifactory.executors.base`).
"""

from aifactory.executors.slurm.backends import CliBackend, RestBackend, SlurmBackend
from aifactory.executors.slurm.config import RestSettings, SlurmSiteConfig, SshSettings
from aifactory.executors.slurm.executor import SlurmExecutor, make_backend
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.rest import RestClient
from aifactory.executors.slurm.script import RenderedScript, ScriptOptions, render_script
from aifactory.executors.slurm.transport import (
    CommandResult,
    LocalTransport,
    SshTransport,
    Transport,
)

__all__ = [
    "CliBackend",
    "CommandResult",
    "LocalTransport",
    "RenderedScript",
    "RestBackend",
    "RestClient",
    "RestSettings",
    "ScriptOptions",
    "SlurmBackend",
    "SlurmExecutor",
    "SlurmJob",
    "SlurmNode",
    "SlurmSiteConfig",
    "SshSettings",
    "SshTransport",
    "Transport",
    "make_backend",
    "render_script",
]
