"""Serving: a project member's inference endpoints in the portal (see docs/serving.md).

``/endpoints`` lists the endpoints of the user's projects (state, replicas, usage) and takes a
new one as YAML; ``/endpoints/{project}/{name}`` shows one: its state, the gateway's address
with examples, its replicas and usage, its keys, a rolling update and stop. A new key is shown
once, in the answer to the POST that made it: only its hash is stored, and no page shows it
again. The services decide who may see and change what (an endpoint outside the user's projects
is a 404). Every form works without JavaScript and posts with the session's CSRF token (checked
by ``PortalRoute``); a refused spec is shown again as typed, with each problem by the field it
names.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import SessionDep, site_capacity
from aifactory.domain.jobspec import MAX_SPEC_BYTES
from aifactory.errors import Invalid
from aifactory.portal.forms import FORM_ERRORS, Messages
from aifactory.portal.web import NOTICES, CurrentUser, PortalRoute, redirect, render
from aifactory.services import endpoints, projects
from aifactory.services.endpoints import EndpointView, NewEndpointKey
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
T = TypeVar("T")
SpecText = Annotated[str, Form(max_length=MAX_SPEC_BYTES)]
#: (field, message) for each problem with a form; field "" for the form as a whole.
Problems = Sequence[tuple[str, str]]
NO_PROBLEMS: Problems = ()
#: Fixed notices after a redirect (only the key travels in the URL).
SERVING_NOTICES = {
    "created": "Endpoint created: its replicas start shortly.",
    "updated": "Update accepted: new replicas start, and old ones go as new ones get ready.",
    "stopped": "Endpoint stopped: it takes no more requests, and its replicas are drained.",
    "revoked": "Key revoked: it stops working at once.",
}
#: The new-endpoint form's starting point (as examples/train_gpt/endpoint.yaml).
TEMPLATE = """\
# An inference endpoint (docs/serving.md). The name is the model name clients ask for.
name: my-model
project: {project}
# checkpoint:            # a checkpoint one of the project's jobs wrote (its checkpoint_dir)
#   job: 17              #   that job's id
#   file: ckpt.pt        #   optional: one file in that directory
replicas:
  min: 1
  max: 2
  target_inflight: 8     # one more replica per this many requests in flight
scale_to_zero_after: 30m
startup_timeout: 5m
replica:                 # a job spec without name and project: what one replica runs
  resources:
    nodes: 1
    gpus_per_node: 1
    cpus: 2
    memory_gb: 4
    time_limit: "04:00:00"
  script: |
    #!/bin/bash
    # Listen on $AIF_SERVICE_HOST:$AIF_SERVICE_PORT, require the bearer token
    # $AIF_SERVICE_TOKEN, answer GET /health, and print AIF_SERVICE_URL=http://HOST:PORT
    # once listening: examples/train_gpt/serve.py does all of this (here, a copy of it in
    # your home directory at the factory).
    exec python "$HOME/train_gpt/serve.py" \\
      --checkpoint "$AIF_MODEL_CHECKPOINT" --served-model-name "$AIF_ENDPOINT_NAME"
  environment:
    PYTHONUNBUFFERED: "1"
