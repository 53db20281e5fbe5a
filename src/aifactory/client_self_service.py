"""The client's calls for self-service: organisations, invitations, members (mixed into
``Client``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.access_views import MemberView
    from aifactory.services.self_service_views import (
        InvitationView,
        NewInvitation,
        OrganisationDetail,
    )

M = TypeVar("M", bound=BaseModel)


def _q(segment: str) -> str:
    return quote(segment, safe="")


class SelfServiceCalls:
    """``/api/v1/organisations``, ``/projects/{code}/invitations|members``, ``/invitations``."""

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        raise NotImplementedError

    def organisations(self) -> list[OrganisationDetail]:
        """Yours (every one, for a federation admin)."""
        from aifactory.services.self_service_views import OrganisationDetail

        return self._call_list("GET", "/organisations", OrganisationDetail)

    def organisation(self, org_id: int) -> OrganisationDetail:
        from aifactory.services.self_service_views import OrganisationDetail

        return self._call("GET", f"/organisations/{int(org_id)}", OrganisationDetail)

    def register_organisation(self, body: dict[str, Any]) -> OrganisationDetail:
        """Register one (``enterprise_links`` included); you become its member."""
        from aifactory.services.self_service_views import OrganisationDetail

        return self._call("POST", "/organisations", OrganisationDetail, json=body)

    def update_organisation(self, org_id: int, changes: dict[str, Any]) -> OrganisationDetail:
        from aifactory.services.self_service_views import OrganisationDetail

        path = f"/organisations/{int(org_id)}"
        return self._call("PATCH", path, OrganisationDetail, json=changes)

    def invite(self, code: str, email: str) -> NewInvitation:
        """Invite an e-mail address to a project; the link (``url``) is returned this once."""
        from aifactory.services.self_service_views import NewInvitation

        path = f"/projects/{_q(code)}/invitations"
        return self._call("POST", path, NewInvitation, json={"email": email})

    def invitations(self, code: str) -> list[InvitationView]:
        from aifactory.services.self_service_views import InvitationView

        return self._call_list("GET", f"/projects/{_q(code)}/invitations", InvitationView)

    def revoke_invitation(self, code: str, invitation_id: int) -> InvitationView:
        from aifactory.services.self_service_views import InvitationView

        path = f"/projects/{_q(code)}/invitations/{int(invitation_id)}"
        return self._call("DELETE", path, InvitationView)

    def accept_invitation(self, token: str) -> InvitationView:
        from aifactory.services.self_service_views import InvitationView

        return self._call("POST", "/invitations/accept", InvitationView, json={"token": token})

    def remove_member(self, code: str, username: str) -> list[MemberView]:
        """Remove a member; returns the members left."""
        from aifactory.services.access_views import MemberView

        path = f"/projects/{_q(code)}/members/{_q(username)}"
        return self._call_list("DELETE", path, MemberView)
