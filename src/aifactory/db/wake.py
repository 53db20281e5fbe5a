"""Waking controllers early: signals that are sent only if the transaction that raised them commits.

Controllers are level-triggered (each pass repairs whatever differs), so a lost signal costs
latency, never correctness; signals only cut the wait. On PostgreSQL a signal is a
``pg_notify`` inside the transaction: the server delivers it at commit to every process that
listens (the controllers' listener thread). On SQLite, where a second controller process is not
allowed, topics are kept on the session and published to the database's in-process bus after
the commit.
"""

from __future__ import annotations

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
    """In-process fan-out of topics to the events controllers wait on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[threading.Event]] = {}

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

    def publish(self, topics: Iterable[str]) -> None:
        with self._lock:
            events = [e for topic in set(topics) for e in self._subscribers.get(topic, ())]
        for event in events:
            event.set()


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
