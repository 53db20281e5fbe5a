"""`aif` as scripts run it: `aif ... --json` against a served federation, stdout piped.

Every command that shows an API resource prints that resource's JSON exactly as the API
returns it (compared with the API's own answer: equal, or for resources that change between
two reads, such as a token's last use, the same keys at every level). Piped tables are
tab-separated with every value whole; no ANSI escapes off a terminal or under ``NO_COLOR``.
One `aif serve` (SQLite) serves the whole module; the commands run in parallel subprocesses.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from aifactory.testing.serving import AIF, CEILING_S, Federation, served_federation

pytestmark = pytest.mark.slow


@dataclass
class World:
    fed: Federation
    admin: str
    job: dict[str, Any]
    allocation: int
    proposal: int


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with served_federation() as fed:
        boot = run(fed, "admin", "bootstrap", "--no-save")
        admin = boot.stdout.split()[-1]
        hello = ["examples/jobs/hello.yaml", "--project", fed.project]
        job = json.loads(run(fed, "submit", *hello, "--json").stdout)
        fed.wait_for(job["id"], "completion", lambda j: j["state"] == "completed")
        project = fed.api("GET", f"/projects/{fed.project}")
        proposal = fed.api("GET", "/proposals")[0]["id"]
        yield World(fed, admin, job, project["allocations"][0]["id"], proposal)


def run(fed: Federation, *args: str, token: str | None = None, code: int = 0, **env: str) -> Any:
    """`aif ARGS` with stdout and stderr piped (apart), as a script runs it."""
    done = subprocess.run(
        [AIF, *args],
        cwd=fed.work,
        env={**plain_env(fed), **({"AIF_TOKEN": token} if token else {}), **env},
        capture_output=True,
        text=True,
        timeout=CEILING_S,
        check=False,
    )
    assert done.returncode == code, f"aif {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done


def plain_env(fed: Federation) -> dict[str, str]:
    """The federation's environment without any colour preference of the test's own."""
    return {k: v for k, v in fed.env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}


def api(w: World, path: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token or w.fed.token}"}
    method = "POST" if "json" in kwargs else "GET"
    url = f"{w.fed.url}/api/v1{path}"
    response = httpx.request(method, url, headers=headers, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def keys(value: Any) -> Any:
    """The shape of a JSON value: its keys at every level (a list by its first item)."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def cases(w: World) -> list[tuple[list[str], Any, str | None, bool]]:
    """(command, the API's JSON for it, token (None: the applicant's), compared exactly)."""
    j, a, p, code = w.job["id"], w.allocation, w.proposal, w.fed.project
    eligibility = {"call_id": "lumi-aif-pg", "organisation": "Nordic Tokens Oy"}
    eligibility |= {"research_kind": "open_rd"}
    both = {"allocation": api(w, f"/allocations/{a}"), "ledger": api(w, f"/allocations/{a}/ledger")}
    return [
        (["factories", "list"], api(w, "/factories"), None, True),
        (["factories", "show", "LUMI AIF"], api(w, "/factories/LUMI%20AIF"), None, True),
        (["federation", "summary"], api(w, "/federation/summary"), None, True),
        (["calls", "list", "--open"], api(w, "/calls", params={"open_only": "true"}), None, True),
        (["calls", "show", "lumi-aif-pg"], api(w, "/calls/lumi-aif-pg"), None, True),
        (
            ["eligibility", "check", "--call", "lumi-aif-pg", "--org", "Nordic Tokens Oy"],
            api(w, "/eligibility/check", json=eligibility),
            None,
            True,
        ),
        (["proposals", "list"], api(w, "/proposals"), None, False),
        (["proposals", "show", str(p)], api(w, f"/proposals/{p}"), None, False),
        (["projects", "list"], api(w, "/projects"), None, True),
        (["projects", "show", code], api(w, f"/projects/{code}"), None, True),
        (
            ["allocations", "show", str(a)],
            both,
            None,
            True,
        ),
        (["report", "--by", "funding"], api(w, "/reports/usage?group_by=funding"), None, True),
        (["jobs", "list"], api(w, "/jobs?limit=50"), None, True),
        (["jobs", "show", str(j)], api(w, f"/jobs/{j}"), None, True),
        (["jobs", "why", str(j)], api(w, f"/jobs/{j}/why"), None, True),
        (["logs", str(j)], api(w, f"/jobs/{j}/logs?offset=0&stream=stdout"), None, True),
        (["sessions", "list"], api(w, "/sessions"), None, True),
        (["endpoints", "list"], api(w, "/endpoints"), None, True),
        (["admin", "tokens"], api(w, "/tokens", w.admin), w.admin, False),
        (["admin", "audit"], api(w, "/audit?limit=50", w.admin), w.admin, False),
        (["admin", "lockouts"], api(w, "/lockouts", w.admin), w.admin, True),
        (["status"], api(w, "/status", w.admin), w.admin, False),
        (
            ["admin", "site-account", "list", "anna"],
            api(w, "/users/anna/site-accounts", w.admin),
            w.admin,
            True,
        ),
    ]


