"""The full apply form: every section as typed, its rows, and what it means as a proposal.

Field names follow the API's (``resources.0.gpu_hours``, ``technical.method``,
``ethics.dual_use``), so a service error naming a field lands beside that field. Rows are
added without JavaScript: the form carries how many rows it shows, and a "more rows" button
submits the form to show one more (keeping everything typed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from aifactory.domain.enums import ResearchKind
from aifactory.domain.proposal_sections import (
    ETHICS_QUESTIONS,
    LABELS,
    MAX_ROWS,
    DataPlan,
    EthicsAnswer,
    ResourceRow,
    Sections,
    TeamMember,
    TechnicalPlan,
    missing,
)
from aifactory.portal.forms import FormErrors
from aifactory.services.proposals import ProposalInput

BASICS = {
    "organisation": "Organisation",
    "research_kind": "Kind of work",
    "title": "Title",
    "summary": "Summary",
    "duration_months": "Duration",
    "start_date": "Start date",
    "pi_contract_end": "PI contract ends",
}
ROW_FIELDS = {
    "resources": {
        "partition": "System/partition",
        "gpu_hours": "GPU-hours",
        "justification": "Justification",
    },
    "team": {
        "name": "Name",
        "role": "Role in the project",
        "organisation": "Affiliation",
        "expertise": "Expertise",
    },
}
PLANS = {k: v for k, v in LABELS.items() if k.startswith(("technical.", "data."))} | {
    "data.personal_data_handling": "How personal data is protected"
}
#: Where a service's field lands on this form.
ALIASES = {"gpu_hours": "resources", "partition": "resources.0.partition", "file": "attachments"}
FIRST_ROWS = {"resources": 2, "team": 2}
MAX_HOURS = 100_000_000


@dataclass
class ProposalForm:
    """Everything typed, by field name, and how many rows each list shows."""

    values: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=lambda: dict(FIRST_ROWS))
    more: str = ""

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    @classmethod
    def read(cls, form: Mapping[str, Any]) -> ProposalForm:
        values = {str(k): v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
        rows = {name: _count(form.get(f"{name}_rows"), n) for name, n in FIRST_ROWS.items()}
        more = str(form.get("more", ""))
        if more in rows:
            rows[more] = min(rows[more] + 1, MAX_ROWS)
        return cls({k: v[:4000] for k, v in values.items()}, rows, more if more in rows else "")

    def labels(self) -> dict[str, str]:
        """Every field's label, in the form's order (the error summary links to each)."""
        out = dict(BASICS)
        for name, columns in ROW_FIELDS.items():
            for i in range(self.rows[name]):
                out |= {f"{name}.{i}.{c}": f"{text} (row {i + 1})" for c, text in columns.items()}
            out[name] = name.capitalize()
        out |= PLANS
        for q in ETHICS_QUESTIONS:
            out[f"ethics.{q}"] = "Ethics"
            out[f"ethics.{q}.explanation"] = "Ethics explanation"
        out |= {"attachments": "Attachments", "eligibility": "Eligibility"}
        return out

    def errors(self) -> ProposalErrors:
        labels = self.labels()
        return ProposalErrors(set(labels), labels)


class ProposalErrors(FormErrors):
    """Form errors with the service's field names mapped onto this form's."""

    def add(self, field: str, message: str) -> None:
        field = ALIASES.get(field, field)
        if field.startswith("eligibility."):
            field = "eligibility"
        super().add(field, message)

    def summary(self) -> list[tuple[str, str, str]]:
        """As the form's, without saying the field's name twice ("Title: Title: ...")."""
        out = []
        for anchor, label, message in super().summary():
            head, sep, rest = message.partition(": ")
            out.append((anchor, label, rest if sep and label.startswith(head) else message))
        return out


def _count(raw: object, default: int) -> int:
    """A row count the form posted back; anything but 1-3 ASCII digits (``"²"`` is a digit to
    ``isdigit`` but not to ``int``; thousands of digits are refused by ``int``) is the default."""
    text = str(raw or "")
    if not (text.isascii() and text.isdigit() and len(text) <= 3) or int(text) == 0:
        return default
    return min(int(text), MAX_ROWS)


def _kind(value: str) -> ResearchKind:
    return ResearchKind(value)


def _yes_no(value: str) -> bool | None:
    return {"yes": True, "no": False}.get(value)


def to_input(call_id: str, mode: str, form: ProposalForm, errors: FormErrors) -> ProposalInput:
    """The proposal the form describes; every problem is recorded beside its field."""
    v = form.get
    if not v("title").strip():
        errors.add("title", "Title: give the proposal a title (at least 3 characters)")
    if not v("organisation"):
        errors.add("organisation", "Organisation: choose the organisation you apply for")
    rows, total = _resources(form, errors, full=mode != "PG")
    sections = _sections(form, errors)
    data = ProposalInput(
        call_id=call_id,
        title=v("title").strip(),
        organisation=v("organisation"),
        research_kind=errors.parse("research_kind", v("research_kind"), _kind)
        or ResearchKind.OPEN_RD,
        summary=v("summary").strip(),
        gpu_hours=total,
        duration_months=errors.parse("duration_months", v("duration_months"), int),
        start_date=errors.parse("start_date", v("start_date"), date.fromisoformat),
        pi_contract_end=errors.parse("pi_contract_end", v("pi_contract_end"), date.fromisoformat),
        resources=tuple(rows),
        sections=sections,
    )
    if data.duration_months is None and "duration_months" not in errors.by_field:
        errors.add("duration_months", "Duration: choose how many months you need the compute")
    row_trouble = any(k.startswith("resources.") for k in errors.by_field)
    for problem in missing(mode, sections, len(rows), total is not None):
        if not (problem.field in ("resources", "gpu_hours") and row_trouble):
            errors.add(problem.field, problem.message)
    return data


def _blank(form: ProposalForm, name: str, i: int) -> bool:
    return not any(form.get(f"{name}.{i}.{c}").strip() for c in ROW_FIELDS[name])


def _resources(
    form: ProposalForm, errors: FormErrors, full: bool
) -> tuple[list[ResourceRow], Decimal | None]:
    """The filled rows, or (Playground only) one row without a partition: a plain total."""
    filled = [i for i in range(form.rows["resources"]) if not _blank(form, "resources", i)]
    rows: list[ResourceRow] = []
    total: Decimal | None = None
    for i in filled:
        key = f"resources.{i}."
        hours = _hours(form, errors, key + "gpu_hours")
        partition = form.get(key + "partition")
        why = form.get(key + "justification").strip()
        if not partition and (full or len(filled) > 1):
            errors.add(key + "partition", "System/partition: choose where these GPU-hours run")
        if not why and full:
            errors.add(key + "justification", "Justification: say why you need this much here")
        if hours is not None and partition:
            rows.append(ResourceRow(partition=partition, gpu_hours=hours, justification=why))
        elif hours is not None and len(filled) == 1:
            total = hours  # the operator chooses the partition
    return rows, total


def _hours(form: ProposalForm, errors: FormErrors, name: str) -> Decimal | None:
    hours = errors.parse(name, form.get(name), Decimal)
    if hours is None and name not in errors.by_field:
        errors.add(name, "GPU-hours: enter how many GPU-hours you need on this system")
    elif hours is not None and not 0 < hours <= MAX_HOURS:
        errors.add(name, f"GPU-hours: enter a number above 0 and at most {MAX_HOURS:,}")
        return None
    elif hours is not None and hours != hours.quantize(Decimal("0.001")):
        errors.add(name, "GPU-hours: use at most three decimals")
        return None
    return hours


def _team(form: ProposalForm, errors: FormErrors) -> list[TeamMember]:
    team = []
    for i in range(form.rows["team"]):
        if _blank(form, "team", i):
            continue
        key = f"team.{i}."
        values = {c: form.get(key + c).strip() for c in ROW_FIELDS["team"]}
        if not values["name"]:
            errors.add(key + "name", "Name: give the team member's name")
            continue
        team.append(TeamMember(**values))
    return team


def _sections(form: ProposalForm, errors: FormErrors) -> Sections:
    v = form.get
    try:
        technical = TechnicalPlan(
            **{
                k: v(f"technical.{k}").strip()
                for k in ("method", "software", "scaling", "workflow")
            }
        )
        data = DataPlan(
            datasets=v("data.datasets").strip(),
            sources=v("data.sources").strip(),
            licences=v("data.licences").strip(),
            personal_data=_yes_no(v("data.personal_data")),
            personal_data_handling=v("data.personal_data_handling").strip(),
        )
        ethics = {
            q: EthicsAnswer(
                answer=_yes_no(v(f"ethics.{q}")), explanation=v(f"ethics.{q}.explanation").strip()
            )
            for q in ETHICS_QUESTIONS
        }
        return Sections(team=_team(form, errors), technical=technical, data=data, ethics=ethics)
    except ValidationError as exc:  # a field over its length
        for e in exc.errors():
            errors.add(".".join(str(p) for p in e["loc"]), e["msg"])
        return Sections()
