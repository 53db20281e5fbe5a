"""Registry vocabulary and pure totals over the federation (no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from aifactory.domain.enums import CountryStatus


class FactoryStatus(StrEnum):
    """Life of a factory: selected by a call, deploying its system, then operational."""

    SELECTED = "selected"
    DEPLOYING = "deploying"
    OPERATIONAL = "operational"


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
