"""Executors: the interface between site agents and site schedulers, and its backends.

The names below load on first use (PEP 562), and the local backend registers itself then; the
Slurm backend is imported by ``make_executor`` the first time it is asked for. Keeping this
package's import empty matters: every local job's supervisor runs
``python -m aifactory.executors._wrapper``, which needs only the standard library and
``_jobdir``, and would otherwise pay about 70 ms of CPU for imports on every job start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    local = importlib.import_module("aifactory.executors.local")  # registers "local"
    if name == "LocalExecutor":
        return local.LocalExecutor
    return getattr(importlib.import_module("aifactory.executors.base"), name)
