"""Interactive sessions in the portal: yours, with a link to open each, and a form to start one.

``GET /sessions`` lists the signed-in person's sessions (live ones, or all with ``?all=true``)
with their state, GPUs, charge and an *Open* link once ready; ``POST /sessions`` starts one
(``action=start``: project, kind, GPUs, time, idle time) or stops one (``action=stop``, ``id``).
Both are on ``/sessions`` itself: everything under ``/sessions/<id>/`` is the session's own
server, behind the proxy (docs/sessions.md). The page refreshes itself while a session starts,
so it needs no JavaScript.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, site_capacity
from aifactory.errors import NotFound
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.serving import member_projects
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import interactive
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
NOTICES = {
    "started": "Session started: it opens once JupyterLab answers (this page refreshes).",
    "stopped": "Session stopped: its job is cancelled and charged for the time it ran.",
}
KINDS = [("jupyter", "JupyterLab"), ("shell", "A terminal (in JupyterLab)")]
#: The start form's fields, in order, with their labels (for the error summary).
FIELDS = {
    "project": "Project",
    "kind": "Kind",
    "gpus": "GPUs",
    "time": "Longest time",
    "idle_timeout": "Stop when unused for",
}
Text = Annotated[str, Form(max_length=64)]


def _page(
    request: Request,
    session: Session,
    user: SignedIn,
    everything: bool = False,
    form: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    mine = interactive.list_sessions(session, user.principal, everything=everything)
    projects = member_projects(session, user)
    values = form or {"project": projects[0] if projects else "", "kind": "jupyter",
                      "gpus": "1", "time": "2h", "idle_timeout": "1h"}  # fmt: skip
    context = {
        "title": "Sessions",
        "sessions": mine,
        "everything": everything,
        "projects": projects,
        "kinds": KINDS,
        "values": values,
        **(errors or FormErrors(set())).context(),
        "starting": any(s.state == "starting" for s in mine),
        "notice": NOTICES.get(request.query_params.get("notice", "")),
    }
    return render(request, "sessions.html", context, status)


@router.get("/sessions")
def session_list(
    request: Request, session: SessionDep, user: CurrentUser, all: bool = False
) -> Response:
    """Signed in: your sessions (``all``: ended ones too) and the form to start one."""
    return _page(request, session, user, everything=all)


@router.post("/sessions")
def session_action(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    action: Text = "start",
    id: Text = "",
    project: Text = "",
    kind: Text = "jupyter",
    gpus: Text = "0",
    time: Text = "2h",
    idle_timeout: Text = "1h",
) -> Response:
    """Start a session from the form, or stop one of yours."""
    if action == "stop":
        if not id.isdigit():
            raise NotFound("no such session of yours")
        interactive.stop(session, user.principal, int(id), now)
        return redirect("/sessions?notice=stopped")
    form = {"project": project, "kind": kind, "gpus": gpus, "time": time,
            "idle_timeout": idle_timeout}  # fmt: skip

    errors = FormErrors(set(FIELDS), FIELDS)
    count = errors.parse("gpus", gpus, int)
    errors.require("gpus", count)

    def start() -> interactive.SessionView:
        # with a bad GPU count the other fields are still checked, and nothing is kept
        data = {**form, "gpus": count if count is not None else 0}
        made = interactive.start(
            session, user.principal, data, site_capacity(request, session), now
        )
        errors.raise_if_any()
        return made

    if attempt(session, errors, start) is None:
        return _page(request, session, user, False, form, errors, 422)
    return redirect("/sessions?notice=started")
