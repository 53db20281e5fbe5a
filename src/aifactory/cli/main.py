"""`aif`: the command-line interface. Everything except `serve`, `init`, `demo` and
`admin bootstrap` talks to the API through the typed client."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.text import Text

from aifactory import errors
from aifactory.cli import (
    access,
    claim_rules,
    job_metrics,
    jobs,
    ops,
    plan,
    render,
    security,
    self_service,
    serving,
    sessions,
    site_accounts,
)
from aifactory.cli import config as cli_config
from aifactory.cli import factories as factory_commands
from aifactory.cli.common import client, friendly
from aifactory.cli.lazy import lazy_typer
from aifactory.cli.output import JsonOpt, emit
from aifactory.cli.render import console

#: `aif sim`'s help text: the simulator's module (NumPy and the sim package) is imported only
#: when an `aif sim` command runs (equal to its app's help: tests/unit/test_cli_imports.py).
SIM_HELP = "Simulate workload traces through scheduling and placement policies."

app = typer.Typer(help="aifactory: a federation of AI Factories.", no_args_is_help=True)
factories_app = typer.Typer(help="AI Factories in the federation registry.", no_args_is_help=True)
federation_app = typer.Typer(help="The federation as a whole.", no_args_is_help=True)
admin_app = typer.Typer(help="Users, roles and API tokens (federation admins).")
app.add_typer(factories_app, name="factories")
app.add_typer(federation_app, name="federation")
app.add_typer(admin_app, name="admin")
app.add_typer(lazy_typer("aifactory.cli.sim:app", SIM_HELP), name="sim")
app.add_typer(plan.app, name="plan")
access.install(app)
jobs.install(app)
job_metrics.install(jobs.jobs_app)
ops.install(app)
serving.install(app)
sessions.install(app)
security.install(admin_app)
claim_rules.install(admin_app)
site_accounts.install(admin_app)
self_service.install(app)
factory_commands.install(factories_app, federation_app)


# --- server side -----------------------------------------------------------------------------


@app.command()
@friendly
def init() -> None:
    """Create or migrate the database and seed the default federation (idempotent)."""
    from aifactory.services.setup import prepare
    from aifactory.settings import load_settings

    db = prepare(load_settings())
    console.print(f"database ready: {db.engine.url.render_as_string(hide_password=True)}")


@app.command()
@friendly
def demo() -> None:
    """Start the embedded federation, show it, and stop (see `aif serve` to keep it running)."""
    from aifactory.cli.demo import run_demo

    run_demo()


@admin_app.command("bootstrap")
@friendly
def admin_bootstrap(
    username: Annotated[str, typer.Option(help="admin user to create or reuse")] = "admin",
    save: Annotated[bool, typer.Option(help="store the token as this CLI's login")] = True,
) -> None:
    """Create the first federation admin directly on the server's database; prints a token."""
    from aifactory.services.identity import bootstrap_admin
    from aifactory.services.setup import prepare
    from aifactory.settings import load_settings

    settings = load_settings()
    db = prepare(settings)
    with db.session() as session:
        token = bootstrap_admin(session, username, settings.token_ttl_days)
    console.print(f"admin [bold]{username}[/bold] token (shown once): {token.token}")
    if save:
        cfg = cli_config.load()
        cfg.url = cli_config.url_for_server(settings.host, settings.port)
        cfg.token = token.token
        console.print(f"saved to {cli_config.save(cfg)} (API at {cfg.url})")


# --- through the API -------------------------------------------------------------------------


