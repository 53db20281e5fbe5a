"""One root error type with stable codes.

Services raise these; only the API layer maps codes to HTTP status codes. Every error carries a
human message and, for invalid input, one entry per offending field naming the rule it broke.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldError:
    """One broken rule on one input field (dotted path, e.g. ``partitions.0.nodes``)."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


@dataclass
class AIFactoryError(Exception):
    """Root of every error the platform raises on purpose."""

    message: str
    details: list[FieldError] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    code: ClassVar[str] = "error"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message] + [f"{d.field}: {d.message}" for d in self.details]
        return "; ".join(parts)


class NotFound(AIFactoryError):
    code = "not_found"


class Conflict(AIFactoryError):
    code = "conflict"


class Forbidden(AIFactoryError):
    code = "forbidden"


class Unauthenticated(AIFactoryError):
    code = "unauthenticated"


class Invalid(AIFactoryError):
    code = "invalid"

    @classmethod
    def field(cls, name: str, rule: str, message: str) -> Invalid:
        """Shortcut for one invalid field."""
        return cls(f"invalid {name}: {message}", [FieldError(name, rule, message)])


class TooManyAttempts(AIFactoryError):
    """Too many failed credential checks: locked out until ``extra["retry_after_s"]`` passes."""

    code = "too_many_attempts"


class QuotaExceeded(AIFactoryError):
    code = "quota_exceeded"


class BackendUnavailable(AIFactoryError):
    code = "backend_unavailable"
