"""`aif admin claim-rules list|add|remove`: what federated sign-in's claims give people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit

if TYPE_CHECKING:
    from aifactory.services.claim_rule_views import ClaimRuleView

HELP = "Claim-to-role rules of federated sign-in (applied at every sign-in)."


def install(admin_app: typer.Typer) -> None:
    rules_app = typer.Typer(help=HELP, no_args_is_help=True)
    rules_app.command("list")(friendly(list_rules))
    rules_app.command("add")(friendly(add))
    rules_app.command("remove")(friendly(remove))
    admin_app.add_typer(rules_app, name="claim-rules")


def list_rules(as_json: JsonOpt = False) -> None:
    """Every rule: which claim value gives which role."""
    with client() as c:
        rules = c.list_claim_rules()
    emit(rules, as_json, _table(rules))


def add(
    claim: Annotated[str, typer.Argument(help="claim name, e.g. eduperson_entitlement")],
    value: Annotated[str, typer.Argument(help="the value; ending with * matches a prefix")],
    role: Annotated[str, typer.Argument(help="role given, e.g. reviewer")],
    factory: Annotated[str | None, typer.Option(help="factory (factory_operator only)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a rule; people get its role at their next federated sign-in."""
    with client() as c:
        rule = c.add_claim_rule(claim, value, role, factory)
    emit(rule, as_json, f"claim rule {rule.id} added: {_describe(rule)}")


def remove(
    rule_id: Annotated[int, typer.Argument(help="the rule's id (see list)", min=1)],
    as_json: JsonOpt = False,
) -> None:
    """Remove a rule; the roles it gave go at each person's next federated sign-in."""
    with client() as c:
        rule = c.remove_claim_rule(rule_id)
    emit(rule, as_json, f"claim rule {rule.id} removed: {_describe(rule)}")


def _describe(rule: ClaimRuleView) -> str:
    scope = f" of {rule.factory}" if rule.factory else ""
    return f"{rule.claim} ∋ {rule.value} → {rule.role}{scope}"


def _table(rules: list[ClaimRuleView]) -> Table:
    table = Table(title="Claim rules", header_style="bold")
    for col in ("ID", "Claim", "Value", "Role", "Factory", "By", "Since (UTC)"):
        table.add_column(col)
    for r in rules:
        table.add_row(
            str(r.id),
            r.claim,
            r.value,
            r.role,
            r.factory or "-",
            r.created_by,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table
