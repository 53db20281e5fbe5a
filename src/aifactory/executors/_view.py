"""What one local executor instance knows of the attempts in its state directory.

The unfinished attempts (those in ``active/``) as their records were last read, and the final
status of finished ones (which never changes again). ``refresh`` re-reads only the attempts that
changed (``_changes``); every ``check_s`` it also looks for what changes without an event
(``_records.stale``). A new instance, or one that lost track, reads them all. Every method is
called with the executor's lock held.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from aifactory.executors import _jobdir as jd
from aifactory.executors import _records as records
from aifactory.executors._changes import Changes
from aifactory.executors.base import ExecState, ExecStatus

_BACKEND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{1,9}$")


class View:
    """The attempts of ``state_dir`` as this instance last read them.

    Attributes:
        unfinished: Attempts in ``active/`` that have not ended, by backend id.
        dirty: Whether ``unfinished`` changed since the caller last cleared it.
    """

    def __init__(self, state_dir: Path, launch_grace_s: float) -> None:
        self._jobs = state_dir / "jobs"
        self._active = state_dir / "active"
        self._launch_grace_s = launch_grace_s
        self._changes = Changes(state_dir)
        self._ended: dict[str, ExecStatus] = {}
        self._check_at = 0.0  # monotonic time of the next look for unannounced changes
        self.unfinished: dict[str, records.Seen] = {}
        self.dirty = True

    def refresh(self, check_s: float) -> bool:
        """Re-read what changed; returns whether it also looked for unannounced changes."""
        changed = self._changes.collect()
        if changed is None:
            self._read_all(check_s)
        else:
            for backend_id in changed:
                self._read(backend_id)
        if time.monotonic() < self._check_at:
            return False
        self._check_at = time.monotonic() + check_s
        for backend_id, seen in list(self.unfinished.items()):
            if records.stale(self._jobs / backend_id, seen, self._launch_grace_s):
                self._read(backend_id)
        return True

    def known(self, backend_id: str) -> bool:
        """Whether ``backend_id`` names an attempt that was submitted here."""
        if backend_id in self.unfinished or backend_id in self._ended:
            return True
        return bool(_BACKEND_ID.match(backend_id)) and (self._jobs / backend_id / jd.SPEC).exists()

    def status(self, backend_id: str) -> ExecStatus | None:
        """The attempt's status; ``None`` if it is unknown."""
        seen = self.unfinished.get(backend_id)
        if seen is not None:
            return seen.status
        ended = self._ended.get(backend_id)
        if ended is not None or not self.known(backend_id):
            return ended
        # Submitted but not in active/ (a crash before submit finished): read it every time.
        status = records.status(self._jobs / backend_id, self._launch_grace_s)
        if status.state.terminal:
            self._ended[backend_id] = status
        return status

    def launched(self, backend_id: str, launch: dict[str, Any]) -> None:
        """Record a launch this instance just wrote (its wrapper has not started yet)."""
        starting = ExecStatus(ExecState.QUEUED, message="starting")
        self.unfinished[backend_id] = records.Seen(starting, launch)
        self.dirty = True

    def _read_all(self, check_s: float) -> None:
        self.unfinished.clear()
        for backend_id in os.listdir(self._active):
            if not self.known(backend_id):
                (self._active / backend_id).unlink(missing_ok=True)
            else:
                self._read(backend_id)
        self._check_at = time.monotonic() + check_s  # everything was just looked at
        self.dirty = True

    def _read(self, backend_id: str) -> None:
        if backend_id in self._ended:
            return  # a final status never changes
        self.dirty = True
        active = self._active / backend_id
        if not self.known(backend_id) or not active.exists():
            self.unfinished.pop(backend_id, None)
            return
        seen = records.read(self._jobs / backend_id, self._launch_grace_s)
        if seen.status.state.terminal:
            self._ended[backend_id] = seen.status
            self.unfinished.pop(backend_id, None)
            active.unlink(missing_ok=True)
        else:
            self.unfinished[backend_id] = seen
