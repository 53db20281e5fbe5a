"""A proposal's resource rows (one per partition) and its sections, over the database.

The rows are the request: their sum is the proposal's ``gpu_hours`` and the first row's
partition its ``partition``, which is what assessment and awards read today. A proposal made
the old way (one total and perhaps a partition) gets one row when it names a partition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from aifactory.db.models import Proposal, ProposalAttachment, ProposalResource
from aifactory.domain import proposal_sections as rules
from aifactory.domain.entitlements import FEDERATION
from aifactory.domain.ledger import from_milli, to_milli
from aifactory.domain.proposal_sections import ResourceRow, Sections
from aifactory.errors import FieldError, Invalid
from aifactory.services.access_views import AttachmentView, ResourceView

if TYPE_CHECKING:
    from aifactory.services.proposals import ProposalInput

Rows = list[tuple[int | None, ResourceRow]]  # partition id; None: a federation row


def normalise(
    data: ProposalInput, resolve: Callable[[str], int | None]
) -> tuple[ProposalInput, Rows]:
    """The input with ``gpu_hours``/``partition`` taken from its rows, and the rows resolved
    (``partition`` is the first row's that names one: a federation row names none).

    Raises:
        Invalid: Every bad row at once (``resources.N.partition`` unknown or repeated), or a
            ``gpu_hours`` that is not the rows' sum.
    """
    if data.sections is not None:
        rules.check_unknown_questions(data.sections.ethics)
    if not data.resources:
        if data.partition and data.gpu_hours is not None:  # its size is checked after this
            row = ResourceRow.model_construct(
                partition=data.partition, gpu_hours=data.gpu_hours, justification=""
            )
            return data, [(resolve(data.partition), row)]
        return data, []
    rows, errors = _resolve_rows(data.resources, resolve)
    total = rules.total_hours(list(data.resources))
    if data.gpu_hours is not None and data.gpu_hours != total:
        msg = f"{data.gpu_hours} GPU-h is not the {total} GPU-h of the resource rows; omit it"
        errors.append(FieldError("gpu_hours", "sum_of_resources", msg))
    if errors:
        raise Invalid("invalid resource rows", errors)
    first = next((r.partition for (pid, r) in rows if pid is not None), None)
    return dataclasses.replace(data, gpu_hours=total, partition=first), rows


def _resolve_rows(
    resources: tuple[ResourceRow, ...], resolve: Callable[[str], int | None]
) -> tuple[Rows, list[FieldError]]:
    rows: Rows = []
    errors: list[FieldError] = []
    seen: set[int | None] = set()
    for i, row in enumerate(resources):
        field = f"resources.{i}.partition"
        try:
            pid = resolve(row.partition)
        except Invalid as exc:
            errors.append(FieldError(field, "known_partition", exc.message))
            continue
        if pid in seen:
            msg = f"{row.partition} appears twice; put all its GPU-hours on one row"
            errors.append(FieldError(field, "one_row_per_partition", msg))
        seen.add(pid)
        rows.append((pid, row))
    return rows, errors


def store(session: Session, proposal: Proposal, rows: Rows, sections: Sections | None) -> None:
    """Replace the proposal's rows and sections (old rows go first: positions are unique)."""
    if proposal.resources:
        proposal.resources.clear()
        session.flush()
    proposal.resources.extend(
        ProposalResource(
            position=i,
            partition_id=pid,
            gpu_hours_milli=to_milli(row.gpu_hours),
            justification=row.justification,
        )
        for i, (pid, row) in enumerate(rows)
    )
    proposal.sections = sections.model_dump(mode="json") if sections is not None else None


def check_complete(proposal: Proposal) -> None:
    """Raises:
    Invalid: Every part the proposal's mode requires that it lacks, all at once.
    """
    sections = Sections.model_validate(proposal.sections or {})
    hours = bool(proposal.gpu_hours_milli)
    rules.check_complete(proposal.mode, sections, len(proposal.resources), hours)


def resource_views(session: Session, proposal: Proposal) -> list[ResourceView]:
    from aifactory.services.proposals import partition_label

    return [
        ResourceView(
            partition=partition_label(session, r.partition_id) or FEDERATION,
            gpu_hours=from_milli(r.gpu_hours_milli),
            justification=r.justification,
        )
        for r in proposal.resources
    ]


def attachment_view(a: ProposalAttachment, names: dict[int, str]) -> AttachmentView:
    return AttachmentView(
        id=a.id,
        name=a.name,
        size=a.size,
        sha256=a.sha256,
        uploader=names.get(a.uploader_id, ""),
        created_at=a.created_at,
    )
