"""Counts in words, one rule for the CLI and the portal: ``1 month``, ``2 months``, ``1 GPU``."""

from __future__ import annotations

from decimal import Decimal


def plural(count: float | Decimal, unit: str, units: str | None = None) -> str:
    """``1 month``, ``2 months``, ``1,200 GPUs``: a count with its unit (``units`` when the
    plural is not the unit plus s)."""
    shown = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    return f"{shown} {unit if count == 1 else units or unit + 's'}"


#: How a start estimate was made, as ``jobs why`` says it after the time.
_START_BASIS = {"slurm": " (Slurm)", "queue": " (from the queue)", "reservation": " (next in line)"}


def start_in(seconds: float) -> str:
    """``starts now``, ``estimated start in 45 s``, ``… in 12 min``, ``… in 2 h 10 min``."""
    if seconds <= 0:
        return "starts now"
    if seconds < 120:
        return f"estimated start in {seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"estimated start in {minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"estimated start in {hours} h {rest} min" if rest else f"estimated start in {hours} h"


def start_words(seconds: float, basis: str | None) -> str:
    """A candidate's start with its basis: ``starts now``, ``placed``, or ``estimated start in
    2 h 10 min (Slurm)`` / ``(from the queue)`` / ``(next in line)``; never "now" for a
    site that waits."""
    if basis == "placed":
        return "placed"
    if basis == "free" or (basis is None and seconds <= 0):
        return "starts now"
    return start_in(max(seconds, 1.0)) + _START_BASIS.get(basis or "", "")
