"""Typed HTTP client for the aifactory API, used by the CLI, the tests and users' scripts."""

from __future__ import annotations

import time
import uuid
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from aifactory import errors
from aifactory.services.access_views import (
    AllocationView,
    CallView,
    DecisionBatchView,
    EligibilityView,
    LedgerEntryView,
    ProjectView,
    ProposalView,
    Report,
)
from aifactory.services.audit import AuditPage
from aifactory.services.health import SystemHealth
from aifactory.services.job_views import JobPage, JobView, LogChunk, PlacementView
from aifactory.services.site_accounts import SiteAccountView
from aifactory.services.throttle import LockoutView
from aifactory.services.views import (
    CountryView,
    FactoryView,
    FederationSummary,
    NewToken,
    OrganisationView,
    TokenView,
    UserView,
)

T = TypeVar("T")
#: Tries of a create request (same Idempotency-Key) while its outcome is unknown.
CREATE_ATTEMPTS = 5
#: The longest wait between two tries, seconds (a longer Retry-After is cut to this).
MAX_BACKOFF_S = 4.0
_BY_CODE: dict[str, type[errors.AIFactoryError]] = {
    cls.code: cls
    for cls in (
        errors.NotFound,
        errors.Conflict,
        errors.Forbidden,
        errors.Unauthenticated,
        errors.Invalid,
        errors.QuotaExceeded,
        errors.BackendUnavailable,
        errors.TooManyAttempts,
    )
}


