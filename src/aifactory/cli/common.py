"""Shared CLI plumbing: friendly errors and the configured API client.

The CLI modules import only Typer, Rich (which Typer's help loads anyway), ``errors``,
``domain.jobs`` and the standard library at import time: every `aif` command, `aif --help`
too, imports all of them to build the command tree, so what one command needs (the HTTP client,
the response models, PyYAML) is imported when it runs (``tests/unit/test_cli_imports.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer

from aifactory.cli import config as cli_config
from aifactory.errors import AIFactoryError

if TYPE_CHECKING:
    from aifactory.client import Client

P = ParamSpec("P")
R = TypeVar("R")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn platform errors into a red message on stderr and exit code 1, never a traceback
    (stdout stays empty for a script reading ``--json``)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AIFactoryError as exc:
            from aifactory.cli.output import err_console as console

            console.print(f"[red]error ({exc.code}):[/red] {exc.message}")
            for d in exc.details:
                console.print(f"  [red]•[/red] {d.field}: {d.message} [dim]({d.rule})[/dim]")
            raise typer.Exit(1) from None

    return wrapper


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr; the exit to raise (2: bad input, the default)."""
    from aifactory.cli.output import err_console

    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def client() -> Client:
    from aifactory.client import Client

    cfg = cli_config.load()
    return Client(cfg.url, cfg.token)
