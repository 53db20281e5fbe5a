"""The client's calls for interactive sessions (mixed into ``Client``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from aifactory.errors import BackendUnavailable

if TYPE_CHECKING:
    from aifactory.services.interactive import SessionView

M = TypeVar("M", bound=BaseModel)
#: States after which a session never becomes ready.
OVER = frozenset({"stopping", "ended"})


class SessionCalls:
    """``/api/v1/sessions``, and where a session is served."""

    base_url: str

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        raise NotImplementedError

    def start_session(self, spec: dict[str, Any]) -> SessionView:
        """Start a session: ``{"project", "kind", "gpus", "time", "idle_timeout", ...}``."""
        from aifactory.services.interactive import SessionView

        return self._call("POST", "/sessions", SessionView, json=spec)

    def list_sessions(self, everything: bool = False) -> list[SessionView]:
        from aifactory.services.interactive import SessionView

        params = {"all": "true"} if everything else None
        return self._call_list("GET", "/sessions", SessionView, params=params)

    def get_session(self, session_id: int) -> SessionView:
        from aifactory.services.interactive import SessionView

        return self._call("GET", f"/sessions/{int(session_id)}", SessionView)

    def stop_session(self, session_id: int) -> SessionView:
        from aifactory.services.interactive import SessionView

        return self._call("POST", f"/sessions/{int(session_id)}/stop", SessionView)

    def session_url(self, view: SessionView) -> str:
        """Where to open the session in a browser (signed in to the portal)."""
        return self.base_url + view.path

    def wait_for_session(
        self, session_id: int, timeout_s: float = 900.0, step_s: float = 1.0
    ) -> SessionView:
        """Follow a session until it is ready, or has stopped or ended (then it is returned as
        it is, with its reason).

        Raises:
            BackendUnavailable: Still starting after ``timeout_s`` (its job may be waiting for
                GPUs: see ``reason``).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.get_session(session_id)
            if view.state == "ready" or view.state in OVER:
                return view
            if time.monotonic() > deadline:
                msg = f"session {session_id} still {view.state} after {timeout_s:g} s"
                raise BackendUnavailable(f"{msg}: {view.reason}")
            time.sleep(step_s)
