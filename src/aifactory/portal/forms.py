"""Numbers as people type them into the portal's forms.

The portal prints numbers with thousands separators ("12,500 GPU-hours"), so every numeric input
takes them back: ``parse_number`` accepts "12500", "12,500", "12 500" (also with a no-break or
narrow no-break space), "12500.5" and "1,234.5". It refuses what it cannot read for sure, such as
"12,5" (a decimal comma, or a mistyped thousands group?) or "1.234.567", with an
``Invalid`` naming the field and the rule in words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from aifactory.errors import AIFactoryError, Conflict, FieldError, Invalid, QuotaExceeded

T = TypeVar("T")

#: Spaces people (and the portal) put between groups of three digits.
GROUP_SPACES = " \u00a0\u202f\u2009"
_PLAIN = re.compile(r"[+-]?\d+(\.\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?P<sep>[, ])\d{3}((?P=sep)\d{3})*(\.\d+)?")
HOW = "write digits with a point for decimals, e.g. 12500.5 or 12,500.5"


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
            return Decimal(normal.replace(",", "").replace(" ", ""))
        except InvalidOperation:  # pragma: no cover - the patterns only let digits through
            raise _reject(field, raw, HOW) from None
    raise _reject(field, raw, _why(normal))


def _why(normal: str) -> str:
    """The rule the text breaks, in words."""
    if re.search(r"[^\d.,+\- ]", normal):
        return "use only digits, a sign, a decimal point and thousands separators, e.g. 12,500.5"
    if re.fullmatch(r"[+-]?\d+,\d{1,2}", normal) or re.search(r"\.\d{3},", normal):
        return "a comma is not read as a decimal mark; use a point, e.g. 12.5"
    if normal.count(".") > 1:
        return "more than one decimal point; use a point for decimals only, e.g. 12500.5"
    if "," in normal and " " in normal:
        return "use either commas or spaces between thousands, not both, e.g. 12,500"
    return "separators must stand between groups of exactly three digits, e.g. 12,500"


# --- errors of a form ---------------------------------------------------------------------


def _label(value: str) -> str:
    return str(value).replace("_", " ")


class Messages(list[str]):
    """Every message on one field; prints as one line where a template shows it as text."""

    def __str__(self) -> str:
        return "; ".join(self)


class FormErrors:
    """Every message per form field; service errors are mapped onto the fields they name.

    ``labels`` name the fields in the error summary at the top of the page (which links to each
    field's input, ``#f-<prefix><name>``); ``prefix`` is the one the template's macros get.
    """

    def __init__(
        self, fields: set[str], labels: dict[str, str] | None = None, prefix: str = ""
    ) -> None:
        self.fields = fields
        self.labels = labels or {}
        self.prefix = prefix
        self.by_field: dict[str, Messages] = {}
        self.general: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def add(self, field: str, message: str) -> None:
        message = message.removeprefix("Value error, ")  # pydantic's prefix says nothing to people
        if field in self.fields:
            messages = self.by_field.setdefault(field, Messages())
            if message not in messages:
                messages.append(message)
        else:
            self.general.append(f"{_label(field)}: {message}" if field else message)

    def absorb(self, exc: AIFactoryError) -> None:
        for d in exc.details:
            self.add(d.field, d.message)
        if not exc.details:
            self.general.append(exc.message)

    def summary(self) -> list[tuple[str, str, str]]:
        """(anchor, field label, message) for every field message, in the form's field order."""
        order = list(self.labels) + sorted(set(self.by_field) - set(self.labels))
        anchor = "#f-" + self.prefix
        return [
            (anchor + name.replace(".", "-"), self.labels.get(name, _label(name)), message)
            for name in order
            for message in self.by_field.get(name, [])
        ]

    def context(self) -> dict[str, Any]:
        return {"errors": self.by_field, "form_errors": self.general, "error_list": self.summary()}

    def parse(self, field: str, raw: str, convert: Callable[[str], T]) -> T | None:
        """Convert one optional text field; a bad value is recorded against the field.

        Numbers (``Decimal``, ``int``) are read as people write them (``forms.parse_number``).
        """
        text = raw.strip()
        if not text:
            return None
        try:
            if convert is Decimal or convert is int:
                return cast(T, _number(field, text, whole=convert is int))
            return convert(text)
        except Invalid as exc:
            self.absorb(exc)
        except (ValueError, ArithmeticError):
            self.add(field, f"{text[:40]!r} is not a valid {_KINDS.get(convert, 'value')}")
        return None

    def require(self, field: str, value: T | None) -> None:
        if value is None and field not in self.by_field:
            self.add(field, "required: enter a value")

    def raise_if_any(self) -> None:
        if self:
            details = [FieldError(f, "form", m) for f, ms in self.by_field.items() for m in ms]
            raise Invalid("; ".join(self.general) or "please correct the form", details)


def _number(field: str, text: str, whole: bool) -> Decimal | int:
    if not whole:
        return parse_number(text, field)
    try:
        value = parse_number(text, field)
    except Invalid:
        value = None
    if value is None or value != value.to_integral_value():
        rule = "digits only, e.g. 12 or 12,500"
        raise Invalid.field(field, "whole_number", f"{text[:40]!r} is not a whole number: {rule}")
    return int(value)


_KINDS: dict[object, str] = {int: "whole number", Decimal: "number", date.fromisoformat: "date"}
FORM_ERRORS = (Invalid, Conflict, QuotaExceeded)


def attempt(session: Session, errors: FormErrors, action: Callable[[], T]) -> T | None:
    """Run a service call in a savepoint; on bad input, undo it and record the messages."""
    try:
        with session.begin_nested():
            return action()
    except FORM_ERRORS as exc:
        errors.absorb(exc)
        return None
