"""Standard Workload Format (SWF) reader and writer.

A data line has 18 whitespace-separated numeric fields; ``-1`` means unknown. Lines starting
with ``;`` are the header (``; Key: value``); ``MaxNodes``/``MaxProcs`` may carry text after
the number (``400 (48 interactive, 352 batch)``), so the first integer is taken. Submit times
are not always sorted, so records are stably sorted by submit time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aifactory.sim.tracefile import read_text, trace_error

__all__ = ["SWF_FIELDS", "SwfLog", "SwfRecord", "read_swf", "write_swf"]


class SwfRecord(NamedTuple):
    """The 18 SWF fields of one job (``-1`` = unknown) and the line it came from."""

    job: int
    submit: int
    wait: int
    run: int
    alloc_procs: int
    avg_cpu: int
    used_mem: int
    req_procs: int
    req_time: int
    req_mem: int
    status: int
    user: int
    group: int
    executable: int
    queue: int
    partition: int
    preceding_job: int
    think_time: int
    line: int


SWF_FIELDS: tuple[str, ...] = SwfRecord._fields[:18]
_FIRST_INT = re.compile(r"-?\d+")


@dataclass(slots=True)
class SwfLog:
    """A parsed SWF file: header fields, records in submit order, and what was skipped."""

    path: str
    header: dict[str, str]
    records: list[SwfRecord]
    skipped_lines: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def header_int(self, key: str) -> int | None:
        """First integer in a header value (``MaxProcs: 400 (48 interactive)`` -> 400)."""
        value = self.header.get(key)
        if value is None:
            return None
        match = _FIRST_INT.search(value)
        return int(match.group()) if match else None

    @property
    def max_procs(self) -> int | None:
        """``MaxProcs`` when positive, else ``MaxNodes`` (the Lublin model only gives that)."""
        for key in ("MaxProcs", "MaxNodes"):
            value = self.header_int(key)
            if value is not None and value > 0:
                return value
        return None


def _parse_fields(parts: list[str]) -> list[int]:
    # Some logs write fractional CPU times or memory ("123.45"): round those fields only.
    try:
        return [int(p) if "." not in p else round(float(p)) for p in parts]
    except ValueError:
        pass
    try:
        return [round(float(p)) for p in parts]  # exponents etc.; a non-number still raises
    except OverflowError:
        raise ValueError("a field is infinite") from None


def _parse_header(line: str, header: dict[str, str]) -> None:
    body = line.lstrip(";").strip()
    key, sep, value = body.partition(":")
    if sep and key and " " not in key.strip():
        header.setdefault(key.strip(), value.strip())


def read_swf(path: Path | str, *, lenient: bool = False) -> SwfLog:
    """Read an SWF file (plain or gzip).

    Args:
        path: The trace file.
        lenient: Skip malformed data lines and count them instead of failing.

    Raises:
        Invalid: Naming the file (and line) when the file is unreadable, truncated, has a
            malformed line (unless ``lenient``) or holds no jobs.
    """
    text = read_text(path)
    header: dict[str, str] = {}
    records: list[SwfRecord] = []
    log = SwfLog(str(path), header, records)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == ";":
            _parse_header(line, header)
            continue
        parts = line.split()
        try:
            if len(parts) != 18:
                raise ValueError(f"expected 18 fields, found {len(parts)}")
            values = _parse_fields(parts)
        except ValueError as exc:
            if not lenient:
                raise trace_error(path, f"malformed SWF line: {exc}", number) from None
            log.skipped_lines += 1
            if len(log.skipped_examples) < 5:
                log.skipped_examples.append(f"line {number}: {exc}")
            continue
        values.append(number)
        records.append(SwfRecord._make(values))
    if not records:
        raise trace_error(path, "trace has no jobs")
    records.sort(key=lambda r: r.submit)  # list.sort is stable: ties keep file order
    return log


def write_swf(path: Path | str, records: Iterable[SwfRecord], header: dict[str, str]) -> None:
    """Write records (their first 18 fields) as an SWF file with a ``; Key: value`` header."""
    with open(path, "w", encoding="utf-8") as out:
        for key, value in header.items():
            out.write(f"; {key}: {value}\n")
        for rec in records:
            out.write(" ".join(str(v) for v in rec[:18]) + "\n")
