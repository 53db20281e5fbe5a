"""The controllers of one process: the broker reconciler and a site agent per factory.

Each runs in its own thread with its own timeouts, and acts only while it holds its lease
(``site:<factory id>`` or ``broker``), so several processes may run controllers on one
PostgreSQL: each lease has one holder at a time, and a holder killed with ``kill -9`` loses it
when it expires. SQLite allows one controller process per database (a file lock says so at
start). Loops sleep until woken (a submission, a cancel, a freed reservation; see
``db/wake.py``); polling remains as the slow safety net (``controller_resync_s``), and a site
with live jobs polls its executor every ``agent_interval_s``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import IO

import psycopg
from sqlalchemy import delete, select, update
from sqlalchemy.engine import make_url

from aifactory.agents.leases import LeaseHandle, LeaseLost, new_holder
from aifactory.agents.reconciler import Backlog
from aifactory.agents.serving import ServingController
from aifactory.agents.site_agent import SiteAgent
from aifactory.db.engine import Database
from aifactory.db.models import ControllerBeat, Factory, Lease
from aifactory.db.types import utcnow
from aifactory.db.wake import BROKER, CHANNEL, site_topic
from aifactory.errors import Conflict, Invalid
from aifactory.services import checkpoints, housekeeping, ledger
from aifactory.services.endpoints import SERVING
from aifactory.services.sites import build_executor, load_sites
from aifactory.settings import Settings

log = logging.getLogger(__name__)
EXPIRY_CHECK_S = 60.0
SERVING_INTERVAL_S = 1.0  # replicas' health and endpoints' load, while any is live


class Broker:
    """Expires ended allocations, forgets expired rows and places pending jobs (broker lease)."""

    def __init__(self, db: Database, capacity: dict[str, int | None], lease: LeaseHandle) -> None:
        self.db, self.capacity, self.lease = db, capacity, lease
        self.backlog = Backlog(db, capacity, lease.fence)
        self._expiry_due = 0.0
        self._token: int | None = None

    def tick(self, woken: bool = True) -> int:
        """Expire and forget what is due, then a pass over the pending jobs if anything changed
        (``woken``), the fingerprint moved, or this process just took the lease."""
        full = woken or self.lease.token != self._token
        if time.monotonic() >= self._expiry_due:
            with self.db.session() as s:
                self.lease.fence(s)
                expired = ledger.expire_due(s, utcnow().date())
                purged = housekeeping.purge(s, utcnow())
            if expired:
                log.info("expired allocations %s", expired)
            if any(purged.values()):
                log.info("forgot expired rows: %s", purged)
            self._expiry_due = time.monotonic() + EXPIRY_CHECK_S
            full = full or bool(expired)
        placed = self.backlog.run(full)
        self._token = self.lease.token
        return placed


class AgentRunner:
    """The controllers of one process; ``start()`` runs them in threads, ``tick()`` once inline.

    Args:
        settings: Intervals, lease time, sites file.
        db: The control plane's database.
        sites: Factory names whose agents this process runs (default: all).
        broker: Whether this process also runs the broker reconciler.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        sites: Sequence[str] | None = None,
        broker: bool = True,
    ) -> None:
        self.settings, self.db = settings, db
        self.holder = new_holder()
        with db.session() as s:
            factories = list(s.execute(select(Factory.id, Factory.name).order_by(Factory.name)))
        names = [name for _, name in factories]
        unknown = sorted(set(sites or ()) - set(names))
        if unknown:
            raise Invalid.field("site", "known_factory", f"no factory {unknown}; known: {names}")
        configs = load_sites(settings, names)
        capacity = {name: site.capacity_gpus for name, site in configs.items()}
        self.agents = [
            SiteAgent(
                db,
                fid,
                name,
                build_executor(settings, configs[name]),
                self._lease(site_topic(fid)),
                lost_grace_s=settings.lost_grace_s,
                failover_grace_s=settings.failover_grace_s,
                checkpoint_store=checkpoints.store_root(settings.data_dir),
            )
            for fid, name in factories
            if not sites or name in sites
        ]
        self.broker = Broker(db, capacity, self._lease(BROKER)) if broker else None
        # Endpoints and interactive sessions are looked after where the broker runs.
        self.serving = ServingController(db, capacity, self._lease(SERVING)) if broker else None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._events: list[tuple[str, threading.Event]] = []
        self._lock_file: IO[str] | None = None

    def _lease(self, name: str) -> LeaseHandle:
        return LeaseHandle(self.db, name, self.holder, self.settings.lease_ttl_s)

    @property
    def leases(self) -> list[LeaseHandle]:
        extra = [c.lease for c in (self.broker, self.serving) if c is not None]
        return [a.lease for a in self.agents] + extra

    def tick(self) -> None:
        """One inline pass of every controller whose lease this process holds (tests, tools)."""
        if self.broker is not None:
            _guarded("broker", self.broker.lease, self.broker.tick)
        if self.serving is not None:
            _guarded("serving", self.serving.lease, self.serving.tick)
        for agent in self.agents:
            _guarded(agent.name, agent.lease, agent.tick)

    # --- threads ---

    def start(self) -> AgentRunner:
        """Run every controller in its own thread until ``stop()``."""
        self._single_controller_on_sqlite()
        self._beat()
        if self.broker is not None:
            self._spawn("aif-broker", BROKER, self._broker_loop)
        if self.serving is not None:
            self._spawn("aif-serving", SERVING, self._serving_loop)
        for agent in self.agents:
            loop = partial(self._site_loop, agent)
            self._spawn(f"aif-site-{agent.factory_id}", site_topic(agent.factory_id), loop)
        if self.db.dialect == "postgresql":
            self._threads.append(threading.Thread(target=self._listen, daemon=True))
        elif self.db.bus.address:  # SQLite: submissions of API worker processes wake us here
            listen = partial(self.db.bus.serve, self._stop)
            self._threads.append(threading.Thread(target=listen, name="aif-wake", daemon=True))
        self._threads.append(threading.Thread(target=self._beats, daemon=True))
        for thread in self._threads:
            thread.start()
        broker = "on" if self.broker else "off"
        log.info("controllers %s: %d sites, broker %s", self.holder, len(self.agents), broker)
        return self

    def stop(self) -> None:
        """Stop the loops, give the leases back and forget this process's heartbeat."""
        self._stop.set()
        for _, event in self._events:
            event.set()
        self.db.bus.interrupt()  # SQLite: the wake-up listener stops now, not within 1 s
        for thread in self._threads:
            thread.join(timeout=30)
        for topic, event in self._events:
            self.db.bus.unsubscribe(topic, event)
        for lease in self.leases:
            try:
                lease.release()
            except Exception:  # the database may be gone at shutdown; the lease then expires
                log.warning("could not release lease %s", lease.name)
        try:
            with self.db.session() as s:
                s.execute(delete(ControllerBeat).where(ControllerBeat.holder == self.holder))
        except Exception:
            log.warning("could not remove heartbeat of %s", self.holder)
        if self._lock_file is not None:
            self._lock_file.close()

    def _spawn(self, name: str, topic: str, loop: Callable[[threading.Event], None]) -> None:
        """A loop in its own thread, woken by ``topic``."""
        event = self.db.bus.subscribe(topic)
        self._events.append((topic, event))
        self._threads.append(threading.Thread(target=loop, args=(event,), name=name, daemon=True))

    def _site_loop(self, agent: SiteAgent, wake: threading.Event) -> None:
        resync, interval = self.settings.controller_resync_s, self.settings.agent_interval_s
        due = poll_due = 0.0  # next full pass (woken or not), next poll of the live jobs
        while not self._stop.is_set():
            woken = wake.is_set()
            wake.clear()
            now = time.monotonic()
            full = woken or agent.backlog or now >= due
            # Live jobs are polled every agent_interval_s, not on each wake-up: a pass woken
            # by a submission (20 a second, say) hands it over without polling every job.
            poll = now >= poll_due
            _guarded(agent.name, agent.lease, partial(agent.tick, full, poll=poll))
            if full:
                due = time.monotonic() + resync
            if poll:
                poll_due = now + interval
            if agent.backlog and agent.lease.held:
                continue  # more placed jobs than one pass takes: go on at once
            busy = agent.has_live and agent.lease.held
            wake.wait(self.settings.agent_interval_s if busy else self._idle_wait())

    def _broker_loop(self, wake: threading.Event) -> None:
        assert self.broker is not None
        broker = self.broker
        woken = True
        while not self._stop.is_set():
            wake.clear()
            _guarded("broker", broker.lease, partial(broker.tick, woken))
            woken = wake.wait(self._idle_wait())

    def _serving_loop(self, wake: threading.Event) -> None:
        assert self.serving is not None
        serving = self.serving
        while not self._stop.is_set():
            wake.clear()
            _guarded("serving", serving.lease, serving.tick)
            busy = serving.live and serving.lease.held
            wake.wait(SERVING_INTERVAL_S if busy else self._idle_wait())
        serving.close()

    def _idle_wait(self) -> float:
        """The safety-net interval, short enough to renew leases well before they expire."""
        return min(self.settings.controller_resync_s, self.settings.lease_ttl_s / 3)

    def _listen(self) -> None:
        """PostgreSQL: turn NOTIFYs from any process into wake-ups of this process's loops."""
        url = make_url(self.db.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.db.bus.publish(t for t, _ in self._events)  # missed any? look again
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.db.bus.publish([note.payload])
            except psycopg.Error as exc:
                log.warning("wake-up listener lost its connection (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def _beats(self) -> None:
        while not self._stop.wait(self.settings.lease_ttl_s / 3):
            try:
                self._beat()
            except Exception:
                log.exception("heartbeat of %s failed", self.holder)

    def _beat(self) -> None:
        held = [lease.name for lease in self.leases if lease.held]
        with self.db.session() as s:
            row = s.get(ControllerBeat, self.holder)
            if row is None:
                row = ControllerBeat(holder=self.holder, host=socket.gethostname(), pid=os.getpid())
                s.add(row)
            row.scope, row.seen_at = " ".join(held), utcnow()

    def _single_controller_on_sqlite(self) -> None:
        """SQLite has no row locks for leases across processes: one controller per file."""
        url = make_url(self.db.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return
        path = Path(url.database + ".controller.lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            raise Conflict(
                f"a controller is already running on this SQLite database ({other}); SQLite "
                "allows one. Stop it, or run several controllers on PostgreSQL "
                "(AIF_DATABASE_URL)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self._lock_file = handle
        # Holding the lock proves every other holder dead (killed, say): take over at once.
        with self.db.session() as s:
            s.execute(
                update(Lease)
                .where(Lease.holder != self.holder)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            s.execute(delete(ControllerBeat).where(ControllerBeat.holder != self.holder))


def _guarded(name: str, lease: LeaseHandle, step: Callable[[], object]) -> None:
    """Run one controller step if its lease is held; its errors are logged, never raised."""
    try:
        if lease.ensure_due():
            step()
    except LeaseLost as exc:
        log.warning("%s: %s; standing by", name, exc)
    except Exception:
        log.exception("%s: pass failed; retrying", name)
