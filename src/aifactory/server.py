"""The running system, composed once: API workers plus this process's controllers.

Every entry point goes through here: ``aif serve`` (``serve``, in the foreground), ``aif demo``,
the tests and the benchmarks (``BackgroundServer``, on a free loopback port). Controllers are
the broker reconciler and one site agent per factory (``agents/runner.py``); ``aif controller``
runs them without the API.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.portal import install as install_portal
from aifactory.portal.headers import SecurityHeaders
from aifactory.settings import Settings, load_settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def build_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """The web app users reach: the REST API under ``/api/v1`` and the portal at ``/``.

    Every response gets the security headers (``portal/headers.py``).
    """
    app = create_app(settings, db)
    install_portal(app)
    app.add_middleware(SecurityHeaders)
    return app


def app_from_env() -> FastAPI:
    """The app of one API worker process (``aif serve --workers N`` imports this)."""
    return build_app(load_settings())


def serve(
    settings: Settings,
    db: Database,
    *,
    host: str,
    port: int,
    workers: int = 1,
    controllers: bool = True,
) -> None:
    """Run API workers and (unless told not to) the controllers until interrupted.

    With one worker the API shares this process and its database engine with the controllers,
    so a submission wakes its site agent in-process. With several, uvicorn starts worker
    processes (for more submissions a second than one process's GIL allows); they wake the
    controllers through PostgreSQL NOTIFY, or on SQLite a datagram to the socket beside the
    database (``db/wake.py``), and take SQLite's write lock in turn (``db/sqlite_writer.py``).
    """
    runner = AgentRunner(settings, db).start() if controllers else None
    try:
        if workers > 1:
            uvicorn.run(
                "aifactory.server:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="info",
            )
        else:
            uvicorn.Server(uvicorn.Config(build_app(settings, db), host=host, port=port)).run()
    finally:
        if runner is not None:
            runner.stop()


class BackgroundServer:
    """The same composition in threads of this process, on a free loopback port (``with``)."""

    def __init__(
        self, settings: Settings, db: Database, host: str = "127.0.0.1", agents: bool = False
    ) -> None:
        self.host = host
        self.runner = AgentRunner(settings, db) if agents else None
        self.port = free_port(host)
        config = uvicorn.Config(
            build_app(settings, db), host=host, port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        if self.runner is not None:
            self.runner.start()
        self.thread.start()
        while not self.server.started:  # waits on the server, not on a clock
            if not self.thread.is_alive():
                raise RuntimeError(f"API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.runner is not None:
            self.runner.stop()
