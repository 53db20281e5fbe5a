"""Which local attempts changed since an executor instance last looked.

A poll must not re-read every attempt's records when nothing happened, yet several executor
instances (in one process or several, now or after a restart) share one state directory and
each must see every change. Two files in the state directory make that cheap:

``events/<backend id>``
    Created by whoever changes an attempt's records (``_jobdir.note``): its wrapper when it
    starts, runs and ends, an executor when it queues, launches, cancels or gives up on one.
    Creating a file needs no lock, so a wrapper never waits for an executor.
``journal``
    A header line naming this journal, then one backend id per line. Under the executor's lock,
    ``collect`` appends the pending events' ids, deletes the events, and reads the lines this
    instance has not read yet. Each instance remembers how far it read; one that finds another
    header (a new instance, or the journal was started afresh because it grew large) re-reads
    every attempt instead.

An event is deleted only after its id is in the journal, and its attempt is re-read only after
it was deleted, so a change made meanwhile is either seen by that read or leaves a new event.
The journal is a notification, not a record: losing it costs one full re-read, never a status.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from aifactory.executors import _jobdir as jd

JOURNAL = "journal"
JOURNAL_MAX = 1 << 20  # bytes; then it starts afresh (about 40,000 changes)


class Changes:
    """One executor instance's view of the change feed of ``state_dir`` (lock held)."""

    def __init__(self, state_dir: Path) -> None:
        self._events = state_dir / jd.EVENTS
        self._journal = state_dir / JOURNAL
        self._events.mkdir(mode=0o700, exist_ok=True)  # inside the private state directory
        self._header: bytes | None = None
        self._offset = 0

    def collect(self) -> set[str] | None:
        """Ids of attempts whose records changed since the last call; ``None``: all may have."""
        names = os.listdir(self._events)
        if names:
            self._append(names)
            for name in names:
                (self._events / name).unlink(missing_ok=True)
        return self._read()

    def _append(self, ids: list[str]) -> None:
        if not self._journal.exists():
            self._create()  # not adopted: _read then finds a header new to it, reads everything
        with self._journal.open("ab") as journal:
            journal.write("".join(f"{i}\n" for i in ids).encode())

    def _read(self) -> set[str] | None:
        try:
            journal = self._journal.open("rb")
        except FileNotFoundError:
            self._restart()
            return None
        with journal:
            header = journal.readline()
            if header != self._header:  # first look, or another journal: read everything
                self._header, self._offset = header, journal.seek(0, os.SEEK_END)
                return None
            journal.seek(self._offset)
            data = journal.read()
        end = data.rfind(b"\n") + 1  # a writer that crashed mid-line left no full id there
        self._offset += end
        if self._offset > JOURNAL_MAX:
            self._restart()  # the others read everything once, then follow the new journal
        return set(data[:end].decode(errors="replace").split())

    def _restart(self) -> None:
        self._header = self._create()
        self._offset = len(self._header)

    def _create(self) -> bytes:
        header = f"aif-journal {secrets.token_hex(8)}\n".encode()
        tmp = self._journal.with_name(f".{JOURNAL}.tmp")
        tmp.write_bytes(header)
        os.replace(tmp, self._journal)
        return header
