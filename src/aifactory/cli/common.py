"""Shared CLI plumbing: friendly errors and the configured API client."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer

from aifactory.cli import config as cli_config
from aifactory.cli.render import console
from aifactory.client import Client
from aifactory.errors import AIFactoryError

P = ParamSpec("P")
R = TypeVar("R")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn platform errors into a red message and exit code 1, never a traceback."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AIFactoryError as exc:
            console.print(f"[red]error ({exc.code}):[/red] {exc.message}")
            for d in exc.details:
                console.print(f"  [red]•[/red] {d.field}: {d.message} [dim]({d.rule})[/dim]")
            raise typer.Exit(1) from None

    return wrapper


def client() -> Client:
    cfg = cli_config.load()
    return Client(cfg.url, cfg.token)
