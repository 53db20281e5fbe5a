"""`aif admin site-account set | list | remove`: people's own logins at the factories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit
from aifactory.cli.render import console

app = typer.Typer(
    help="People's own logins at the factories; their jobs run under them (admins, operators)."
)


def install(admin_app: typer.Typer) -> None:
    app.command("set")(friendly(set_login))
    app.command("list")(friendly(list_logins))
    app.command("remove")(friendly(remove_login))
    admin_app.add_typer(app, name="site-account")


def set_login(
    username: Annotated[str, typer.Argument(help="the person's platform username")],
    factory: Annotated[str, typer.Argument(help="factory name, e.g. 'LUMI AIF'")],
    login: Annotated[str, typer.Argument(help="their login at that factory")],
    as_json: JsonOpt = False,
) -> None:
    """Map a person's login at a factory (replaces an earlier one)."""
    with client() as c:
        view = c.set_site_account(username, factory, login)
    line = f"{view.username} runs jobs at {view.factory} as [bold]{view.login}[/bold]"
    emit(view, as_json, line)


def list_logins(
    username: Annotated[str, typer.Argument(help="the person's platform username")],
    as_json: JsonOpt = False,
) -> None:
    """A person's logins at the factories."""
    with client() as c:
        views = c.list_site_accounts(username)
    table = Table(title=f"Site accounts of {username}", header_style="bold")
    for col in ("Factory", "Login", "Since (UTC)"):
        table.add_column(col)
    for v in views:
        table.add_row(v.factory, v.login, v.created_at.strftime("%Y-%m-%d %H:%M"))
    emit(views, as_json, table)


def remove_login(
    username: Annotated[str, typer.Argument(help="the person's platform username")],
    factory: Annotated[str, typer.Argument(help="factory name")],
) -> None:
    """Forget a person's login at a factory; their jobs there are refused from now on."""
    with client() as c:
        c.remove_site_account(username, factory)
    console.print(f"{username} has no site account at {factory} any more")
