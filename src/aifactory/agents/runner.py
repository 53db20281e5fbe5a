"""Runs the broker's reconciler and every site agent in one background thread."""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from aifactory.agents.site_agent import SiteAgent
from aifactory.broker.reconciler import place_pending
from aifactory.db.engine import Database
from aifactory.db.models import Factory
from aifactory.db.types import utcnow
from aifactory.services import ledger
from aifactory.services.sites import build_executor, load_sites
from aifactory.settings import Settings

log = logging.getLogger(__name__)
EXPIRY_CHECK_S = 60.0


class AgentRunner:
    """Reconciles jobs every ``settings.agent_interval_s`` until stopped."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        with db.session() as s:
            factories = list(s.execute(select(Factory.id, Factory.name).order_by(Factory.name)))
        sites = load_sites(settings, [name for _, name in factories])
        self.capacity = {name: site.capacity_gpus for name, site in sites.items()}
        self.agents = [
            SiteAgent(db, fid, name, build_executor(settings, sites[name]))
            for fid, name in factories
        ]
        self._expiry_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aif-agents", daemon=True)

    def tick(self) -> None:
        """One pass: expire ended allocations, place pending jobs, let every agent reconcile."""
        self._expire()
        place_pending(self.db, self.capacity)
        for agent in self.agents:
            try:
                agent.tick()
            except Exception:  # one broken site must not stop the others
                log.exception("site agent %s failed; continuing", agent.name)

    def _expire(self) -> None:
        """Allocations past their end date expire (their remaining hours by a ledger entry)."""
        if time.monotonic() < self._expiry_due:
            return
        with self.db.session() as s:
            expired = ledger.expire_due(s, utcnow().date())
        if expired:
            log.info("expired allocations %s", expired)
        self._expiry_due = time.monotonic() + EXPIRY_CHECK_S

    def start(self) -> AgentRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("agent pass failed; retrying")
            self._stop.wait(self.settings.agent_interval_s)
