"""PDF attachments of proposals: checked by content and size while streamed to disk.

The bytes are stored once under ``<data dir>/attachments/<sha256[:2]>/<sha256>`` (the same file
attached twice is stored once); a row names it for one proposal. Whoever may see the proposal
(its applicant, assigned reviewers, its factory's operators, admins) may read an attachment;
others get the same 404 as for an unknown id. Only the applicant adds or removes attachments,
and only while the proposal is a draft.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from aifactory.db.models import Proposal, ProposalAttachment
from aifactory.domain.enums import ProposalStatus as S
from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.services import proposals
from aifactory.services.access_views import AttachmentView
from aifactory.services.permissions import Principal
from aifactory.services.proposal_sections import attachment_view

MAGIC = b"%PDF-"
CHUNK = 64 * 1024
MAX_PER_PROPOSAL = 20


def store_dir(data_dir: Path) -> Path:
    return data_dir / "attachments"


def _path(data_dir: Path, sha256: str) -> Path:
    return store_dir(data_dir) / sha256[:2] / sha256


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def save_stream(stream: BinaryIO, data_dir: Path, limit: int) -> tuple[str, int]:
    """Copy ``stream`` to the store chunk by chunk; returns (sha256, size).

    Raises:
        Invalid: ``file`` with rule ``pdf`` (does not start with ``%PDF-``), ``not_empty`` or
            ``max_size`` (more than ``limit`` bytes: stops reading there).
    """
    root = store_dir(data_dir)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=root / "tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK):
                if size == 0 and not chunk.startswith(MAGIC):
                    msg = "the file is not a PDF (a PDF starts with %PDF-, whatever its name)"
                    raise Invalid.field("file", "pdf", msg)
                size += len(chunk)
                if size > limit:
                    msg = f"the file is larger than the {_mib(limit)} an attachment may be"
                    raise Invalid.field("file", "max_size", msg)
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise Invalid.field("file", "not_empty", "the file is empty")
        sha = digest.hexdigest()
        target = _path(data_dir, sha)
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)
        return sha, size
    finally:
        Path(tmp).unlink(missing_ok=True)


def _name(filename: str) -> str:
    name = Path(filename.replace("\\", "/")).name.strip()[:200]
    if not name:
        return "attachment.pdf"
    return name


def add(
    session: Session,
    who: Principal,
    proposal_id: int,
    filename: str,
    stream: BinaryIO,
    data_dir: Path,
    limit: int,
    now: datetime,
) -> AttachmentView:
    """Attach a PDF to a draft (its applicant only)."""
    proposal = _draft(session, who, proposal_id)
    if len(proposal.attachments) >= MAX_PER_PROPOSAL:
        msg = f"a proposal takes at most {MAX_PER_PROPOSAL} attachments"
        raise Invalid.field("file", "max_attachments", msg)
    sha, size = save_stream(stream, data_dir, limit)
    row = ProposalAttachment(
        name=_name(filename), size=size, sha256=sha, uploader_id=who.user_id, created_at=now
    )
    proposal.attachments.append(row)
    session.flush()
    return attachment_view(row, {who.user_id: who.username})


def list_for(
    session: Session, who: Principal, proposal_id: int, now: datetime
) -> list[AttachmentView]:
    return proposals.get(session, who, proposal_id, now).attachments


def open_file(
    session: Session, who: Principal, proposal_id: int, attachment_id: int, data_dir: Path
) -> tuple[Path, str]:
    """(path on disk, file name) for whoever may see the proposal; 404 for everyone else."""
    proposal = session.get(Proposal, proposal_id)
    if proposal is None or not proposals.can_see(session, who, proposal):
        raise NotFound(f"attachment {attachment_id} not found")
    row = _row(proposal, attachment_id)
    path = _path(data_dir, row.sha256)
    if not path.is_file():
        raise NotFound(f"attachment {attachment_id}: its file is missing from the store")
    return path, row.name


def delete(session: Session, who: Principal, proposal_id: int, attachment_id: int) -> None:
    """Remove an attachment from a draft (the stored bytes stay: another row may share them)."""
    proposal = _draft(session, who, proposal_id)
    proposal.attachments.remove(_row(proposal, attachment_id))
    session.flush()


def _row(proposal: Proposal, attachment_id: int) -> ProposalAttachment:
    row = next((a for a in proposal.attachments if a.id == attachment_id), None)
    if row is None:
        raise NotFound(f"attachment {attachment_id} not found")
    return row


def _draft(session: Session, who: Principal, proposal_id: int) -> Proposal:
    proposal = proposals.own(session, who, proposal_id)
    if proposal.status != S.DRAFT:
        msg = f"proposal {proposal_id} is {proposal.status}; attachments change only in a draft"
        raise Conflict(msg)
    return proposal
