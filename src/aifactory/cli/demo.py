"""`make demo`: the embedded federation on SQLite, shown and used through the real API.

A start-up in Finland applies to the LUMI AI Factory's Playground, passes eligibility, is
assessed by the factory's operator and gets a project with a GPU-hour allocation. Running the
demo again on the same data directory adds another application; nothing breaks.

The demo keeps its own data in ``demo/`` under the data directory (``AIF_DATA_DIR``): the
README's commands (``aif admin bootstrap``, ``aif serve``, the same people and organisation)
then start afresh in the data directory itself, whether or not the demo ran before. Only with
``AIF_DATABASE_URL`` does it use that database, and then it should be one of its own.
"""

from __future__ import annotations

import importlib.util
import shlex
import time
import uuid
from pathlib import Path

import httpx
from rich.rule import Rule

from aifactory.cli import render
from aifactory.cli import render_access as show
from aifactory.cli.follow import follow_job
from aifactory.cli.jobs import why_table
from aifactory.cli.render import console
from aifactory.cli.render_jobs import jobs_table
from aifactory.client import Client
from aifactory.db.engine import Database
from aifactory.domain.enums import OrganisationType, Role
from aifactory.server import BackgroundServer
from aifactory.services import identity
from aifactory.services.identity import bootstrap_admin
from aifactory.services.setup import prepare
from aifactory.settings import Settings, load_settings

ORG = "Nordic Tokens Oy"


def run_demo() -> None:
    settings = demo_settings(load_settings())
    console.print(Rule("aifactory demo: the embedded federation"))
    db = prepare(settings)
    url = db.engine.url.render_as_string(hide_password=True)
    console.print(f"database: {url} (migrated, seeded)")
    with db.session() as session:
        admin = bootstrap_admin(session, "admin", ttl_days=1)
    anna, olli = _people(db)
    with BackgroundServer(settings, db, agents=True) as server:
        console.print(f"API up at {server.url}/api/v1 (OpenAPI at {server.url}/openapi.json)")
        with Client(server.url, admin.token) as api:
            console.print(render.summary_tables(api.federation_summary()))
            console.print(render.factories_table(api.list_factories()))
        with Client(server.url, anna) as applicant, Client(server.url, olli) as operator:
            code = _playground(applicant, operator)
            trained = _training(applicant, code, settings.demo_train_steps)
            if trained is not None:
                _serving(applicant, code, trained)
        with Client(server.url, admin.token) as api:
            api.revoke_token(admin.id)
    db.dispose()
    console.print(Rule())
    console.print(
        "Demo finished; the API is stopped. To keep the federation running: "
        "[bold].venv/bin/aif serve[/bold] (then `aif admin bootstrap` and `aif factories list`)."
    )
    console.print(f"The demo's data stays in {settings.data_dir}; `aif serve` starts afresh.")


def demo_settings(settings: Settings) -> Settings:
    """The demo's own data directory, ``demo/`` under the configured one."""
    return settings.model_copy(update={"data_dir": settings.data_dir / "demo"})


def _people(db: Database) -> tuple[str, str]:
    """A start-up applicant and the LUMI AIF operator (created once), with fresh tokens."""
    with db.session() as s:
        known = {u.username for u in identity.list_users(s)}
        if "anna" not in known:
            identity.create_organisation(
                s, ORG, OrganisationType.STARTUP, "FI", 12, 1_500_000, 800_000
            )
            identity.create_user(
                s, "anna", "anna@nordictokens.fi", "Anna Virtanen", None, [(Role.APPLICANT, None)]
            )
            identity.add_membership(s, "anna", ORG)
            identity.create_user(
                s,
                "olli",
                "olli@csc.fi",
                "Olli Operator",
                None,
                [(Role.FACTORY_OPERATOR, "LUMI AIF")],
            )
        anna = identity.create_token(s, "anna", "demo", 1).token
        olli = identity.create_token(s, "olli", "demo", 1).token
    return anna, olli


def _step(text: str) -> None:
    console.print(Rule(text, style="cyan"))


def _playground(applicant: Client, operator: Client) -> str:
    _step("1. A Finnish start-up looks for an open Playground call")
    calls = applicant.list_calls(mode="PG", factory="LUMI AIF", open_only=True)
    console.print(show.calls_table(calls))
    _step("2. Eligibility, rule by rule, before applying")
    console.print(
        show.eligibility_table(
            applicant.check_eligibility(
                call_id="lumi-aif-pg", organisation=ORG, research_kind="open_rd", duration_months=2
            )
        )
    )
    _step("3. Apply and submit: the two-working-day clock starts")
    draft = applicant.create_proposal(
        call_id="lumi-aif-pg",
        organisation=ORG,
        research_kind="open_rd",
        title=f"Finnish small language model ({uuid.uuid4().hex[:6]})",
        gpu_hours=2000,
        duration_months=2,
        partition="LUMI-AI/gpu",
        summary="Pre-train a small GPT on Finnish public-domain text.",
    )
    submitted = applicant.proposal_action(draft.id, "submit")
    console.print(show.proposal_detail(submitted))
    _step("4. The LUMI AIF operator assesses it: feasible, so it is accepted at once")
    for queued in operator.list_proposals(status="technical_assessment"):  # FIFO order
        operator.proposal_action(
            queued.id, "assessment", {"feasible": True, "comment": "fits LUMI-AI/gpu"}
        )
    decided = applicant.get_proposal(draft.id)
    console.print(show.proposal_detail(decided))
    _step("5. The award: a project with a GPU-hour allocation and its ledger")
    project = applicant.get_project(decided.project_code or "")
    console.print(show.project_detail(project))
    console.print(show.ledger_table(applicant.get_ledger(project.allocations[0].id)))
    return project.code