"""


# --- helpers ---------------------------------------------------------------------------------


def _load(text: str) -> dict[str, Any]:
    """The YAML of a spec form as a mapping; a broken one is a problem of the field ``spec``."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise Invalid.field("spec", "max_size", f"the spec is over {MAX_SPEC_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Invalid.field("spec", "yaml", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        msg = "the spec is a YAML mapping (name:, project:, replicas:, replica:, ...)"
        raise Invalid.field("spec", "mapping", msg)
    return data


def try_form(session: Session, action: Callable[[], T]) -> tuple[T | None, Problems]:
    """Run a service call in a savepoint; on bad input, undo it and list the problems by the
    field each names (a conflict, such as no factory for a replica, is one general problem)."""
    try:
        with session.begin_nested():
            return action(), NO_PROBLEMS
    except FORM_ERRORS as exc:
        if isinstance(exc, Invalid) and exc.details:
            return None, [(d.field, d.message) for d in exc.details]
        return None, [("", exc.message)]


def _form_context(problems: Problems, own: Collection[str]) -> dict[str, Any]:
    """Problems of the form's own fields go beside them; the rest are about the spec (listed
    under its textarea, each with the field of the spec it names)."""
    problems = [(f, m.removeprefix("Value error, ")) for f, m in problems]
    errors: dict[str, Any] = {}
    for field, message in problems:  # every message on a field, not only the first
        if field in own:
            errors.setdefault(field, Messages()).append(message)
    listed = [("" if f == "spec" else f, m) for f, m in problems if f not in own]
    if listed:
        errors["spec"] = "the spec has problems"  # marks the textarea invalid for assistive tech
    summary = [(f"#f-{f}", f, m) for f, m in problems if f in own] + [
        ("#f-spec", "Spec", f"{f}: {m}" if f else m) for f, m in listed
    ]  # the summary at the top of the page, each linking to its field
    return {"errors": errors, "spec_problems": listed, "error_list": summary}


def _notice(request: Request) -> str | None:
    key = request.query_params.get("notice", "")
    return SERVING_NOTICES.get(key) or NOTICES.get(key)


def _href(project: str, name: str) -> str:
    return f"/endpoints/{quote(project, safe='')}/{quote(name, safe='')}"


def _gateway(request: Request) -> str:
    """The OpenAI-compatible gateway: ``/v1`` on this server's own address."""
    return str(request.base_url).rstrip("/") + "/v1"


def _dumped(spec: dict[str, Any]) -> str:
    """The stored spec as YAML to edit, without the optional fields it leaves unset."""
    kept = {key: value for key, value in spec.items() if value is not None}
    return yaml.safe_dump(kept, sort_keys=False, allow_unicode=True)


def member_projects(session: Session, user: SignedIn) -> list[str]:
    """Projects the user may create endpoints in: theirs (every project, for an admin)."""
    who = user.principal
    return [
        p.code
        for p in projects.list_projects(session, who)
        if who.is_admin or any(m.username == who.username for m in p.members)
    ]


# --- the list and the new-endpoint form -----------------------------------------------------


def _list_page(
    request: Request,
    session: Session,
    user: SignedIn,
    everything: bool = False,
    project: str = "",
    spec_text: str | None = None,
    problems: Problems = NO_PROBLEMS,
    status: int = 200,
) -> Response:
    mine = member_projects(session, user)
    chosen = project or (mine[0] if mine else "")
    context = {
        "title": "Serving",
        "endpoints": endpoints.list_endpoints(session, user.principal, everything=everything),
        "everything": everything,
        "projects": mine,
        "project": chosen,
        "gateway": _gateway(request),
        "spec_text": TEMPLATE.format(project=chosen or "YOUR-PROJECT")
        if spec_text is None
        else spec_text,
        "notice": _notice(request),
        **_form_context(problems, {"project"}),
    }
    return render(request, "endpoints.html", context, status)


@router.get("/endpoints")
def endpoint_list(
    request: Request, session: SessionDep, user: CurrentUser, all: bool = False
) -> Response:
    """Signed in: the endpoints of the user's projects (``all``: stopped ones too)."""
    return _list_page(request, session, user, everything=all)


@router.post("/endpoints")
def create_endpoint(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    project: Annotated[str, Form(max_length=32)] = "",
    spec: SpecText = "",
) -> Response:
    """Members create an endpoint from YAML; the project chosen fills in a spec without one."""

    def create() -> EndpointView:
        data = _load(spec)
        data.setdefault("project", project)
        if project and str(data["project"]) != project:
            msg = f"the spec says project {data['project']!r}: choose it here, or change the spec"
            raise Invalid.field("project", "matches_spec", msg)
        return endpoints.create(session, user.principal, data, site_capacity(request, session))

    made, problems = try_form(session, create)
    if made is None:
        return _list_page(request, session, user, False, project, spec, problems, 422)
    return redirect(_href(made.project, made.name) + "?notice=created")


# --- one endpoint ----------------------------------------------------------------------------


def _detail(
    request: Request,
    session: Session,
    user: SignedIn,
    project: str,
    name: str,
    new_key: NewEndpointKey | None = None,
    spec_text: str | None = None,
    problems: Problems = NO_PROBLEMS,
    status: int = 200,
) -> Response:
    """The endpoint page; ``new_key`` only in the answer to the POST that created it."""
    view = endpoints.get(session, user.principal, name, project)
    context = {
        "title": f"Endpoint {view.name}",
        "endpoint": view,
        "href": _href(view.project, view.name),
        "ready": sum(r.state == "ready" for r in view.replicas),
        "keys": endpoints.list_keys(session, user.principal, name, project),
        "gateway": _gateway(request),
        "new_key": new_key,
        "spec_text": _dumped(view.spec) if spec_text is None else spec_text,
        "notice": _notice(request),
        **_form_context(problems, {"confirm", "label"}),
    }
    return render(request, "endpoint.html", context, status)


@router.get("/endpoints/{project}/{name}")
def endpoint_page(
    project: str, name: str, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """Signed in: the service answers 404 for an endpoint outside the user's projects."""
    return _detail(request, session, user, project, name)


@router.post("/endpoints/{project}/{name}/keys")
def create_key(
    project: str,
    name: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    label: Annotated[str, Form(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")] = "",
) -> Response:
    """A new gateway key, shown in this answer only (never stored, never shown again)."""
    made = endpoints.create_key(session, user.principal, name, label.strip(), project)
    return _detail(request, session, user, project, name, new_key=made)


@router.post("/endpoints/{project}/{name}/keys/{key_id}/revoke")
def revoke_key(
    project: str, name: str, key_id: int, session: SessionDep, user: CurrentUser
) -> Response:
    endpoints.revoke_key(session, user.principal, name, key_id, project)
    return redirect(_href(project, name) + "?notice=revoked")


@router.post("/endpoints/{project}/{name}/update")
def update_endpoint(
    project: str,
    name: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    spec: SpecText = "",
) -> Response:
    """A rolling update to the spec as edited (its name and project stay)."""

    def roll() -> EndpointView:
        data = _load(spec)
        data.setdefault("name", name)
        data.setdefault("project", project)
        capacity = site_capacity(request, session)
        return endpoints.update(session, user.principal, name, data, capacity, project=project)

    done, problems = try_form(session, roll)
    if done is None:
        return _detail(request, session, user, project, name, None, spec, problems, 422)
    return redirect(_href(project, name) + "?notice=updated")


@router.post("/endpoints/{project}/{name}/stop")
def stop_endpoint(
    project: str,
    name: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    confirm: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Stop serving, once the endpoint's name is typed to confirm it."""
    if confirm.strip() != name:
        problems = [("confirm", f"type the endpoint's name, {name}, to stop it")]
        return _detail(request, session, user, project, name, problems=problems, status=422)
    endpoints.stop(session, user.principal, name, project)
    return redirect(_href(project, name) + "?notice=stopped")