def test_every_showing_command_prints_the_apis_json_and_nothing_else(world: World) -> None:
    todo = cases(world)

    def one(case: tuple[list[str], Any, str | None, bool]) -> tuple[list[str], Any]:
        done = run(world.fed, *case[0], "--json", token=case[2])
        return case[0], json.loads(done.stdout)  # one document: anything else fails here

    with ThreadPoolExecutor(max_workers=4) as pool:
        printed = dict((" ".join(args), out) for args, out in pool.map(one, todo))
    for args, expected, _, exact in todo:
        got = printed[" ".join(args)]
        if exact:
            assert got == expected, f"aif {' '.join(args)} --json differs from the API"
        else:
            assert keys(got) == keys(expected), f"aif {' '.join(args)} --json: other keys"
    assert printed["federation summary"]["capacity_gpus"] == 2688  # a number, no separator
    assert world.job.keys() == printed[f"jobs show {world.job['id']}"].keys()  # submit --json


def test_following_a_log_as_json_prints_one_chunk_a_line(world: World) -> None:
    out = run(world.fed, "logs", str(world.job["id"]), "--follow", "--json").stdout
    chunks = [json.loads(line) for line in out.splitlines()]
    assert chunks and all(c["job_id"] == world.job["id"] for c in chunks)
    assert "hello from GPUs" in "".join(c["text"] for c in chunks)


def test_errors_go_to_stderr_and_leave_stdout_empty(world: World) -> None:
    done = run(world.fed, "projects", "show", "EHPC-NOPE", "--json", code=1)
    assert done.stdout == ""
    assert "error (" in done.stderr


def test_submit_without_a_project_names_the_users_projects(world: World) -> None:
    done = run(world.fed, "submit", "examples/jobs/hello.yaml", code=1)
    assert "project" in done.stderr and world.fed.project in done.stderr
    assert "--project" in done.stderr


def test_piped_tables_are_tab_separated_with_whole_values(world: World) -> None:
    out = run(world.fed, "factories", "list", COLUMNS="40").stdout
    assert "…" not in out and "\x1b[" not in out and "│" not in out
    lumi = next(line for line in out.splitlines() if line.startswith("LUMI AIF\t"))
    assert lumi.split("\t") == [
        "LUMI AIF", "CSC", "Kajaani", "FI", "CZ, DK, EE, NO, PL", "operational",
        "LUMI-AI (new)", "1,024",
    ]  # fmt: skip
    jobs = run(world.fed, "jobs", "list", COLUMNS="40").stdout
    assert f"\t{world.fed.project}\t" in jobs
    shown = run(world.fed, "proposals", "show", str(world.proposal)).stdout
    assert re.search(r"GPU-h, 1 month on", shown), shown  # one month, not "1 months"


def on_a_terminal(fed: Federation, *args: str, **env: str) -> str:
    """`aif ARGS` with stdout on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [AIF, *args], cwd=fed.work, env={**plain_env(fed), "TERM": "xterm-256color", **env},
        stdout=follower, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=CEILING_S) == 0
    os.close(leader)
    return b"".join(chunks).decode()


def test_no_color_turns_styles_off_at_a_terminal(world: World) -> None:
    styled = on_a_terminal(world.fed, "factories", "list")
    assert "\x1b[" in styled and "LUMI AIF" in styled  # a terminal gets styles by default
    plain = on_a_terminal(world.fed, "factories", "list", NO_COLOR="1")
    assert "\x1b[" not in plain and "LUMI AIF" in plain
