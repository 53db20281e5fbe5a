"""`aif orgs ...`, `aif projects invite|invitations|revoke-invitation|remove-member`,
`aif invitations accept`: registering organisations and bringing people into projects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aifactory.cli.access import projects_app
from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit
from aifactory.domain.amounts import percent, whole_number
from aifactory.errors import Invalid

if TYPE_CHECKING:
    from aifactory.services.self_service_views import InvitationView, OrganisationDetail

orgs_app = typer.Typer(
    help="Organisations you belong to, and registering one.", no_args_is_help=True
)
invitations_app = typer.Typer(help="Invitations to join projects.", no_args_is_help=True)
LINK_HELP = "partner/linked enterprise as NAME:SHARE%:STAFF:TURNOVER:BALANCE (repeatable)"


def install(app: typer.Typer) -> None:
    app.add_typer(orgs_app, name="orgs")
    app.add_typer(invitations_app, name="invitations")
    orgs_app.command("list")(friendly(orgs_list))
    orgs_app.command("show")(friendly(orgs_show))
    orgs_app.command("create")(friendly(orgs_create))
    projects_app.command("invite")(friendly(invite))
    projects_app.command("invitations")(friendly(invitations))
    projects_app.command("revoke-invitation")(friendly(revoke_invitation))
    projects_app.command("remove-member")(friendly(remove_member))
    invitations_app.command("accept")(friendly(accept))


def orgs_list(as_json: JsonOpt = False) -> None:
    """Your organisations (every one, for a federation admin) with the SME test's verdict."""
    with client() as c:
        orgs = c.organisations()
    emit(orgs, as_json, _orgs_table(orgs))


def orgs_show(org_id: int, as_json: JsonOpt = False) -> None:
    """One organisation: facts, partner and linked enterprises, members, SME verdict."""
    with client() as c:
        org = c.organisation(org_id)
    emit(org, as_json, _orgs_table([org]), _links_table(org), f"SME test: {org.sme.reason}")


def orgs_create(
    name: Annotated[str | None, typer.Argument(help="legal name (or `name:` in --file)")] = None,
    type: Annotated[
        str | None,
        typer.Option("--type", help="startup, sme, large_enterprise, academia, public_body"),
    ] = None,
    country: Annotated[str | None, typer.Option(help="ISO code where it is established")] = None,
    staff: Annotated[str | None, typer.Option(help="staff headcount, e.g. 12")] = None,
    turnover: Annotated[
        str | None, typer.Option(help="annual turnover, EUR, e.g. 1,200,000")
    ] = None,
    balance_sheet: Annotated[str | None, typer.Option(help="balance sheet total, EUR")] = None,
    link: Annotated[list[str] | None, typer.Option(help=LINK_HELP)] = None,
    file: Annotated[
        Path | None, typer.Option(help="YAML with these fields and `enterprise_links:`")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register your organisation (flags override the file); you become its member."""
    body: dict[str, Any] = _from_file(file) if file else {}
    flags = {"name": name, "type": type, "country_code": country}
    body.update({k: v for k, v in flags.items() if v is not None})
    numbers = {"staff_headcount": staff, "annual_turnover_eur": turnover}
    numbers["balance_sheet_eur"] = balance_sheet
    body.update({k: whole_number(v, k) for k, v in numbers.items() if v is not None})
    if link:
        body["enterprise_links"] = [_link(i, text) for i, text in enumerate(link)]
    with client() as c:
        org = c.register_organisation(body)
    emit(
        org, as_json, f"registered organisation {org.id}: {org.name}", f"SME test: {org.sme.reason}"
    )


def invite(
    code: Annotated[str, typer.Argument(help="project code")],
    email: Annotated[str, typer.Argument(help="the person's e-mail address")],
    as_json: JsonOpt = False,
) -> None:
    """Invite someone to a project you lead; prints the link to send them (valid 7 days)."""
    with client() as c:
        made = c.invite(code, email)
    shown = f"invitation {made.id} for {made.email}, expires {made.expires_at:%Y-%m-%d %H:%M} UTC"
    emit(made, as_json, shown, made.url or made.path)


def invitations(code: str, as_json: JsonOpt = False) -> None:
    """A project's invitations, newest first (its PIs)."""
    with client() as c:
        listed = c.invitations(code)
    emit(listed, as_json, _invitations_table(listed))


def revoke_invitation(code: str, invitation_id: int, as_json: JsonOpt = False) -> None:
    """Withdraw a pending invitation; its link stops working."""
    with client() as c:
        view = c.revoke_invitation(code, invitation_id)
    emit(view, as_json, f"invitation {view.id} for {view.email}: {view.status}")


def remove_member(code: str, username: str, as_json: JsonOpt = False) -> None:
    """Remove a member from a project you lead (the last PI stays)."""
    with client() as c:
        left = c.remove_member(code, username)
    names = ", ".join(f"{m.username} ({m.role})" for m in left)
    emit(left, as_json, f"{username} removed from {code}; members: {names}")


def accept(
    token: Annotated[str, typer.Argument(help="the invitation's token or its whole link")],
    as_json: JsonOpt = False,
) -> None:
    """Join the project an invitation is for."""
    with client() as c:
        view = c.accept_invitation(token.rstrip("/").rsplit("/", 1)[-1])
    emit(view, as_json, f"you joined {view.project} ({view.project_title})")


def _link(i: int, text: str) -> dict[str, Any]:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 5:
        raise Invalid.field(
            f"link.{i}", "format", f"{text!r}: give NAME:SHARE%:STAFF:TURNOVER:BALANCE"
        )
    name, share, *figures = parts
    fraction = percent(share, f"link.{i}.share")
    keys = ("staff", "turnover_eur", "balance_sheet_eur")
    numbers = {k: whole_number(v, f"link.{i}.{k}") for k, v in zip(keys, figures, strict=True)}
    return {"name": name, "share": str(fraction), **numbers}


def _from_file(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise Invalid.field("file", "mapping", f"{path} must hold a YAML mapping")
    return data


def _orgs_table(orgs: list[OrganisationDetail]) -> Table:
    table = Table(title="Organisations", header_style="bold")
    for col in ("ID", "Name", "Type", "Country", "Staff", "Turnover EUR", "Related", "SME test"):
        table.add_column(col)
    for o in orgs:
        table.add_row(
            str(o.id),
            o.name,
            o.type,
            o.country_code,
            "-" if o.staff_headcount is None else f"{o.staff_headcount:,}",
            "-" if o.annual_turnover_eur is None else f"{o.annual_turnover_eur:,}",
            str(len(o.enterprise_links)),
            o.sme.size,
        )
    return table


def _links_table(org: OrganisationDetail) -> Table:
    table = Table(title="Partner and linked enterprises", header_style="bold")
    for col in ("Name", "Share", "Relation", "Staff", "Turnover EUR", "Balance sheet EUR"):
        table.add_column(col)
    for link in org.enterprise_links:
        table.add_row(
            link.name,
            f"{(link.share * 100).normalize():f} %",
            link.relation,
            f"{link.staff:,}",
            f"{link.turnover_eur:,}",
            f"{link.balance_sheet_eur:,}",
        )
    return table


def _invitations_table(rows: list[InvitationView]) -> Table:
    table = Table(title="Invitations", header_style="bold")
    for col in ("ID", "E-mail", "Status", "By", "Expires (UTC)", "Accepted by"):
        table.add_column(col)
    for i in rows:
        table.add_row(
            str(i.id),
            i.email,
            i.status,
            i.inviter,
            i.expires_at.strftime("%Y-%m-%d %H:%M"),
            i.accepted_by or "-",
        )
    return table
