"""Calls as data: one access mode, open/close dates, cut-offs and optional per-call overrides.

``aifactory/data/calls.yaml`` ships one call per factory and mode plus the hosting call. Cut-offs
are listed explicitly or generated from a schedule (e.g. the 1st and 15th of each month). A
proposal submitted on a cut-off day belongs to that cut-off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from functools import cached_property, lru_cache
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aifactory.domain.access_modes import (
    AccessMode,
    EntitlementLimits,
    GpuHourLimits,
    ServiceLevel,
    invalid_from_validation,
    load_access_modes,
    read_data_file,
)
from aifactory.domain.enums import AccessModeCode, SelectionMethod
from aifactory.errors import Conflict, FieldError, Invalid


class CutoffSchedule(BaseModel):
    """Cut-offs on fixed days of the month, every ``every_months`` months from ``start``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date
    days_of_month: tuple[int, ...] = Field(min_length=1)
    every_months: int = Field(default=1, ge=1, le=12)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.end < self.start:
            raise ValueError(f"reversed dates: end {self.end} is before start {self.start}")
        if any(not 1 <= d <= 28 for d in self.days_of_month):
            raise ValueError(f"days_of_month must be 1-28, got {list(self.days_of_month)}")
        return self

    def dates(self) -> tuple[date, ...]:
        """Every cut-off date the schedule generates within ``[start, end]``."""
        out: list[date] = []
        year, month = self.start.year, self.start.month
        while date(year, month, 1) <= self.end:
            out.extend(date(year, month, d) for d in sorted(self.days_of_month))
            month += self.every_months
            year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
        return tuple(d for d in out if self.start <= d <= self.end)


class Call(BaseModel):
    """An access call of one mode.

    Attributes:
        id: Stable slug, e.g. ``bsc-aif-pg``.
        factory: Factory name; ``None`` for calls not tied to a factory (hosting call).
        closes: Last day to submit; ``None`` means always open.
        cutoffs: Explicit cut-off dates; merged with those of ``cutoff_schedule``.
        gpu_hours: Limits overriding the mode's (e.g. AI for Science sizes per call).
        entitlements: Systems, factories and federation allocation overriding the mode's.
        service_level: Clock overriding the mode's (required where the mode has none).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    mode: AccessModeCode
    factory: str | None = None
    opens: date
    closes: date | None = None
    cutoffs: tuple[date, ...] = ()
    cutoff_schedule: CutoffSchedule | None = None
    gpu_hours: GpuHourLimits | None = None
    entitlements: EntitlementLimits | None = None
    service_level: ServiceLevel | None = None
    note: str = ""

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.closes is not None and self.closes < self.opens:
            raise ValueError(f"reversed dates: closes {self.closes} is before opens {self.opens}")
        return self

    @cached_property
    def all_cutoffs(self) -> tuple[date, ...]:
        """Explicit and scheduled cut-offs, sorted and distinct."""
        scheduled = self.cutoff_schedule.dates() if self.cutoff_schedule else ()
        return tuple(sorted({*self.cutoffs, *scheduled}))

    def next_cutoff(self, on: date) -> date | None:
        """The first cut-off on or after ``on``, or ``None`` when none is left."""
        return next((c for c in self.all_cutoffs if c >= on), None)

    def cutoff_number(self, cutoff: date) -> int:
        """1-based position of ``cutoff`` among this call's cut-offs in the same year.

        Raises:
            Invalid: ``cutoff`` is not one of this call's cut-offs.
        """
        same_year = [c for c in self.all_cutoffs if c.year == cutoff.year]
        if cutoff not in same_year:
            raise Invalid.field("cutoff", "known_cutoff", f"{cutoff} is not a cut-off of {self.id}")
        return same_year.index(cutoff) + 1


def effective_gpu_hours(call: Call, mode: AccessMode) -> GpuHourLimits | None:
    """The call's GPU-hour limits when it sets them, else the mode's."""
    return call.gpu_hours or mode.gpu_hours


def effective_entitlements(call: Call, mode: AccessMode) -> EntitlementLimits:
    """Where a proposal to ``call`` may ask for hours: the call's rule when it sets one."""
    return call.entitlements or mode.entitlements


def effective_service_level(call: Call, mode: AccessMode) -> ServiceLevel | None:
    """The call's service level when it sets one, else the mode's."""
    return call.service_level or mode.service_level


