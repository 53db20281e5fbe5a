"""The client's calls for inference endpoints and interactive sessions (mixed into ``Client``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.endpoints import EndpointKeyView, EndpointView, NewEndpointKey

M = TypeVar("M", bound=BaseModel)


class ServingCalls:
    """``/api/v1/endpoints`` (and, for OpenAI SDKs, where the gateway is)."""

    base_url: str

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def _call_list(self, method: str, path: str, model: type[M], **kwargs: Any) -> list[M]:
        raise NotImplementedError

    @property
    def gateway_url(self) -> str:
        """The OpenAI-compatible base URL (``OPENAI_BASE_URL``) of this server."""
        return self.base_url + "/v1"

    def create_endpoint(self, spec: dict[str, Any], submit_dir: str | None = None) -> EndpointView:
        from aifactory.services.endpoints import EndpointView

        body = {"spec": spec, "submit_dir": submit_dir}
        return self._call("POST", "/endpoints", EndpointView, json=body)

    def update_endpoint(
        self, name: str, spec: dict[str, Any], submit_dir: str | None = None
    ) -> EndpointView:
        from aifactory.services.endpoints import EndpointView

        body = {"spec": spec, "submit_dir": submit_dir}
        return self._call("PUT", f"/endpoints/{quote(name, safe='')}", EndpointView, json=body)

    def list_endpoints(self, everything: bool = False) -> list[EndpointView]:
        from aifactory.services.endpoints import EndpointView

        params = {"all": "true"} if everything else None
        return self._call_list("GET", "/endpoints", EndpointView, params=params)

    def get_endpoint(self, name: str) -> EndpointView:
        from aifactory.services.endpoints import EndpointView

        return self._call("GET", f"/endpoints/{quote(name, safe='')}", EndpointView)

    def stop_endpoint(self, name: str) -> EndpointView:
        from aifactory.services.endpoints import EndpointView

        return self._call("DELETE", f"/endpoints/{quote(name, safe='')}", EndpointView)

    def create_endpoint_key(self, name: str, label: str = "") -> NewEndpointKey:
        from aifactory.services.endpoints import NewEndpointKey

        path = f"/endpoints/{quote(name, safe='')}/keys"
        return self._call("POST", path, NewEndpointKey, json={"name": label})

    def list_endpoint_keys(self, name: str) -> list[EndpointKeyView]:
        from aifactory.services.endpoints import EndpointKeyView

        return self._call_list("GET", f"/endpoints/{quote(name, safe='')}/keys", EndpointKeyView)

    def revoke_endpoint_key(self, name: str, key_id: int) -> EndpointKeyView:
        from aifactory.services.endpoints import EndpointKeyView

        path = f"/endpoints/{quote(name, safe='')}/keys/{key_id}"
        return self._call("DELETE", path, EndpointKeyView)
