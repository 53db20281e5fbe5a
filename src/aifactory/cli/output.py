"""What `aif` prints, for people at a terminal and for scripts.

Every command that shows something takes ``--json`` and prints exactly the JSON the API
returned for that resource (the client's models dumped as the API dumps them: same field names,
same shapes, numbers without separators), one document per command and nothing else on stdout;
progress and notes go to stderr (``err_console``), and so do errors (``common.friendly``). A
command that shows two API resources prints one object holding both under their names
(``aif allocations show --json``: ``{"allocation": ..., "ledger": [...]}``); following a log
(``aif logs JOB --follow --json``) prints JSON lines, one log chunk each.

A new command follows this pattern (``emit`` renders the people's version only without
``--json``; pass it the renderables, tables or strings, it would print)::

    from aifactory.cli.output import JsonOpt, emit

    @things_app.command("list")
    @friendly
    def things_list(as_json: JsonOpt = False) -> None:
        \"\"\"The things you may see.\"\"\"
        with client() as c:
            things = c.list_things()
        emit(things, as_json, things_table(things))

A command whose people's output is more than renderables calls :func:`print_json` itself with
``--json`` (``lines=True`` for JSON lines) and prints anything else on ``err_console`` then.
Counts with units go through :func:`plural` (``1 month``, ``2 months``, ``1 GPU``).

When stdout is not a terminal (a pipe or a file), the console prints tables as plain text, one
line per row with the cells separated by tabs (a title line first, then the header row): no
value is ever cut ("20,493…") or wrapped, nothing is drawn, and ``cut -f``/``awk -F'\\t'``
read the columns. Tab-separated text was chosen over a very wide Rich table because a wide
table still pads and may fold a long value, and its box characters need stripping. Text lines
are never wrapped either, and no colour or style is printed (Rich's own rule off a terminal).
``NO_COLOR`` (any non-empty value, https://no-color.org) turns styles off at a terminal too;
``FORCE_COLOR`` makes Rich treat any output as a terminal. Like any Rich console, these read
``NO_COLOR``, ``FORCE_COLOR``, ``COLUMNS`` and ``TERM`` when they are built (at import).
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.rule import Rule
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from aifactory.domain.words import plural

__all__ = ["JsonOpt", "console", "emit", "err_console", "plural", "print_json", "to_jsonable"]

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="print the API's JSON (one document, raw numbers) instead of tables"
    ),
]


class ScriptConsole(Console):
    """A Rich console that prints tables as tab-separated lines when not at a terminal."""

    def __init__(self, stderr: bool = False) -> None:
        no_color = bool(os.environ.get("NO_COLOR"))
        super().__init__(stderr=stderr, color_system=None if no_color else "auto")

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.is_terminal:
            super().print(*objects, **kwargs)
            return
        kwargs.setdefault("soft_wrap", True)
        for item in objects:
            lines = plain_lines(item)
            if lines is None:
                super().print(item, **kwargs)
            for line in lines or []:
                super().print(_Verbatim(line), crop=False, soft_wrap=True)


class _Verbatim:
    """One line printed as it is: Rich would turn its tabs into spaces."""

    def __init__(self, line: str) -> None:
        self.line = line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment(self.line)
        yield Segment.line()


def plain_lines(item: object) -> list[str] | None:
    """A table, group of them or rule as plain lines (cells tab-separated); None otherwise."""
    if isinstance(item, Table):
        return _table_lines(item)
    if isinstance(item, Group):
        return [line for part in item.renderables for line in plain_lines(part) or [_plain(part)]]
    if isinstance(item, Rule):
        title = _plain(item.title)
        return [f"--- {title} ---" if title else "---"]
    return None


def _table_lines(table: Table) -> list[str]:
    lines = [_plain(table.title)] if table.title else []
    if table.show_header:
        lines.append("\t".join(_plain(c.header) for c in table.columns))
    columns = [list(c.cells) for c in table.columns]
    lines += ["\t".join(_plain(cell) for cell in row) for row in zip(*columns, strict=True)]
    return lines


def _plain(value: object) -> str:
    """A cell's text without markup; tabs and newlines become spaces (one row, one line)."""
    if isinstance(value, str):
        value = Text.from_markup(value)
    text = value.plain if isinstance(value, Text) else str(value or "")
    return text.replace("\t", " ").replace("\n", " ")


def to_jsonable(data: Any) -> Any:
    """The API's JSON for a client model (or a list or dict of them)."""
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json", by_alias=True)
    if isinstance(data, list | tuple):
        return [to_jsonable(x) for x in data]
    if isinstance(data, dict):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    return data


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    item = getattr(value, "item", None)  # NumPy scalars in the simulator's metrics
    return item() if callable(item) else str(value)


def print_json(data: Any, lines: bool = False) -> None:
    """One JSON document on stdout (indented), or with ``lines`` one compact line."""
    indent = None if lines else 2
    text = json.dumps(to_jsonable(data), indent=indent, ensure_ascii=False, default=_default)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit(data: Any, as_json: bool, *human: Any) -> None:
    """``data`` as JSON with ``--json``; else the renderables in ``human`` on the console."""
    if as_json:
        print_json(data)
        return
    for item in human:
        console.print(item)


console = ScriptConsole()
err_console = ScriptConsole(stderr=True)
