"""Where a local executor keeps its records and its jobs' homes (layout: ``_jobfs``).

Records live in ``state_dir`` (0700, under the server's data directory, which is 0700 too), so
a job can neither read other jobs' specs and logs nor forge its own exit record. Homes of jobs
running as the job user cannot live there (the job user could not reach them), so they go under
``job_root`` (``/var/tmp/aifactory-jobs`` by default), in a folder per state directory (0711:
the job user passes through, cannot list). Jobs that run as the server's own user keep their
homes under ``state_dir/homes``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from aifactory.errors import Invalid
from aifactory.executors import _jobfs
from aifactory.executors._jobuser import JobUser

#: Where the homes of jobs running as the job user are, unless ``job_root`` says otherwise.
DEFAULT_JOB_ROOT = Path("/var/tmp/aifactory-jobs")  # noqa: S108 (ensure_dir refuses a squatted one)


class Homes:
    """The homes of one executor's jobs: one per job, named so that no job can guess another's."""

    def __init__(self, root: Path, key: bytes, mode: int) -> None:
        self.root, self._key = root, key
        self.mode = mode  # of ``root``, which each job's wrapper makes (idle sites leave none)

    @classmethod
    def prepare(
        cls, state_dir: Path, user: JobUser | None, job_root: str | os.PathLike[str] | None
    ) -> Homes:
        """Create (or tighten) the records' folders and the folder holding the homes' root.

        Raises:
            Invalid: A folder exists but is not this server's to use (another owner, a link,
                a folder everyone may write to).
        """
        try:
            for path in (state_dir, state_dir / "jobs", state_dir / "active"):
                _jobfs.ensure_dir(path, 0o700)
        except _jobfs.UnsafePath as exc:
            raise Invalid.field("state_dir", "private", str(exc)) from None
        if user is None and job_root is None:
            root = state_dir / "homes"
        else:
            digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
            base = Path(job_root or DEFAULT_JOB_ROOT).absolute()
            root = base / f"{state_dir.name[:40]}-{digest}"
        mode = 0o711 if user is not None else 0o700  # the job user passes to its home only
        try:
            if root.parent != state_dir:
                _jobfs.ensure_dir(root.parent, mode)
        except _jobfs.UnsafePath as exc:
            raise Invalid.field("job_root", "private", str(exc)) from None
        return cls(root, _jobfs.load_key(state_dir / "homes.key"), mode)

    def of(self, backend_id: str) -> Path:
        """The home of the job an attempt belongs to (shared by all its attempts)."""
        return self.root / _jobfs.home_name(self._key, backend_id.rsplit(".", 1)[0])
