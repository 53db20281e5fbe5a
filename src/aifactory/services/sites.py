"""Which executor runs each factory's jobs: ``sites.yaml``, or local executors by default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Factory
from aifactory.executors import Executor, make_executor
from aifactory.settings import Settings


class SiteConfig(BaseModel):
    """One factory's site: its executor and that executor's options.

    ``capacity_gpus`` bounds what the broker may place there at once; ``None`` means the
    partitions' own size (a real scheduler queues the rest).
    """

    model_config = ConfigDict(extra="forbid")

    factory: str
    executor: str = "local"
    capacity_gpus: int | None = Field(default=None, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def load_sites(settings: Settings, factories: list[str]) -> dict[str, SiteConfig]:
    """Configured sites, with a local executor for every factory the file does not name."""
    configured: dict[str, SiteConfig] = {}
    if settings.sites_file is not None:
        data = yaml.safe_load(Path(settings.sites_file).read_text()) or {}
        for entry in data.get("sites", []):
            site = SiteConfig.model_validate(entry)
            configured[site.factory] = site
    for name in factories:
        configured.setdefault(
            name, SiteConfig(factory=name, capacity_gpus=settings.local_gpus_per_site)
        )
    return configured


def build_executor(settings: Settings, site: SiteConfig) -> Executor:
    """Instantiate the site's executor; local ones keep their state under the data dir."""
    options = dict(site.options)
    if site.executor == "local":
        options.setdefault("state_dir", settings.data_dir / "sites" / slug(site.factory))
        options.setdefault("gpus", site.capacity_gpus or 0)
        options.setdefault("kill_grace_s", 3.0)
        # Never without a job user: a root server's jobs must not run as root (docs/jobs.md).
        options["job_user"] = options.get("job_user") or settings.local_job_user
        options.setdefault("job_root", settings.local_job_root)
        options.setdefault("require_job_user", settings.local_require_job_user)
    return make_executor(site.executor, **options)


def capacity_map(session: Session, settings: Settings) -> dict[str, int | None]:
    """GPUs each factory's site may hold at once (``None``: its partitions' own size)."""
    names = list(session.scalars(select(Factory.name)))
    return {name: site.capacity_gpus for name, site in load_sites(settings, names).items()}
