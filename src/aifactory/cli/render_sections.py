"""Rich rendering of a proposal's sections: resource rows, team, plans, ethics, attachments."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table

from aifactory.domain.proposal_sections import ETHICS_QUESTIONS, EthicsAnswer

if TYPE_CHECKING:
    from aifactory.services.access_views import ProposalView


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left")
    for column in columns:
        table.add_column(column)
    return table


def sections_detail(p: ProposalView) -> Group:
    """Everything a reviewer judges; empty parts are left out."""
    parts: list[RenderableType] = []
    if p.resources:
        rows = _table("Resources", "System/partition", "GPU-hours", "Justification")
        for r in p.resources:
            rows.add_row(r.partition, f"{r.gpu_hours:,.1f}", r.justification)
        parts.append(rows)
    s = p.sections
    if s is not None and s.team:
        team = _table("Team", "Name", "Role", "Organisation", "Expertise")
        for m in s.team:
            team.add_row(m.name, m.role, m.organisation, m.expertise)
        parts.append(team)
    if s is not None:
        plan = Table.grid(padding=(0, 2))
        for label, value in (
            ("Model or method", s.technical.method),
            ("Software stack", s.technical.software),
            ("Scaling evidence", s.technical.scaling),
            ("Workflow", s.technical.workflow),
            ("Datasets", s.data.datasets),
            ("Data sources", s.data.sources),
            ("Licences", s.data.licences),
            ("Personal data", _yes_no(s.data.personal_data)),
            ("How it is handled", s.data.personal_data_handling),
        ):
            if value:
                plan.add_row(label, value)
        parts.append(plan)
        ethics = _table("Ethics self-assessment", "Question", "Answer", "Explanation")
        for q, text in ETHICS_QUESTIONS.items():
            answer = s.ethics.get(q) or EthicsAnswer()
            ethics.add_row(text, _yes_no(answer.answer), answer.explanation)
        parts.append(ethics)
    if p.attachments:
        files = _table("Attachments", "ID", "Name", "Bytes", "sha256")
        for a in p.attachments:
            files.add_row(str(a.id), a.name, str(a.size), a.sha256[:16])
        parts.append(files)
    return Group(*parts)
