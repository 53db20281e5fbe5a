"""Words a start-up understands for the platform's internal ones, in one place.

The access rules (``data/access_modes.yaml``, ``domain/enums.py``) speak in codes: ``fifo``,
``member_state``, ``open_rd``. Templates show them through the ``human`` filter,
``{{ mode.selection|human("selection") }}``; a value missing from the table falls back to the
code with spaces for underscores. ``amount`` prints numbers with thousands separators
("500,000 GPU-hours"), which every numeric input reads back (``forms.parse_number``).
"""

from __future__ import annotations

from decimal import Decimal

from aifactory.domain.access_modes import GpuHourLimits

#: kind -> internal value -> words. Kinds are the fields of an access mode that hold codes.
LABELS: dict[str, dict[str, str]] = {
    "org_type": {
        "startup": "start-ups",
        "sme": "small and medium-sized enterprises (SMEs)",
        "large_enterprise": "large companies",
        "academia": "universities and research organisations",
        "public_body": "public bodies",
    },
    "country_status": {
        "member_state": "EU Member States",
        "participating_state": "other EuroHPC participating states",
        "other": "other countries",
    },
    "research_kind": {
        "open_rd": "open research and development (results are published)",
        "commercial": "commercial work (results may stay confidential)",
    },
    "selection": {
        "fifo": "first come, first served",
        "cutoff": "decided in batches after each cut-off date",
    },
    "step": {
        "eligibility": "eligibility check",
        "technical_assessment": "technical assessment",
        "peer_review": "peer review by independent experts",
    },
    "counts_from": {
        "submission": "your submission",
        "cutoff": "the cut-off date",
    },
    "open": {
        "open": "open now",
        "closed": "closed",
    },
}


#: Codes that mean one thing wherever they appear: the ``label`` filter shows these words too.
WORDS: dict[str, str] = {
    code: words
    for kind in ("org_type", "country_status", "research_kind")
    for code, words in LABELS[kind].items()
} | {"fifo": LABELS["selection"]["fifo"]}


def label(value: object) -> str:
    """The ``label`` filter: words for an unambiguous code, else the code without underscores."""
    text = str(value)
    return WORDS.get(text, text.replace("_", " "))


def human(value: object, kind: str) -> str:
    """The words for ``value`` of ``kind``; unknown values read as the code without underscores."""
    text = str(value)
    return LABELS.get(kind, {}).get(text, text.replace("_", " "))


def amount(value: Decimal | float | int | None, unit: str = "") -> str:
    """``500000`` -> ``"500,000"`` (with ``unit``: ``"500,000 GPU-hours"``); decimals kept."""
    if value is None:
        return "-"
    number = Decimal(str(value))
    text = f"{number:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if not unit:
        return text
    if unit == "GPU-hours" and number == 1:
        unit = "GPU-hour"
    return f"{text} {unit}"


def limits_text(limits: GpuHourLimits | None) -> str:
    """The size of a request, e.g. "1 to 5,000 GPU-hours" or "more than 50,000 GPU-hours"."""
    if limits is None:
        return "no compute"
    low = amount(limits.min_hours)
    if limits.max_hours is not None and not limits.min_exclusive:
        return f"{low} to {amount(limits.max_hours, 'GPU-hours')}"
    if limits.min_exclusive:
        high = "" if limits.max_hours is None else f", at most {amount(limits.max_hours)}"
        return f"more than {amount(limits.min_hours, 'GPU-hours')}{high}"
    return f"{amount(limits.min_hours, 'GPU-hours')} or more (no fixed upper limit)"
