"""`aif admin audit`, `aif admin lockouts`, `aif admin unlock`: the federation's security record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit

if TYPE_CHECKING:  # both modules load SQLAlchemy; the client imports them when it calls
    from aifactory.services.audit import AuditView
    from aifactory.services.throttle import LockoutView


def install(admin_app: typer.Typer) -> None:
    admin_app.command("audit")(friendly(audit))
    admin_app.command("lockouts")(friendly(lockouts))
    admin_app.command("unlock")(friendly(unlock))


def audit(
    actor: Annotated[str | None, typer.Option(help="who acted (a username, 'anonymous')")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. award, login, token_mint")] = None,
    since: Annotated[str | None, typer.Option(help="ISO date or time, UTC")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first: awards, assessments, decisions, roles, tokens, sign-ins.

    With --json: the API's page, ``{"events": [...], "next_before": ID or null}``."""
    with client() as c:
        page = c.audit_log(actor=actor, action=action, since=since, limit=limit)
    older = f"older entries: the API's /audit?before={page.next_before}"
    more = [] if page.next_before is None else [older]
    emit(page, as_json, _events_table(page.events), *more)


def lockouts(as_json: JsonOpt = False) -> None:
    """Accounts and addresses with failed sign-ins or tokens, and whether they are locked."""
    with client() as c:
        rows = c.lockouts()
    emit(rows, as_json, _lockouts_table(rows))


def unlock(
    key: Annotated[str, typer.Argument(help="user:NAME, addr:IP or signup:IP")],
    as_json: JsonOpt = False,
) -> None:
    """Lift a lockout and forget its failures."""
    with client() as c:
        view = c.unlock(key)
    emit(view, as_json, f"{view.key} unlocked")


def _events_table(events: list[AuditView]) -> Table:
    table = Table(title="Audit log", header_style="bold")
    for col in ("ID", "When (UTC)", "Actor", "Action", "Object", "Outcome", "From", "Detail"):
        table.add_column(col)
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items() if v is not None)
        table.add_row(
            str(e.id),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            f"{e.object_type} {e.object_id}".strip() or "-",
            e.outcome,
            e.address or "-",
            detail or "-",
        )
    return table


def _lockouts_table(rows: list[LockoutView]) -> Table:
    table = Table(title="Failed credential checks", header_style="bold")
    for col in ("Key", "Failures", "Last failure", "Locked until", "Lockouts"):
        table.add_column(col)
    for r in rows:
        until = (
            r.locked_until.strftime("%Y-%m-%d %H:%M:%S") if r.locked_now and r.locked_until else "-"
        )
        table.add_row(
            r.key,
            str(r.failures),
            r.last_failure_at.strftime("%Y-%m-%d %H:%M:%S"),
            until,
            str(r.lockouts),
        )
    return table
