"""The client's calls for federated sign-in administration (mixed into ``Client``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.claim_rule_views import ClaimRuleView

M = TypeVar("M", bound=BaseModel)


class FederatedCalls:
    """``/api/v1/admin/claim-rules`` (federation admins)."""

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        raise NotImplementedError

    def list_claim_rules(self) -> list[ClaimRuleView]:
        from aifactory.services.claim_rule_views import ClaimRuleView

        return self._call_list("GET", "/admin/claim-rules", ClaimRuleView)

    def add_claim_rule(
        self, claim: str, value: str, role: str, factory: str | None = None
    ) -> ClaimRuleView:
        """People whose ``claim`` holds ``value`` (a prefix when it ends with ``*``) get ``role``
        at their next federated sign-in."""
        from aifactory.services.claim_rule_views import ClaimRuleView

        body = {"claim": claim, "value": value, "role": role, "factory": factory}
        return self._call("POST", "/admin/claim-rules", ClaimRuleView, json=body)

    def remove_claim_rule(self, rule_id: int) -> ClaimRuleView:
        from aifactory.services.claim_rule_views import ClaimRuleView

        return self._call("DELETE", f"/admin/claim-rules/{int(rule_id)}", ClaimRuleView)