@app.command()
@friendly
def login(
    url: Annotated[
        str | None,
        typer.Option(
            help="API address (default: AIF_URL, else the stored one, else the local "
            "`aif serve` at AIF_HOST/AIF_PORT)"
        ),
    ] = None,
    token: Annotated[str | None, typer.Option(help="API token (asked for when omitted)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a token against the API and store it (0600) in the user's config dir."""
    if url is None:
        from aifactory.settings import load_settings

        settings = load_settings()
        local = cli_config.server_url(settings.host, settings.port)
        url = cli_config.load(fallback_url=local).url
    from aifactory.client import Client

    secret = token or typer.prompt("API token", hide_input=True)
    with Client(url, secret) as c:
        me = c.me()
    path = cli_config.save(cli_config.CliConfig(url=url, token=secret))
    emit(me, as_json, f"logged in as [bold]{me.username}[/bold]; token stored in {path}")


@factories_app.command("list")
@friendly
def factories_list(as_json: JsonOpt = False) -> None:
    """List the factories with their hosts, consortium members, systems and GPUs."""
    with client() as c:
        factories = c.list_factories()
    emit(factories, as_json, render.factories_table(factories))


@factories_app.command("show")
@friendly
def factories_show(
    name: Annotated[str, typer.Argument(help="factory name, e.g. 'LUMI AIF'")],
    as_json: JsonOpt = False,
) -> None:
    """Show one factory: consortium, capacity split, systems and partitions."""
    with client() as c:
        factory = c.get_factory(name)
    emit(factory, as_json, render.factory_detail(factory))


@federation_app.command("summary")
@friendly
def federation_summary(as_json: JsonOpt = False) -> None:
    """Factories, countries by status, systems by kind, capacity and funding by source."""
    with client() as c:
        summary = c.federation_summary()
    emit(summary, as_json, render.summary_tables(summary))


@admin_app.command("create-org")
@friendly
def admin_create_org(
    name: str,
    type: Annotated[
        str, typer.Option("--type", help="startup, sme, large_enterprise, academia, public_body")
    ],
    country: Annotated[str, typer.Option(help="ISO 3166 code where it is established")],
    staff: Annotated[int | None, typer.Option(help="staff headcount (SME test)")] = None,
    turnover: Annotated[int | None, typer.Option(help="annual turnover, EUR")] = None,
    balance_sheet: Annotated[int | None, typer.Option(help="balance sheet total, EUR")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an organisation (a start-up, SME, university...) that users can apply for."""
    with client() as c:
        org = c.create_organisation(
            name=name,
            type=type,
            country_code=country,
            staff_headcount=staff,
            annual_turnover_eur=turnover,
            balance_sheet_eur=balance_sheet,
        )
    line = f"created organisation [bold]{org.name}[/bold] ({org.type}, {org.country_code})"
    emit(org, as_json, line)


@admin_app.command("create-user")
@friendly
def admin_create_user(
    username: str,
    email: Annotated[str, typer.Option(help="e-mail address")],
    full_name: Annotated[str, typer.Option(help="full name")] = "",
    role: Annotated[
        list[str] | None, typer.Option(help="role, or role@Factory for operators")
    ] = None,
    organisation: Annotated[str | None, typer.Option(help="organisation to join")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user with roles (e.g. --role reviewer --role 'factory_operator@LUMI AIF')."""
    roles = [
        {"role": r.split("@", 1)[0], "factory": r.split("@", 1)[1] if "@" in r else None}
        for r in role or []
    ]
    with client() as c:
        user = c.create_user(
            username=username,
            email=email,
            full_name=full_name,
            roles=roles,
            organisation=organisation,
        )
    emit(user, as_json, f"created {render.user_line(user)}")


@admin_app.command("create-token")
@friendly
def admin_create_token(
    username: Annotated[str | None, typer.Argument(help="user (default: yourself)")] = None,
    name: Annotated[str, typer.Option(help="label for the token")] = "cli",
    ttl_days: Annotated[int | None, typer.Option(help="days until it expires")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token; the secret is printed this once and never stored in clear."""
    with client() as c:
        token = c.create_token(name=name, username=username, ttl_days=ttl_days)
    head = f"token {token.id} for {token.username}, expires {token.expires_at:%Y-%m-%d}"
    emit(token, as_json, head, Text(token.token))


@admin_app.command("revoke-token")
@friendly
def admin_revoke_token(token_id: int, as_json: JsonOpt = False) -> None:
    """Revoke a token by id; it stops working at once."""
    with client() as c:
        token = c.revoke_token(token_id)
    emit(token, as_json, f"token {token.id} of {token.username} revoked at {token.revoked_at}")


@admin_app.command("set-password")
@friendly
def admin_set_password(
    username: Annotated[str, typer.Argument(help="user whose portal password to set")],
) -> None:
    """Set a portal password (asked for twice, never echoed); your own or, as admin, anyone's.

    Changing your own password asks for the current one."""
    password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with client() as c:
        try:
            c.set_password(username, password)
        except errors.Invalid as exc:
            if not any(d.field == "current_password" for d in exc.details):
                raise
            current = typer.prompt("Current password", hide_input=True)
            c.set_password(username, password, current)
    console.print(f"password of {username} set; {username}'s portal sessions ended")


@admin_app.command("tokens")
@friendly
def admin_tokens(as_json: JsonOpt = False) -> None:
    """List your tokens (never their secrets)."""
    with client() as c:
        tokens = c.list_tokens()
    emit(tokens, as_json, render.tokens_table(tokens))


def main() -> None:
    """The `aif` entry point."""
    if "httpx" not in sys.modules:
        # httpx's __init__ imports its own command-line tool (click, Pygments, Rich's progress
        # bars: 10-15 % of `aif jobs list`) unless its `[cli]` extra is missing, which it
        # handles with a stub `httpx.main`; `aif` never runs that tool, so it is marked
        # missing here (None in sys.modules: the import raises ModuleNotFoundError).
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    app(prog_name="aif")
