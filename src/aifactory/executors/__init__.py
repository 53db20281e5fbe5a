"""Executors: the interface between site agents and site schedulers, and its backends.

Importing this package registers the local backend; other built-in backends (``slurm``) are
imported by ``make_executor`` the first time they are asked for. Keeping them out of this import
matters: every local job's supervisor runs ``python -m aifactory.executors._wrapper`` and would
otherwise pay for importing httpx and the Slurm code on every job start.
"""

from aifactory.executors import local as _local  # noqa: F401  (registers "local")
from aifactory.executors.base import (
    EXECUTORS,
    TERMINAL_STATES,
    Capability,
    ExecJob,
    ExecState,
    ExecStatus,
    ExecUsage,
    Executor,
    ExecutorFactory,
    Launcher,
    make_executor,
    register,
)
from aifactory.executors.local import LocalExecutor

__all__ = [
    "EXECUTORS",
    "TERMINAL_STATES",
    "Capability",
    "ExecJob",
    "ExecState",
    "ExecStatus",
    "ExecUsage",
    "Executor",
    "ExecutorFactory",
    "Launcher",
    "LocalExecutor",
    "make_executor",
    "register",
]
