"""The batch-script corpus: each script in tests/fixtures/sbatch/ against the expected job spec
and notes next to it, written from sbatch's documented behaviour (not from the importer).

A field counts as right when the importer gives the expected value; a refused script counts
each expected refusal that comes back with a message; anything else is wrong. The score is
printed (``pytest -s``) and any wrong field fails the test.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aifactory.domain.jobspec import Resources
from aifactory.errors import Invalid
from aifactory.executors.slurm.sbatch_import import import_sbatch

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "sbatch"
SCRIPTS = sorted(CORPUS.glob("*.sbatch"))


@dataclass
class Grade:
    right: int = 0
    refused: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, what: str, got: Any, want: Any) -> None:
        if got == want:
            self.right += 1
        else:
            self.wrong.append(f"{what}: got {got!r}, expected {want!r}")


def _expected(script: Path) -> dict[str, Any]:
    return dict(json.loads(script.with_suffix(".json").read_text()))


def _grade_notes(grade: Grade, got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    got_pairs = Counter((n["directive"], n["action"]) for n in got)
    want_pairs = Counter((n["directive"], n["action"]) for n in want)
    for pair, count in want_pairs.items():
        grade.check(f"note {pair}", min(got_pairs[pair], count), count)
    for pair in got_pairs - want_pairs:
        grade.wrong.append(f"unexpected note {pair}")
    for note in got:
        if not note["message"].strip():
            grade.wrong.append(f"note {note['directive']} has no message")


def _grade_spec(grade: Grade, spec: dict[str, Any], want: dict[str, Any], text: str) -> None:
    grade.check("script", spec.get("script"), text)
    for key in ("name", "array", "workdir"):
        grade.check(key, spec.get(key), want.get(key))
    got_res = Resources.model_validate(spec["resources"]).model_dump()
    want_res = Resources.model_validate(want["resources"]).model_dump()
    for key, value in want_res.items():
        grade.check(f"resources.{key}", got_res[key], value)


def _grade_refusal(grade: Grade, exc: Invalid, want: list[str]) -> None:
    got = {d.field: d.message for d in exc.details}
    for name in want:
        if got.get(name, "").strip():
            grade.refused += 1
        else:
            grade.wrong.append(f"{name} not refused with a message (refused: {sorted(got)})")
    grade.wrong += [f"unexpected refusal {name}: {got[name]}" for name in got if name not in want]


def grade(script: Path) -> Grade:
    expected = _expected(script)
    text = script.read_text()
    result = Grade()
    try:
        spec, notes = import_sbatch(text, default_name=script.name)
    except Invalid as exc:
        if not expected["refused"]:
            result.wrong.append(f"refused unexpectedly: {exc}")
            return result
        _grade_refusal(result, exc, expected["refused"])
        _grade_notes(result, exc.extra.get("notes", []), expected["notes"])
        return result
    if expected["refused"]:
        result.wrong.append(f"accepted, expected refusals {expected['refused']}")
        return result
    _grade_spec(result, spec, expected["spec"], text)
    _grade_notes(result, [n.as_dict() for n in notes], expected["notes"])
    return result


def test_the_corpus_is_big_enough_and_every_script_has_its_expectation() -> None:
    assert len(SCRIPTS) >= 25
    assert all(s.with_suffix(".json").is_file() for s in SCRIPTS)
    refused = [s for s in SCRIPTS if _expected(s)["refused"]]
    assert 5 <= len(refused) < len(SCRIPTS) - 20


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_imports_as_sbatch_reads_it(script: Path) -> None:
    assert grade(script).wrong == []


def test_corpus_score(capsys: pytest.CaptureFixture[str]) -> None:
    total = Grade()
    for script in SCRIPTS:
        one = grade(script)
        total.right += one.right
        total.refused += one.refused
        total.wrong += [f"{script.stem}: {w}" for w in one.wrong]
    with capsys.disabled():
        print(
            f"\nsbatch corpus ({len(SCRIPTS)} scripts): {total.right} fields right, "
            f"{total.refused} refused with a message, {len(total.wrong)} wrong"
        )
    assert total.wrong == []