def open_period(call: Call, mode: AccessMode, on: date) -> tuple[date | None, int]:
    """Check a submission on ``on`` is allowed and say which cut-off and period it falls in.

    Args:
        call: The call applied to.
        mode: The call's access mode.
        on: The submission date.

    Returns:
        ``(cutoff, period)``: for cut-off modes the next cut-off on or after ``on`` and its
        number in that year; for FIFO modes ``None`` and the month of ``on`` (the period number
        used in project IDs, e.g. ``2026PG11``).

    Raises:
        Conflict: The call is not open on ``on`` (not yet open, closed, or no cut-off left).
    """
    if on < call.opens or (call.closes is not None and on > call.closes):
        closes = call.closes or "open-ended"
        raise Conflict(
            f"call {call.id} is closed on {on}: it runs {call.opens} to {closes}",
            [FieldError("call", "call_open", f"call {call.id} is not open on {on}")],
        )
    if mode.selection is SelectionMethod.FIFO:
        return None, on.month
    cutoff = call.next_cutoff(on)
    if cutoff is None:
        raise Conflict(
            f"call {call.id} has no cut-off on or after {on}",
            [FieldError("call", "call_open", f"call {call.id} has no cut-off left")],
        )
    return cutoff, call.cutoff_number(cutoff)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def call_slug(factory: str) -> str:
    """The prefix of a factory's call ids (``BSC AIF`` -> ``bsc-aif``): unique per factory."""
    return _slug(factory)


def _expand_templates(data: Mapping[str, Any], extra: Sequence[str] = ()) -> list[Any]:
    """One raw call per factory and template; ``{factory}`` in a title is filled in.

    ``extra`` adds the registry's factories to the file's ``factories`` list; a name whose call
    prefix is already taken (the same factory, or a clash) is expanded once, first come.
    """
    raws: list[Any] = []
    names: dict[str, str] = {}
    for factory in [*data.get("factories", []), *extra]:
        names.setdefault(_slug(factory), factory)
    for factory in names.values():
        for tpl in data.get("per_factory", []):
            raw = dict(tpl)
            raw.setdefault("id", f"{_slug(factory)}-{str(raw.get('mode', '')).lower()}")
            raw["title"] = str(raw.get("title", "{factory}")).format(factory=factory)
            raw["factory"] = factory
            raws.append(raw)
    return raws


def _check_scope(call: Call, mode: AccessMode) -> str | None:
    if mode.factory_scoped == (call.factory is not None):
        return None
    return f"mode {mode.code} calls {'need a' if mode.factory_scoped else 'take no'} factory"


def _check_cutoffs(call: Call, mode: AccessMode) -> str | None:
    needs = mode.selection is SelectionMethod.CUTOFF
    if needs == bool(call.all_cutoffs):
        return None
    return f"a {mode.selection} call {'needs' if needs else 'takes no'} cut-offs"


def _check_service_level(call: Call, mode: AccessMode) -> str | None:
    if effective_service_level(call, mode) is not None:
        return None
    return f"mode {mode.code} sets no service level, so the call must"


_CALL_CHECKS = {
    "factory_scope": _check_scope,
    "cutoffs_for_selection": _check_cutoffs,
    "service_level": _check_service_level,
}


def _cross_check(call: Call, mode: AccessMode, where: str) -> FieldError | None:
    for rule, check in _CALL_CHECKS.items():
        problem = check(call, mode)
        if problem:
            return FieldError(where, rule, f"call {call.id}: {problem}")
    return None


def parse_calls(
    data: Any, modes: Mapping[AccessModeCode, AccessMode], factories: Sequence[str] = ()
) -> tuple[Call, ...]:
    """Validate parsed ``calls.yaml`` against the modes; ``per_factory`` templates are expanded
    for the file's ``factories`` and for ``factories`` (the registry's).

    Raises:
        Invalid: Malformed calls, an unknown mode, a duplicate id, or a call inconsistent with
            its mode (cut-offs on a FIFO mode, none on a cut-off mode, no service level).
    """
    if not isinstance(data, Mapping):
        raise Invalid.field("calls", "required", "expected a mapping")
    raws: Sequence[Any] = [*_expand_templates(data, factories), *data.get("calls", [])]
    calls: dict[str, Call] = {}
    for i, raw in enumerate(raws):
        try:
            call = Call.model_validate(raw)
        except ValidationError as exc:
            raise invalid_from_validation(exc, f"calls.{i}") from exc
        if call.mode not in modes:
            raise Invalid.field(f"calls.{i}.mode", "known_mode", f"unknown mode {call.mode}")
        problem = _cross_check(call, modes[call.mode], f"calls.{i}")
        if problem:
            raise Invalid(problem.message, [problem])
        if call.id in calls:
            raise Invalid.field(f"calls.{i}.id", "unique", f"duplicate call id {call.id}")
        calls[call.id] = call
    return tuple(calls.values())


@lru_cache(maxsize=8)
def load_calls(factories: tuple[str, ...] = ()) -> tuple[Call, ...]:
    """The shipped default calls, validated against the shipped modes, with the per-factory
    calls of ``factories`` too (read once per set of factories)."""
    return parse_calls(read_data_file("calls.yaml"), load_access_modes(), factories)