class Client:
    """Calls ``/api/v1`` with a bearer token; API errors come back as ``aifactory.errors``."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ---

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; transport failures and API errors become ``aifactory.errors``."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _unreachable(self, exc: Exception, tries: int = 1) -> errors.BackendUnavailable:
        times = f", {tries} tries" if tries > 1 else ""
        return errors.BackendUnavailable(
            f"cannot reach the aifactory API at {self.base_url} ({exc.__class__.__name__}"
            f"{times}); is `aif serve` running?"
        )

    def _call(self, method: str, path: str, model: Any, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return TypeAdapter(model).validate_python(response.json())

    def _create(self, path: str, model: Any, body: Any, key: str | None) -> Any:
        """POST a create request with an ``Idempotency-Key``, sent again with the same key
        while its outcome is unknown: a dropped connection, a timeout, or a 503."""
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                response = self._http.post(path, json=body, headers=headers)
            except httpx.TransportError as exc:
                if attempt == CREATE_ATTEMPTS:
                    raise self._unreachable(exc, attempt) from exc
                time.sleep(_backoff(attempt))
                continue
            if response.status_code != 503 or attempt == CREATE_ATTEMPTS:
                break
            time.sleep(_retry_after(response, attempt))
        if response.status_code >= 400:
            raise _error_from(response)
        return TypeAdapter(model).validate_python(response.json())

    # --- registry ---

    def status(self) -> SystemHealth:
        """Controllers, site leases and contact, hand-over backlog (staff only)."""
        result: SystemHealth = self._call("GET", "/status", SystemHealth)
        return result

    def health(self) -> dict[str, str]:
        result: dict[str, str] = self._call("GET", "/health", dict[str, str])
        return result

    def federation_summary(self) -> FederationSummary:
        result: FederationSummary = self._call("GET", "/federation/summary", FederationSummary)
        return result

    def list_countries(self) -> list[CountryView]:
        result: list[CountryView] = self._call("GET", "/countries", list[CountryView])
        return result

    def list_factories(self) -> list[FactoryView]:
        result: list[FactoryView] = self._call("GET", "/factories", list[FactoryView])
        return result

    def get_factory(self, name: str) -> FactoryView:
        result: FactoryView = self._call("GET", f"/factories/{_q(name)}", FactoryView)
        return result

    def create_factory(self, spec: dict[str, Any] | BaseModel) -> FactoryView:
        result: FactoryView = self._call("POST", "/factories", FactoryView, json=_body(spec))
        return result

    def update_factory(self, name: str, changes: dict[str, Any]) -> FactoryView:
        path = f"/factories/{_q(name)}"
        result: FactoryView = self._call("PATCH", path, FactoryView, json=changes)
        return result

    # --- identity ---

    def me(self) -> UserView:
        result: UserView = self._call("GET", "/me", UserView)
        return result

    def create_user(self, **fields: Any) -> UserView:
        result: UserView = self._call("POST", "/users", UserView, json=fields)
        return result

    def grant_role(self, username: str, role: str, factory: str | None = None) -> UserView:
        body = {"role": role, "factory": factory}
        path = f"/users/{_q(username)}/roles"
        result: UserView = self._call("POST", path, UserView, json=body)
        return result

    def create_organisation(self, **fields: Any) -> OrganisationView:
        result: OrganisationView = self._call(
            "POST", "/organisations", OrganisationView, json=fields
        )
        return result

    def create_token(
        self, name: str = "cli", username: str | None = None, ttl_days: int | None = None
    ) -> NewToken:
        body = {"name": name, "username": username, "ttl_days": ttl_days}
        result: NewToken = self._call("POST", "/tokens", NewToken, json=body)
        return result

    def set_password(self, username: str, password: str, current: str | None = None) -> None:
        body = {"password": password, "current_password": current}
        self._send("PUT", f"/users/{_q(username)}/password", json=body)

    def list_tokens(self) -> list[TokenView]:
        result: list[TokenView] = self._call("GET", "/tokens", list[TokenView])
        return result

    def revoke_token(self, token_id: int) -> TokenView:
        result: TokenView = self._call("DELETE", f"/tokens/{token_id}", TokenView)
        return result

    def list_site_accounts(self, username: str) -> list[SiteAccountView]:
        path = f"/users/{_q(username)}/site-accounts"
        result: list[SiteAccountView] = self._call("GET", path, list[SiteAccountView])
        return result

    def set_site_account(self, username: str, factory: str, login: str) -> SiteAccountView:
        path = f"/users/{_q(username)}/site-accounts/{_q(factory)}"
        result: SiteAccountView = self._call("PUT", path, SiteAccountView, json={"login": login})
        return result

    def remove_site_account(self, username: str, factory: str) -> None:
        self._send("DELETE", f"/users/{_q(username)}/site-accounts/{_q(factory)}")

    def audit_log(self, **filters: Any) -> AuditPage:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        result: AuditPage = self._call("GET", "/audit", AuditPage, params=params)
        return result

    def lockouts(self) -> list[LockoutView]:
        result: list[LockoutView] = self._call("GET", "/lockouts", list[LockoutView])
        return result

    def unlock(self, key: str) -> LockoutView:
        result: LockoutView = self._call("DELETE", f"/lockouts/{_q(key)}", LockoutView)
        return result

    # --- access ---

    def list_calls(
        self, mode: str | None = None, factory: str | None = None, open_only: bool = False
    ) -> list[CallView]:
        params = {k: v for k, v in {"mode": mode, "factory": factory}.items() if v}
        params["open_only"] = str(open_only).lower()
        result: list[CallView] = self._call("GET", "/calls", list[CallView], params=params)
        return result

    def get_call(self, call_id: str) -> CallView:
        result: CallView = self._call("GET", f"/calls/{_q(call_id)}", CallView)
        return result

    def check_eligibility(self, **fields: Any) -> EligibilityView:
        result: EligibilityView = self._call(
            "POST", "/eligibility/check", EligibilityView, json=_jsonable(fields)
        )
        return result

    def create_proposal(self, idempotency_key: str | None = None, **fields: Any) -> ProposalView:
        """A draft proposal; a dropped connection is retried without creating a second one."""
        result: ProposalView = self._create(
            "/proposals", ProposalView, _jsonable(fields), idempotency_key
        )
        return result

    def proposal_action(
        self, proposal_id: int, action: str, body: dict[str, Any] | None = None
    ) -> ProposalView:
        """``submit``, ``withdraw``, ``assessment``, ``reviewers``, ``reviews`` or ``decision``."""
        path = f"/proposals/{proposal_id}/{action}"
        result: ProposalView = self._call(
            "POST", path, ProposalView, json=_jsonable(body) if body is not None else None
        )
        return result

    def get_proposal(self, proposal_id: int) -> ProposalView:
        result: ProposalView = self._call("GET", f"/proposals/{proposal_id}", ProposalView)
        return result

    def list_proposals(self, status: str | None = None) -> list[ProposalView]:
        params = {"status": status} if status else {}
        result: list[ProposalView] = self._call(
            "GET", "/proposals", list[ProposalView], params=params
        )
        return result

    def decide_cutoff(self, call_id: str, cutoff: str) -> DecisionBatchView:
        path = f"/calls/{_q(call_id)}/decisions"
        result: DecisionBatchView = self._call(
            "POST", path, DecisionBatchView, json={"cutoff": cutoff}
        )
        return result

    def get_project(self, code: str) -> ProjectView:
        result: ProjectView = self._call("GET", f"/projects/{_q(code)}", ProjectView)
        return result

    def list_projects(self) -> list[ProjectView]:
        result: list[ProjectView] = self._call("GET", "/projects", list[ProjectView])
        return result

    def get_allocation(self, allocation_id: int) -> AllocationView:
        result: AllocationView = self._call("GET", f"/allocations/{allocation_id}", AllocationView)
        return result

    def get_ledger(self, allocation_id: int) -> list[LedgerEntryView]:
        path = f"/allocations/{allocation_id}/ledger"
        result: list[LedgerEntryView] = self._call("GET", path, list[LedgerEntryView])
        return result

    def usage_report(
        self, group_by: str, start: str | None = None, end: str | None = None
    ) -> Report:
        params = _report_params(group_by, start, end)
        result: Report = self._call("GET", "/reports/usage", Report, params=params)
        return result

    def usage_report_csv(
        self, group_by: str, start: str | None = None, end: str | None = None
    ) -> str:
        params = _report_params(group_by, start, end)
        return self._send("GET", "/reports/usage.csv", params=params).text

    # --- jobs ---

    def submit_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> JobView:
        """Submit once: a dropped connection is retried with the same ``Idempotency-Key``
        (a new UUID unless given), so the server creates one job at most."""
        result: JobView = self._create("/jobs", JobView, spec, idempotency_key)
        return result

    def list_jobs(
        self,
        project: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: int | None = None,
        array: int | None = None,
    ) -> JobPage:
        params: dict[str, Any] = {"limit": limit}
        wanted = {"project": project, "state": state, "before": before, "array": array}
        params.update({k: v for k, v in wanted.items() if v is not None})
        result: JobPage = self._call("GET", "/jobs", JobPage, params=params)
        return result

    def get_job(self, job_id: int) -> JobView:
        result: JobView = self._call("GET", f"/jobs/{job_id}", JobView)
        return result

    def cancel_job(self, job_id: int, whole_array: bool = False) -> JobView:
        params = {"array": "true"} if whole_array else None
        result: JobView = self._call("POST", f"/jobs/{job_id}/cancel", JobView, params=params)
        return result

    def why_job(self, job_id: int) -> PlacementView:
        result: PlacementView = self._call("GET", f"/jobs/{job_id}/why", PlacementView)
        return result

    def job_logs(
        self, job_id: int, offset: int = 0, stream: str = "stdout", attempt: int | None = None
    ) -> LogChunk:
        """A chunk of the log of ``attempt`` (default: the job's current attempt)."""
        params: dict[str, str | int] = {"offset": offset, "stream": stream}
        if attempt is not None:
            params["attempt"] = attempt
        result: LogChunk = self._call("GET", f"/jobs/{job_id}/logs", LogChunk, params=params)
        return result


def _backoff(attempt: int) -> float:
    """0.25 s after the first try, doubling, at most ``MAX_BACKOFF_S``."""
    return float(min(MAX_BACKOFF_S, 0.25 * 2 ** (attempt - 1)))


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """The server's ``Retry-After`` in seconds (capped), else the backoff."""
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return _backoff(attempt)
    return min(MAX_BACKOFF_S, max(0.0, wait))


def _report_params(group_by: str, start: str | None, end: str | None) -> dict[str, str]:
    return {k: v for k, v in {"group_by": group_by, "start": start, "end": end}.items() if v}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Dates and decimals as JSON; None values dropped so server defaults apply."""
    out = TypeAdapter(dict[str, Any]).dump_python(
        {k: v for k, v in data.items() if v is not None}, mode="json"
    )
    return dict(out)


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _body(spec: dict[str, Any] | BaseModel) -> Any:
    return spec.model_dump(mode="json") if isinstance(spec, BaseModel) else spec


def _error_from(response: httpx.Response) -> errors.AIFactoryError:
    try:
        body = response.json()["error"]
        details = [errors.FieldError(**d) for d in body.get("details", [])]
        cls = _BY_CODE.get(body["code"], errors.AIFactoryError)
        return cls(body["message"], details, {"status": response.status_code})
    except (ValueError, KeyError, TypeError):
        return errors.AIFactoryError(f"HTTP {response.status_code}: {response.text[:200]}")
