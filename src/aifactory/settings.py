"""Settings, read once at an entry point and injected; nothing reads the environment at import."""

from __future__ import annotations

import re
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, Strict, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aifactory.domain.enums import CountryStatus
from aifactory.domain.registry import FactoryStatus, FundingSource, SystemKind


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "aifactory"


class Settings(BaseSettings):
    """Runtime settings; every field can be set as ``AIF_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="AIF_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite under data_dir"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl_days: int = Field(default=90, ge=1, le=3650)
    auth_account_failures: int = Field(
        default=10, ge=1, le=10_000, description="wrong passwords for one account before a lock"
    )
    auth_address_failures: int = Field(
        default=50, ge=1, le=100_000, description="failed sign-ins or tokens from one address"
    )
    auth_window_s: int = Field(default=900, ge=1, le=86_400, description="failures counted over")
    auth_lockout_s: int = Field(
        default=900, ge=1, le=86_400, description="first lockout; doubles with each in a row"
    )
    self_signup: bool = Field(
        default=True, description="people may create their own account at /signup"
    )
    signup_per_address: int = Field(
        default=5, ge=1, le=10_000, description="accounts one address may create in an hour"
    )
    federation_file: Path | None = Field(
        default=None, description="federation YAML; default is the shipped one"
    )
    sites_file: Path | None = Field(
        default=None, description="sites YAML (executor per factory); default: local executors"
    )
    local_gpus_per_site: int = Field(default=8, ge=0, le=1024)
    local_job_user: str = Field(
        default="aifjob-local",
        pattern=r"^[a-z_][a-z0-9_-]{0,30}$",
        description="OS account local jobs run as when the server is root (created if missing)",
    )
    local_job_root: Path | None = Field(
        default=None, description="homes of local jobs run as the job user; /var/tmp/aifactory-jobs"
    )
    local_require_job_user: bool = Field(
        default=False, description="refuse local jobs rather than run them as a non-root server"
    )
    agent_interval_s: float = Field(
        default=0.5, gt=0, le=60, description="how often a site with live jobs polls them"
    )
    controller_resync_s: float = Field(
        default=5.0, gt=0, le=600, description="full reconcile pass when nothing woke it"
    )
    lease_ttl_s: float = Field(
        default=15.0, ge=0.5, le=600, description="a dead controller's sites move after this"
    )
    lost_grace_s: float = Field(
        default=600.0,
        ge=0,
        le=7 * 86_400,
        description="a job the scheduler and its accounting no longer report fails after this",
    )
    failover_grace_s: float = Field(
        default=60.0,
        ge=0,
        le=7 * 86_400,
        description="a site unreachable this long loses its queued and managed running jobs",
    )
    run_agents: bool = True
    api_concurrency: int = Field(
        default=16, ge=1, le=1000, description="requests in progress per API worker (rest wait)"
    )
    api_queue_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="how long a request waits for a slot, then 503"
    )
    api_queue_limit: int = Field(
        default=256, ge=0, le=100_000, description="requests waiting per API worker; more get 503"
    )
    demo_train_steps: int = Field(default=160, ge=1, le=100_000)
    attachment_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, le=1024**3, description="largest PDF a proposal takes"
    )
    oidc_issuer: str | None = Field(
        default=None, description="OpenID provider's issuer URL; unset: no federated sign-in"
    )
    oidc_client_id: str = ""
    oidc_client_secret: str = Field(default="", repr=False)
    oidc_scopes: str = Field(
        default="openid email profile",
        description="scopes asked for, space-separated (openid is always asked)",
    )
    oidc_label: str = Field(default="your organisation", max_length=60)
    oidc_redirect_url: str | None = Field(
        default=None, description="callback URL; default: the request's base URL + /auth/callback"
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="a bearer token Prometheus may scrape /metrics with (never shown or stored)",
    )

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'aifactory.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]


# --- Federation YAML models (the shipped default federation and operator edits) ---------------

_NAME = r"^[A-Za-z0-9][A-Za-z0-9 ._()\-]{0,99}$"
_CODE = r"^[A-Z]{2}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# Strict numbers and flags: JSON false is not a number and 0 is not a boolean.
SInt = Annotated[int, Strict()]
SFloat = Annotated[float, Strict()]
SBool = Annotated[bool, Strict()]


class PartitionSpec(_Spec):
    """A uniform slice of a system. Capacities are never negative; factors are positive."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    gpu_model: str = Field(min_length=1, max_length=64)
    nodes: SInt = Field(ge=1, le=100_000)
    gpus_per_node: SInt = Field(ge=0, le=64)
    gpu_memory_gb: SFloat = Field(ge=0, le=10_000)
    cpus_per_node: SInt = Field(default=0, ge=0, le=10_000)
    memory_gb: SFloat = Field(default=0, ge=0, le=1_000_000)
    charge_factor: SFloat = Field(default=1.0, gt=0, le=100)
    max_time_hours: SFloat = Field(default=48, gt=0, le=24 * 365)
    configuration: SBool = True


