"""Sub-command groups registered by name and help text, imported only when they are used.

`aif --help` lists a group by its help text alone; `aif sim run ...` (or `aif sim --help`)
imports the module that defines the group's commands and runs them as if they had been added
with ``app.add_typer``. For groups whose module is costly to import (the simulator loads NumPy).
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer import _click


class LazyGroup(TyperGroup):
    """A Typer group whose commands come from ``target`` (``"module:attribute"``, a Typer app
    with commands only: its own callback and options would be ignored) on first use."""

    target: ClassVar[str] = ""

    def __init__(self, **attrs: Any) -> None:
        self._loaded: MutableMapping[str, _click.Command] | None = None
        super().__init__(**attrs)

    @property
    def commands(self) -> MutableMapping[str, _click.Command]:
        """The real group's commands, imported the first time anything asks for them."""
        if self._loaded is None:
            module, _, attribute = self.target.partition(":")
            app = getattr(importlib.import_module(module), attribute)
            group = typer.main.get_group(app)
            assert isinstance(group, TyperGroup)
            self._loaded = group.commands
        return self._loaded

    @commands.setter
    def commands(self, value: MutableMapping[str, _click.Command]) -> None:
        """Typer's constructor sets the (empty) placeholder's commands: nothing to keep."""


def lazy_typer(target: str, help: str) -> typer.Typer:
    """A placeholder app for ``add_typer`` whose commands are ``target``'s, loaded on use."""
    group = type(f"Lazy[{target}]", (LazyGroup,), {"target": target})
    return typer.Typer(cls=group, help=help)
