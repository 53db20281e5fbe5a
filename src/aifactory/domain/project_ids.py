"""EuroHPC-style project IDs: ``EHPC-AIF-<year><mode><cut-off no.>-<seq>``.

Example: ``EHPC-AIF-2026PG01-0001`` is the first project of the first period of 2026 in the
Playground. The period number is the cut-off's number within its year for cut-off modes, and
the month of submission for FIFO modes (see ``calls.open_period``); it has two digits and the
sequence number four.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aifactory.domain.enums import AccessModeCode
from aifactory.errors import Invalid

PREFIX = "EHPC-AIF-"
_PATTERN = re.compile(
    r"^EHPC-AIF-(?P<year>\d{4})(?P<mode>[A-Z]{2})(?P<cutoff>\d{2})-(?P<seq>\d{4})$"
)


@dataclass(frozen=True, order=True)
class ProjectId:
    """The parts of a project ID; ``str()`` gives the canonical text."""

    year: int
    mode: AccessModeCode
    cutoff: int
    seq: int

    def __post_init__(self) -> None:
        bounds = {"year": (2000, 9999), "cutoff": (1, 99), "seq": (1, 9999)}
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                msg = f"{name} {value} must be between {low} and {high}"
                raise Invalid.field(f"project_id.{name}", "range", msg)

    def __str__(self) -> str:
        return f"{PREFIX}{self.year:04d}{self.mode}{self.cutoff:02d}-{self.seq:04d}"


def format_project_id(year: int, mode: AccessModeCode, cutoff: int, seq: int) -> str:
    """Format an ID, e.g. ``format_project_id(2026, AccessModeCode.PLAYGROUND, 1, 1)``.

    Raises:
        Invalid: A part out of range (year 2000-9999, cut-off 1-99, sequence 1-9999).
    """
    return str(ProjectId(year, AccessModeCode(mode), cutoff, seq))


def parse_project_id(text: str) -> ProjectId:
    """Parse ``EHPC-AIF-2026PG01-0001`` into its parts.

    Raises:
        Invalid: Not of that form, or an unknown mode code.
    """
    match = _PATTERN.match(text.strip())
    if match is None:
        msg = f"{text!r} is not of the form EHPC-AIF-<year><mode><cut-off 2 digits>-<seq 4 digits>"
        raise Invalid.field("project_id", "format", msg)
    try:
        mode = AccessModeCode(match["mode"])
    except ValueError as exc:
        msg = f"unknown mode code {match['mode']} in {text!r}"
        raise Invalid.field("project_id", "known_mode", msg) from exc
    return ProjectId(int(match["year"]), mode, int(match["cutoff"]), int(match["seq"]))


def next_project_id(
    year: int, mode: AccessModeCode, cutoff: int, existing: list[ProjectId] | tuple[ProjectId, ...]
) -> ProjectId:
    """The next ID in a series: one past the highest sequence with the same year, mode, cut-off."""
    same = [p.seq for p in existing if (p.year, p.mode, p.cutoff) == (year, mode, cutoff)]
    return ProjectId(year, mode, cutoff, max(same, default=0) + 1)
