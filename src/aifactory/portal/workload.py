"""Projects and jobs: the dashboard with its burn-down, live job tables, job pages and logs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, site_capacity
from aifactory.domain.jobspec import MAX_SPEC_BYTES, parse_spec
from aifactory.domain.words import start_words
from aifactory.errors import Invalid
from aifactory.portal.charts import burn_down
from aifactory.portal.charts_metrics import latest, loss_chart
from aifactory.portal.forms import FormErrors, Messages, attempt
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import candidates, job_metrics, job_queries, projects, submissions
from aifactory.services.sessions import SignedIn
from aifactory.services.sites import load_sites
from aifactory.services.views import FactoryView
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
EXAMPLE_SPEC = """name: hello
project: {code}
command: ["python3", "-c", "print('hello from the portal')"]
resources:
  nodes: 1
  gpus_per_node: 1
  time_limit: 10m
"""


@dataclass(frozen=True)
class Use:
    """Busy GPUs out of a total, for a partition or a factory's site pool."""

    name: str
    total: int
    busy: int
    partitions: tuple[Use, ...] = ()

    @property
    def fraction(self) -> float:
        return self.busy / self.total if self.total else 0.0


def utilisation(session: Session, settings: Settings, factories: list[FactoryView]) -> list[Use]:
    """Busy GPUs per factory (its site pool, when the site caps it) and per partition."""
    sites = load_sites(settings, [f.name for f in factories])
    out = []
    for f in factories:
        parts = tuple(
            Use(f"{s.name}/{p.name}", p.gpus, candidates.busy_gpus(session, None, p.id))
            for s in f.systems
            for p in s.partitions
        )
        pool = sites[f.name].capacity_gpus
        if pool is None:
            out.append(Use(f.name, f.total_gpus, sum(p.busy for p in parts), parts))
        else:
            busy = candidates.busy_gpus(session, f.id, 0)
            out.append(Use(f.name, min(pool, f.total_gpus), busy, parts))
    return out


@router.get("/projects")
def project_list(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Signed in: the projects this user may see (members, their factory's operators, admins)."""
    mine = projects.list_projects(session, user.principal)
    return render(request, "projects.html", {"title": "Projects", "projects": mine})


def _dashboard(
    request: Request,
    session: Session,
    user: SignedIn,
    code: str,
    now: datetime,
    spec_text: str = "",
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    project = projects.get_project(session, user.principal, code)
    charts = [
        (
            a,
            burn_down(
                projects.get_ledger(session, user.principal, a.id),
                now,
                f"Allocation {a.id} on {a.system}/{a.partition}: GPU-hours over time",
                a.start_date,
                a.end_date,
            ),
        )
        for a in project.allocations
    ]
    context = {
        "title": f"Project {code}",
        "project": project,
        "charts": charts,
        "jobs": job_queries.list_jobs(session, user.principal, project=code, limit=50).jobs,
        "spec_text": spec_text or EXAMPLE_SPEC.format(code=code),
        **(errors.context() if errors else {}),
    }
    return render(request, "project.html", context, status)


@router.get("/projects/{code}")
def project_page(
    code: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Signed in: the service refuses anyone who may not see the project."""
    return _dashboard(request, session, user, code, now)


@router.get("/projects/{code}/jobs.frag")
def jobs_fragment(code: str, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """The jobs table body, polled every 2 s by the dashboard."""
    projects.get_project(session, user.principal, code)
    page = job_queries.list_jobs(session, user.principal, project=code, limit=50)
    return render(request, "_jobs.html", {"jobs": page.jobs})


def _spec(text: str, code: str) -> Any:
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise Invalid.field("spec", "max_size", f"the spec is over {MAX_SPEC_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Invalid.field("spec", "yaml", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid.field("spec", "mapping", "the spec is a YAML mapping (name:, command:, ...)")
    data.setdefault("project", code)
    return parse_spec(data)


@router.post("/projects/{code}/jobs")
def submit_job(
    code: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    spec: Annotated[str, Form(max_length=MAX_SPEC_BYTES)] = "",
) -> Response:
    """Members submit a job from a YAML spec; every broken rule is shown under the spec."""
    errors = FormErrors({"spec"})

    def submit() -> int:
        submitted = submissions.submit(
            session, user.principal, _spec(spec, code), now, site_capacity(request, session)
        )
        return submitted.job.id

    job_id = attempt(session, errors, submit)
    if job_id is None:
        if "spec" not in errors.by_field and errors.general:  # each broken rule of the spec
            errors.by_field["spec"] = Messages(errors.general)
            errors.general = []
        return _dashboard(request, session, user, code, now, spec, errors, 422)
    return redirect(f"/jobs/{job_id}?notice=submitted_job")


@router.get("/jobs/{job_id}")
def job_page(job_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Signed in: the service refuses anyone outside the job's project or factory."""
    job = job_queries.get(session, user.principal, job_id)
    context = {
        "title": f"Job {job.id}: {job.name}",
        "job": job,
        "why": job_queries.why(session, user.principal, job_id, site_capacity(request, session)),
        "start_words": start_words,
        "stdout": job_queries.logs(session, user.principal, job_id, stream="stdout"),
        "stderr": job_queries.logs(session, user.principal, job_id, stream="stderr"),
        **_curve(session, user, job_id),
    }
    return render(request, "job.html", context)


def _curve(session: Session, user: SignedIn, job_id: int) -> dict[str, Any]:
    """The loss curve's context: the series, its SVG and the latest values in words."""
    metrics = job_metrics.job_metrics(session, user.principal, job_id)
    chart = loss_chart(metrics, f"Job {job_id}: training metrics by step")
    return {"metrics": metrics, "chart": chart, "latest": latest(metrics)}


@router.get("/jobs/{job_id}/metrics.frag")
def job_curve(job_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """The loss curve, polled with the job's state while it runs."""
    job = job_queries.get(session, user.principal, job_id, detail=False)
    return render(request, "_job_metrics.html", {"job": job, **_curve(session, user, job_id)})


@router.get("/jobs/{job_id}/state.frag")
def job_state(job_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """The job's summary table, polled every 2 s while the job page is open."""
    job = job_queries.get(session, user.principal, job_id)
    return render(request, "_job_state.html", {"job": job})


@router.get("/jobs/{job_id}/history.frag")
def job_history(job_id: int, request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """The job's transitions and attempts, polled with its state."""
    job = job_queries.get(session, user.principal, job_id)
    return render(request, "_job_history.html", {"job": job})


@router.get("/jobs/{job_id}/logs.json")
def job_logs(
    job_id: int,
    session: SessionDep,
    user: CurrentUser,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
) -> Response:
    """The next chunk of a log; the page appends it as text (never as markup)."""
    chunk = job_queries.logs(session, user.principal, job_id, stream=stream, offset=offset)
    return JSONResponse(chunk.model_dump(mode="json"))


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: int, session: SessionDep, user: CurrentUser) -> Response:
    """Members ask for cancellation; the site agent stops the job shortly after."""
    job_queries.cancel(session, user.principal, job_id)
    return redirect(f"/jobs/{job_id}?notice=cancelled")
