"""Enum values are stored as strings by the database: they must not drift."""

from aifactory.domain.enums import (
    AccessModeCode,
    CountryStatus,
    LedgerKind,
    OrganisationType,
    ProposalStatus,
    Role,
)


def test_stored_values_are_the_documented_strings() -> None:
    assert [o.value for o in OrganisationType] == [
        "startup",
        "sme",
        "large_enterprise",
        "academia",
        "public_body",
    ]
    assert [c.value for c in CountryStatus] == ["member_state", "participating_state", "other"]
    assert [r.value for r in Role] == [
        "applicant",
        "project_member",
        "pi",
        "reviewer",
        "factory_operator",
        "federation_admin",
    ]
    assert {m.value for m in AccessModeCode} == {"PG", "FL", "LS", "AS", "HC"}
    assert ProposalStatus("technical_assessment") is ProposalStatus.TECHNICAL_ASSESSMENT
    assert {k.value for k in LedgerKind} == {
        "grant",
        "reserve",
        "charge",
        "release",
        "adjust",
        "expire",
    }


def test_members_compare_equal_to_their_strings() -> None:
    assert Role("pi") is Role.PI and str(Role.PI) == "pi"
    assert f"{AccessModeCode.PLAYGROUND}" == "PG"
