"""The API for a benchmark, in its own process: prints its URL, stops on 'stop' or EOF.

Usage (from ``bench/_common.ServerProcess``): ``python bench/_server.py '<json config>'`` with
``{"agents": bool, "workers": int, "settings": {...Settings fields...}}``. The database must
already be migrated and seeded; this only serves it (and, with agents, runs the reconciler
and the site agents).

With ``workers`` 1 (the default) the server is ``aifactory.server.BackgroundServer``, as in the
demo and the tests. With more, uvicorn runs that many worker processes on one port (what a
production deployment on several cores would do); agents are not run in that mode.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from fastapi import FastAPI

from aifactory.db.engine import Database
from aifactory.server import BackgroundServer, build_app, free_port
from aifactory.settings import Settings

CONFIG_ENV = "AIF_BENCH_SERVER_CONFIG"


def _settings(config: dict[str, object]) -> Settings:
    fields = {k: v for k, v in dict(config["settings"]).items() if v is not None}  # type: ignore[call-overload]
    return Settings(**fields)


def app_factory() -> FastAPI:
    """For uvicorn's worker processes: the app from the config in the environment."""
    settings = _settings(json.loads(os.environ[CONFIG_ENV]))
    return build_app(settings, Database(settings.effective_database_url))


def _stop_on_stdin() -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    config = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING)
    workers = int(config.get("workers", 1))
    if workers > 1:
        import uvicorn

        os.environ[CONFIG_ENV] = sys.argv[1]
        port = free_port()
        print(f"http://127.0.0.1:{port}", flush=True)
        threading.Thread(target=_stop_on_stdin, daemon=True).start()
        uvicorn.run(
            "_server:app_factory",
            factory=True,
            host="127.0.0.1",
            port=port,
            workers=workers,
            log_level="warning",
            app_dir=str(Path(__file__).parent),
        )
        return
    settings = _settings(config)
    db = Database(settings.effective_database_url)
    with BackgroundServer(settings, db, agents=bool(config.get("agents"))) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    db.dispose()


if __name__ == "__main__":
    main()
