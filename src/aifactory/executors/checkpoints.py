"""Checkpoint access: the ``checkpoints`` capability of an executor.

A backend with :attr:`Capability.CHECKPOINTS` lets the control plane copy a running attempt's
checkpoint directory off its site (so a retry elsewhere can resume from it) and stage such a
copy into a new attempt's checkpoint directory before it is submitted. The directory is the
job spec's ``checkpoint_dir``, relative to the attempt's working directory unless absolute.

Only complete checkpoints are copied: a file whose path has a part starting with ``.`` or
ending in ``.tmp`` is one being written (the example trainer writes ``.ckpt.pt.<pid>.tmp`` and
renames it; see :func:`complete`), and the caller lists the files again after reading them and
keeps the copy only if nothing changed in between (:func:`fingerprint`).

Each backend reads and writes with the identity the job runs as (the person's site account on
Slurm; on the local executor, paths inside the job's home opened without following links), so a
job cannot make the control plane copy a file it could not read itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from aifactory.executors.base import Capability, ExecJob, Executor

__all__ = ["CheckpointAccess", "CheckpointFiles", "access", "complete", "fingerprint"]

#: Relative path of each file of a checkpoint directory -> (size in bytes, mtime in ns).
CheckpointFiles = dict[str, tuple[int, int]]
#: The most a checkpoint may hold (files) for a copy to be taken; larger ones are not copied.
MAX_FILES = 1000


def complete(relative: str) -> bool:
    """Whether a file belongs to a complete checkpoint (not one being written).

    Writers save under a temporary name (hidden, or ending in ``.tmp``) and rename it when it
    is whole, so those names are left out.
    """
    parts = PurePosixPath(relative).parts
    return bool(parts) and not any(p.startswith(".") or p.endswith(".tmp") for p in parts)


def fingerprint(files: Mapping[str, tuple[int, int]]) -> str:
    """A short name for a checkpoint's contents as listed: its files, sizes and times."""
    digest = hashlib.sha256()
    for name in sorted(files):
        size, mtime = files[name]
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:32]


@runtime_checkable
class CheckpointAccess(Protocol):
    """What an executor with the ``checkpoints`` capability offers."""

    def checkpoint_files(self, spec: ExecJob, checkpoint_dir: str) -> CheckpointFiles:
        """The complete files of the attempt's checkpoint directory (empty if there is none).

        Raises:
            BackendUnavailable: The site does not answer.
        """
        ...

    def read_checkpoint_file(self, spec: ExecJob, checkpoint_dir: str, name: str) -> bytes:
        """The bytes of one file listed by :meth:`checkpoint_files`.

        Raises:
            NotFound: The file is gone (replaced by a newer checkpoint meanwhile).
            BackendUnavailable: The site does not answer.
        """
        ...

    def stage_checkpoint(
        self, spec: ExecJob, checkpoint_dir: str, files: Mapping[str, Path]
    ) -> None:
        """Write ``files`` (relative path -> local file) into the attempt's checkpoint
        directory before the attempt is submitted, owned by the identity it runs as; each
        file is written under a temporary name and renamed, so a crash leaves no half file.

        Raises:
            BackendUnavailable: The site does not answer.
        """
        ...


def access(executor: Executor) -> CheckpointAccess | None:
    """The executor's checkpoint access, if it has the capability."""
    if Capability.CHECKPOINTS in executor.capabilities and isinstance(executor, CheckpointAccess):
        return executor
    return None
