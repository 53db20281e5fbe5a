"""`make demo`: the embedded federation on SQLite, shown through the real API, then stopped."""

from __future__ import annotations

from rich.rule import Rule

from aifactory.cli import render
from aifactory.cli.render import console
from aifactory.client import Client
from aifactory.server import BackgroundServer
from aifactory.services.identity import bootstrap_admin
from aifactory.services.setup import prepare
from aifactory.settings import load_settings


def run_demo() -> None:
    settings = load_settings()
    console.print(Rule("aifactory demo: the embedded federation"))
    db = prepare(settings)
    console.print(
        f"database: {db.engine.url.render_as_string(hide_password=True)} (migrated, seeded)"
    )
    with db.session() as session:
        admin = bootstrap_admin(session, "admin", ttl_days=1)
    with BackgroundServer(settings, db) as server:
        console.print(f"API up at {server.url}/api/v1 (OpenAPI at {server.url}/openapi.json)")
        with Client(server.url, admin.token) as api:
            console.print(render.summary_tables(api.federation_summary()))
            console.print(render.factories_table(api.list_factories()))
            console.print(render.factory_detail(api.get_factory("BSC AIF")))
            api.revoke_token(admin.id)
    db.dispose()
    console.print(Rule())
    console.print(
        "Demo finished; the API is stopped. To keep the federation running: "
        "[bold].venv/bin/aif serve[/bold] (then `aif admin bootstrap` and `aif factories list`)."
    )
