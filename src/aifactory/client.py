"""Typed HTTP client for the aifactory API, used by the CLI, the tests and users' scripts.

Each method imports the response model it returns when it is called: some of those models sit
beside server-side code that loads SQLAlchemy, and a CLI command (`aif jobs list`) should load
only what it shows (see ``tests/unit/test_cli_imports.py``).
"""

from __future__ import annotations

import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from aifactory import errors
from aifactory.client_federated import FederatedCalls
from aifactory.client_metrics import MetricsCalls
from aifactory.client_planning import PlanningCalls
from aifactory.client_proposals import ProposalCalls
from aifactory.client_registry import RegistryCalls
from aifactory.client_self_service import SelfServiceCalls
from aifactory.client_serving import ServingCalls
from aifactory.client_sessions import SessionCalls

if TYPE_CHECKING:
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

M = TypeVar("M", bound=BaseModel)
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


class Client(
    ServingCalls,
    SessionCalls,
    ProposalCalls,
    MetricsCalls,
    SelfServiceCalls,
    FederatedCalls,
    PlanningCalls,
    RegistryCalls,
):
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
            verify=_tls_for(self.base_url),
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

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        return TypeAdapter(list[model]).validate_python(  # type: ignore[valid-type]
            self._send(method, path, **kwargs).json()
        )

    def _create(self, path: str, model: type[M], body: Any, key: str | None) -> M:
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
        return model.model_validate(response.json())

    # --- registry ---

    def status(self) -> SystemHealth:
        """Controllers, site leases and contact, hand-over backlog (staff only)."""
        from aifactory.services.health import SystemHealth

        return self._call("GET", "/status", SystemHealth)

    def health(self) -> dict[str, str]:
        health = self._send("GET", "/health").json()
        return TypeAdapter(dict[str, str]).validate_python(health)

    def federation_summary(self) -> FederationSummary:
        from aifactory.services.views import FederationSummary

        return self._call("GET", "/federation/summary", FederationSummary)

    def list_countries(self) -> list[CountryView]:
        from aifactory.services.views import CountryView

        return self._call_list("GET", "/countries", CountryView)

    def list_factories(self) -> list[FactoryView]:
        from aifactory.services.views import FactoryView

        return self._call_list("GET", "/factories", FactoryView)

    def get_factory(self, name: str) -> FactoryView:
        from aifactory.services.views import FactoryView

        return self._call("GET", f"/factories/{_q(name)}", FactoryView)

    def create_factory(self, spec: dict[str, Any] | BaseModel) -> FactoryView:
        from aifactory.services.views import FactoryView

        return self._call("POST", "/factories", FactoryView, json=_body(spec))

    def update_factory(self, name: str, changes: dict[str, Any]) -> FactoryView:
        from aifactory.services.views import FactoryView

        path = f"/factories/{_q(name)}"
        return self._call("PATCH", path, FactoryView, json=changes)

    # --- identity ---

    def me(self) -> UserView:
        from aifactory.services.views import UserView

        return self._call("GET", "/me", UserView)

    def create_user(self, **fields: Any) -> UserView:
        from aifactory.services.views import UserView

        return self._call("POST", "/users", UserView, json=fields)

    def grant_role(self, username: str, role: str, factory: str | None = None) -> UserView:
        from aifactory.services.views import UserView

        body = {"role": role, "factory": factory}
        path = f"/users/{_q(username)}/roles"
        return self._call("POST", path, UserView, json=body)

    def create_organisation(self, **fields: Any) -> OrganisationView:
        from aifactory.services.views import OrganisationView

        return self._call("POST", "/organisations", OrganisationView, json=fields)

    def create_token(
        self, name: str = "cli", username: str | None = None, ttl_days: int | None = None
    ) -> NewToken:
        from aifactory.services.views import NewToken

        body = {"name": name, "username": username, "ttl_days": ttl_days}
        return self._call("POST", "/tokens", NewToken, json=body)

    def set_password(self, username: str, password: str, current: str | None = None) -> None:
        body = {"password": password, "current_password": current}
        self._send("PUT", f"/users/{_q(username)}/password", json=body)

    def list_tokens(self) -> list[TokenView]:
        from aifactory.services.views import TokenView

        return self._call_list("GET", "/tokens", TokenView)

    def revoke_token(self, token_id: int) -> TokenView:
        from aifactory.services.views import TokenView

        return self._call("DELETE", f"/tokens/{token_id}", TokenView)

    def list_site_accounts(self, username: str) -> list[SiteAccountView]:
        from aifactory.services.site_accounts import SiteAccountView

        path = f"/users/{_q(username)}/site-accounts"
        return self._call_list("GET", path, SiteAccountView)

    def set_site_account(self, username: str, factory: str, login: str) -> SiteAccountView:
        from aifactory.services.site_accounts import SiteAccountView

        path = f"/users/{_q(username)}/site-accounts/{_q(factory)}"
        return self._call("PUT", path, SiteAccountView, json={"login": login})

    def remove_site_account(self, username: str, factory: str) -> None:
        self._send("DELETE", f"/users/{_q(username)}/site-accounts/{_q(factory)}")

    def audit_log(self, **filters: Any) -> AuditPage:
        from aifactory.services.audit import AuditPage

        params = {k: str(v) for k, v in filters.items() if v is not None}
        return self._call("GET", "/audit", AuditPage, params=params)

    def lockouts(self) -> list[LockoutView]:
        from aifactory.services.throttle import LockoutView

        return self._call_list("GET", "/lockouts", LockoutView)

    def unlock(self, key: str) -> LockoutView:
        from aifactory.services.throttle import LockoutView

        return self._call("DELETE", f"/lockouts/{_q(key)}", LockoutView)

    # --- access ---

    def list_calls(
        self, mode: str | None = None, factory: str | None = None, open_only: bool = False
    ) -> list[CallView]:
        from aifactory.services.access_views import CallView

        params = {k: v for k, v in {"mode": mode, "factory": factory}.items() if v}
        params["open_only"] = str(open_only).lower()
        return self._call_list("GET", "/calls", CallView, params=params)

    def get_call(self, call_id: str) -> CallView:
        from aifactory.services.access_views import CallView

        return self._call("GET", f"/calls/{_q(call_id)}", CallView)

    def check_eligibility(self, **fields: Any) -> EligibilityView:
        from aifactory.services.access_views import EligibilityView

        return self._call("POST", "/eligibility/check", EligibilityView, json=_jsonable(fields))

    def create_proposal(self, idempotency_key: str | None = None, **fields: Any) -> ProposalView:
        """A draft proposal; a dropped connection is retried without creating a second one."""
        from aifactory.services.access_views import ProposalView

        return self._create("/proposals", ProposalView, _jsonable(fields), idempotency_key)

    def proposal_action(
        self, proposal_id: int, action: str, body: dict[str, Any] | None = None
    ) -> ProposalView:
        """``submit``, ``withdraw``, ``assessment``, ``reviewers``, ``reviews`` or ``decision``."""
        from aifactory.services.access_views import ProposalView

        path = f"/proposals/{proposal_id}/{action}"
        return self._call(
            "POST", path, ProposalView, json=_jsonable(body) if body is not None else None
        )

    def get_proposal(self, proposal_id: int) -> ProposalView:
        from aifactory.services.access_views import ProposalView

        return self._call("GET", f"/proposals/{proposal_id}", ProposalView)

    def list_proposals(self, status: str | None = None) -> list[ProposalView]:
        from aifactory.services.access_views import ProposalView

        params = {"status": status} if status else {}
        return self._call_list("GET", "/proposals", ProposalView, params=params)

    def decide_cutoff(self, call_id: str, cutoff: str) -> DecisionBatchView:
        from aifactory.services.access_views import DecisionBatchView

        path = f"/calls/{_q(call_id)}/decisions"
        return self._call("POST", path, DecisionBatchView, json={"cutoff": cutoff})

    def get_project(self, code: str) -> ProjectView:
        from aifactory.services.access_views import ProjectView

        return self._call("GET", f"/projects/{_q(code)}", ProjectView)

    def list_projects(self) -> list[ProjectView]:
        from aifactory.services.access_views import ProjectView

        return self._call_list("GET", "/projects", ProjectView)

    def get_allocation(self, allocation_id: int) -> AllocationView:
        from aifactory.services.access_views import AllocationView

        return self._call("GET", f"/allocations/{allocation_id}", AllocationView)

    def get_ledger(self, allocation_id: int) -> list[LedgerEntryView]:
        from aifactory.services.access_views import LedgerEntryView

        path = f"/allocations/{allocation_id}/ledger"
        return self._call_list("GET", path, LedgerEntryView)

    def usage_report(
        self, group_by: str, start: str | None = None, end: str | None = None
    ) -> Report:
        from aifactory.services.access_views import Report

        params = _report_params(group_by, start, end)
        return self._call("GET", "/reports/usage", Report, params=params)

    def usage_report_csv(
        self, group_by: str, start: str | None = None, end: str | None = None
    ) -> str:
        params = _report_params(group_by, start, end)
        return self._send("GET", "/reports/usage.csv", params=params).text

    # --- jobs ---

    def submit_job(self, spec: dict[str, Any], idempotency_key: str | None = None) -> JobView:
        """Submit once: a dropped connection is retried with the same ``Idempotency-Key``
        (a new UUID unless given), so the server creates one job at most."""
        from aifactory.services.job_views import JobView

        return self._create("/jobs", JobView, spec, idempotency_key)

    def list_jobs(
        self,
        project: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: int | None = None,
        array: int | None = None,
    ) -> JobPage:
        from aifactory.services.job_views import JobPage

        params: dict[str, Any] = {"limit": limit}
        wanted = {"project": project, "state": state, "before": before, "array": array}
        params.update({k: v for k, v in wanted.items() if v is not None})
        return self._call("GET", "/jobs", JobPage, params=params)

    def get_job(self, job_id: int) -> JobView:
        from aifactory.services.job_views import JobView

        return self._call("GET", f"/jobs/{job_id}", JobView)

    def cancel_job(self, job_id: int, whole_array: bool = False) -> JobView:
        from aifactory.services.job_views import JobView

        params = {"array": "true"} if whole_array else None
        return self._call("POST", f"/jobs/{job_id}/cancel", JobView, params=params)

    def why_job(self, job_id: int) -> PlacementView:
        from aifactory.services.job_views import PlacementView

        return self._call("GET", f"/jobs/{job_id}/why", PlacementView)

    def job_logs(
        self, job_id: int, offset: int = 0, stream: str = "stdout", attempt: int | None = None
    ) -> LogChunk:
        """A chunk of the log of ``attempt`` (default: the job's current attempt)."""
        from aifactory.services.job_views import LogChunk

        params: dict[str, str | int] = {"offset": offset, "stream": stream}
        if attempt is not None:
            params["attempt"] = attempt
        return self._call("GET", f"/jobs/{job_id}/logs", LogChunk, params=params)


def _tls_for(base_url: str) -> ssl.SSLContext | bool:
    """Certificate checks as usual for an https API. A plain-http one (the local `aif serve`)
    never makes a TLS handshake (redirects are not followed), so it gets a verifying context
    with no trusted roots, which fails closed if ever used: loading the CA bundle for nothing
    costs 40-100 ms of every CLI command."""
    if httpx.URL(base_url).scheme == "http":
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


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
