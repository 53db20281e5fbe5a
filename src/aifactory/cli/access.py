"""`aif calls|eligibility|proposals|assess|review|decide|projects|allocations|report`."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from aifactory.cli import render_access as show
from aifactory.cli.common import client, friendly
from aifactory.cli.render import console
from aifactory.errors import Invalid

calls_app = typer.Typer(help="Access calls by mode and factory.", no_args_is_help=True)
eligibility_app = typer.Typer(help="Check eligibility before applying.", no_args_is_help=True)
proposals_app = typer.Typer(help="Your proposals, from draft to decision.", no_args_is_help=True)
projects_app = typer.Typer(help="Awarded projects.", no_args_is_help=True)
allocations_app = typer.Typer(help="GPU-hour allocations and ledgers.", no_args_is_help=True)

Call = Annotated[str, typer.Option("--call", help="call id, e.g. lumi-aif-pg")]
Org = Annotated[str, typer.Option("--org", help="your organisation")]
Kind = Annotated[str, typer.Option("--kind", help="open_rd or commercial")]
Months = Annotated[int | None, typer.Option("--months", help="allocation length")]
PiEnd = Annotated[datetime | None, typer.Option("--pi-contract-end", formats=["%Y-%m-%d"])]


@calls_app.command("list")
@friendly
def calls_list(
    mode: Annotated[str | None, typer.Option(help="PG, FL, LS, AS or HC")] = None,
    factory: Annotated[str | None, typer.Option(help="factory name")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="only calls open today")] = False,
) -> None:
    """List calls with cut-offs, limits and the decision clock."""
    with client() as c:
        console.print(show.calls_table(c.list_calls(mode, factory, open_only)))


@calls_app.command("show")
@friendly
def calls_show(call_id: str) -> None:
    """Show one call."""
    with client() as c:
        console.print(show.calls_table([c.get_call(call_id)]))


@eligibility_app.command("check")
@friendly
def eligibility_check(
    call: Call,
    org: Org,
    kind: Kind = "open_rd",
    months: Months = None,
    pi_contract_end: PiEnd = None,
) -> None:
    """Every eligibility rule of the call's mode, pass/fail with the reason."""
    with client() as c:
        result = c.check_eligibility(
            call_id=call,
            organisation=org,
            research_kind=kind,
            duration_months=months,
            pi_contract_end=pi_contract_end.date() if pi_contract_end else None,
        )
    console.print(show.eligibility_table(result))
    if not result.eligible:
        raise typer.Exit(1)


@proposals_app.command("create")
@friendly
def proposals_create(
    call: Call,
    org: Org,
    title: Annotated[str, typer.Option(help="project title")],
    gpu_hours: Annotated[Decimal | None, typer.Option(help="normalised GPU-hours")] = None,
    months: Months = None,
    kind: Kind = "open_rd",
    partition: Annotated[str | None, typer.Option(help="SYSTEM/PARTITION")] = None,
    summary: Annotated[str, typer.Option(help="what the compute is for")] = "",
    pi_contract_end: PiEnd = None,
    hosting: Annotated[Path | None, typer.Option(help="JSON file (hosting call)")] = None,
) -> None:
    """Create a draft proposal (submit it with `aif proposals submit ID`)."""
    fields: dict[str, Any] = {
        "call_id": call,
        "organisation": org,
        "title": title,
        "gpu_hours": gpu_hours,
        "duration_months": months,
        "research_kind": kind,
        "partition": partition,
        "summary": summary,
        "pi_contract_end": pi_contract_end.date() if pi_contract_end else None,
        "hosting": json.loads(hosting.read_text()) if hosting else None,
    }
    with client() as c:
        proposal = c.create_proposal(**fields)
    console.print(f"draft proposal [bold]{proposal.id}[/bold] created")
    console.print(show.proposal_detail(proposal))


def _action(proposal_id: int, action: str, body: dict[str, Any] | None = None) -> None:
    with client() as c:
        proposal = c.proposal_action(proposal_id, action, body)
    console.print(show.proposal_detail(proposal))


@proposals_app.command("submit")
@friendly
def proposals_submit(proposal_id: int) -> None:
    """Submit: eligibility is checked, the service-level clock starts."""
    _action(proposal_id, "submit")


