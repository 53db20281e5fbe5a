"""Forms: every error of a form at once, each beside its field, and numbers as people type them.

The portal prints numbers with thousands separators ("12,500 GPU-hours"), so every numeric input
takes them back through ``parse_number`` (``domain/amounts.py``, the one grammar the CLI uses too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session

from aifactory.domain.amounts import parse_number
from aifactory.errors import AIFactoryError, Conflict, FieldError, Invalid, QuotaExceeded

T = TypeVar("T")

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
