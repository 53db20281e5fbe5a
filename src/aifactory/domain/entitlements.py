"""Entitlements: where an award lets a project's jobs run.

A proposal asks for normalised GPU-hours in resource rows: one row per partition
(``SYSTEM/PARTITION``, at any factory of the federation) and, where the call allows it, one
``federation`` row: hours usable at any factory that admits the project, charged there by the
partition's charge factor like any other. The call (or its access mode) says how many systems
and factories the rows may name and whether a federation row is allowed
(``access_modes.EntitlementLimits``); ``spread_errors`` lists every row that breaks that.

An award turns each row into one allocation (``grants``), with the hours the technical
assessment set: a changed total is shared over the rows in proportion to what each asked for,
and a changed partition replaces the first partition row's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aifactory.domain.access_modes import EntitlementLimits
from aifactory.errors import FieldError, Invalid

#: The label of a federation row (in place of ``SYSTEM/PARTITION``).
FEDERATION = "federation"


class Scope(StrEnum):
    """Where an allocation's hours may be used."""

    PARTITION = "partition"  # one partition of one factory
    FEDERATION = "federation"  # any partition of every factory that admits the project


@dataclass(frozen=True)
class Ask:
    """One resource row as the rules see it (ids are ``None`` on a federation row)."""

    label: str
    partition_id: int | None = None
    system_id: int | None = None
    factory_id: int | None = None
    factory: str = ""

    @property
    def federation(self) -> bool:
        return self.partition_id is None


@dataclass(frozen=True)
class Grant:
    """One allocation an award creates: its partition (``None``: federation) and hours."""

    partition_id: int | None
    milli: int

    @property
    def scope(self) -> Scope:
        return Scope.FEDERATION if self.partition_id is None else Scope.PARTITION


def spread_errors(
    limits: EntitlementLimits, asks: Sequence[Ask], call_id: str, home: tuple[int | None, str]
) -> list[FieldError]:
    """Every way ``asks`` break the call's limits, each naming its field and rule.

    Args:
        limits: The call's (or its mode's) entitlement limits.
        asks: The proposal's resource rows, in order.
        call_id: The call, for messages.
        home: The call's factory (id, name): with ``max_factories`` 1 every row is there.
    """
    errors = [e for i, a in enumerate(asks) if (e := _row_error(limits, a, i, call_id, home))]
    places = [a for a in asks if not a.federation]
    systems = sorted({a.label.partition("/")[0] for a in places})
    if len(systems) > limits.max_systems:
        msg = (
            f"{len(systems)} systems asked for ({', '.join(systems)}); "
            f"call {call_id} allows at most {limits.max_systems}"
        )
        errors.append(FieldError("resources", "max_systems", msg))
    factories = sorted({a.factory for a in places})
    if len(factories) > limits.max_factories:
        msg = (
            f"{len(factories)} factories asked for ({', '.join(factories)}); "
            f"call {call_id} allows at most {limits.max_factories}"
        )
        errors.append(FieldError("resources", "max_factories", msg))
    return errors


def _row_error(
    limits: EntitlementLimits, ask: Ask, i: int, call_id: str, home: tuple[int | None, str]
) -> FieldError | None:
    field = f"resources.{i}.partition"
    if ask.federation and not limits.federation:
        msg = f"call {call_id} grants no federation allocation; name a SYSTEM/PARTITION"
        return FieldError(field, "federation_allocation", msg)
    if not ask.federation and limits.max_factories == 1 and ask.factory_id != home[0]:
        msg = f"{ask.label} is at {ask.factory}; call {call_id} allocates at {home[1]} only"
        return FieldError(field, "call_factory", msg)
    return None


def check_spread(
    limits: EntitlementLimits, asks: Sequence[Ask], call_id: str, home: tuple[int | None, str]
) -> None:
    """Raises:
    Invalid: Every broken limit at once (``resources.N.partition`` with ``call_factory`` or
        ``federation_allocation``; ``resources`` with ``max_systems`` or ``max_factories``).
    """
    errors = spread_errors(limits, asks, call_id, home)
    if errors:
        raise Invalid(f"the resource rows do not fit call {call_id}", errors)


def grants(
    rows: Sequence[tuple[int | None, int]],
    assessed_milli: int | None = None,
    assessed_partition: int | None = None,
) -> list[Grant]:
    """The allocations an award creates from the rows ``(partition id or None, milli)``.

    The assessed partition replaces the first partition row's (merging into another row that
    already names it); an assessed total different from the rows' is shared over them in
    proportion to what each asked for, to the milli-GPU-hour (largest remainder, ties to the
    earlier row). Rows left with nothing create no allocation.
    """
    moved = _move_first(list(rows), assessed_partition)
    total = sum(m for _, m in moved)
    if assessed_milli is not None and total > 0 and assessed_milli != total:
        moved = _scale(moved, assessed_milli, total)
    return [Grant(pid, milli) for pid, milli in moved if milli > 0]


def _move_first(
    rows: list[tuple[int | None, int]], partition: int | None
) -> list[tuple[int | None, int]]:
    first = next((i for i, (pid, _) in enumerate(rows) if pid is not None), None)
    if partition is None or first is None or rows[first][0] == partition:
        return rows
    same = next((i for i, (pid, _) in enumerate(rows) if pid == partition), None)
    if same is None:
        rows[first] = (partition, rows[first][1])
        return rows
    rows[same] = (partition, rows[same][1] + rows[first][1])
    return rows[:first] + rows[first + 1 :]


def _scale(
    rows: list[tuple[int | None, int]], target: int, total: int
) -> list[tuple[int | None, int]]:
    parts = [milli * target // total for _, milli in rows]
    left = target - sum(parts)
    by_remainder = sorted(range(len(rows)), key=lambda i: (-(rows[i][1] * target % total), i))
    for i in by_remainder[:left]:
        parts[i] += 1
    return [(pid, part) for (pid, _), part in zip(rows, parts, strict=True)]