@proposals_app.command("withdraw")
@friendly
def proposals_withdraw(
    proposal_id: int, comment: Annotated[str, typer.Option(help="why")] = ""
) -> None:
    """Withdraw a proposal before its decision."""
    _action(proposal_id, "withdraw", {"comment": comment})


@proposals_app.command("show")
@friendly
def proposals_show(proposal_id: int) -> None:
    """A proposal with its status timeline and deadline."""
    with client() as c:
        console.print(show.proposal_detail(c.get_proposal(proposal_id)))


@proposals_app.command("list")
@friendly
def proposals_list(status: Annotated[str | None, typer.Option(help="filter")] = None) -> None:
    """Proposals you may see, in queue order; overdue ones are flagged."""
    with client() as c:
        console.print(show.proposals_table(c.list_proposals(status)))


@friendly
def assess(
    proposal_id: int,
    feasible: Annotated[bool, typer.Option("--feasible/--infeasible")],
    gpu_hours: Annotated[Decimal | None, typer.Option(help="adjusted GPU-hours")] = None,
    partition: Annotated[str | None, typer.Option(help="SYSTEM/PARTITION")] = None,
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Technical assessment by the factory's operator."""
    body = {
        "feasible": feasible,
        "gpu_hours": gpu_hours,
        "partition": partition,
        "comment": comment,
    }
    _action(proposal_id, "assessment", body)


@friendly
def review(
    proposal_id: int,
    score: Annotated[list[str], typer.Option(help="criterion=score, repeat per criterion")],
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Score a proposal assigned to you: `--score excellence=4 --score impact=3 ...`."""
    pairs = [s.split("=", 1) for s in score]
    if any(len(p) != 2 for p in pairs):
        raise Invalid.field("score", "format", "write each score as criterion=number")
    _action(proposal_id, "reviews", {"scores": dict(pairs), "comment": comment})


@friendly
def assign_reviewer(proposal_id: int, username: str) -> None:
    """Assign a reviewer to a proposal (federation staff); conflicts of interest are refused."""
    _action(proposal_id, "reviewers", {"username": username})


@friendly
def decide(
    target: Annotated[str, typer.Argument(help="proposal id, or call id with --cutoff")],
    accept: Annotated[bool, typer.Option("--accept/--reject")] = True,
    cutoff: Annotated[str | None, typer.Option(help="decide a call's cut-off batch")] = None,
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Federation staff decide one proposal, or a whole cut-off batch from peer review."""
    if cutoff:
        with client() as c:
            batch = c.decide_cutoff(target, cutoff)
        console.print(
            f"accepted {batch.accepted}, rejected {batch.rejected}, waiting {batch.waiting or '{}'}"
        )
        return
    _action(int(target), "decision", {"accept": accept, "comment": comment})


@projects_app.command("show")
@friendly
def projects_show(code: str) -> None:
    """A project: members and allocations with their balances."""
    with client() as c:
        console.print(show.project_detail(c.get_project(code)))


@projects_app.command("list")
@friendly
def projects_list() -> None:
    """Projects you may see."""
    with client() as c:
        for p in c.list_projects():
            console.print(show.project_detail(p))


@allocations_app.command("show")
@friendly
def allocations_show(allocation_id: int) -> None:
    """An allocation's balance and its ledger."""
    with client() as c:
        console.print(show.allocations_table([c.get_allocation(allocation_id)]))
        console.print(show.ledger_table(c.get_ledger(allocation_id)))


@friendly
def report(
    by: Annotated[str, typer.Option(help="project, factory, country, funding or mode")] = "factory",
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    csv: Annotated[Path | None, typer.Option(help="also write CSV here")] = None,
) -> None:
    """Usage and remaining budget over a date range."""
    with client() as c:
        console.print(show.report_table(c.usage_report(by, start, end)))
        if csv is not None:
            csv.write_text(c.usage_report_csv(by, start, end))
            console.print(f"CSV written to {csv}")


def install(app: typer.Typer) -> None:
    """Register the access commands on the main app."""
    for name, sub in (
        ("calls", calls_app),
        ("eligibility", eligibility_app),
        ("proposals", proposals_app),
        ("projects", projects_app),
        ("allocations", allocations_app),
    ):
        app.add_typer(sub, name=name)
    for name, fn in (
        ("assess", assess),
        ("review", review),
        ("assign-reviewer", assign_reviewer),
        ("decide", decide),
        ("report", report),
    ):
        app.command(name)(fn)
