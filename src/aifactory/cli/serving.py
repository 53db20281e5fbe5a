"""`aif endpoints`: serve a model as an OpenAI-compatible endpoint of a project."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, err_console, plural, print_json
from aifactory.errors import Invalid

if TYPE_CHECKING:
    from aifactory.services.endpoints import EndpointView

endpoints_app = typer.Typer(
    help="Inference endpoints: models served through the OpenAI-compatible gateway.",
    no_args_is_help=True,
)
keys_app = typer.Typer(help="API keys of an endpoint's gateway.", no_args_is_help=True)
endpoints_app.add_typer(keys_app, name="keys")


def install(app: typer.Typer) -> None:
    app.add_typer(endpoints_app, name="endpoints")


def _read(file: Path, project: str | None) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read {file} as YAML or JSON: {exc}"
        raise Invalid.field("file", "readable", msg) from None
    if not isinstance(data, dict):
        raise Invalid.field("file", "mapping", f"{file} must hold a mapping (name, project, …)")
    if project:
        data["project"] = project
    return data


@endpoints_app.command("create")
@friendly
def create(
    file: Annotated[Path, typer.Argument(help="endpoint.yaml (see docs/serving.md)")],
    project: Annotated[str | None, typer.Option(help="project ID (overrides the file)")] = None,
    from_job: Annotated[
        int | None, typer.Option(help="serve the checkpoint this training job wrote")
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait until a replica answers")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start serving a model; its replicas run as jobs of the project."""
    spec = _read(file, project)
    if from_job is not None:
        spec["checkpoint"] = {**(spec.get("checkpoint") or {}), "job": from_job}
    with client() as api:
        view = api.create_endpoint(spec, str(Path.cwd()))
        if wait:
            view = _wait_ready(api, view.name, as_json)
        _show(view, as_json, api.gateway_url)


@endpoints_app.command("update")
@friendly
def update(
    name: str,
    file: Annotated[Path, typer.Argument(help="the new endpoint.yaml")],
    as_json: JsonOpt = False,
) -> None:
    """Roll the endpoint to a new spec (a new model version): no downtime."""
    with client() as api:
        view = api.update_endpoint(name, _read(file, None), str(Path.cwd()))
        _show(view, as_json, api.gateway_url)


@endpoints_app.command("list")
@friendly
def list_(
    all_: Annotated[bool, typer.Option("--all", help="stopped ones too")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Your projects' endpoints."""
    from rich.table import Table

    from aifactory.cli.render import console

    with client() as api:
        views = api.list_endpoints(all_)
    if as_json:
        print_json(views)
        return
    table = Table("name", "project", "state", "replicas", "requests", "tokens in/out")
    for v in views:
        ready = sum(r.state == "ready" for r in v.replicas)
        tokens = f"{v.usage.tokens_in:,}/{v.usage.tokens_out:,}"
        table.add_row(
            v.name, v.project, v.state, f"{ready}/{v.desired}", f"{v.usage.requests:,}", tokens
        )
    console.print(table if views else "no endpoints")


@endpoints_app.command("show")
@friendly
def show(name: str, as_json: JsonOpt = False) -> None:
    """State, replicas (jobs) and usage of an endpoint."""
    with client() as api:
        _show(api.get_endpoint(name), as_json, api.gateway_url)


@endpoints_app.command("delete")
@friendly
def delete(name: str, as_json: JsonOpt = False) -> None:
    """Stop serving: no new requests; replicas finish what they answer, then stop."""
    with client() as api:
        _show(api.stop_endpoint(name), as_json, api.gateway_url)


@keys_app.command("create")
@friendly
def key_create(
    name: str,
    label: Annotated[str, typer.Option("--name", help="what the key is for")] = "",
    as_json: JsonOpt = False,
) -> None:
    """A new key for the endpoint (shown once): give it to an OpenAI client."""
    from aifactory.cli.render import console

    with client() as api:
        new = api.create_endpoint_key(name, label)
        if as_json:
            print_json(new)
            return
        console.print(f"key {new.view.id} for endpoint [bold]{name}[/bold] (shown once):")
        print(new.key)
        console.print(
            f"use it with any OpenAI client: OPENAI_BASE_URL={api.gateway_url} "
            f"OPENAI_API_KEY=<the key>, model {name!r}"
        )


@keys_app.command("list")
@friendly
def key_list(name: str, as_json: JsonOpt = False) -> None:
    """The endpoint's keys (their first characters only)."""
    from rich.table import Table

    from aifactory.cli.render import console

    with client() as api:
        keys = api.list_endpoint_keys(name)
    if as_json:
        print_json(keys)
        return
    table = Table("id", "starts with", "name", "created", "revoked")
    for k in keys:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
        table.add_row(str(k.id), k.prefix + "…", k.name, f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    console.print(table)


@keys_app.command("revoke")
@friendly
def key_revoke(name: str, key_id: int) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from aifactory.cli.render import console

    with client() as api:
        api.revoke_endpoint_key(name, key_id)
    console.print(f"key {key_id} of {name} revoked")


def _wait_ready(api: Any, name: str, quiet: bool = False) -> EndpointView:
    """Follow the endpoint until a replica is ready (or it fails), printing each change (on
    stderr when ``quiet``: stdout is for --json)."""
    from aifactory.cli.render import console

    if quiet:
        console = err_console
    seen = ""
    while True:
        view: EndpointView = api.get_endpoint(name)
        line = f"{view.state}: " + (view.reason or plural(len(view.replicas), "replica"))
        if line != seen:
            console.print(line)
            seen = line
        if view.state in ("ready", "failing", "stopped"):
            return view
        time.sleep(1.0)


def _show(view: EndpointView, as_json: bool, gateway: str) -> None:
    from rich.table import Table

    from aifactory.cli.render import console

    if as_json:
        print_json(view)
        return
    console.print(
        f"endpoint [bold]{view.name}[/bold] ({view.project}), version {view.spec_version}: "
        f"{view.state}" + (f" ({view.reason})" if view.reason else "")
    )
    console.print(f"gateway: {gateway}  model: {view.name}")
    if view.checkpoint_path:
        console.print(f"checkpoint: {view.checkpoint_path}")
    u = view.usage
    console.print(
        f"served {plural(u.requests, 'request')}, {plural(u.tokens_in, 'token')} in, "
        f"{u.tokens_out:,} out, "
        f"{u.gpu_seconds:,.1f} GPU-seconds"
    )
    if view.replicas:
        table = Table("replica", "job", "version", "state", "address", "reason")
        for r in view.replicas:
            table.add_row(
                str(r.id), str(r.job_id), str(r.spec_version), r.state, r.address or "", r.reason
            )
        console.print(table)
