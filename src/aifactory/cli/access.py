"""`aif calls|eligibility|proposals|assess|review|decide|projects|allocations|report`."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from aifactory.cli import render_access as show
from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit, err_console
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
    as_json: JsonOpt = False,
) -> None:
    """List calls with cut-offs, limits and the decision clock."""
    with client() as c:
        calls = c.list_calls(mode, factory, open_only)
    emit(calls, as_json, show.calls_table(calls))


@calls_app.command("show")
@friendly
def calls_show(call_id: str, as_json: JsonOpt = False) -> None:
    """Show one call."""
    with client() as c:
        call = c.get_call(call_id)
    emit(call, as_json, show.calls_table([call]))


@eligibility_app.command("check")
@friendly
def eligibility_check(
    call: Call,
    org: Org,
    kind: Kind = "open_rd",
    months: Months = None,
    pi_contract_end: PiEnd = None,
    as_json: JsonOpt = False,
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
    emit(result, as_json, show.eligibility_table(result))
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
    sections: Annotated[
        Path | None,
        typer.Option(
            "--from", help="YAML file: resources (rows per partition), sections, other fields"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a draft proposal (submit it with `aif proposals submit ID`)."""
    from aifactory.cli.proposal_file import proposal_file  # yaml only when it is used

    fields: dict[str, Any] = proposal_file(sections) if sections else {}
    flags: dict[str, Any] = {
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
    fields.update({k: v for k, v in flags.items() if v not in (None, "") or k not in fields})
    with client() as c:
        proposal = c.create_proposal(**fields)
    created = f"draft proposal [bold]{proposal.id}[/bold] created"
    emit(proposal, as_json, created, show.proposal_detail(proposal))


def _action(
    proposal_id: int, action: str, body: dict[str, Any] | None = None, as_json: bool = False
) -> None:
    with client() as c:
        proposal = c.proposal_action(proposal_id, action, body)
    emit(proposal, as_json, show.proposal_detail(proposal))


@proposals_app.command("attach")
@friendly
def proposals_attach(
    proposal_id: int,
    pdf: Annotated[Path, typer.Argument(help="a PDF (CV, technical annex)", exists=True)],
    as_json: JsonOpt = False,
) -> None:
    """Attach a PDF to a draft proposal."""
    with client() as c:
        attached = c.attach(proposal_id, pdf)
    emit(attached, as_json, f"attached [bold]{attached.name}[/bold] as {attached.id}")


@proposals_app.command("submit")
@friendly
def proposals_submit(proposal_id: int, as_json: JsonOpt = False) -> None:
    """Submit: eligibility is checked, the service-level clock starts."""
    _action(proposal_id, "submit", as_json=as_json)


@proposals_app.command("withdraw")
@friendly
def proposals_withdraw(
    proposal_id: int,
    comment: Annotated[str, typer.Option(help="why")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a proposal before its decision."""
    _action(proposal_id, "withdraw", {"comment": comment}, as_json)


@proposals_app.command("show")
@friendly
def proposals_show(proposal_id: int, as_json: JsonOpt = False) -> None:
    """A proposal with its status timeline and deadline."""
    with client() as c:
        proposal = c.get_proposal(proposal_id)
    emit(proposal, as_json, show.proposal_detail(proposal))


@proposals_app.command("list")
@friendly
def proposals_list(
    status: Annotated[str | None, typer.Option(help="filter")] = None, as_json: JsonOpt = False
) -> None:
    """Proposals you may see, in queue order; overdue ones are flagged."""
    with client() as c:
        proposals = c.list_proposals(status)
    emit(proposals, as_json, show.proposals_table(proposals))


@friendly
def assess(
    proposal_id: int,
    feasible: Annotated[bool, typer.Option("--feasible/--infeasible")],
    gpu_hours: Annotated[Decimal | None, typer.Option(help="adjusted GPU-hours")] = None,
    partition: Annotated[str | None, typer.Option(help="SYSTEM/PARTITION")] = None,
    comment: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """Technical assessment by the factory's operator."""
    body = {
        "feasible": feasible,
        "gpu_hours": gpu_hours,
        "partition": partition,
        "comment": comment,
    }
    _action(proposal_id, "assessment", body, as_json)


@friendly
def review(
    proposal_id: int,
    score: Annotated[list[str], typer.Option(help="criterion=score, repeat per criterion")],
    comment: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """Score a proposal assigned to you: `--score excellence=4 --score impact=3 ...`."""
    pairs = [s.split("=", 1) for s in score]
    if any(len(p) != 2 for p in pairs):
        raise Invalid.field("score", "format", "write each score as criterion=number")
    _action(proposal_id, "reviews", {"scores": dict(pairs), "comment": comment}, as_json)


@friendly
def assign_reviewer(proposal_id: int, username: str, as_json: JsonOpt = False) -> None:
    """Assign a reviewer to a proposal (federation staff); conflicts of interest are refused."""
    _action(proposal_id, "reviewers", {"username": username}, as_json)


@friendly
def decide(
    target: Annotated[str, typer.Argument(help="proposal id, or call id with --cutoff")],
    accept: Annotated[bool, typer.Option("--accept/--reject")] = True,
    cutoff: Annotated[str | None, typer.Option(help="decide a call's cut-off batch")] = None,
    comment: Annotated[str, typer.Option()] = "",
    as_json: JsonOpt = False,
) -> None:
    """Federation staff decide one proposal, or a whole cut-off batch from peer review."""
    if cutoff:
        with client() as c:
            batch = c.decide_cutoff(target, cutoff)
        line = f"accepted {batch.accepted}, rejected {batch.rejected}, waiting {batch.waiting}"
        emit(batch, as_json, Text(line))
        return
    _action(int(target), "decision", {"accept": accept, "comment": comment}, as_json)


@projects_app.command("show")
@friendly
def projects_show(code: str, as_json: JsonOpt = False) -> None:
    """A project: members and allocations with their balances."""
    with client() as c:
        project = c.get_project(code)
    emit(project, as_json, show.project_detail(project))


@projects_app.command("list")
@friendly
def projects_list(as_json: JsonOpt = False) -> None:
    """Projects you may see."""
    with client() as c:
        projects = c.list_projects()
    emit(projects, as_json, *map(show.project_detail, projects))


@allocations_app.command("show")
@friendly
def allocations_show(allocation_id: int, as_json: JsonOpt = False) -> None:
    """An allocation's balance and its ledger (with --json: {"allocation", "ledger"})."""
    with client() as c:
        allocation, ledger = c.get_allocation(allocation_id), c.get_ledger(allocation_id)
    both = {"allocation": allocation, "ledger": ledger}
    emit(both, as_json, show.allocations_table([allocation]), show.ledger_table(ledger))


REPORT_BY = (
    "project; factory or factory-country (where the GPU-hours were used); user-country (the "
    "project's organisation's country); funding (EU Digital Europe, national, commercial, with "
    "the € of each source and Horizon Europe's for services); or mode"
)


@friendly
def report(
    by: Annotated[str, typer.Option(help=REPORT_BY)] = "factory",
    start: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    csv: Annotated[Path | None, typer.Option(help="also write CSV here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Usage and remaining budget over a date range."""
    with client() as c:
        usage = c.usage_report(by, start, end)
        emit(usage, as_json, show.report_table(usage))
        if csv is not None:
            csv.write_text(c.usage_report_csv(by, start, end))
            err_console.print(f"CSV written to {csv}")


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
