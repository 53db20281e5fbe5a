"""Executors: the interface between site agents and site schedulers, and its backends.

Importing this package registers the built-in backends, so ``make_executor("local", ...)``
works without importing a backend module by hand.
"""

from aifactory.executors import local as _local  # noqa: F401  (registers "local")
from aifactory.executors import slurm as _slurm  # noqa: F401  (registers "slurm")
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
