"""The client's calls for proposal drafts and their PDF attachments (mixed into ``Client``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.access_views import AttachmentView, ProposalView

M = TypeVar("M", bound=BaseModel)


class ProposalCalls:
    """``/api/v1/proposals/{id}`` (changing a draft) and ``.../attachments``."""

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        raise NotImplementedError

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def update_proposal(self, proposal_id: int, **fields: Any) -> ProposalView:
        """Replace what a draft says (the same fields as ``create_proposal``)."""
        from aifactory.services.access_views import ProposalView

        body = {k: v for k, v in fields.items() if v is not None}
        return self._call(
            "PUT", f"/proposals/{int(proposal_id)}", ProposalView, json=_jsonable(body)
        )

    def attach(self, proposal_id: int, pdf: Path) -> AttachmentView:
        """Upload a PDF to a draft (streamed from the file, not read into memory first)."""
        from aifactory.services.access_views import AttachmentView

        with pdf.open("rb") as fh:
            files = {"file": (pdf.name, fh, "application/pdf")}
            path = f"/proposals/{int(proposal_id)}/attachments"
            return self._call("POST", path, AttachmentView, files=files)

    def list_attachments(self, proposal_id: int) -> list[AttachmentView]:
        from aifactory.services.access_views import AttachmentView

        path = f"/proposals/{int(proposal_id)}/attachments"
        return self._call_list("GET", path, AttachmentView)

    def download_attachment(self, proposal_id: int, attachment_id: int) -> bytes:
        path = f"/proposals/{int(proposal_id)}/attachments/{int(attachment_id)}"
        return self._send("GET", path).content

    def delete_attachment(self, proposal_id: int, attachment_id: int) -> None:
        self._send("DELETE", f"/proposals/{int(proposal_id)}/attachments/{int(attachment_id)}")


def _jsonable(body: dict[str, Any]) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(body)
