"""The local executor's checkpoint access (``executors/checkpoints.py``), without races.

A checkpoint directory lives in the job's home, which the job owns: it could have planted a
symbolic link there to make the control plane (often root) copy a file the job may not read,
or write where the job may not. So every path is walked from a directory descriptor, one
component at a time with ``O_NOFOLLOW``; only plain files with one link are read; and staged
files are created with ``O_EXCL`` under a temporary name, handed to the job user, and renamed.
With a job user, a checkpoint directory outside the job's home is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from aifactory.errors import Invalid, NotFound
from aifactory.executors import _jobfs
from aifactory.executors.base import ExecJob
from aifactory.executors.checkpoints import MAX_FILES, CheckpointFiles, complete

if TYPE_CHECKING:
    from aifactory.executors._homes import Homes
    from aifactory.executors._jobuser import JobUser
    from aifactory.executors._launch import LaunchRules

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STAGE_SUFFIX = ".aif-stage.tmp"


class LocalCheckpoints:
    """Mixed into :class:`LocalExecutor`: the ``checkpoints`` capability on local homes."""

    user: JobUser | None
    _homes: Homes
    _rules: LaunchRules

    @staticmethod
    def backend_id_for(job_id: str, attempt: int) -> str:  # LocalExecutor's
        raise NotImplementedError

    def home(self, backend_id: str) -> Path:  # LocalExecutor's
        raise NotImplementedError

    def _checkpoint_path(self, spec: ExecJob, checkpoint_dir: str) -> tuple[Path, list[str]]:
        """(base, parts below it) of the attempt's checkpoint directory: the job's home and
        the path inside it; outside the home only for jobs running as this process's user."""
        home = self.home(self.backend_id_for(*spec.key))
        path = self._rules.workdir(spec, home) / checkpoint_dir
        if path.is_relative_to(home) and ".." not in PurePosixPath(checkpoint_dir).parts:
            return home, list(path.relative_to(home).parts)
        if self.user is not None:
            msg = f"{checkpoint_dir!r} leaves the job's home: its checkpoints cannot be copied"
            raise Invalid.field("checkpoint_dir", "inside_job_home", msg)
        return Path(path.anchor), list(path.parts[1:])

    def checkpoint_files(self, spec: ExecJob, checkpoint_dir: str) -> CheckpointFiles:
        """The complete files of the checkpoint directory (empty while it does not exist)."""
        base, parts = self._checkpoint_path(spec, checkpoint_dir)
        found: CheckpointFiles = {}
        with _opened(base, parts) as fd:
            if fd is not None:
                _walk(fd, "", found)
        return found

    def read_checkpoint_file(self, spec: ExecJob, checkpoint_dir: str, name: str) -> bytes:
        """One file of the checkpoint directory (a plain file with one link, never a link)."""
        base, parts = self._checkpoint_path(spec, checkpoint_dir)
        *dirs, leaf = _jobfs.parts(name)
        with _opened(base, [*parts, *dirs]) as fd:
            if fd is None:
                raise NotFound(f"checkpoint file {name} is gone")
            try:
                handle = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except (FileNotFoundError, OSError) as exc:
                raise NotFound(f"checkpoint file {name} is gone ({exc})") from None
        with os.fdopen(handle, "rb") as reader:
            info = os.fstat(reader.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise NotFound(f"checkpoint file {name} is not a plain file of the job's own")
            return reader.read()

    def stage_checkpoint(
        self, spec: ExecJob, checkpoint_dir: str, files: Mapping[str, Path]
    ) -> None:
        """Write ``files`` into the attempt's checkpoint directory, owned by the job user."""
        base, parts = self._checkpoint_path(spec, checkpoint_dir)
        uid, gid = (self.user.uid, self.user.gid) if self.user is not None else (None, None)
        if base == Path(base.anchor):  # outside any home: a trusted job of our own user
            target = base.joinpath(*parts)
            target.mkdir(parents=True, exist_ok=True)
            _stage_into(_jobfs.Home(target, None, None), target, files)
            return
        _jobfs.ensure_dir(self._homes.root, self._homes.mode)
        home = _jobfs.Home(base, uid, gid)
        with home.opened() as home_fd:
            directory = home.makedirs(home_fd, "/".join(parts) or ".")
            try:
                _write_files(home, directory, files)
            finally:
                os.close(directory)


def _stage_into(home: _jobfs.Home, target: Path, files: Mapping[str, Path]) -> None:
    fd = os.open(target, _DIR_FLAGS)
    try:
        _write_files(home, fd, files)
    finally:
        os.close(fd)


def _write_files(home: _jobfs.Home, directory: int, files: Mapping[str, Path]) -> None:
    for name, source in sorted(files.items()):
        *dirs, leaf = _jobfs.parts(name)
        parent = home.makedirs(directory, "/".join(dirs) or ".")
        try:
            tmp = f".{leaf}{_STAGE_SUFFIX}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)  # a planted link goes, never its target
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(tmp, flags, 0o600, dir_fd=parent), "wb") as out:
                out.write(source.read_bytes())
                out.flush()
                os.fsync(out.fileno())
                if home.uid is not None:
                    gid = -1 if home.gid is None else home.gid
                    os.fchown(out.fileno(), home.uid, gid)
            os.replace(tmp, leaf, src_dir_fd=parent, dst_dir_fd=parent)
        finally:
            os.close(parent)


@contextlib.contextmanager
def _opened(base: Path, parts: list[str]) -> Iterator[int | None]:
    """A descriptor of ``base/parts...`` walked without following links; None if missing."""
    try:
        fd = os.open(base, _DIR_FLAGS)
    except FileNotFoundError:  # no home yet: the job never started here
        yield None
        return
    try:
        for name in parts:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                os.close(fd)
                fd = -1
                yield None
                return
            os.close(fd)
            fd = child
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def _walk(fd: int, prefix: str, found: CheckpointFiles) -> None:
    """Complete plain files below ``fd`` (links and files with several links left out)."""
    for entry in os.scandir(fd):
        relative = f"{prefix}{entry.name}"
        if not complete(relative) or len(found) >= MAX_FILES:
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            try:
                _walk(child, relative + "/", found)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            found[relative] = (info.st_size, info.st_mtime_ns)
