"""Runs the broker's reconciler and every site agent in one background thread."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from aifactory.agents.site_agent import SiteAgent
from aifactory.broker.reconciler import place_pending
from aifactory.db.engine import Database
from aifactory.db.models import Factory
from aifactory.services.sites import build_executor, load_sites
from aifactory.settings import Settings

log = logging.getLogger(__name__)


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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aif-agents", daemon=True)

    def tick(self) -> None:
        """One pass: place pending jobs, then let every site agent reconcile."""
        place_pending(self.db, self.capacity)
        for agent in self.agents:
            try:
                agent.tick()
            except Exception:  # one broken site must not stop the others
                log.exception("site agent %s failed; continuing", agent.name)

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
