"""/plan: what-if capacity planning for staff (federation admins and factory operators).

The same planning code as `aif plan`, bounded so the page answers in seconds: at most
:data:`MAX_JOBS` jobs are replayed (the page says so).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.enums import Role
from aifactory.errors import Invalid
from aifactory.portal.charts_plan import paired_bars
from aifactory.portal.forms import FormErrors
from aifactory.portal.web import CurrentUser, PortalRoute, render, require_role
from aifactory.services import planning
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
#: The most jobs one page replays (twice: before and after), so it answers in a few seconds.
MAX_JOBS = 1500
WORKLOADS = {
    "synthetic": f"synthetic (Lublin-Feitelson model, {MAX_JOBS:,} jobs)",
    "history": f"the federation's job history (newest {MAX_JOBS:,} jobs)",
}
Text = Annotated[str, Query(max_length=100)]
LABELS = {
    "target": "Scale",
    "factor": "By a factor of",
    "add_gpus": "Add a factory of GPUs",
    "workload": "Workload",
    "load": "Offered load",
}


def _targets(factories: list[Any]) -> list[tuple[str, str]]:
    out = [("*", "every factory")]
    for f in factories:
        out.append((f.name, f.name))
        out += [(f"{f.name}/{p.system}/{p.name}", f"  {f.name}/{p.system}/{p.name}")
                for p in f.partitions]  # fmt: skip
    return out


def _workload(session: Session, user: SignedIn, choice: str, before: list[Any], load: float) -> Any:
    from aifactory.sim.plan_run import fit_workload, history_trace
    from aifactory.sim.synthetic import WorkloadModel, generate

    if choice == "history":
        rows = planning.history(session, user.principal, limit=MAX_JOBS).jobs
        if not rows:
            raise Invalid.field("workload", "empty", "the federation has no finished jobs yet")
        trace = history_trace([r.model_dump() for r in rows])
    else:
        trace = generate(MAX_JOBS, WorkloadModel(machine=256, load=load), seed=1)
    widest = max(p.gpus for f in before if f.operational for p in f.partitions)
    capacity = sum(f.gpus for f in before if f.operational)
    keep = choice == "history"
    return fit_workload(
        trace,
        WORKLOADS[choice],
        widest,
        capacity,
        load=None if keep else load,
        keep_arrivals=keep,
        max_jobs=MAX_JOBS,
    )


def _plan(session: Session, user: SignedIn, before: list[Any], form: dict[str, Any]) -> Any:
    from aifactory.sim.plan import apply_changes, parse_add_factory
    from aifactory.sim.plan_report import duration, report_rows
    from aifactory.sim.plan_run import compare, measure

    added = [parse_add_factory(f"New factory:{form['add_gpus']}")] if form["add_gpus"] else []
    scales = [f"{form['target']}={form['factor']}"] if form["factor"] != 1 else []
    after, changes = apply_changes(before, scales=scales, added=added)
    workload = _workload(session, user, form["workload"], before, form["load"])
    b = measure(workload, before, "easy", "broker")
    a = measure(workload, after, "easy", "broker")
    report = compare(workload, b, a, changes)
    waits = [
        (f"{label} {p}", run_b["wait_s"][p] / 3600, run_a["wait_s"][p] / 3600)
        for label, run_b, run_a in (("all", b, a), ("Playground", b["playground"], a["playground"]))
        for p in ("p50", "p90", "p99")
    ]
    return {
        "report": report,
        "rows": report_rows(report),
        "chart": paired_bars(waits, "Wait before and after (hours)", lambda h: duration(h * 3600)),
    }


def _form(errors: FormErrors, target: str, factor: str, add_gpus: str, workload: str,
          load: str) -> dict[str, Any]:  # fmt: skip
    scale = errors.parse("factor", factor or "1", float)
    gpus = errors.parse("add_gpus", add_gpus or "0", int)
    offered = errors.parse("load", load or "0.9", float)
    if scale is not None and not 0 < scale <= 100:
        errors.add("factor", "give a factor between 0 and 100 (2 doubles the nodes)")
    if gpus is not None and (gpus < 0 or gpus % 8 or gpus > 100_000):
        errors.add("add_gpus", "give a multiple of 8 GPUs up to 100,000 (0: none)")
    if offered is not None and not 0 < offered <= 1.5:
        errors.add("load", "give an offered load between 0 and 1.5")
    if workload not in WORKLOADS:
        errors.add("workload", f"choose one of {', '.join(WORKLOADS)}")
    return {
        "target": target, "workload": workload, "factor": 1.0 if scale is None else scale,
        "add_gpus": gpus or 0, "load": 0.9 if offered is None else offered,
    }  # fmt: skip


@router.get("/plan")
def plan_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    target: Text = "*",
    factor: Text = "",
    add_gpus: Text = "",
    workload: Text = "synthetic",
    load: Text = "",
    run: Text = "",
) -> Response:
    """The form and, once submitted, the before/after table and chart."""
    require_role(user, Role.FACTORY_OPERATOR)
    from aifactory.sim.plan import parse_snapshot

    before = parse_snapshot(planning.snapshot(session, now).model_dump(mode="json"))
    errors = FormErrors(set(LABELS), LABELS)
    form = _form(errors, target, factor, add_gpus, workload, load)
    context: dict[str, Any] = {"title": "Capacity planning", "form": form, "max_jobs": MAX_JOBS,
                               "workloads": WORKLOADS, "targets": _targets(before)}  # fmt: skip
    if run and not errors:
        try:
            context.update(_plan(session, user, before, form))
        except Invalid as exc:
            errors.absorb(exc)
    status = 422 if errors else 200
    return render(request, "plan.html", {**context, **errors.context()}, status)
