"""The web portal: server-rendered pages over the services (see ``routes.install``)."""

from aifactory.portal.routes import install

__all__ = ["install"]
