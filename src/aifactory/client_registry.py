"""The client's calls for growing and operating the registry (mixed into ``Client``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.views import CountryView, FactoryView, PartitionView, SystemView

M = TypeVar("M", bound=BaseModel)


def _q(segment: str) -> str:
    return quote(segment, safe="")


class RegistryCalls:
    """Factory status, systems, partitions, consortium members and countries."""

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def set_factory_status(self, name: str, status: str) -> FactoryView:
        """Move a factory along its life (``draining`` empties a site; ``retired`` is final)."""
        from aifactory.services.views import FactoryView

        path = f"/factories/{_q(name)}/status"
        return self._call("POST", path, FactoryView, json={"status": status})

    def add_system(self, factory: str, spec: dict[str, Any]) -> SystemView:
        from aifactory.services.views import SystemView

        path = f"/factories/{_q(factory)}/systems"
        return self._call("POST", path, SystemView, json=spec)

    def add_partition(self, factory: str, system: str, spec: dict[str, Any]) -> PartitionView:
        from aifactory.services.views import PartitionView

        path = f"/factories/{_q(factory)}/systems/{_q(system)}/partitions"
        return self._call("POST", path, PartitionView, json=spec)

    def add_country(self, code: str, name: str, status: str) -> CountryView:
        from aifactory.services.views import CountryView

        body = {"code": code, "name": name, "status": status}
        return self._call("POST", "/countries", CountryView, json=body)
