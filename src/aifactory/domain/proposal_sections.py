"""The sections of a proposal, as the EuroHPC access forms ask, and which a mode requires.

A proposal carries its request per system (resource rows), its team, a technical plan, a data
plan and an ethics self-assessment. Which parts must be filled before submission depends on
the access mode and is data (``REQUIRED``): Playground asks little, the peer-reviewed and
fast-track modes ask for everything. ``missing`` names every absent part at once, each with
its field, the rule and a sentence a person understands.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aifactory.domain.enums import AccessModeCode
from aifactory.errors import FieldError, Invalid

_IN = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
Line = Annotated[str, Field(max_length=200)]
Para = Annotated[str, Field(max_length=4000)]
MAX_ROWS = 20
RULE = "required_for_mode"


class ResourceRow(BaseModel):
    """GPU-hours asked for on one system's partition, and why that much there."""

    model_config = _IN
    partition: str = Field(min_length=3, max_length=201, description="SYSTEM/PARTITION")
    gpu_hours: Decimal = Field(gt=0, le=100_000_000, decimal_places=3)
    justification: Para = ""


class TeamMember(BaseModel):
    model_config = _IN
    name: str = Field(min_length=1, max_length=200)
    role: Line = ""
    organisation: Line = ""
    expertise: Para = ""


class TechnicalPlan(BaseModel):
    model_config = _IN
    method: Para = Field(default="", description="model or method")
    software: Para = Field(default="", description="software stack")
    scaling: Para = Field(default="", description="scaling evidence")
    workflow: Para = ""


class DataPlan(BaseModel):
    model_config = _IN
    datasets: Para = ""
    sources: Para = ""
    licences: Para = ""
    personal_data: bool | None = None
    personal_data_handling: Para = ""


class EthicsAnswer(BaseModel):
    model_config = _IN
    answer: bool | None = None
    explanation: Para = ""


#: The ethics self-assessment: question id -> the question asked.
ETHICS_QUESTIONS: dict[str, str] = {
    "human_participants": "Does the work involve human participants or their samples?",
    "personal_data": "Does it process personal data (names, images, health, location)?",
    "dual_use": "Could the results be misused (dual use, military, surveillance)?",
    "environment": "Could it harm the environment, animals or people's safety?",
}


class Sections(BaseModel):
    """Everything a reviewer judges beyond the title and summary."""

    model_config = _IN
    team: list[TeamMember] = Field(default_factory=list, max_length=MAX_ROWS)
    technical: TechnicalPlan = Field(default_factory=TechnicalPlan)
    data: DataPlan = Field(default_factory=DataPlan)
    ethics: dict[str, EthicsAnswer] = Field(default_factory=dict)


#: What each part is called on the forms, for messages.
LABELS: dict[str, str] = {
    "gpu_hours": "GPU-hours",
    "resources": "Resources",
    "team": "Team",
    "technical.method": "Model or method",
    "technical.software": "Software stack",
    "technical.scaling": "Scaling evidence",
    "technical.workflow": "Workflow",
    "data.datasets": "Datasets",
    "data.sources": "Data sources",
    "data.licences": "Licences",
    "data.personal_data": "Personal data",
    "ethics": "Ethics self-assessment",
}
_ASK: dict[str, str] = {
    "gpu_hours": "say how many GPU-hours you need",
    "resources": "add at least one system/partition with the GPU-hours you need there",
    "team": "name at least one team member",
    "technical.method": "describe the model or method",
    "technical.software": "list the software stack",
    "technical.scaling": "show how the code scales (measurements, earlier runs)",
    "technical.workflow": "describe the workflow (stages, what runs where)",
    "data.datasets": "list the datasets",
    "data.sources": "say where the data comes from",
    "data.licences": "give the data's licences",
    "data.personal_data": "answer whether personal data is processed",
    "ethics": "answer every question of the ethics self-assessment",
}
_LIGHT = ("gpu_hours",)  # a total; the operator may choose the partition
_FULL = tuple(p for p in _ASK if p != "gpu_hours")  # rows per partition instead
#: Parts each mode requires before submission (hosting proposals describe a factory instead).
REQUIRED: Mapping[AccessModeCode, tuple[str, ...]] = {
    AccessModeCode.PLAYGROUND: _LIGHT,
    AccessModeCode.FAST_LANE: _FULL,
    AccessModeCode.LARGE_SCALE: _FULL,
    AccessModeCode.AI_FOR_SCIENCE: _FULL,
    AccessModeCode.HOSTING: (),
}


