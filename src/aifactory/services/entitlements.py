"""Entitlements over the database: resource rows resolved across the federation, checked
against what the call allows, and which factories admit a project's federation allocation.

Rules and arithmetic are ``domain.entitlements``; awards (``services.awards``) create the
allocations and placement (``services.candidates``) expands federation allocations.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Factory, Partition, Proposal, System
from aifactory.domain.calls import Call, effective_entitlements
from aifactory.domain.entitlements import FEDERATION, Ask, check_spread
from aifactory.errors import Invalid
from aifactory.services import access


def resolve(session: Session, label: str) -> int | None:
    """The partition a resource row names (``SYSTEM/PARTITION``, at any factory: system names
    are unique in the federation), or ``None`` for a ``federation`` row.

    Raises:
        Invalid: ``partition``/``known_partition`` when no such partition exists.
    """
    if label == FEDERATION:
        return None
    system_name, _, partition_name = label.partition("/")
    pid = session.scalar(
        select(Partition.id)
        .join(System, Partition.system_id == System.id)
        .where(System.name == system_name, Partition.name == partition_name)
    )
    if pid is None:
        msg = f"no partition {label!r} (as SYSTEM/PARTITION, or {FEDERATION!r})"
        raise Invalid.field("partition", "known_partition", msg)
    return pid


def asks(session: Session, partitions: Sequence[int | None]) -> list[Ask]:
    """The rows as the rules see them: each partition's system and factory."""
    ids = [p for p in partitions if p is not None]
    rows = session.execute(
        select(Partition.id, Partition.name, System.id, System.name, Factory.id, Factory.name)
        .join(System, Partition.system_id == System.id)
        .join(Factory, System.factory_id == Factory.id)
        .where(Partition.id.in_(ids))
    )
    info = {row[0]: (f"{row[3]}/{row[1]}", row[2], row[4], row[5]) for row in rows}
    out = []
    for pid in partitions:
        if pid is None:
            out.append(Ask(FEDERATION))
            continue
        label, sid, fid, fname = info[pid]
        out.append(Ask(label, pid, sid, fid, fname))
    return out


def check_rows(
    session: Session, call: Call, home_id: int | None, partitions: Sequence[int | None]
) -> None:
    """Check the rows' partitions (``None``: federation) against what ``call`` allows.

    Raises:
        Invalid: Every broken limit, each with its field and rule (``domain.entitlements``).
    """
    if not partitions:
        return
    limits = effective_entitlements(call, access.mode_of(call))
    check_spread(limits, asks(session, partitions), call.id, (home_id, call.factory or ""))


def check_proposal(session: Session, proposal: Proposal) -> None:
    """``check_rows`` for a stored proposal (at submission and at the award)."""
    call = access.get_call(proposal.call_id)
    rows = [r.partition_id for r in proposal.resources]
    check_rows(session, call, proposal.factory_id, rows)


def admitting_factories(modes: Collection[str]) -> dict[str, frozenset[str]]:
    """Per access mode, the factories that admit its projects' federation allocations: those
    that run the mode (have a call of it). Whether a factory serves now (operational, its
    scheduler answering) is placement's question, as for any allocation."""
    calls = access.catalogue()[1].values()
    return {
        mode: frozenset(c.factory for c in calls if c.mode == mode and c.factory is not None)
        for mode in modes
    }
