"""Directories of local jobs, and the files the wrapper makes in them, without races.

Layout (``local.py`` decides the paths, this module makes them)::

    <state_dir>/                0700 service user   records of every attempt (``_jobdir``)
    <homes>/                    0711 service user   job user can pass, cannot list
    <homes>/<job>-<tag>/        0700 job user       the job's home: cwd, HOME, its outputs

``<tag>`` is an HMAC of the job's name under a key only the service user can read, so a job
cannot guess where another job's home is, and ``<homes>`` refuses listing. The home is shared
by a job's attempts, so a retry finds the checkpoints of the attempt before it.

When jobs run as the job user, the wrapper (running as the service user, often root) creates
things inside a home the job owns: the working directory, the script, explicit log files. A job
could have left a symlink or a hard link there to make the wrapper write elsewhere with its
privileges, so everything below starts from a directory descriptor, opens each component with
``O_NOFOLLOW``, creates files with ``O_EXCL`` and refuses files with several links. Standard
library only: the wrapper imports this on every job start.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KEY_BYTES = 32


class UnsafePath(OSError):
    """A directory or file the executor will not use (wrong owner, shared, a link)."""


def ensure_dir(path: Path, mode: int) -> None:
    """Create ``path`` with exactly ``mode``, or bring an existing one of ours to ``mode``.

    Missing parents are created with ``mode`` too. An existing directory must belong to this
    process's user and must not be a symlink or writable by others (``/tmp`` itself, say):
    tightening a shared directory would break other users, loosening one would expose us.

    Raises:
        UnsafePath: The directory exists and is not ours to use.
    """
    for directory in [*reversed(path.parents), path]:
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=mode)
            directory.chmod(mode)  # mkdir's mode passes through the umask
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is not a directory of its own (a link or a file)")
    if info.st_uid != os.geteuid():
        raise UnsafePath(f"{path} belongs to uid {info.st_uid}, not to this server's user")
    if info.st_mode & (stat.S_IWOTH | stat.S_ISVTX):
        raise UnsafePath(f"{path} is shared (writable by everyone); give it a directory of its own")
    if stat.S_IMODE(info.st_mode) != mode:
        path.chmod(mode)


def load_key(path: Path) -> bytes:
    """The secret naming homes, created once (whole, 0600) by whichever process comes first."""
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key.")
    try:
        os.write(fd, os.urandom(_KEY_BYTES))
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic: nobody ever reads a half-written key
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def home_name(key: bytes, name: str) -> str:
    """The directory name of the home of the job named ``name`` (stable, unguessable)."""
    tag = hmac.new(key, name.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{name}-{tag}"


def parts(relative: str) -> list[str]:
    """Components of a path that stays inside its base: relative, without ``..``.

    Raises:
        ValueError: The path is absolute or climbs out.
    """
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"{relative!r} must be a relative path without '..'")
    return [p for p in path.parts if p != "."]


class Home:
    """A job's home as the wrapper prepares it: created for ``uid``/``gid``, entered by fd.

    ``uid`` ``None`` means the job runs as this process's own user (nothing to hand over).
    """

    def __init__(self, path: Path, uid: int | None, gid: int | None) -> None:
        self.path, self.uid, self.gid = path, uid, gid

    @contextlib.contextmanager
    def opened(self) -> Iterator[int]:
        """Create the home if needed, and yield a descriptor of it."""
        parent = os.open(self.path.parent, _DIR_FLAGS)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.path.name, 0o700, dir_fd=parent)
                self._hand_over(self.path.name, parent)
            fd = os.open(self.path.name, _DIR_FLAGS, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            owner = os.fstat(fd).st_uid
            if owner != (os.geteuid() if self.uid is None else self.uid):
                raise UnsafePath(f"{self.path} belongs to uid {owner}, not to the job")
            yield fd
        finally:
            os.close(fd)

    def makedirs(self, base: int, relative: str) -> int:
        """Descriptor of ``base/relative``, creating missing directories (for the job)."""
        fd = os.dup(base)
        for name in parts(relative):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=fd)
                self._hand_over(name, fd)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)  # ELOOP on a planted symlink
            finally:
                os.close(fd)
            fd = child
        return fd

    def open_append(self, base: int, relative: str) -> int:
        """Open ``base/relative`` for appending (a log), creating it and its directories."""
        *dirs, name = parts(relative) or ["."]
        parent = self.makedirs(base, "/".join(dirs) or ".")
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
            fd = os.open(name, flags | os.O_CLOEXEC, 0o600, dir_fd=parent)
        finally:
            os.close(parent)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise UnsafePath(f"{relative} is not a plain file of the job's own")
        if self.uid is not None and info.st_uid not in (self.uid, os.geteuid()):
            os.close(fd)
            raise UnsafePath(f"{relative} belongs to uid {info.st_uid}, not to the job")
        if self.uid is not None and info.st_uid != self.uid:
            os.fchown(fd, self.uid, -1 if self.gid is None else self.gid)
        os.set_blocking(fd, True)
        return fd

    def write_new(self, base: int, name: str, text: str, mode: int) -> None:
        """Replace the file ``name`` directly in ``base`` with ``text``, owned by the job."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=base)  # removes a planted link itself, never its target
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(name, flags, 0o600, dir_fd=base), "wb") as handle:
            handle.write(text.encode())
            if self.uid is not None:
                os.fchown(handle.fileno(), self.uid, -1 if self.gid is None else self.gid)
            os.fchmod(handle.fileno(), mode)

    def _hand_over(self, name: str, dir_fd: int) -> None:
        if self.uid is not None:
            gid = -1 if self.gid is None else self.gid
            os.chown(name, self.uid, gid, dir_fd=dir_fd, follow_symlinks=False)
