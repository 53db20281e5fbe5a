"""Numbers as people write them, one grammar for the portal's forms and the CLI.

The portal prints numbers with thousands separators ("12,500 GPU-hours"), so every numeric input
takes them back: ``parse_number`` accepts "12500", "12,500", "12 500" (also with a no-break,
narrow no-break or thin space), "2'000'000", "12500.5" and "1,234.5". It refuses what it cannot
read for sure, such as "12,5" (a decimal comma, or a mistyped thousands group?) or "1.234.567",
with an ``Invalid`` naming the field and the rule ("number") in words.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from aifactory.errors import Invalid

#: Spaces people (and the portal) put between groups of three digits.
GROUP_SPACES = " \u00a0\u202f\u2009"
_PLAIN = re.compile(r"[+-]?\d+(\.\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?P<sep>[, '])\d{3}((?P=sep)\d{3})*(\.\d+)?")
HOW = "write digits with a point for decimals, e.g. 12500.5 or 12,500.5"
#: Currency marks around an amount of money ("€ 2,000,000", "2,000,000 EUR").
CURRENCY = ("€", "EUR", "eur")


def _reject(field: str, text: str, why: str) -> Invalid:
    shown = text if len(text) <= 40 else text[:40] + "…"
    return Invalid.field(field, "number", f"{shown!r} is not a valid number: {why}")


def parse_number(text: str, field: str) -> Decimal:
    """The number in ``text``; ``Invalid`` (rule "number") naming ``field`` when unreadable."""
    raw = text.strip()
    if not raw:
        raise Invalid.field(field, "required", "enter a number")
    normal = "".join(" " if ch in GROUP_SPACES else ch for ch in raw)
    if _PLAIN.fullmatch(normal) or _GROUPED.fullmatch(normal):
        try:
            return Decimal(re.sub(r"[, ']", "", normal))
        except InvalidOperation:  # pragma: no cover - the patterns only let digits through
            raise _reject(field, raw, HOW) from None
    raise _reject(field, raw, _why(normal))


def _why(normal: str) -> str:
    """The rule the text breaks, in words."""
    if re.search(r"[^\d.,+\-' ]", normal):
        return "use only digits, a sign, a decimal point and thousands separators, e.g. 12,500.5"
    if re.fullmatch(r"[+-]?\d+,\d{1,2}", normal) or re.search(r"\.\d{3},", normal):
        return "a comma is not read as a decimal mark; use a point, e.g. 12.5"
    if normal.count(".") > 1:
        return "more than one decimal point; use a point for decimals only, e.g. 12500.5"
    if len({sep for sep in ", '" if sep in normal}) > 1:
        return "use one kind of separator between thousands, e.g. 12,500"
    return "separators must stand between groups of exactly three digits, e.g. 12,500"


def whole_number(text: str, field: str = "number") -> int:
    """``12,500``, ``1 200 000``, ``€ 2'000'000`` -> an int >= 0; ``Invalid`` for anything else."""
    stripped = text.strip()
    for mark in CURRENCY:
        stripped = stripped.removeprefix(mark).removesuffix(mark)
    value = parse_number(stripped, field)
    if value != value.to_integral_value() or value < 0:
        raise Invalid.field(field, "whole_number", f"{text!r} is not a whole number, e.g. 12,500")
    return int(value)


def percent(text: str, field: str = "share") -> Decimal:
    """``60``, ``60 %``, ``33,5`` -> the share as a fraction (0.6); ``Invalid`` unless 0-100."""
    cleaned = text.replace("%", "").replace(" ", "").replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(100):
        raise Invalid.field(field, "percent", f"{text!r} is not a percentage from 0 to 100")
    return value / 100
