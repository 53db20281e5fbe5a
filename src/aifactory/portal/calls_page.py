"""The public calls page: a plain GET filter and the calls of each mode grouped.

Every factory publishes the same four calls (29 rows in all), so the calls of a mode that share
dates, cut-offs and limits are one row listing the factories, each with its own Apply link. The
filter (access mode, factory, open or closed) is a GET form that works without JavaScript; an
unknown value is shown next to its field, never a server error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aifactory.domain.calls import effective_gpu_hours
from aifactory.portal.forms import FormErrors
from aifactory.portal.labels import LABELS, limits_text
from aifactory.services import access
from aifactory.services.access_views import CallView

FEDERATION = "federation"  # the factory filter's value for calls not tied to one factory
STATUSES = [("", "Open and closed"), ("open", "Open now"), ("closed", "Closed")]
FILTER_LABELS = {"mode": "Access mode", "factory": "AI Factory", "status": "Open or closed"}


@dataclass
class CallGroup:
    """Calls of one mode alike but for their factory; ``calls`` keeps each one's link."""

    first: CallView
    limits: str
    calls: list[CallView] = field(default_factory=list)


@dataclass(frozen=True)
class Filters:
    mode: str = ""
    factory: str = ""
    status: str = ""


def factory_options() -> list[tuple[str, str]]:
    names = sorted({c.factory for c in access.catalogue()[1].values() if c.factory})
    return [(n, n) for n in names] + [(FEDERATION, "Federation-wide (no single factory)")]


def check_filters(filters: Filters, errors: FormErrors) -> Filters:
    """The filters with unknown values dropped (and each named in ``errors``)."""
    modes = {str(m.code) for m in access.modes()}
    allowed: dict[str, set[str]] = {
        "mode": modes,
        "factory": {key for key, _ in factory_options()},
        "status": {key for key, _ in STATUSES},
    }
    kept: dict[str, str] = {}
    for name, choices in allowed.items():
        value = str(getattr(filters, name))
        if value and value not in choices:
            errors.add(name, f"{value[:40]!r} is not one of the choices; pick one from the list")
            value = ""
        kept[name] = value
    return Filters(**kept)


def _key(view: CallView, limits: str) -> tuple[Any, ...]:
    return (
        view.opens,
        view.closes,
        view.open_today,
        tuple(view.upcoming_cutoffs[:3]),
        limits,
        view.service_level_working_days,
        view.service_level_counts_from,
        view.factory is None,
    )


def group_calls(views: list[CallView]) -> list[CallGroup]:
    """Calls alike but for their factory become one group, in the order they first appear."""
    groups: dict[tuple[Any, ...], CallGroup] = {}
    for view in views:
        limits = limits_text(effective_gpu_hours(access.get_call(view.id), _mode(view.mode)))
        group = groups.setdefault(_key(view, limits), CallGroup(view, limits))
        group.calls.append(view)
    return list(groups.values())


def _mode(code: str) -> Any:
    return next(m for m in access.modes() if m.code == code)


def _wanted(view: CallView, filters: Filters) -> bool:
    if filters.factory == FEDERATION and view.factory is not None:
        return False
    if filters.factory not in ("", FEDERATION) and view.factory != filters.factory:
        return False
    return filters.status == "" or view.open_today == (filters.status == "open")


def calls_context(today: date, filters: Filters, errors: FormErrors) -> dict[str, Any]:
    """What calls.html shows: each mode (filtered) with its grouped calls, and the filter form."""
    filters = check_filters(filters, errors)
    by_mode = []
    for mode in access.modes():
        if filters.mode and mode.code != filters.mode:
            continue
        views = [v for v in access.list_calls(today, mode=mode.code) if _wanted(v, filters)]
        if views:
            by_mode.append((mode, group_calls(views)))
    return {
        "title": "Calls",
        "today": today,
        "by_mode": by_mode,
        "filters": filters,
        "mode_options": [(m.code, m.name) for m in access.modes()],
        "factory_options": factory_options(),
        "status_options": STATUSES[1:],
        "shown": sum(len(g.calls) for _, groups in by_mode for g in groups),
        "order": {kind: list(words) for kind, words in LABELS.items()},  # as the table lists
        **errors.context(),
    }
