"""Rich tables for the registry views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table

from aifactory.cli.output import console as console
from aifactory.cli.output import plural

if TYPE_CHECKING:
    from aifactory.services.views import FactoryView, FederationSummary, TokenView, UserView


def eur(amount: int) -> str:
    return f"€{amount / 1e9:.2f} bn" if amount >= 1e9 else f"€{amount / 1e6:,.0f} M"


def factories_table(factories: list[FactoryView]) -> Table:
    table = Table(title="AI Factories", header_style="bold")
    for col in ("Factory", "Hosting entity", "City", "Country", "Members", "Status", "Systems"):
        table.add_column(col)
    table.add_column("GPUs", justify="right")
    for f in factories:
        table.add_row(
            f.name,
            f.hosting_entity,
            f.city,
            f.country,
            ", ".join(f.members) or "-",
            f.status,
            ", ".join(f"{s.name} ({s.kind})" for s in f.systems),
            f"{f.total_gpus:,}",
        )
    return table


def factory_detail(f: FactoryView) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row("Factory", f.name)
    head.add_row("Hosting entity", f"{f.hosting_entity}, {f.city} ({f.country})")
    head.add_row("Consortium", ", ".join([f.country, *f.members]))
    head.add_row("Status", f.status)
    split = f.capacity_split
    note = " (operator configuration)" if split.configuration else ""
    head.add_row(
        "Capacity split",
        f"EU {split.eu:.0%} · national {split.national:.0%} · commercial {split.commercial:.0%}"
        + note,
    )
    parts = Table(title="Systems and partitions", header_style="bold")
    for col in ("System", "Kind", "Year", "Partition", "GPU", "Nodes", "GPUs/node"):
        parts.add_column(col)
    for col in ("GPU mem GB", "Charge", "Max h", "Source"):
        parts.add_column(col, justify="right")
    for s in f.systems:
        kind = s.kind + (f" of {s.base_system}" if s.base_system else "")
        for p in s.partitions:
            parts.add_row(
                s.name,
                kind,
                str(s.deployment_year or "-"),
                p.name,
                p.gpu_model,
                str(p.nodes),
                str(p.gpus_per_node),
                f"{p.gpu_memory_gb:g}",
                f"{p.charge_factor:g}",
                f"{p.max_time_hours:g}",
                "configuration" if p.configuration else "announcement",
            )
        if s.experimental_platform:
            parts.add_row(s.name, "experimental", "", s.experimental_platform, *[""] * 7)
    return Group(head, parts)


def summary_tables(s: FederationSummary) -> Group:
    by_status = s.countries_by_status
    top = Table(title="Federation summary", show_header=False)
    top.add_column("what")
    top.add_column("value")
    top.add_row("Factories", str(s.factories))
    top.add_row(
        "Countries",
        f"{s.countries} = {len(by_status.member_state)} EU Member States + "
        f"{len(by_status.participating_state)} EuroHPC participating states",
    )
    top.add_row("Member States", ", ".join(by_status.member_state))
    top.add_row("Participating states", ", ".join(by_status.participating_state) or "-")
    top.add_row("Systems by kind", ", ".join(f"{k}: {v}" for k, v in s.systems_by_kind.items()))
    capacity = f"{plural(s.capacity_gpus, 'GPU')} on {plural(s.capacity_nodes, 'node')}"
    top.add_row("Capacity", capacity)
    money = Table(title="Funding by source", header_style="bold")
    money.add_column("Source")
    money.add_column("Amount", justify="right")
    for source, amount in s.funding_by_source_eur.items():
        money.add_row(source, eur(amount))
    money.add_row("EU (Digital Europe + Horizon Europe)", eur(s.eu_funding_eur), style="dim")
    money.add_row("Total", eur(s.funding_total_eur), style="bold")
    return Group(top, money)


def user_line(u: UserView) -> str:
    roles = ", ".join(r.role + (f"@{r.factory}" if r.factory else "") for r in u.roles)
    return f"{u.username} <{u.email}> roles: {roles or '-'}"


def tokens_table(tokens: list[TokenView]) -> Table:
    table = Table(title="API tokens", header_style="bold")
    for col in ("ID", "Name", "Prefix", "User", "Expires", "Last used", "Revoked"):
        table.add_column(col)
    for t in tokens:
        revoked = t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else "-"
        used = t.last_used_at.isoformat(timespec="minutes") if t.last_used_at else "never"
        table.add_row(
            str(t.id),
            t.name,
            t.prefix + "…",
            t.username,
            t.expires_at.date().isoformat(),
            used,
            revoked,
        )
    return table
