"""Waking controllers early: signals that are sent only if the transaction that raised them commits.

Controllers are level-triggered (each pass repairs whatever differs), so a lost signal costs
latency, never correctness; signals only cut the wait. On PostgreSQL a signal is a
``pg_notify`` inside the transaction: the server delivers it at commit to every process that
listens (the controllers' listener thread). On SQLite topics are kept on the session and
published after the commit to the database's bus: in this process, and as a datagram to the
socket beside the database where the controllers' process listens (API workers of
``aif serve --workers N`` run in processes of their own).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

CHANNEL = "aif_wake"
#: Controller scopes: each names both the topic that wakes a controller and the lease it holds.
BROKER = "broker"
_PENDING = "aif_wake_topics"


def site_topic(factory_id: int) -> str:
    """The scope of one factory's site agent (its wake-up topic and its lease)."""
    return f"site:{factory_id}"


class WakeBus:
    """Fan-out of topics to the events controllers wait on: in this process, and (with an
    ``address``, SQLite) to the process that ``serve``s there."""

    def __init__(self, address: str | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[threading.Event]] = {}
        self.address = address  # a Unix datagram socket's path
        self._sender: socket.socket | None = None
        self._serving = False

    def subscribe(self, topic: str) -> threading.Event:
        """An event set whenever ``topic`` is published."""
        event = threading.Event()
        with self._lock:
            self._subscribers.setdefault(topic, []).append(event)
        return event

    def unsubscribe(self, topic: str, event: threading.Event) -> None:
        with self._lock:
            events = self._subscribers.get(topic, [])
            if event in events:
                events.remove(event)

    def publish(self, topics: Iterable[str], *, here_only: bool = False) -> None:
        wanted = set(topics)
        with self._lock:
            events = [e for topic in wanted for e in self._subscribers.get(topic, ())]
        for event in events:
            event.set()
        if self.address and wanted and not (here_only or self._serving):
            self._send(self.address, wanted)

    def _send(self, address: str, topics: set[str]) -> None:
        try:
            with self._lock:
                if self._sender is None:
                    self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sender.setblocking(False)
                sender = self._sender
            sender.sendto("\n".join(sorted(topics)).encode(), address)
        except OSError:  # no one listens (no controllers), or the queue is full: the safety
            pass  # net of the controllers' passes finds the work a little later

    def interrupt(self) -> None:
        """Make ``serve`` look at its stop event now (an empty datagram), not within 1 s."""
        if self.address:
            self._send(self.address, set())

    def serve(self, stop: threading.Event) -> None:
        """Listen at ``address`` until ``stop``: other processes' topics wake this one's."""
        assert self.address is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)  # left by a process that died
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(self.address)
            os.chmod(self.address, 0o600)
            sock.settimeout(1.0)
            self._serving = True
            try:
                while not stop.is_set():
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if data:
                        self.publish(data.decode(errors="replace").split("\n"), here_only=True)
            finally:
                self._serving = False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.address)


def wake_address(database: str | None) -> str | None:
    """Where the controllers of an SQLite database listen for wake-ups: beside it (``None``
    in memory, or where the path is too long for a Unix socket)."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    address = f"{database}-wake"
    return address if len(address.encode()) < 100 else None


def wake(session: Session, *topics: str) -> None:
    """Wake the controllers of ``topics`` once this session's transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        for topic in sorted(set(topics)):
            session.execute(select(func.pg_notify(CHANNEL, topic)))
        return
    pending: set[str] = session.info.setdefault(_PENDING, set())
    pending.update(topics)


def take_pending(session: Session) -> set[str]:
    """Topics raised in the transaction that just ended (SQLite); clears them."""
    topics: set[str] = session.info.pop(_PENDING, set())
    return topics
