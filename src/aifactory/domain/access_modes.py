"""Access modes as data: who may apply, limits, steps and the service-level clock.

The rules live in ``aifactory/data/access_modes.yaml`` so operators change them without code;
this module only defines the shape, validates it and answers questions about one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aifactory.domain.enums import (
    AccessModeCode,
    AssessmentStep,
    ClockStart,
    CountryStatus,
    OrganisationType,
    ResearchKind,
    SelectionMethod,
)
from aifactory.errors import FieldError, Invalid

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class GpuHourLimits(BaseModel):
    """Bounds on the normalised GPU-hours one proposal may request.

    Attributes:
        min_hours: Lower bound (inclusive unless ``min_exclusive``).
        max_hours: Upper bound, inclusive; ``None`` means no upper bound.
        min_exclusive: True where the rule reads "more than ``min_hours``".
    """

    model_config = _FROZEN

    min_hours: Decimal = Field(ge=0)
    max_hours: Decimal | None = None
    min_exclusive: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_hours is not None and self.max_hours < self.min_hours:
            raise ValueError(
                f"reversed range: max_hours {self.max_hours} is below min_hours {self.min_hours}"
            )
        if not self.min_exclusive and self.min_hours == 0:
            raise ValueError("min_hours must be above 0 (or min_exclusive: true)")
        return self

    def describe(self) -> str:
        """Human form of the range, e.g. ``"more than 50000 GPU-h"``."""
        low = f"more than {self.min_hours}" if self.min_exclusive else f"at least {self.min_hours}"
        high = "" if self.max_hours is None else f" and at most {self.max_hours}"
        return f"{low}{high} GPU-h"

    def violation(self, hours: Decimal) -> str | None:
        """Return why ``hours`` breaks these limits, or ``None`` when it fits."""
        too_low = hours <= self.min_hours if self.min_exclusive else hours < self.min_hours
        if hours <= 0:
            return f"{hours} GPU-h requested; hours must be positive"
        if too_low:
            return f"{hours} GPU-h requested; this mode needs {self.describe()}"
        if self.max_hours is not None and hours > self.max_hours:
            return f"{hours} GPU-h requested; this mode allows at most {self.max_hours} GPU-h"
        return None


class EntitlementLimits(BaseModel):
    """Where one proposal may ask for its GPU-hours (see ``domain.entitlements``).

    Attributes:
        max_systems: Distinct systems its resource rows may name.
        max_factories: Distinct factories those systems may belong to; with 1, the call's own.
        federation: Whether it may ask for a federation allocation (normalised GPU-hours usable
            at any factory that admits the project).
    """

    model_config = _FROZEN

    max_systems: int = Field(default=1, ge=1, le=100)
    max_factories: int = Field(default=1, ge=1, le=100)
    federation: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_factories > self.max_systems:
            raise ValueError(
                f"max_factories {self.max_factories} exceeds max_systems {self.max_systems}"
            )
        return self


class ServiceLevel(BaseModel):
    """Service-level clock: a decision within ``working_days`` of the start event."""

    model_config = _FROZEN

    working_days: int = Field(ge=1, le=366)
    counts_from: ClockStart = ClockStart.SUBMISSION


class Criterion(BaseModel):
    """One peer review criterion with its weight and an optional per-criterion minimum."""

    model_config = _FROZEN

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    weight: Decimal = Field(default=Decimal(1), gt=0)
    min_score: Decimal | None = None


class PeerReviewRules(BaseModel):
    """Peer review: criteria, score scale, the pass threshold and how many reviews are needed.

    A proposal passes when every criterion's mean reaches its ``min_score`` (if any) and the
    weighted mean over criteria reaches ``threshold``.
    """

    model_config = _FROZEN

    criteria: tuple[Criterion, ...] = Field(min_length=1)
    scale_min: Decimal = Decimal(0)
    scale_max: Decimal = Decimal(5)
    threshold: Decimal
    min_reviewers: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.scale_max <= self.scale_min:
            raise ValueError(f"reversed scale: {self.scale_min}..{self.scale_max}")
        if not self.scale_min <= self.threshold <= self.scale_max:
            raise ValueError(
                f"threshold {self.threshold} outside scale {self.scale_min}..{self.scale_max}"
            )
        ids = [c.id for c in self.criteria]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate criterion ids in {ids}")
        for c in self.criteria:
            if c.min_score is not None and not self.scale_min <= c.min_score <= self.scale_max:
                raise ValueError(f"criterion {c.id}: min_score {c.min_score} outside the scale")
        return self


class AccessMode(BaseModel):
    """One access mode (Playground, Fast Lane, ...) with all its rules as data.

    Attributes:
        code: Two-letter code used in project IDs.
        factory_scoped: True when calls of this mode belong to one factory.
        gpu_hours: Request limits; ``None`` for a mode that awards no compute (hosting call).
        durations_months: Allowed allocation durations; empty when ``gpu_hours`` is ``None``.
        entitlements: How many systems and factories a proposal may ask for, and whether a
            federation allocation.
        steps: Steps between submission and decision.
        service_level: The clock; ``None`` means each call sets its own.
        pi_contract_rule: The PI's contract must run ``pi_contract_months`` past the end.
    """

    model_config = _FROZEN

    code: AccessModeCode
    name: str
    description: str = ""
    factory_scoped: bool = True
    org_types: frozenset[OrganisationType] = Field(min_length=1)
    country_statuses: frozenset[CountryStatus] = Field(min_length=1)
    research_kinds: frozenset[ResearchKind] = Field(min_length=1)
    gpu_hours: GpuHourLimits | None
    durations_months: tuple[int, ...] = ()
    entitlements: EntitlementLimits = Field(default_factory=EntitlementLimits)
    selection: SelectionMethod
    steps: frozenset[AssessmentStep]
    service_level: ServiceLevel | None = None
    pi_contract_rule: bool = False
    pi_contract_months: int = Field(default=3, ge=0)
    peer_review: PeerReviewRules | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for check in _MODE_CHECKS:
            problem = check(self)
            if problem:
                raise ValueError(f"mode {self.code}: {problem}")
        return self

    def has_step(self, step: AssessmentStep) -> bool:
        """Whether this mode includes ``step``."""
        return step in self.steps


def _check_durations(mode: AccessMode) -> str | None:
    months = mode.durations_months
    if mode.gpu_hours is None:
        return (
            "durations_months must be empty when the mode awards no GPU-hours" if months else None
        )
    if not months:
        return "durations_months must list at least one duration"
    if any(m < 1 for m in months) or len(set(months)) != len(months):
        return f"durations_months must be distinct positive months, got {list(months)}"
    return None


def _check_peer_review(mode: AccessMode) -> str | None:
    needs = AssessmentStep.PEER_REVIEW in mode.steps
    if needs and mode.peer_review is None:
        return "peer_review rules are required when the peer_review step applies"
    if not needs and mode.peer_review is not None:
        return "peer_review rules given but the peer_review step does not apply"
    return None


def _check_clock(mode: AccessMode) -> str | None:
    sl = mode.service_level
    if sl and sl.counts_from is ClockStart.CUTOFF and mode.selection is not SelectionMethod.CUTOFF:
        return "a clock counting from the cut-off needs selection: cutoff"
    return None


_MODE_CHECKS = (_check_durations, _check_peer_review, _check_clock)


def check_request(
    mode: AccessMode,
    gpu_hours: Decimal,
    duration_months: int,
    systems: int = 1,
    limits: GpuHourLimits | None = None,
) -> None:
    """Check a request's size against a mode; raise listing every broken rule.

    Args:
        mode: The access mode of the call.
        gpu_hours: Normalised GPU-hours requested.
        duration_months: Requested allocation length in months.
        systems: How many systems the request spans (``domain.entitlements`` checks the
            rows themselves: factories, federation).
        limits: The call's own limits, overriding the mode's when given.

    Raises:
        Invalid: One field error per broken rule (``gpu_hours``, ``duration_months``,
            ``systems``), each naming the rule and the numbers.
    """
    errors: list[FieldError] = []
    bounds = limits or mode.gpu_hours
    if bounds is None:
        errors.append(FieldError("gpu_hours", "no_compute", f"mode {mode.code} awards no GPU-h"))
    else:
        problem = bounds.violation(gpu_hours)
        if problem:
            errors.append(FieldError("gpu_hours", "gpu_hour_limits", problem))
        if duration_months not in mode.durations_months:
            allowed = ", ".join(str(m) for m in mode.durations_months)
            msg = f"{duration_months} months requested; mode {mode.code} allows {allowed} months"
            errors.append(FieldError("duration_months", "allowed_durations", msg))
    most = mode.entitlements.max_systems
    if systems > most:
        msg = f"{systems} systems requested; mode {mode.code} allows at most {most}"
        errors.append(FieldError("systems", "max_systems", msg))
    if errors:
        raise Invalid(f"request does not fit mode {mode.code}", errors)


def invalid_from_validation(exc: ValidationError, prefix: str) -> Invalid:
    """Turn a pydantic ``ValidationError`` into an ``Invalid`` with one entry per problem."""
    details = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        details.append(FieldError(loc, err["type"], err["msg"]))
    return Invalid(f"invalid {prefix or 'data'}: {len(details)} problem(s)", details)


def parse_access_modes(data: Any) -> dict[AccessModeCode, AccessMode]:
    """Validate parsed YAML (``{"modes": [...]}``) into modes keyed by code.

    Raises:
        Invalid: Malformed data, with dotted field paths, or a duplicate mode code.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("modes"), list):
        raise Invalid.field("modes", "required", "expected a mapping with a 'modes' list")
    modes: dict[AccessModeCode, AccessMode] = {}
    for i, raw in enumerate(data["modes"]):
        try:
            mode = AccessMode.model_validate(raw)
        except ValidationError as exc:
            raise invalid_from_validation(exc, f"modes.{i}") from exc
        if mode.code in modes:
            raise Invalid.field(f"modes.{i}.code", "unique", f"duplicate mode code {mode.code}")
        modes[mode.code] = mode
    return modes


def read_data_file(name: str) -> Any:
    """Parse one YAML file shipped in ``aifactory/data``."""
    text = resources.files("aifactory").joinpath("data").joinpath(name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def load_access_modes() -> Mapping[AccessModeCode, AccessMode]:
    """The shipped access modes (read once)."""
    return parse_access_modes(read_data_file("access_modes.yaml"))
