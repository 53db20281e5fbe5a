"""SQLite's one writer at a time, taken in turn instead of by SQLite's sleeping retries.

SQLite makes a writer that finds the database locked sleep and retry (1, 2, 5 ... 100 ms), so
under load some writers wait for seconds while others get in at once. Here a writer first
takes this process's lock, which wakes the next thread the moment the holder commits or rolls
back, then an advisory lock on a file beside the database (``<db>-writer``), which orders the
processes that share it (API workers of ``aif serve --workers N``, the controllers, the CLI),
and only then ``BEGIN IMMEDIATE``. SQLite's busy timeout still covers anyone else.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, event

#: Statements that need no write lock (reads, transaction control); all others take it first.
_NO_LOCK = frozenset(
    {"SELECT", "PRAGMA", "EXPLAIN", "VALUES", "BEGIN", "COMMIT", "END", "ROLLBACK", "VACUUM"}
)
_FIRST_PAUSE_S, _MAX_PAUSE_S = 0.0002, 0.005


def _writes(statement: str, context: Any) -> bool:
    words = statement.lstrip(" \n\t(").split(None, 1)
    first = words[0].upper() if words else ""
    if first == "WITH":  # a CTE: a write only when it ends in INSERT, UPDATE or DELETE
        return context is None or bool(context.isinsert or context.isupdate or context.isdelete)
    return first not in _NO_LOCK


class Writer:
    """The write lock of one engine's SQLite database, for this process and across processes."""

    def __init__(self, timeout_s: float, database: str | None) -> None:
        self.timeout_s = timeout_s
        self.lock = threading.Lock()
        self.holder: Any = None  # the driver connection whose transaction holds the lock
        in_memory = not database or database == ":memory:" or database.startswith("file:")
        self.path = None if in_memory else f"{database}-writer"
        self._fd: int | None = None
        self._pid = 0

    def take(self, driver: Any) -> None:
        deadline = time.monotonic() + self.timeout_s
        if not self.lock.acquire(timeout=self.timeout_s):
            raise sqlite3.OperationalError("database is locked")  # as SQLite says: a 503
        try:
            self._take_file(deadline)
        except BaseException:
            self.lock.release()
            raise
        self.holder = driver

    def _take_file(self, deadline: float) -> None:
        """The file lock: tried without blocking, then again after short, growing pauses (a
        blocking ``flock`` could not give up at the deadline)."""
        fd = self._file()
        if fd is None:
            return
        pause = _FIRST_PAUSE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE_S)

    def _file(self) -> int | None:
        if self.path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def give_back(self, connection: Any) -> None:
        # The dialect is handed the pool's proxy, the pool's events the driver's connection.
        driver = getattr(connection, "driver_connection", connection)
        if driver is not None and self.holder is driver:
            self.holder = None
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.lock.release()

    def install(self, engine: Engine) -> None:
        """Begin writes through the locks; give them back once the transaction ends or its
        connection goes (commit, rollback, the pool's reset on check-in, close, invalidation)."""
        dialect = engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:
                self.give_back(dbapi_connection)

        def do_rollback(dbapi_connection: Any) -> None:
            try:
                rollback(dbapi_connection)
            finally:
                self.give_back(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]
        gone = lambda dbapi_connection, *_: self.give_back(dbapi_connection)  # noqa: E731
        event.listen(engine, "close", gone)
        event.listen(engine, "invalidate", gone)
        event.listen(engine, "before_cursor_execute", self._begin_immediate, retval=True)

    def _begin_immediate(
        self, conn: Connection, cursor: Any, statement: str, params: Any, context: Any, _m: bool
    ) -> tuple[str, Any]:
        """Before a transaction's first write (or savepoint, or DDL): ``BEGIN IMMEDIATE``.

        It takes SQLite's write lock first, waiting at most the busy timeout (then "database
        is locked", a 503), so a transaction never fails half-way on upgrading a read lock. A
        session's reads before its first write run on their own (as with the driver's
        default); a read-only session never takes the lock, and never blocks or waits for
        writers (WAL).
        """
        driver = conn.connection.driver_connection
        if driver is not None and not driver.in_transaction and _writes(statement, context):
            self.take(driver)
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.give_back(driver)
                raise
        return statement, params
