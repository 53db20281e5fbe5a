"""A small client for slurmrestd's REST API v0.0.38 with JWT authentication.

Only the handful of calls the executor needs: ping, submit, jobs, job, cancel, nodes, and the
accounting record of a job. Answers are translated to the same models the CLI parsers return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from aifactory.errors import AIFactoryError, BackendUnavailable, Invalid, NotFound
from aifactory.executors.slurm.commands import job_from_json, node_from_json
from aifactory.executors.slurm.failures import command_error
from aifactory.executors.slurm.models import SlurmJob, SlurmNode, base_state
from aifactory.executors.slurm.script import RenderedScript

__all__ = ["API", "DB_API", "RestClient", "job_properties"]

API = "/slurm/v0.0.38"
DB_API = "/slurmdb/v0.0.38"
# slurmrestd needs some environment for the batch step; PATH is the minimum jobs rely on.
_DB_NOTHING_FOUND = 9003  # slurmdbd: "Nothing found with query"
_DEFAULT_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def job_properties(
    rendered: RenderedScript, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The v0.0.38 ``job`` object for a rendered script.

    slurmrestd does not read ``#SBATCH`` lines, so every directive is repeated here.
    """
    job: dict[str, Any] = {
        "name": rendered.name,
        # A [min, max] list is accepted but ignored by 22.05 (one node); a string works.
        "nodes": str(rendered.nodes),
        "requeue": False,  # managed retry owns recovery (see script.py)
        "current_working_directory": posixpath_dir(rendered.stdout),
        "standard_output": rendered.stdout,
        "standard_error": rendered.stderr,
        "environment": dict(env or _DEFAULT_ENV),
    }
    optional = {
        "partition": rendered.partition,
        "account": rendered.account,
        "gpus_per_node": rendered.gpu_spec,
        "time_limit": rendered.time_limit_min,
        "time_minimum": rendered.time_min_min,
        "tasks_per_node": rendered.tasks_per_node,
        "cpus_per_task": rendered.cpus_per_task,
        "memory_per_node": rendered.memory_mb,
        "memory_per_cpu": rendered.memory_per_cpu_mb,
        "memory_per_gpu": rendered.memory_per_gpu_mb,
        "constraints": rendered.constraint,
        "array": None if rendered.array_task is None else str(rendered.array_task),
        "exclusive": "true" if rendered.exclusive else None,
    }
    job.update({k: v for k, v in optional.items() if v is not None})
    return job


def posixpath_dir(path: str) -> str:
    """Directory part of an absolute POSIX path."""
    return path.rsplit("/", 1)[0] or "/"


class RestClient:
    """slurmrestd v0.0.38 over HTTP with ``X-SLURM-USER-NAME``/``X-SLURM-USER-TOKEN``.

    Args:
        url: Base URL (``http://127.0.0.1:16902``).
        user: The Slurm user the token belongs to (jobs run as this user).
        token: JWT from ``scontrol token`` or the site's token service.
        timeout_s: Per-request timeout.
        transport: Optional httpx transport (tests).
    """

    def __init__(
        self,
        url: str,
        user: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"slurmrestd unreachable: {exc}") from exc
        if response.status_code == 401:
            raise BackendUnavailable("slurmrestd refused the token (HTTP 401)")
        try:
            data = response.json()
        except ValueError as exc:
            raise BackendUnavailable(f"slurmrestd answered HTTP {response.status_code}") from exc
        errors = data.get("errors") or []
        if errors:
            raise _rest_error(path, response.status_code, errors)
        if response.status_code >= 400:
            raise BackendUnavailable(f"slurmrestd answered HTTP {response.status_code}")
        return data if isinstance(data, dict) else {}

    def ping(self) -> None:
        """Raise :class:`BackendUnavailable` unless slurmctld answers through slurmrestd."""
        data = self._call("GET", f"{API}/ping")
        pings = data.get("pings") or []
        if not any(p.get("ping") == "UP" for p in pings):
            raise BackendUnavailable(f"slurmctld is not up: {pings}")

    def submit(self, rendered: RenderedScript, env: Mapping[str, str] | None = None) -> str:
        """Submit a rendered script; Slurm's job id."""
        body = {"script": rendered.text, "job": job_properties(rendered, env)}
        return str(self._call("POST", f"{API}/job/submit", body)["job_id"])

    def jobs(self) -> list[SlurmJob]:
        """Every job the controller knows (finished ones until ``MinJobAge``)."""
        return [job_from_json(j) for j in self._call("GET", f"{API}/jobs").get("jobs") or []]

    def job(self, job_id: str) -> SlurmJob:
        """One job from the controller."""
        jobs = self._call("GET", f"{API}/job/{job_id}").get("jobs") or []
        if not jobs:
            raise NotFound(f"unknown Slurm job {job_id}", extra={"job_id": job_id})
        return job_from_json(jobs[0])

    def cancel(self, job_id: str) -> None:
        """Cancel one job (a no-op for a finished one)."""
        self._call("DELETE", f"{API}/job/{job_id}")

    def nodes(self) -> list[SlurmNode]:
        """Every node."""
        return [node_from_json(n) for n in self._call("GET", f"{API}/nodes").get("nodes") or []]

    def accounting(self, job_id: str) -> SlurmJob | None:
        """The slurmdbd record of one job, ``None`` when accounting has none.

        Its ``exit_code`` is not used: v0.0.38 reports every job as ``SUCCESS``.
        """
        try:
            jobs = self._call("GET", f"{DB_API}/job/{job_id}").get("jobs") or []
        except (NotFound, Invalid):
            return None
        return _db_job(jobs[0]) if jobs else None


def _db_job(job: dict[str, Any]) -> SlurmJob:
    time = job.get("time") or {}
    state = base_state(str((job.get("state") or {}).get("current") or "PENDING"))
    start, end = time.get("start") or None, time.get("end") or None
    gpus = 0
    for tres in (job.get("tres") or {}).get("allocated") or []:
        if tres.get("type") == "gres" and str(tres.get("name", "")).startswith("gpu"):
            gpus = max(gpus, int(tres.get("count") or 0))
    return SlurmJob(
        job_id=str(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=state,
        exit_code=0 if state == "COMPLETED" else None,
        start=float(start) if start else None,
        end=float(end) if end else None,
        elapsed_s=float(time.get("elapsed") or 0),
        gpus=gpus,
        nodes=str(job.get("nodes") or ""),
    )


def _rest_error(path: str, status: int, errors: list[dict[str, Any]]) -> AIFactoryError:
    text = "; ".join(str(e.get("error") or e.get("description") or e) for e in errors)
    if any(e.get("error_number") == _DB_NOTHING_FOUND for e in errors):
        return NotFound(f"slurmdbd has no record for {path}")
    if "job/submit" in path:
        # Same words as sbatch's, so the same classification (unreachable vs rejected).
        error = command_error("slurmrestd submit", 1, "", f"Batch job submission failed: {text}")
        error.extra["http_status"] = status
        return error
    error = command_error("slurmrestd", 1, "", text)
    # A read that fails for any reason but an unknown id means slurmrestd could not ask
    # slurmctld; retrying later is the only sensible reaction.
    if isinstance(error, Invalid):
        return BackendUnavailable(f"slurmrestd could not answer {path}: {text}")
    return error