def _train_script() -> Path | None:
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidate = base / "examples" / "train_gpt" / "train.py"
        if candidate.is_file():
            return candidate
    return None


def _training(applicant: Client, code: str, steps: int) -> int | None:
    """Train the example GPT as a job; its id once it completed (its checkpoint is there)."""
    script = _train_script()
    if script is None or importlib.util.find_spec("torch") is None:
        console.print(
            "[yellow]training step skipped: examples/ or torch (pip install "
            "'aifactory[train]') not found[/yellow]"
        )
        return None
    _step("6. The start-up submits a real training job once; the broker picks the site")
    # Relative: the job writes in its own directory; it cannot reach the data dir (0700).
    checkpoints = Path("checkpoints") / f"{code}-{uuid.uuid4().hex[:6]}"
    spec = {
        "name": "train-gpt-char",
        "project": code,
        "resources": {"nodes": 1, "gpus_per_node": 1, "time_limit": "10m"},
        "command": [
            "python",
            str(script),
            "--steps",
            str(steps),
            "--log-every",
            "20",
            "--eval-every",
            str(max(steps // 2, 1)),
            "--checkpoint-dir",
            str(checkpoints),
            "--checkpoint-every",
            "40",
            "--threads",
            "2",
            "--sample-chars",
            "120",
        ],
        "environment": {"PYTHONUNBUFFERED": "1"},
        "checkpoint_dir": str(checkpoints),
        "allowed_countries": ["FI", "SE"],
    }
    job = applicant.submit_job(spec)
    console.print(why_table(applicant.why_job(job.id)))
    _step("7. It runs on LUMI AIF's local executor: the loss falls, checkpoints are written")
    done = follow_job(applicant, job.id)
    console.print(f"checkpoints in the job's own directory, under {checkpoints}/")
    _step("8. Exactly what it used is charged; the remaining budget is shown")
    console.print(jobs_table([applicant.get_job(done.id)]))
    project = applicant.get_project(code)
    console.print(show.allocations_table(project.allocations))
    console.print(show.ledger_table(applicant.get_ledger(project.allocations[0].id)))
    return done.id if done.state == "completed" else None


def _serving(applicant: Client, code: str, job_id: int) -> None:
    """The trained model, served from its checkpoint and asked through the OpenAI API."""
    script = _train_script()
    assert script is not None
    _step("9. The trained model is served: an endpoint from its checkpoint, OpenAI's API")
    serve = shlex.quote(str(script.with_name("serve.py")))
    endpoint = applicant.create_endpoint(
        {
            "name": "gpt-char",
            "project": code,
            "checkpoint": {"job": job_id},
            "replicas": {"min": 1, "max": 1},
            "replica": {
                "resources": {"nodes": 1, "gpus_per_node": 1, "time_limit": "30m"},
                "script": f'exec python {serve} --checkpoint "$AIF_MODEL_CHECKPOINT" '
                '--served-model-name "$AIF_ENDPOINT_NAME"\n',
                "environment": {"PYTHONUNBUFFERED": "1"},
            },
        }
    )
    console.print(f"endpoint {endpoint.name}: serving {endpoint.checkpoint_path}")
    deadline = time.monotonic() + 300  # a replica starts in seconds; this is a ceiling only
    while endpoint.state not in ("ready", "failing", "exhausted") and time.monotonic() < deadline:
        time.sleep(0.5)
        endpoint = applicant.get_endpoint("gpt-char")
    if endpoint.state != "ready":
        console.print(f"[yellow]the endpoint is {endpoint.state}: {endpoint.reason}[/yellow]")
        return
    key = applicant.create_endpoint_key("gpt-char", "demo").key
    console.print(f"ready; any OpenAI client works: base_url={applicant.gateway_url}, a key")
    answer = httpx.post(
        applicant.gateway_url + "/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "gpt-char", "prompt": "The ", "max_tokens": 60, "seed": 1},
        timeout=120,
    ).json()
    console.print(f"completion: {answer['choices'][0]['text']!r}")
    console.print(f"usage: {answer['usage']}")
    applicant.stop_endpoint("gpt-char")
    console.print(
        "endpoint stopped; its replica ran as a job of the project and is charged like one "
        "(aif endpoints show gpt-char, aif jobs list)"
    )
