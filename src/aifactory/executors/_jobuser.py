"""The local executor's job user: local jobs never run with the control plane's identity.

A server running as root runs every local job as a dedicated unprivileged account
(``aifjob-local`` unless ``AIF_LOCAL_JOB_USER`` says otherwise). The install creates it
(``make install`` / ``make dev`` run this module as root), and so does the server at start
when it is missing::

    python -m aifactory.executors._jobuser [PATH ...]

The job user must also be able to run the platform's Python (a bare ``python`` in a job is the
server's interpreter). Where a directory on the way is closed to it, e.g. a virtualenv whose
interpreter lives under ``/root`` (mode 0700), it gets search permission on that directory for
itself alone, as a POSIX ACL entry ``u:aifjob-local:x``: it may pass through, never list, and
files keep their own modes. The install does the same for the extra ``PATH`` s it is given (the
checkout's ``examples/``); nothing is ever made readable that was not.

A server that is not root cannot switch users: its jobs run as itself (what one person on a
laptop expects), still with the scrubbed environment, and a warning says so once. With
``require`` (``AIF_LOCAL_REQUIRE_JOB_USER``) such a server refuses to build a local executor.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_JOB_USER = "aifjob-local"
_ACL = "system.posix_acl_access"
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_GROUP_CLASS = (_USER, _GROUP_OBJ, _GROUP)
_NO_ID = 0xFFFFFFFF
_SEARCH = 0o1
_warned: set[str] = set()
_checked: dict[tuple[int, str], bool] = {}


class CannotSwitch(PermissionError):
    """The job user is required but this process cannot run anything as another user."""


@dataclass(frozen=True)
class JobUser:
    """The account local jobs run as."""

    name: str
    uid: int
    gid: int


def resolve(name: str, *, require: bool = False, create: bool = True) -> JobUser | None:
    """The job user, created if missing; ``None`` when this process cannot switch to it.

    Raises:
        CannotSwitch: ``require`` and this process is not root.
        PermissionError: The account is privileged (uid or gid 0) or cannot be created.
    """
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name if _known(os.geteuid()) else str(os.geteuid())
        if require:
            raise CannotSwitch(
                f"local jobs must run as {name!r}, but the server runs as {me!r}, not root, "
                "and cannot switch users"
            )
        if name not in _warned:
            _warned.add(name)
            log.warning(
                "local jobs run as %s, the server's own user: only root can switch to the job "
                "user %r. Jobs get a scrubbed environment but can read the server's files; "
                "fine for one person's machine, not for shared use (docs/jobs.md, local executor)",
                me,
                name,
            )
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if not create:
            raise
        entry = _create(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise PermissionError(f"job user {name!r} is privileged (uid/gid 0); pick another")
    return JobUser(name, entry.pw_uid, entry.pw_gid)


def _known(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _create(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    argv += ["--shell", "/usr/sbin/nologin", "--comment", "aifactory local jobs", name]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        raise PermissionError(f"cannot create the job user {name!r}: {exc}") from exc
    try:
        entry = pwd.getpwnam(name)  # another process may have created it meanwhile
    except KeyError:
        why = done.stderr.strip() or f"exit status {done.returncode}"
        raise PermissionError(f"cannot create the job user {name!r}: {why}") from None
    log.warning("created the job user %s (uid %d) for local jobs", name, entry.pw_uid)
    return entry


# --------------------------------------------------------------------------- reaching Python


def python_paths(python: str) -> list[Path]:
    """What running ``python`` reads: the interpreter, and for this one its library folders."""
    paths = [Path(python)]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        names = ("stdlib", "platstdlib", "purelib", "platlib")
        paths += [Path(sysconfig.get_paths()[n]) for n in names]
    return paths


def can_run(user: JobUser, python: str) -> bool:
    """Whether ``user`` can start ``python`` (its library included); asked once per process."""
    key = (user.uid, python)
    if key not in _checked:
        try:
            done = subprocess.run(  # noqa: S603 (fixed argv)
                [python, "-I", "-c", "pass"],
                user=user.uid,
                group=user.gid,
                extra_groups=[],
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                check=False,
                timeout=60,
            )
            _checked[key] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _checked[key] = False
    return _checked[key]


def ensure_python(user: JobUser, python: str) -> bool:
    """Let ``user`` run ``python``, granting search on closed directories on the way."""
    if can_run(user, python):
        return True
    opened = open_paths(user, python_paths(python))
    _checked.pop((user.uid, python), None)
    if can_run(user, python):
        return True
    log.error(
        "the job user %s cannot run %s (granted search on %s); local jobs that use it will "
        "fail: install Python where other users can read it (docs/jobs.md, local executor)",
        user.name,
        python,
        ", ".join(map(str, opened)) or "nothing",
    )
    return False


def open_paths(user: JobUser, paths: Iterable[Path]) -> list[Path]:
    """Grant ``user`` search on each directory it cannot pass on the way to ``paths``."""
    opened: list[Path] = []
    for directory in _directories(paths):
        if _can_search(directory, user):
            continue
        try:
            _grant_search(directory, user.uid)
        except OSError as exc:  # no ACLs on this file system, read-only, ...
            log.warning("cannot grant %s search on %s: %s", user.name, directory, exc)
            continue
        log.warning("granted %s search (x, no listing) on %s", user.name, directory)
        opened.append(directory)
    return opened


def _directories(paths: Iterable[Path]) -> list[Path]:
    """Every directory walked to reach ``paths``, through each symlink hop, top down."""
    found: dict[Path, None] = {}
    for path in paths:
        for hop in _hops(Path(os.path.abspath(path))):
            for directory in [*reversed(hop.parents), *([hop] if hop.is_dir() else [])]:
                found.setdefault(directory)
    return sorted(found, key=lambda p: len(p.parts))


def _hops(path: Path) -> list[Path]:
    hops, seen = [path], {path}
    while hops[-1].is_symlink() and len(hops) < 40:
        nxt = Path(os.path.normpath(hops[-1].parent / os.readlink(hops[-1])))
        if nxt in seen:
            break
        hops.append(nxt)
        seen.add(nxt)
    return [*hops, Path(os.path.realpath(path))]


def _read_acl(path: Path) -> list[tuple[int, int, int]] | None:
    try:
        raw = os.getxattr(path, _ACL)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise
    return [struct.unpack_from("<HHI", raw, 4 + 8 * i) for i in range((len(raw) - 4) // 8)]


def _can_search(path: Path, user: JobUser) -> bool:
    """POSIX access check for search (x) by ``user``, ACL included (no supplementary groups)."""
    info = os.stat(path)
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    acl = _read_acl(path) or []
    mask = next((perm for tag, perm, _ in acl if tag == _MASK), 0o7)
    named = [perm for tag, perm, uid in acl if tag == _USER and uid == user.uid]
    if named:
        return bool(named[0] & mask & _SEARCH)
    groups = [perm for tag, perm, gid in acl if tag == _GROUP and gid == user.gid]
    if info.st_gid == user.gid:
        groups.append((info.st_mode >> 3) & 0o7 if not acl else _group_obj(acl))
    if groups:
        return any(perm & mask & _SEARCH for perm in groups)
    return bool(info.st_mode & stat.S_IXOTH)


def _group_obj(acl: list[tuple[int, int, int]]) -> int:
    return next(perm for tag, perm, _ in acl if tag == _GROUP_OBJ)


def _grant_search(path: Path, uid: int) -> None:
    """Add ``u:<uid>:x`` to the directory's access ACL (as ``setfacl -m`` would)."""
    mode = os.stat(path).st_mode
    acl = _read_acl(path) or [
        (_USER_OBJ, (mode >> 6) & 0o7, _NO_ID),
        (_GROUP_OBJ, (mode >> 3) & 0o7, _NO_ID),
        (_OTHER, mode & 0o7, _NO_ID),
    ]
    had = next((perm for tag, perm, i in acl if tag == _USER and i == uid), 0)
    kept = [e for e in acl if e[0] != _MASK and not (e[0] == _USER and e[2] == uid)]
    entries = [*kept, (_USER, had | _SEARCH, uid)]
    mask = 0
    for tag, perm, _ in entries:
        mask |= perm if tag in _GROUP_CLASS else 0
    entries.append((_MASK, mask, _NO_ID))
    entries.sort(key=lambda e: (e[0], e[2]))  # the kernel wants tag order, ids ascending
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    os.setxattr(path, _ACL, raw)


def main(argv: list[str]) -> int:
    """The install step: create the job user and let it reach Python and ``argv``'s paths."""
    from aifactory.settings import load_settings  # an entry point reads settings once

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = load_settings().local_job_user
    if os.geteuid() != 0:
        print(f"not root: local jobs will run as you, not as {name} (docs/jobs.md, local executor)")
        return 0
    user = resolve(name)
    assert user is not None  # root always gets one
    open_paths(user, [Path(p) for p in argv])
    ok = ensure_python(user, sys.executable)
    print(f"job user {user.name} (uid {user.uid}) " + ("ready" if ok else "cannot run Python"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
