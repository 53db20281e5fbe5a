"""A small client for slurmrestd's REST API v0.0.38 with JWT authentication.

Only the handful of calls the executor needs: ping, submit, jobs, job, cancel, nodes, and the
accounting record of a job. Answers are translated to the same models the CLI parsers return.

A person's job is submitted with that person's own JWT (``X-SLURM-USER-NAME`` is the person's
login), so slurmctld runs it as that user and checks that user's associations.
:class:`UserTokens` mints those tokens with ``scontrol token username=LOGIN`` through the
site's administrative transport (only root and SlurmUser may) and keeps each until shortly
before it expires. Everything else (polling, cancelling) uses the service's own token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from aifactory.errors import AIFactoryError, BackendUnavailable, Invalid, NotFound
from aifactory.executors.slurm.failures import Submission, command_error, submit_error
from aifactory.executors.slurm.from_json import job_from_json, node_from_json
from aifactory.executors.slurm.models import SlurmJob, SlurmNode, base_state
from aifactory.executors.slurm.script import RenderedScript
from aifactory.executors.slurm.transport import PERSON_UMASK, Transport, check_login

__all__ = ["API", "DB_API", "RestClient", "ScontrolToken", "UserTokens", "job_properties"]

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
    spec = rendered.spec
    optional = {
        "partition": rendered.partition,
        "account": rendered.account,
        "gpus_per_node": rendered.gpu_spec,
        "time_limit": rendered.time_limit_min,
        "time_minimum": rendered.time_min_min,
        "tasks_per_node": spec.tasks_per_node,
        "cpus_per_task": spec.cpus_per_task,
        "memory_per_node": spec.memory_mb,
        "memory_per_cpu": spec.memory_per_cpu_mb,
        "memory_per_gpu": spec.memory_per_gpu_mb,
        "constraints": spec.constraint,
        "array": None if spec.array_task is None else str(spec.array_task),
        "exclusive": "true" if spec.exclusive else None,
    }
    job.update({k: v for k, v in optional.items() if v is not None})
    return job


def posixpath_dir(path: str) -> str:
    """Directory part of an absolute POSIX path."""
    return path.rsplit("/", 1)[0] or "/"


@dataclass(frozen=True)
class ScontrolToken:
    """``scontrol token username=LOGIN lifespan=SECONDS`` (root or SlurmUser only)."""

    user: str
    lifespan_s: int

    def build(self) -> list[str]:
        """Argv (the login is checked, so it cannot add another ``key=value``)."""
        user = check_login(self.user)
        return ["scontrol", "token", f"username={user}", f"lifespan={int(self.lifespan_s)}"]

    def parse(self, stdout: str, stderr: str, returncode: int) -> str:
        """The JWT from the ``SLURM_JWT=...`` line."""
        if returncode != 0:
            raise command_error("scontrol token", returncode, stdout, stderr)
        for line in stdout.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "SLURM_JWT" and value:
                return value
        raise BackendUnavailable("scontrol token printed no SLURM_JWT line")


class UserTokens:
    """Per-person JWTs for slurmrestd, minted on demand and cached until near expiry.

    Args:
        transport: Where ``scontrol token`` runs (as root or SlurmUser on the cluster).
        lifespan_s: Lifetime of each minted token.
        clock: Monotonic seconds (tests).
    """

    def __init__(
        self,
        transport: Transport,
        lifespan_s: int = 3600,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport, self.lifespan_s, self.clock = transport, lifespan_s, clock
        # Renewed with a quarter of its life left: a cached token never expires mid-request.
        self.margin_s = max(30.0, lifespan_s / 4)
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()  # hand-overs run in several threads

    def token(self, login: str) -> str:
        """A valid JWT for ``login``."""
        with self._lock:
            cached = self._tokens.get(login)
            if cached is not None and cached[1] - self.clock() > self.margin_s:
                return cached[0]
            command = ScontrolToken(login, self.lifespan_s)
            minted_at = self.clock()
            result = self.transport.run(command.build())
            token = command.parse(result.stdout, result.stderr, result.returncode)
            self._tokens[login] = (token, minted_at + self.lifespan_s)
            return token

    def forget(self, login: str) -> None:
        """Drop ``login``'s cached token (slurmrestd refused it)."""
        with self._lock:
            self._tokens.pop(login, None)


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

    def _call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            # Only a connection never made proves a submission did not reach slurmrestd.
            unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            extra = {"submission": Submission.UNREACHABLE.value} if unsent else {}
            raise BackendUnavailable(f"slurmrestd unreachable: {exc}", extra=extra) from exc
        if response.status_code == 401:
            raise BackendUnavailable(
                "slurmrestd refused the token (HTTP 401)", extra={"http_status": 401}
            )
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

    def submit(
        self,
        rendered: RenderedScript,
        env: Mapping[str, str] | None = None,
        *,
        as_user: tuple[str, str] | None = None,
    ) -> str:
        """Submit a rendered script; Slurm's job id.

        Args:
            rendered: The script and its properties.
            env: The job's environment (``None``: a minimal ``PATH``).
            as_user: ``(login, jwt)`` of the person the job runs as; its output files are
                then created owner-only (``SLURM_UMASK``). ``None``: the client's own user.
        """
        job = job_properties(rendered, env)
        headers = None
        if as_user is not None:
            login, token = as_user
            headers = {"X-SLURM-USER-NAME": login, "X-SLURM-USER-TOKEN": token}
            job["environment"] = {**job["environment"], "SLURM_UMASK": f"{PERSON_UMASK:04o}"}
        body = {"script": rendered.text, "job": job}
        return str(self._call("POST", f"{API}/job/submit", body, headers)["job_id"])

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
        # Same words as sbatch's, so the same classification (refused, temporary, ...).
        error = submit_error("slurmrestd submit", 1, "", f"Batch job submission failed: {text}")
        error.extra["http_status"] = status
        return error
    error = command_error("slurmrestd", 1, "", text)
    # A read that fails for any reason but an unknown id means slurmrestd could not ask
    # slurmctld; retrying later is the only sensible reaction.
    if isinstance(error, Invalid):
        return BackendUnavailable(f"slurmrestd could not answer {path}: {text}")
    return error
