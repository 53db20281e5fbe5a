"""The control plane's checkpoint store: managed jobs' checkpoints copied off their sites.

While a managed job runs (a ``checkpoint_dir`` and a retry policy that can still retry), its
site agent looks at the checkpoint directory through the executor (``executors/checkpoints``)
and, when it changed, copies its complete files here::

    <data dir>/checkpoints/<job id>/v<version>/...     the last complete copy
    <data dir>/checkpoints/<job id>/.v<version>.<random>.tmp/   one being taken

A copy is taken into a temporary directory, kept only if the site lists the same files after
it was read (no checkpoint was written meanwhile), renamed to ``v<version>`` and then recorded
in ``checkpoint_copies`` (version, step, fingerprint, when); older versions are removed after
the record commits, so a crash at any point leaves the recorded copy whole. When a retry is
placed at another site, its hand-over stages the recorded copy into the new attempt's
checkpoint directory before submitting it (``agents/handover.py``), once per attempt. Once the
job has ended, the agent of the site where it ended removes its copy (the site keeps its own).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import CheckpointCopy, Job
from aifactory.db.types import utcnow
from aifactory.domain.jobs import TERMINAL
from aifactory.executors import ExecJob
from aifactory.executors._jobfs import parts
from aifactory.executors.checkpoints import CheckpointAccess, CheckpointFiles, fingerprint

#: What a trainer prints after each save (``checkpoint step=120 path=...``): the copy's step.
_STEP = re.compile(rb"checkpoint step=(\d+)")
#: Bytes at the end of the attempt's log searched for the last such line.
_LOG_TAIL = 64 * 1024
Sessions = Callable[[], AbstractContextManager[Session]]


def store_root(data_dir: Path) -> Path:
    """Where the checkpoint store lives under the control plane's data directory."""
    return data_dir / "checkpoints"


def copy_dir(root: Path, job_id: int, version: int) -> Path:
    """The directory holding version ``version`` of job ``job_id``'s copy."""
    return root / str(job_id) / f"v{version}"


@dataclass(frozen=True)
class Running:
    """A running managed attempt whose checkpoint may be copied."""

    job_id: int
    attempt: int
    spec: ExecJob
    checkpoint_dir: str
    stdout_path: str | None


@dataclass(frozen=True)
class Known:
    """What ``checkpoint_copies`` holds for the job (``version`` 0: no copy yet)."""

    version: int = 0
    fingerprint: str = ""
    step: int | None = None
    attempt: int = 0


def known(session: Session, job_id: int) -> Known:
    row = session.get(CheckpointCopy, job_id)
    if row is None:
        return Known()
    return Known(row.version, row.fingerprint, row.step, row.attempt)


def replicate(
    sessions: Sessions,
    root: Path,
    site: CheckpointAccess,
    factory_id: int,
    job: Running,
    before: Known,
) -> bool:
    """Copy the job's checkpoint off its site if it changed; returns whether a copy was taken.

    The step is read from the attempt's log before the files are listed, so it never names a
    later checkpoint than the one copied; a later look at the same files raises it.
    """
    step = last_checkpoint_step(job.stdout_path)
    files = site.checkpoint_files(job.spec, job.checkpoint_dir)
    if not files:
        return False
    mark = fingerprint(files)
    if mark == before.fingerprint:
        if step is not None and (before.step or -1) < step and before.attempt == job.attempt:
            with sessions() as s:
                row = s.get(CheckpointCopy, job.job_id)
                if row is not None and row.fingerprint == mark:
                    row.step = step
        return False
    version = before.version + 1
    taken = _take(root, site, job, files, version)
    if taken is None:
        return False
    with sessions() as s:  # compare-and-set on the version the copy followed
        row = s.get(CheckpointCopy, job.job_id)
        if (row.version if row is not None else 0) != before.version:
            shutil.rmtree(taken, ignore_errors=True)
            return False
        row = row or CheckpointCopy(job_id=job.job_id)
        row.version, row.fingerprint, row.step = version, mark, step
        row.files, row.size = len(files), sum(size for size, _ in files.values())
        row.attempt, row.factory_id, row.copied_at = job.attempt, factory_id, utcnow()
        s.add(row)
    _forget_older(root / str(job.job_id), version)
    return True


def ended(session: Session, factory_id: int, limit: int = 100) -> list[int]:
    """Jobs that ended at this site and still have a copy in the store: none will be staged."""
    query = (
        select(CheckpointCopy.job_id)
        .join(Job, Job.id == CheckpointCopy.job_id)
        .where(Job.factory_id == factory_id, Job.state.in_(sorted(TERMINAL)))
        .limit(limit)
    )
    return list(session.scalars(query))


def forget(sessions: Sessions, root: Path, job_id: int) -> None:
    """Remove an ended job's copy: its files, then its record (a crash between the two leaves
    a record whose files are gone, which the next pass removes; nothing stages it again)."""
    shutil.rmtree(root / str(job_id), ignore_errors=True)
    with sessions() as s:
        row = s.get(CheckpointCopy, job_id)
        if row is not None:
            s.delete(row)


def _take(
    root: Path, site: CheckpointAccess, job: Running, files: CheckpointFiles, version: int
) -> Path | None:
    """The files copied into ``v<version>``; None if the checkpoint changed while copying."""
    base = root / str(job.job_id)
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = base / f".v{version}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(mode=0o700)
    try:
        for name in sorted(files):
            target = tmp.joinpath(*parts(name))
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            target.write_bytes(site.read_checkpoint_file(job.spec, job.checkpoint_dir, name))
        if fingerprint(site.checkpoint_files(job.spec, job.checkpoint_dir)) != fingerprint(files):
            shutil.rmtree(tmp, ignore_errors=True)
            return None  # a new checkpoint was written meanwhile: the next look copies it
        final = copy_dir(root, job.job_id, version)
        if final.exists():  # left by a crash before its record: not recorded, so not used
            shutil.rmtree(final)
        tmp.rename(final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _forget_older(base: Path, version: int) -> None:
    keep = f"v{version}"
    for path in base.iterdir():
        if path.name != keep and (path.name.startswith("v") or path.name.endswith(".tmp")):
            shutil.rmtree(path, ignore_errors=True)


def last_checkpoint_step(stdout_path: str | None) -> int | None:
    """The step of the last ``checkpoint step=N`` line in the attempt's log, if readable here."""
    if not stdout_path:
        return None
    with contextlib.suppress(OSError), Path(stdout_path).open("rb") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - _LOG_TAIL))
        found = _STEP.findall(log.read())
        return int(found[-1]) if found else None
    return None


@dataclass(frozen=True)
class Staging:
    """A recorded copy to stage into a new attempt: its files and its version."""

    files: dict[str, Path]
    version: int
    step: int | None


def staging_for(
    session: Session, root: Path, job_id: int, attempt: int, factory_id: int
) -> Staging | None:
    """The copy a new attempt at ``factory_id`` must start from, if any: one taken at another
    site and not yet staged into this attempt."""
    row = session.get(CheckpointCopy, job_id)
    if row is None or row.factory_id == factory_id or row.staged_attempt == attempt:
        return None
    directory = copy_dir(root, job_id, row.version)
    if not directory.is_dir():
        return None
    files = {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}
    return Staging(files, row.version, row.step)


def mark_staged(session: Session, job_id: int, attempt: int, at: datetime | None = None) -> None:
    """Record that the copy went into ``attempt`` (its hand-over does not stage it again)."""
    row = session.get(CheckpointCopy, job_id)
    if row is not None:
        row.staged_attempt, row.staged_at = attempt, at or utcnow()
