"""Usage reports with charts and CSV, and the simulator's results (runs written by `aif sim`)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.domain.clock import as_date
from aifactory.domain.enums import Role
from aifactory.errors import NotFound
from aifactory.portal.charts import usage_bars
from aifactory.portal.charts_time import series_labels, usage_over_time, utilisation_chart
from aifactory.portal.forms import FormErrors
from aifactory.portal.web import CurrentUser, PortalRoute, render
from aifactory.services import reports, timeseries
from aifactory.services.access_views import ReportRow
from aifactory.services.permissions import Action, authorize
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
GROUPS = {
    "factory": "AI Factory (where the GPU-hours were used)",
    "factory-country": "country of the AI Factory",
    "user-country": "country of the user's organisation",
    "funding": "funding source",
    "mode": "access mode",
    "project": "project",
}
#: Usage over time, stacked by one of these (the funding split as the reports compute it).
SERIES = {"factory": "AI Factory", "project": "project", "funding": "funding source"}
SERIES_DAYS = 28
Text = Annotated[str, Query(max_length=20)]
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _range(start: str, end: str, errors: FormErrors) -> tuple[date | None, date | None]:
    return (
        errors.parse("start", start, date.fromisoformat),
        errors.parse("end", end, date.fromisoformat),
    )


def _over_time(
    session: Session,
    user: SignedIn,
    today: date,
    picked: tuple[str, str, date | None, date | None],
    errors: FormErrors,
) -> dict[str, Any]:
    """Usage per day or week stacked by the chosen group, and utilisation per factory."""
    series_by, bucket, first, last = picked
    if series_by not in SERIES:
        errors.add("series_by", f"choose one of {', '.join(SERIES)}")
        series_by = "factory"
    if bucket not in timeseries.BUCKETS:
        errors.add("bucket", f"choose one of {', '.join(timeseries.BUCKETS)}")
        bucket = "day"
    last = last or today
    first = first or last - timedelta(days=SERIES_DAYS - 1)
    if first > last or (last - first).days >= timeseries.MAX_DAYS:
        errors.add("start", f"the charts span 1 to {timeseries.MAX_DAYS} days")
        first, last = last - timedelta(days=SERIES_DAYS - 1), last
    series = timeseries.usage_series(session, user.principal, series_by, first, last, bucket)
    capacity = timeseries.capacity_series(session, user.principal, first, last)
    title = f"GPU-hours per {bucket} by {SERIES[series_by]}, {first} to {last}"
    return {
        "series": series,
        "series_by": series_by,
        "series_groups": SERIES,
        "bucket": bucket,
        "series_labels": series_labels(series),
        "series_chart": usage_over_time(series, title, series_labels(series)),
        "capacity": capacity,
        "capacity_chart": utilisation_chart(
            capacity, f"Share of in-service GPU-hours charged per day, {first} to {last}"
        ),
    }


def _named(rows: list[ReportRow]) -> list[ReportRow]:
    """The rows as the chart names them: funding sources and countries by name."""
    return [r.model_copy(update={"key": r.label or r.key}) for r in rows]


@router.get("/reports")
def report_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    group_by: Text = "factory",
    start: Text = "",
    end: Text = "",
    series_by: Text = "factory",
    bucket: Text = "day",
) -> Response:
    """Signed in: usage of the allocations this user may see, grouped as asked, and over
    time (per day or week, stacked by project, factory or funding source)."""
    authorize(user.principal, Action.READ_SELF)
    errors = FormErrors({"group_by", "start", "end", "series_by", "bucket"})
    if group_by not in GROUPS:
        errors.add("group_by", f"choose one of {', '.join(GROUPS)}")
        group_by = "factory"
    first, last = _range(start, end, errors)
    if first and last and last < first:
        errors.add("end", f"end {last} is before start {first}")
        last = None
    report = reports.usage_report(session, user.principal, group_by, first, last)
    context = {
        "title": "Usage reports",
        "report": report,
        "groups": GROUPS,
        "group_by": group_by,
        "start": start,
        "end": end,
        "chart": usage_bars(_named(report.rows), f"GPU-hours by {GROUPS[group_by]}"),
        "euros": {f.source: f.amount_eur for f in report.funding},
        **_over_time(session, user, as_date(now), (series_by, bucket, first, last), errors),
        **errors.context(),
    }
    return render(request, "reports.html", context, 422 if errors else 200)


@router.get("/reports.csv")
def report_csv(
    session: SessionDep,
    user: CurrentUser,
    group_by: Text = "factory",
    start: Text = "",
    end: Text = "",
) -> Response:
    """Signed in: the same report as CSV (bad parameters get the error page)."""
    authorize(user.principal, Action.READ_SELF)
    errors = FormErrors(set())
    first, last = _range(start, end, errors)
    errors.raise_if_any()
    report = reports.usage_report(session, user.principal, group_by, first, last)
    safe = group_by if group_by in GROUPS else "report"
    return Response(
        reports.to_csv(report),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="usage-by-{safe}.csv"'},
    )


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"


def _runs(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    runs = []
    for run in sorted(p for p in root.iterdir() if p.is_dir() and SAFE_NAME.match(p.name)):
        metrics_file = run / "metrics.json"
        metrics: dict[str, str] = {}
        if metrics_file.is_file():
            try:
                loaded = json.loads(metrics_file.read_text(encoding="utf-8"))
            except ValueError:
                loaded = {}
            if isinstance(loaded, dict):
                metrics = {k: _number(v) for k, v in loaded.items() if isinstance(v, int | float)}
        plots = sorted(p.name for p in run.glob("*.png") if SAFE_NAME.match(p.name))
        runs.append({"name": run.name, "metrics": metrics, "plots": plots})
    return runs


@router.get("/sim")
def sim_page(request: Request, settings: SettingsDep, user: CurrentUser) -> Response:
    """Signed in: runs written by `aif sim run --out <data dir>/sim/<run>`."""
    authorize(user.principal, Action.READ_REGISTRY)
    root = settings.data_dir / "sim"
    who = user.principal
    staff = who.is_admin or who.has(Role.FACTORY_OPERATOR)  # only staff learn where files are
    shown = str(root) if staff else ""
    context = {"title": "Simulator results", "runs": _runs(root), "root": shown}
    return render(request, "sim.html", context)


@router.get("/sim/{run}/{name}")
def sim_plot(run: str, name: str, settings: SettingsDep, user: CurrentUser) -> Response:
    """One PNG of one run; names are checked so no path can leave the sim folder."""
    authorize(user.principal, Action.READ_REGISTRY)
    root = (settings.data_dir / "sim").resolve()
    path = (root / run / name).resolve()
    ok = SAFE_NAME.match(run) and SAFE_NAME.match(name) and name.endswith(".png")
    if not ok or path.parent.parent != root or not path.is_file():
        raise NotFound(f"no plot {name!r} in run {run!r}")
    return FileResponse(path, media_type="image/png")
