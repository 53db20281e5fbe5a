"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from aifactory.db.sqlite_writer import Writer
from aifactory.db.wake import WakeBus, take_pending, wake_address

log = logging.getLogger(__name__)
#: Seconds a session waits for a pooled connection before the request is refused (503).
POOL_TIMEOUT_S = 5.0
#: Seconds a SQLite write transaction waits for the database's write lock (then 503).
SQLITE_BUSY_TIMEOUT_S = 5.0


def private_dir(path: Path) -> None:
    """Create ``path`` for this user alone (0700), or tighten an existing one of ours to that.

    The data directory holds the database, tokens' hashes, every job's records and logs: local
    jobs run as another user (docs/jobs.md, local executor) and must not even list it.

    Raises:
        PermissionError: ``path`` is shared (anyone may write to it, like ``/tmp``): tightening
            it would break others, and our data does not belong there.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & (stat.S_IWOTH | stat.S_ISVTX):
        raise PermissionError(f"{path} is shared (anyone may write to it); give aifactory its own")
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("%s was open to others (%o); it is now 0700", path, stat.S_IMODE(info.st_mode))
        path.chmod(0o700)


def _private_sqlite(database: str) -> None:
    """Create the database file 0600 before SQLite does (its -wal and -shm copy that mode)."""
    path = Path(database)
    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(mode=0o700, parents=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            info = file.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                file.chmod(0o600)


def _sqlite_connect(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver begins no transactions of its own; _begin_immediate does (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    return on_connect


def _no_dangling_keys(connection: Connection) -> None:
    """SQLite: fail (and roll back) when a migration left a row pointing at nothing."""
    dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if dangling:
        raise RuntimeError(f"a migration left rows with dangling foreign keys: {dangling[:5]}")


def begin_write(session: Session) -> None:
    """SQLite: take the database's write lock now, so that what the transaction reads next
    (free GPUs, say) cannot change before it writes. PostgreSQL: nothing; row locks do that
    where it matters, and reads do not block there."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE allocations SET id = id WHERE 0 = 1"))  # touches no row


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 30,
    pool_timeout_s: float = POOL_TIMEOUT_S,
    busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
) -> Engine:
    """Create an engine; SQLite gets foreign keys, WAL, a busy timeout, its folder and a file
    only its user can read (0600).

    Per process: API requests in progress (``api_concurrency``, 16) plus one per controller
    loop stay below the pool's size; a checkout waits at most ``pool_timeout_s`` (then 503).
    """
    parsed = make_url(url)
    pool: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_s,
    }
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            pool = {}  # one shared connection per thread: nothing to size
        else:
            _private_sqlite(parsed.database)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **pool)
        event.listen(engine, "connect", _sqlite_connect(busy_timeout_s))
        Writer(busy_timeout_s, parsed.database).install(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, **pool)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("aifactory.db") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _rolled_back(session: Session) -> None:
    """The transaction's wake-ups are void, unless only a SAVEPOINT rolled back (then the
    outer transaction's stand)."""
    if not session.in_nested_transaction():
        take_pending(session)


class Database:
    """One engine and its session factory; ``session()`` commits on success, rolls back on error."""

    def __init__(self, url: str, **engine: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        parsed = make_url(url)
        address = wake_address(parsed.database) if parsed.get_backend_name() == "sqlite" else None
        self.bus = WakeBus(address)  # wakes the controllers (see db/wake.py)
        event.listen(self.sessions, "after_commit", self._committed)
        event.listen(self.sessions, "after_rollback", _rolled_back)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _committed(self, session: Session) -> None:
        # SQLAlchemy also calls this when a SAVEPOINT is released: its wake-ups wait for the
        # real commit (sent now, a controller would look before the rows are there, find
        # nothing, and sleep until its safety-net pass).
        if session.in_nested_transaction():
            return
        topics = take_pending(session)
        if topics:
            self.bus.publish(topics)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        self.migrate(command.upgrade, "head")

    def migrate(self, step: Callable[[Config, str], None], revision: str) -> None:
        """Run alembic's ``step`` (upgrade or downgrade) to ``revision`` in one transaction.

        SQLite cannot alter most of a table in place: a migration copies it into a new one and
        drops the old, which foreign keys from rows of other tables forbid. So, as SQLite's
        documentation prescribes for this, foreign keys are off while the migrations run (the
        pragma is ignored inside a transaction, so it is set before), checked in full before
        the commit, and on again after."""
        cfg = alembic_config(self.url)
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.connect() as connection:
            raw = connection.connection.driver_connection
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    cfg.attributes["connection"] = connection
                    step(cfg, revision)
                    if sqlite:
                        _no_dangling_keys(connection)
            finally:
                if sqlite and raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()
