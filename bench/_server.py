"""The API for a benchmark, in its own process: prints its URL, stops on 'stop' or EOF.

Usage (from ``bench/_common.ServerProcess``): ``python bench/_server.py '<json config>'`` with
``{"agents": bool, "settings": {...Settings fields...}}``. The database must already be
migrated and seeded; this only serves it (and, with agents, runs the reconciler and agents).
"""

from __future__ import annotations

import json
import logging
import sys

from aifactory.db.engine import Database
from aifactory.server import BackgroundServer
from aifactory.settings import Settings


def main() -> None:
    config = json.loads(sys.argv[1])
    fields = {k: v for k, v in config["settings"].items() if v is not None}
    settings = Settings(**fields)
    logging.basicConfig(level=logging.WARNING)
    db = Database(settings.effective_database_url)
    with BackgroundServer(settings, db, agents=bool(config.get("agents"))) as server:
        print(server.url, flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    db.dispose()


if __name__ == "__main__":
    main()
