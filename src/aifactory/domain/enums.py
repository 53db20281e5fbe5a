"""Domain enumerations, stored as their string values.

Every status or kind the access path uses is a ``StrEnum`` so the database stores plain strings
and code compares members, never free-form names.
"""

from __future__ import annotations

from enum import StrEnum


class OrganisationType(StrEnum):
    """Legal form of an applicant organisation."""

    STARTUP = "startup"
    SME = "sme"
    LARGE_ENTERPRISE = "large_enterprise"
    ACADEMIA = "academia"
    PUBLIC_BODY = "public_body"


class CountryStatus(StrEnum):
    """Status of a country towards the EuroHPC Joint Undertaking."""

    MEMBER_STATE = "member_state"
    PARTICIPATING_STATE = "participating_state"
    OTHER = "other"


class AccessModeCode(StrEnum):
    """Two-letter access mode codes, as used in project IDs."""

    PLAYGROUND = "PG"
    FAST_LANE = "FL"
    LARGE_SCALE = "LS"
    AI_FOR_SCIENCE = "AS"
    HOSTING = "HC"


class ProposalStatus(StrEnum):
    """States of a proposal; moves between them go through ``proposals.transition``."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    TECHNICAL_ASSESSMENT = "technical_assessment"
    PEER_REVIEW = "peer_review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class LedgerKind(StrEnum):
    """Kinds of append-only ledger entries on an allocation."""

    GRANT = "grant"
    RESERVE = "reserve"
    CHARGE = "charge"
    RELEASE = "release"
    ADJUST = "adjust"
    EXPIRE = "expire"


class SelectionMethod(StrEnum):
    """How a call orders proposals: first come first served, or in batches per cut-off."""

    FIFO = "fifo"
    CUTOFF = "cutoff"


class ResearchKind(StrEnum):
    """Open research and development, or commercial (pay-per-use) work."""

    OPEN_RD = "open_rd"
    COMMERCIAL = "commercial"


class Role(StrEnum):
    """Roles a user may hold, globally or per project/factory."""

    APPLICANT = "applicant"
    PROJECT_MEMBER = "project_member"
    PI = "pi"
    REVIEWER = "reviewer"
    FACTORY_OPERATOR = "factory_operator"
    FEDERATION_ADMIN = "federation_admin"


class AssessmentStep(StrEnum):
    """Steps an access mode may require between submission and decision."""

    ELIGIBILITY = "eligibility"
    TECHNICAL_ASSESSMENT = "technical_assessment"
    PEER_REVIEW = "peer_review"


class ClockStart(StrEnum):
    """What the service-level clock of a mode counts from."""

    SUBMISSION = "submission"
    CUTOFF = "cutoff"


class UsageLevel(StrEnum):
    """How much of an allocation is used: below the warning threshold, above it, or all of it."""

    OK = "ok"
    WARNING = "warning"
    EXHAUSTED = "exhausted"
