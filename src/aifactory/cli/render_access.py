"""Rich output for calls, eligibility, proposals, projects, allocations and reports."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table

from aifactory.cli.output import plural

if TYPE_CHECKING:
    from aifactory.services.access_views import (
        AllocationView,
        BalanceView,
        CallView,
        EligibilityView,
        LedgerEntryView,
        ProjectView,
        ProposalView,
        Report,
    )


def hours(value: Decimal | None) -> str:
    """GPU-hours to the milli-hour the ledger keeps, without trailing zeros."""
    if value is None:
        return "-"
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def calls_table(calls: list[CallView]) -> Table:
    table = Table(title="Calls", header_style="bold")
    for col in ("ID", "Mode", "Factory", "Open", "Next cut-off", "GPU-hours", "Months", "Decision"):
        table.add_column(col)
    for c in calls:
        level = (
            f"≤ {plural(c.service_level_working_days, 'working day')} "
            f"from {c.service_level_counts_from}"
            if c.service_level_working_days
            else "-"
        )
        table.add_row(
            c.id,
            c.mode_name,
            c.factory or "-",
            "yes" if c.open_today else "no",
            str(c.next_cutoff or "always open"),
            c.gpu_hours_limits or "-",
            ",".join(map(str, c.durations_months)) or "-",
            level,
        )
    return table


def eligibility_table(result: EligibilityView) -> Table:
    verdict = "[green]eligible[/green]" if result.eligible else "[red]not eligible[/red]"
    table = Table(title=f"Eligibility for mode {result.mode}: {verdict}", header_style="bold")
    for col in ("Rule", "Result", "Reason"):
        table.add_column(col)
    for r in result.rules:
        table.add_row(r.rule, "[green]pass[/green]" if r.passed else "[red]FAIL[/red]", r.reason)
    return table


def proposals_table(items: list[ProposalView]) -> Table:
    table = Table(title="Proposals (queue order)", header_style="bold")
    for col in ("ID", "Call", "Title", "Organisation", "GPU-h", "Status", "Deadline", "Project"):
        table.add_column(col)
    for p in items:
        deadline = str(p.deadline or "-") + (" [red]OVERDUE[/red]" if p.overdue else "")
        table.add_row(
            str(p.id),
            p.call_id,
            p.title,
            p.organisation,
            hours(p.gpu_hours),
            p.status,
            deadline,
            p.project_code or "-",
        )
    return table


def proposal_detail(p: ProposalView) -> Group:
    head = Table.grid(padding=(0, 2))
    rows = [
        ("Proposal", f"{p.id}: {p.title}"),
        ("Call", f"{p.call_id} ({p.mode}) at {p.factory or 'the federation'}"),
        ("Applicant", f"{p.applicant} for {p.organisation} ({p.research_kind})"),
        (
            "Request",
            f"{hours(p.gpu_hours)} GPU-h, "
            f"{plural(p.duration_months, 'month') if p.duration_months else 'no duration'} on "
            f"{p.partition or 'any partition'}",
        ),
        ("Status", p.status + (" [red](overdue)[/red]" if p.overdue else "")),
        ("Deadline", str(p.deadline or "-")),
        ("Project", p.project_code or "-"),
    ]
    for k, v in rows:
        head.add_row(k, v)
    timeline = Table(title="Timeline", header_style="bold")
    for col in ("When", "Who", "From", "To", "Comment"):
        timeline.add_column(col)
    for t in p.transitions:
        timeline.add_row(
            t.at.isoformat(timespec="minutes"), t.actor, t.from_status, t.to_status, t.comment
        )
    from aifactory.cli.render_sections import sections_detail  # loads the domain's models

    return Group(head, sections_detail(p), timeline)


def project_detail(p: ProjectView) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row("Project", f"{p.code}: {p.title}")
    head.add_row("Organisation", p.organisation)
    head.add_row("Members", ", ".join(f"{m.username} ({m.role})" for m in p.members))
    return Group(
        head, allocations_table(p.allocations, p.total if len(p.allocations) > 1 else None)
    )


def _where(a: AllocationView) -> str:
    if a.scope == "federation":
        return "federation: any factory admitting the project (x charge factor)"
    return f"{a.factory}: {a.system}/{a.partition}"


def allocations_table(items: list[AllocationView], total: BalanceView | None = None) -> Table:
    table = Table(title="Allocations (GPU-hours, normalised)", header_style="bold")
    for col in ("ID", "Where", "Period", "Status"):
        table.add_column(col)
    for col in ("Granted", "Used", "Reserved", "Remaining"):
        table.add_column(col, justify="right")
    for a in items:
        table.add_row(
            str(a.id),
            _where(a),
            f"{a.start_date} → {a.end_date}",
            f"{a.status} ({a.usage_level})",
            hours(a.granted),
            hours(a.used),
            hours(a.reserved),
            hours(a.remaining),
        )
    if total is not None:
        sums = (total.granted, total.used, total.reserved, total.remaining)
        table.add_row("", "project total", "", "", *map(hours, sums), style="bold")
    return table


def ledger_table(entries: list[LedgerEntryView]) -> Table:
    table = Table(title="Ledger", header_style="bold")
    for col in ("When", "Kind", "GPU-h", "Actor", "Job", "Note"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            e.at.isoformat(timespec="seconds"),
            e.kind,
            hours(e.gpu_hours),
            e.actor,
            e.job_ref or "-",
            e.note,
        )
    return table


def report_table(report: Report) -> Table:
    span = f"{report.start or 'start'} → {report.end or 'now'}"
    table = Table(title=f"Usage by {report.group_by} ({span})", header_style="bold")
    table.add_column(report.group_by.replace("-", " ").capitalize())
    for col in ("Allocations", "Granted", "Used", "Reserved", "Remaining"):
        table.add_column(col, justify="right")
    euros = {f.source: f"€{f.amount_eur:,}" for f in report.funding}
    if report.funding:
        table.add_column("Funding (€)", justify="right")
    for row in [*report.rows, report.total]:
        cells = [hours(getattr(row, f)) for f in ("granted", "used", "reserved", "remaining")]
        money = [euros.get(row.key, "-")] if report.funding else []
        name = row.label if report.group_by == "funding" else _key_and_label(row.key, row.label)
        bold = "bold" if row is report.total else None
        table.add_row(name, str(row.allocations), *cells, *money, style=bold)
    for line in report.funding:
        if line.funds != "gpu_hours":
            table.add_row(line.label, "-", "-", f"- ({line.funds})", "-", "-", euros[line.source])
    return table


def _key_and_label(key: str, label: str) -> str:
    return key if label in ("", key) else f"{key} ({label})"