def required(mode: str) -> tuple[str, ...]:
    """The parts ``mode`` requires (field paths such as ``technical.method``)."""
    return REQUIRED.get(AccessModeCode(mode), ())


def _present(part: str, s: Sections, resources: int, hours: bool) -> bool:
    if part == "gpu_hours":
        return hours or resources > 0
    if part == "resources":
        return resources > 0
    if part == "team":
        return bool(s.team)
    group, _, name = part.partition(".")
    value = getattr(getattr(s, group), name)
    return value is not None and value != ""


def _explained(s: Sections) -> list[FieldError]:
    """Every "yes" needs its explanation, whatever the mode."""
    errors = []
    if s.data.personal_data and not s.data.personal_data_handling:
        msg = "Personal data: say how personal data is protected (consent, pseudonymisation)"
        errors.append(FieldError("data.personal_data_handling", "explain_yes", msg))
    for q in ETHICS_QUESTIONS:
        answer = s.ethics.get(q, EthicsAnswer())
        if answer.answer and not answer.explanation:
            msg = f"Ethics: you answered yes to {ETHICS_QUESTIONS[q]!r}; explain how it is handled"
            errors.append(FieldError(f"ethics.{q}", "explain_yes", msg))
    return errors


def missing(mode: str, sections: Sections, resources: int, hours: bool = False) -> list[FieldError]:
    """Every part ``mode`` requires that is absent, and every unexplained "yes".

    Args:
        mode: The access mode's code.
        sections: What the proposal says.
        resources: How many resource rows (partition and GPU-hours) it has.
        hours: Whether it gives a total of GPU-hours (rows or not).
    """
    errors = []
    for part in required(mode):
        if part == "ethics":
            errors += _unanswered(sections)
        elif not _present(part, sections, resources, hours):
            msg = f"{LABELS[part]}: {_ASK[part]} (required for this call)"
            errors.append(FieldError(part, RULE, msg))
    return errors + _explained(sections)


def _unanswered(s: Sections) -> list[FieldError]:
    return [
        FieldError(f"ethics.{q}", RULE, f"Ethics: answer yes or no to {text!r}")
        for q, text in ETHICS_QUESTIONS.items()
        if s.ethics.get(q, EthicsAnswer()).answer is None
    ]


def check_complete(mode: str, sections: Sections, resources: int, hours: bool) -> None:
    """Raises:
    Invalid: One entry per missing part, all at once (``field``, ``rule``, message).
    """
    errors = missing(mode, sections, resources, hours)
    if errors:
        names = ", ".join(LABELS.get(e.field, e.field) for e in errors)
        raise Invalid(f"the proposal is incomplete: {names}", errors)


def check_unknown_questions(ethics: Mapping[str, EthicsAnswer]) -> None:
    """Raises:
    Invalid: ``ethics.<id>`` with rule ``known_question`` for each unknown question id.
    """
    errors = [
        FieldError(f"ethics.{q}", "known_question", f"no ethics question {q!r}")
        for q in sorted(set(ethics) - set(ETHICS_QUESTIONS))
    ]
    if errors:
        raise Invalid("unknown ethics questions", errors)


def total_hours(rows: list[ResourceRow]) -> Decimal:
    return sum((r.gpu_hours for r in rows), Decimal(0))
