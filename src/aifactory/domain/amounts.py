"""Numbers as people write them: ``12,500``, ``1 200 000``, ``€ 2'000'000``, ``60 %``."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

#: What people type around whole numbers: spaces (also narrow and no-break ones), group
#: separators, the currency.
NOISE = (" ", "\u00a0", "\u202f", ",", "_", "'", "€", "EUR", "eur")


def whole_number(text: str) -> int:
    """``12,500``, ``1 200 000``, ``€ 2'000'000`` -> an int; ValueError for anything else."""
    for noise in NOISE:
        text = text.replace(noise, "")
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def percent(text: str) -> Decimal:
    """``60``, ``60 %``, ``33,5`` -> the share as a fraction (0.6); ValueError unless 0-100."""
    cleaned = text.replace("%", "").replace(" ", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation as exc:
        raise ValueError(text) from exc
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise ValueError(text)
    return value / 100
