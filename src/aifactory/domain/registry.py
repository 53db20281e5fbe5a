"""Registry vocabulary and pure totals over the federation (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from aifactory.domain.enums import CountryStatus
from aifactory.errors import Conflict, FieldError


class FactoryStatus(StrEnum):
    """Life of a factory: selected by a call, deploying its system, operational, draining, retired.

    ``draining`` keeps running what is there but takes no new work (an operator empties the site
    for maintenance or before retiring it); ``retired`` is final.
    """

    SELECTED = "selected"
    DEPLOYING = "deploying"
    OPERATIONAL = "operational"
    DRAINING = "draining"
    RETIRED = "retired"


_F = FactoryStatus

#: Legal moves: selected -> deploying -> operational <-> draining; any -> retired; retired is final.
FACTORY_MOVES: dict[FactoryStatus, frozenset[FactoryStatus]] = {
    _F.SELECTED: frozenset({_F.DEPLOYING, _F.RETIRED}),
    _F.DEPLOYING: frozenset({_F.OPERATIONAL, _F.RETIRED}),
    _F.OPERATIONAL: frozenset({_F.DRAINING, _F.RETIRED}),
    _F.DRAINING: frozenset({_F.OPERATIONAL, _F.RETIRED}),
    _F.RETIRED: frozenset(),
}

#: Statuses whose factories take new work (placement, new access calls).
ACCEPTING_WORK = frozenset({_F.OPERATIONAL})


def factory_transition(current: FactoryStatus, target: FactoryStatus) -> FactoryStatus:
    """The one way a factory changes status; returns ``target`` when the move is legal.

    Asking for the status a factory already has is not a move and is allowed (idempotent).

    Raises:
        Conflict: the move is illegal; ``extra`` holds ``from``, ``to`` and ``allowed``.
    """
    allowed = FACTORY_MOVES[current]
    if target == current or target in allowed:
        return target
    why = "retired is final" if not allowed else f"allowed: {', '.join(sorted(allowed))}"
    msg = f"illegal factory transition from {current} to {target} ({why})"
    raise Conflict(
        msg,
        [FieldError("status", "legal_transition", msg)],
        {"from": str(current), "to": str(target), "allowed": sorted(allowed)},
    )


class SystemKind(StrEnum):
    """A new AI-optimised system, an upgrade of a EuroHPC system, or one associated with it."""

    NEW = "new"
    UPGRADE = "upgrade"
    ASSOCIATED = "associated"


class FundingSource(StrEnum):
    """Where money for compute comes from."""

    DIGITAL_EUROPE = "digital_europe"
    HORIZON_EUROPE = "horizon_europe"
    NATIONAL = "national"
    COMMERCIAL = "commercial"


EU_SOURCES = frozenset({FundingSource.DIGITAL_EUROPE, FundingSource.HORIZON_EUROPE})


def countries_by_status(
    members: Iterable[tuple[str, CountryStatus]],
) -> dict[CountryStatus, list[str]]:
    """Group distinct country codes by status; codes sorted within each status."""
    seen: dict[str, CountryStatus] = dict(members)
    out: dict[CountryStatus, list[str]] = {status: [] for status in CountryStatus}
    for code, status in sorted(seen.items()):
        out[status].append(code)
    return out


def count_by(values: Iterable[str]) -> dict[str, int]:
    """Count occurrences, keys sorted."""
    return dict(sorted(Counter(values).items()))
