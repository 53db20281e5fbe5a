"""Proposal sections, resource rows and PDF attachments through the API (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services import attachments
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import SECTIONS, pdf_bytes

API = "/api/v1"
ORG = "Nordic Tokens Oy"
TRAIN, SERVE = "MareNostrum 5 AI/llm-train", "MareNostrum 5 AI/inference"
ROWS = [
    {"partition": TRAIN, "gpu_hours": "30000", "justification": "pre-training"},
    {"partition": SERVE, "gpu_hours": "10000.5", "justification": "evaluation"},
]
LUMI_ROW = {"partition": "LUMI-AI/gpu", "gpu_hours": "1000", "justification": "fine-tuning"}


def _fl(call: str = "bsc-aif-fl", **extra: Any) -> dict[str, Any]:
    return {
        "call_id": call,
        "title": "Finnish LLM",
        "organisation": ORG,
        "research_kind": "open_rd",
        "duration_months": 3,
        **extra,
    }


def test_rows_and_sections_are_checked_stored_and_complete_before_submission(
    db: Database, api: TestClient
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", ORG)
    rows = [
        {**ROWS[0], "partition": "NOPE/gpu"},
        ROWS[0],
        ROWS[0],
    ]
    refused = api.post(f"{API}/proposals", headers=anna.headers, json=_fl(resources=rows))
    assert refused.status_code == 422, refused.text
    got = {(d["field"], d["rule"]) for d in refused.json()["error"]["details"]}
    assert got == {
        ("resources.0.partition", "known_partition"),
        ("resources.2.partition", "one_row_per_partition"),
    }
    over = [{**ROWS[0], "gpu_hours": "9000000"}]
    refused = api.post(f"{API}/proposals", headers=anna.headers, json=_fl(resources=over))
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["rule"] == "gpu_hour_limits"
    rows = ROWS
    draft = ok(api.post(f"{API}/proposals", headers=anna.headers, json=_fl(resources=rows)), 201)
    assert float(draft["gpu_hours"]) == 40000.5  # the total, and the first row's partition
    assert draft["partition"] == TRAIN
    assert [(r["partition"], r["justification"]) for r in draft["resources"]] == [
        (TRAIN, "pre-training"),
        (SERVE, "evaluation"),
    ]
    refused = api.post(f"{API}/proposals/{draft['id']}/submit", headers=anna.headers)
    assert refused.status_code == 422, refused.text
    missing = {(d["field"], d["rule"]) for d in refused.json()["error"]["details"]}
    assert ("team", "required_for_mode") in missing
    assert ("technical.scaling", "required_for_mode") in missing
    assert ("data.personal_data", "required_for_mode") in missing
    assert ("ethics.dual_use", "required_for_mode") in missing
    assert ("resources", "required_for_mode") not in missing
    sections = copy.deepcopy(SECTIONS)
    sections["data"]["personal_data"] = True  # a yes needs its explanation
    body = _fl(resources=rows, sections=sections)
    changed = ok(api.put(f"{API}/proposals/{draft['id']}", headers=anna.headers, json=body))
    assert changed["sections"]["team"][0]["name"] == "Aino Virtanen"
    refused = api.post(f"{API}/proposals/{draft['id']}/submit", headers=anna.headers)
    details = refused.json()["error"]["details"]
    assert [(d["field"], d["rule"]) for d in details] == [
        ("data.personal_data_handling", "explain_yes")
    ]
    sections["data"]["personal_data_handling"] = "pseudonymised before training"
    body = _fl(resources=rows, sections=sections)
    ok(api.put(f"{API}/proposals/{draft['id']}", headers=anna.headers, json=body))
    done = ok(api.post(f"{API}/proposals/{draft['id']}/submit", headers=anna.headers))
    assert done["status"] == "technical_assessment"
    again = api.put(f"{API}/proposals/{draft['id']}", headers=anna.headers, json=body)
    assert again.status_code == 409, again.text


def test_attachments_pdf_only_size_limited_and_private(
    db: Database, api: TestClient, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", ORG)
    stranger = member_of(db, "sam", "Other Labs Oy")
    other_op = make_person(db, "bob", [(Role.FACTORY_OPERATOR, "BSC AIF")])
    draft = ok(
        api.post(
            f"{API}/proposals", headers=anna.headers, json=_fl("lumi-aif-fl", resources=[LUMI_ROW])
        ),
        201,
    )
    url = f"{API}/proposals/{draft['id']}/attachments"
    pdf = pdf_bytes("CV of Aino")
    added = ok(
        api.post(url, headers=anna.headers, files={"file": ("cv.pdf", pdf, "application/pdf")}),
        201,
    )
    assert added["size"] == len(pdf) and added["name"] == "cv.pdf"
    fake = api.post(
        url, headers=anna.headers, files={"file": ("annex.pdf", b"MZ not a pdf", "application/pdf")}
    )
    assert fake.status_code == 422
    assert [(d["field"], d["rule"]) for d in fake.json()["error"]["details"]] == [("file", "pdf")]
    big = pdf_bytes(pad=10 * 1024 * 1024)
    over = api.post(url, headers=anna.headers, files={"file": ("big.pdf", big, "application/pdf")})
    assert over.status_code == 422
    assert [(d["field"], d["rule"]) for d in over.json()["error"]["details"]] == [
        ("file", "max_size")
    ]
    one = f"{url}/{added['id']}"
    for who in (anna, operator):
        got = api.get(one, headers=who.headers)
        assert got.status_code == 200 and got.content == pdf
        assert got.headers["content-type"] == "application/pdf"
    for who in (stranger, other_op):
        assert api.get(one, headers=who.headers).status_code == 404
        assert api.get(url, headers=who.headers).status_code == 404
        assert api.delete(one, headers=who.headers).status_code == 404
    listed = ok(api.get(url, headers=operator.headers))
    assert [a["sha256"] for a in listed] == [added["sha256"]]
    assert api.delete(one, headers=anna.headers).status_code == 204
    assert ok(api.get(url, headers=anna.headers)) == []
    assert api.get(one, headers=anna.headers).status_code == 404


def test_an_upload_is_stored_and_hashed_off_the_event_loop(
    db: Database, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``attach`` is async to read the multipart body; ``attachments.add`` (the database, the
    file's hash) runs in the threadpool, where no event loop is running."""
    real = attachments.add
    on_loop: list[bool] = []

    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(attachments, "add", watched)
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", ORG)
    body = _fl("lumi-aif-fl", resources=[LUMI_ROW])
    draft = ok(api.post(f"{API}/proposals", headers=anna.headers, json=body), 201)
    cv = {"file": ("cv.pdf", pdf_bytes("CV"), "application/pdf")}
    ok(api.post(f"{API}/proposals/{draft['id']}/attachments", headers=anna.headers, files=cv), 201)
    assert on_loop == [False]
