"""Request bodies. Read models live in ``aifactory.services.views`` and are re-exported here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from aifactory.domain.enums import Role
from aifactory.domain.registry import FactoryStatus
from aifactory.services.views import *  # noqa: F403  (one import place for API users)
from aifactory.settings import CapacitySplit, SFloat, SInt


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FactoryUpdate(_In):
    status: FactoryStatus | None = None
    hosting_entity: str | None = Field(default=None, min_length=1, max_length=200)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    members: list[str] | None = Field(default=None, max_length=60)
    capacity_split: CapacitySplit | None = None


class FactoryStatusIn(_In):
    status: FactoryStatus


class PartitionUpdate(_In):
    gpu_model: str | None = Field(default=None, min_length=1, max_length=64)
    nodes: SInt | None = Field(default=None, ge=1, le=100_000)
    gpus_per_node: SInt | None = Field(default=None, ge=0, le=64)
    gpu_memory_gb: SFloat | None = Field(default=None, ge=0, le=10_000)
    cpus_per_node: SInt | None = Field(default=None, ge=0, le=10_000)
    memory_gb: SFloat | None = Field(default=None, ge=0, le=1_000_000)
    charge_factor: SFloat | None = Field(default=None, gt=0, le=100)
    max_time_hours: SFloat | None = Field(default=None, gt=0, le=24 * 365)


class RoleIn(_In):
    role: Role
    factory: str | None = Field(default=None, max_length=100)


class UserCreate(_In):
    username: str = Field(pattern=r"^[a-z][a-z0-9_.\-]{1,63}$")
    email: str = Field(pattern=r"^[^@\s]{1,64}@[^@\s]{1,189}$")
    full_name: str = Field(default="", max_length=200)
    password: str | None = Field(default=None, min_length=12, max_length=256)
    roles: list[RoleIn] = Field(default_factory=list, max_length=20)
    organisation: str | None = Field(default=None, max_length=200)


class MembershipIn(_In):
    organisation: str = Field(min_length=1, max_length=200)


class SiteAccountIn(_In):
    login: str = Field(min_length=1, max_length=32)


class TokenCreate(_In):
    name: str = Field(default="cli", min_length=1, max_length=100)
    username: str | None = Field(
        default=None, max_length=64, description="admins may create tokens for other users"
    )
    ttl_days: SInt | None = Field(default=None, ge=1, le=3650)


class PasswordIn(_In):
    password: str = Field(min_length=12, max_length=256)
    current_password: str | None = Field(
        default=None,
        max_length=256,
        description="your current password, needed to change your own (not for admins)",
    )
