"""A factory's page: public facts and calls; its operators and admins drain it from there.
The hosting call's form: a whole factory as one proposal."""

from __future__ import annotations

from fastapi.testclient import TestClient
from portal_support import set_password, sign_in

from aifactory.db.engine import Database
from aifactory.db.models import Proposal
from aifactory.domain.enums import OrganisationType, Role
from aifactory.testing.access import at, member_of, set_clock
from aifactory.testing.people import make_person

PAGE = "/factories/LUMI%20AIF"


def test_an_operator_drains_their_site_from_its_page(db: Database, portal: TestClient) -> None:
    make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    make_person(db, "bea", [(Role.FACTORY_OPERATOR, "BSC AIF")])
    set_password(db, "olli")
    set_password(db, "bea")
    public = portal.get(PAGE)
    assert public.status_code == 200
    assert "LUMI-AI" in public.text and "lumi-aif-pg" in public.text
    assert 'name="status"' not in public.text  # no control for visitors
    assert PAGE in portal.get("/federation").text  # linked from the overview

    csrf = sign_in(portal, "bea")
    assert 'name="status"' not in portal.get(PAGE).text
    refused = portal.post(f"{PAGE}/status", data={"csrf_token": csrf, "status": "draining"})
    assert refused.status_code == 403

    portal.cookies.clear()
    csrf = sign_in(portal, "olli")
    page = portal.get(PAGE).text
    assert '<option value="draining"' in page and '<option value="selected"' not in page
    moved = portal.post(f"{PAGE}/status", data={"csrf_token": csrf, "status": "draining"})
    assert moved.status_code == 303
    assert "s-draining" in portal.get(PAGE).text
    bad = portal.post(f"{PAGE}/status", data={"csrf_token": csrf, "status": "deploying"})
    assert bad.status_code == 422 and "illegal factory transition" in bad.text


HOSTING = {
    "organisation": "Research Ministry of Cyprus",
    "title": "Cyprus AI Factory",
    "kind": "new_factory",
    "factory_name": "Aphrodite AIF",
    "hosting_entity": "The Cyprus Institute",
    "city": "Nicosia",
    "country": "CY",
    "members": "GR, MT",
    "split_eu": "50",
    "split_national": "40",
    "split_commercial": "10",
    "system_name": "Aphrodite-1",
    "system_kind": "new",
    "partition_name": "gpu",
    "gpu_model": "H200",
    "nodes": "16",
    "gpus_per_node": "8",
    "gpu_memory_gb": "141",
    "charge_factor": "1.5",
    "funding_de": "30,000,000",
    "funding_national": "25,000,000",
}


def test_a_hosting_proposal_describes_its_factory_on_the_portal(
    db: Database, portal: TestClient
) -> None:
    set_clock(portal, at("2026-11-25T09:00"))
    member_of(db, "min", "Research Ministry of Cyprus", OrganisationType.PUBLIC_BODY, "CY")
    set_password(db, "min")
    csrf = sign_in(portal, "min")
    assert portal.get("/calls/hc-2025/apply").headers["location"] == "/calls/hc-2025/hosting"
    assert 'name="gpu_model"' in portal.get("/calls/hc-2025/hosting").text
    url = "/calls/hc-2025/hosting"
    bad = portal.post(url, data={**HOSTING, "nodes": "0", "country": "XX", "csrf_token": csrf})
    assert bad.status_code == 422
    assert 'id="f-nodes"' in bad.text and 'aria-invalid="true"' in bad.text
    made = portal.post(url, data={**HOSTING, "csrf_token": csrf})
    assert made.status_code == 303, made.text
    pid = int(made.headers["location"].split("/")[2].split("?")[0])
    with db.session() as s:
        hosting = s.get_one(Proposal, pid).hosting
    assert hosting is not None
    factory = hosting["factory"]
    assert (factory["country"], factory["members"]) == ("CY", ["GR", "MT"])
    assert factory["systems"][0]["partitions"][0]["nodes"] == 16
    assert hosting["funding"][0] == {
        "source": "digital_europe",
        "amount_eur": 30_000_000,
        "purpose": "",
    }