class SystemSpec(_Spec):
    name: str = Field(pattern=_NAME)
    kind: SystemKind
    base_system: str | None = Field(default=None, max_length=100)
    deployment_year: SInt | None = Field(default=None, ge=2000, le=2100)
    experimental_platform: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=2000)
    partitions: list[PartitionSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _distinct_partitions(self) -> SystemSpec:
        _require_distinct([p.name for p in self.partitions], "partitions")
        return self


class CapacitySplit(_Spec):
    """Shares of a factory's capacity by who pays for it; they sum to 1."""

    eu: SFloat = Field(ge=0, le=1)
    national: SFloat = Field(ge=0, le=1)
    commercial: SFloat = Field(ge=0, le=1)
    configuration: SBool = True

    @model_validator(mode="after")
    def _sums_to_one(self) -> CapacitySplit:
        if abs(self.eu + self.national + self.commercial - 1.0) > 1e-9:
            raise ValueError("eu + national + commercial must sum to 1")
        return self


class FactorySpec(_Spec):
    name: str = Field(pattern=_NAME)
    hosting_entity: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    country: str = Field(pattern=_CODE)
    members: list[str] = Field(default_factory=list)
    status: FactoryStatus = FactoryStatus.SELECTED
    capacity_split: CapacitySplit = CapacitySplit(eu=0.5, national=0.5, commercial=0.0)
    systems: list[SystemSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _members_valid(self) -> FactorySpec:
        for code in self.members:
            if not re.fullmatch(_CODE, code):
                raise ValueError(f"member {code!r} is not an ISO 3166 alpha-2 code")
        _require_distinct(self.members, "members")
        if self.country in self.members:
            raise ValueError("the host country is not also a joining member")
        _require_distinct([s.name for s in self.systems], "systems")
        return self


class CountrySpec(_Spec):
    code: str = Field(pattern=_CODE)
    name: str = Field(min_length=1, max_length=100)
    status: CountryStatus


class FundingSpec(_Spec):
    source: FundingSource
    purpose: str = ""
    amount_eur: SInt = Field(ge=0)
    configuration: SBool = False


class FederationMeta(_Spec):
    name: str
    selected_by: str
    total_funding_eur: SInt = Field(ge=0)
    eu_share: SFloat = Field(ge=0, le=1)
    next_hosting_cutoff: date | None = None
    funding: list[FundingSpec]


class FederationSpec(_Spec):
    """The whole federation file: countries, factories with systems, federation funding."""

    federation: FederationMeta
    countries: list[CountrySpec]
    factories: list[FactorySpec]

    @model_validator(mode="after")
    def _consistent(self) -> FederationSpec:
        codes = [c.code for c in self.countries]
        _require_distinct(codes, "countries")
        _require_distinct([f.name for f in self.factories], "factories")
        _require_distinct([s.name for f in self.factories for s in f.systems], "systems")
        known = set(codes)
        for f in self.factories:
            unknown = sorted({f.country, *f.members} - known)
            if unknown:
                raise ValueError(f"factory {f.name!r} names unknown countries {unknown}")
        if sum(x.amount_eur for x in self.federation.funding) != self.federation.total_funding_eur:
            raise ValueError("federation funding lines must add up to total_funding_eur")
        return self


def _require_distinct(names: list[str], what: str) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate {what}: {dupes}")


def load_federation(path: Path | None = None) -> FederationSpec:
    """Read a federation YAML file; the shipped default when ``path`` is None."""
    text = (
        path.read_text(encoding="utf-8")
        if path is not None
        else (files("aifactory.data") / "federation.yaml").read_text(encoding="utf-8")
    )
    return FederationSpec.model_validate(yaml.safe_load(text))
