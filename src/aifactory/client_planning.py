"""The client's calls for capacity planning (mixed into ``Client``)."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


class PlanningCalls:
    """``/api/v1/planning/...``: plain JSON, the documents ``aif plan`` reads and writes."""

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def planning_snapshot(self) -> dict[str, Any]:
        """The registry as planning reads it (the ``--registry FILE`` document)."""
        snapshot: dict[str, Any] = self._send("GET", "/planning/snapshot").json()
        return snapshot

    def planning_history(self, since: date | None = None) -> dict[str, Any]:
        """Jobs that ran, oldest first (federation admins and factory operators only)."""
        params = {"since": since.isoformat()} if since else {}
        history: dict[str, Any] = self._send("GET", "/planning/history", params=params).json()
        return history
