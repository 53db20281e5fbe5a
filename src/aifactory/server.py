"""Run the API in a background thread (demo, tests, benchmarks) on a free local port."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.settings import Settings


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class BackgroundServer:
    """A real uvicorn server on loopback, started and stopped with ``with``."""

    def __init__(
        self, settings: Settings, db: Database, host: str = "127.0.0.1", agents: bool = False
    ) -> None:
        self.host = host
        self.runner = AgentRunner(settings, db) if agents else None
        self.port = free_port(host)
        config = uvicorn.Config(
            create_app(settings, db), host=host, port=self.port, log_level="warning"
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
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
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
