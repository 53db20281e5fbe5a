"""Counts in words, one rule for the CLI and the portal: ``1 month``, ``2 months``, ``1 GPU``."""

from __future__ import annotations

from decimal import Decimal


def plural(count: float | Decimal, unit: str, units: str | None = None) -> str:
    """``1 month``, ``2 months``, ``1,200 GPUs``: a count with its unit (``units`` when the
    plural is not the unit plus s)."""
    shown = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    return f"{shown} {unit if count == 1 else units or unit + 's'}"
