"""On-disk layout of one local job attempt, shared by the local executor and its wrapper.

The job directory is the single source of truth, so a new executor instance (after a crash of
the server) reads exactly what the previous one and the still-running wrappers wrote. Every file
is written whole (temporary file + ``os.replace``), so a reader never sees half a record.

Files, in the order they appear::

    spec.json     the submitted ExecJob + submit time          (executor, at submit)
    launch.json   final argv, env, paths, limits, GPU indices  (executor, when GPUs are granted)
    claimed       empty; created with O_EXCL                   (wrapper: only one may run the job)
    state.json    wrapper pid + start time, child pid/pgid     (wrapper)
    cancel        empty; cancellation request                  (executor)
    exit.json     outcome, exit code, signal, start/end times  (wrapper; the executor for jobs
                                                               that never ran or lost it)
    stdout.log, stderr.log, wrapper.log                         (wrapper; the job writes to the
                                                               first two through descriptors)

This directory (the attempt's records) belongs to the service user alone: a job never works
here, it works in its home (``_jobfs``), so it can neither read these files nor forge them.

Whoever changes an attempt's records also creates ``<state_dir>/events/<backend id>``
(``note``), so executors re-read only the attempts that changed instead of every record on every
poll (``_changes``). A writer without the executor's lock notes *after* its change, so that no
reader can take the event before the change is there to see. The executor notes *before* the
changes it makes under its lock: readers take events only under that lock, and a crash between
the two then costs a needless re-read, not a change other instances never hear of. (Recording
a lost attempt notes after: other instances also find that by their own look, ``_records.stale``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SPEC = "spec.json"
LAUNCH = "launch.json"
CLAIMED = "claimed"
STATE = "state.json"
CANCEL = "cancel"
EXIT = "exit.json"
WRAPPER_LOG = "wrapper.log"
EVENTS = "events"  # in the state directory, beside ``jobs/``

# Outcomes recorded in exit.json; "exited" becomes completed or failed by its exit code.
EXITED = "exited"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
NODE_FAILED = "node_failed"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (specs carry env)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            # fsync so that a power cut cannot leave an empty file behind a completed rename.
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or ``None`` when it does not exist yet."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def note(jobdir: Path) -> None:
    """Tell executors that the records in ``jobdir`` (``<state_dir>/jobs/<id>``) changed."""
    event = jobdir.parent.parent / EVENTS / jobdir.name
    # No events folder: no executor of this version opened the state directory yet, and the
    # first one to do so reads every attempt anyway.
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(event, os.O_CREAT | os.O_WRONLY, 0o600))


def touch_exclusive(path: Path) -> bool:
    """Create ``path``; ``True`` for the one caller that created it, ``False`` if it existed."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def process_start_time(pid: int) -> str | None:
    """Kernel start time of a live process (guards against pid reuse); ``None`` if it is gone.

    Zombies count as gone: a finished wrapper whose parent has not reaped it yet must not
    look alive. Without ``/proc`` (not Linux) it falls back to a signal-0 probe.
    """
    try:
        raw = _read_stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return _probe(pid)
    # The command name may contain spaces and parentheses, so split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    if not fields or fields[0] in (b"Z", b"X"):
        return None  # empty: the process ended between open and read
    return fields[19].decode()


def _read_stat(pid: int) -> bytes:
    # os.open/os.read rather than Path.read_text: executors look at many wrappers, and this
    # halves the cost of each look.
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _probe(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "unknown"


def process_alive(pid: int, start_time: str | None) -> bool:
    """Whether ``pid`` is still the same live process that recorded ``start_time``."""
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time in (None, "unknown") or current in (start_time, "unknown")
