"""Read models returned by services, served by the API and parsed by the client."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CountryView(View):
    code: str
    name: str
    status: str


class PartitionView(View):
    id: int
    name: str
    gpu_model: str
    nodes: int
    gpus_per_node: int
    gpu_memory_gb: float
    cpus_per_node: int
    memory_gb: float
    charge_factor: float
    max_time_hours: float
    configuration: bool

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


class SystemView(View):
    id: int
    name: str
    kind: str
    base_system: str | None
    deployment_year: int | None
    experimental_platform: str | None
    description: str
    partitions: list[PartitionView]


class CapacitySplitView(View):
    eu: float
    national: float
    commercial: float
    configuration: bool


class FundingLineView(View):
    source: str
    purpose: str
    amount_eur: int
    configuration: bool


class FactoryView(View):
    id: int
    name: str
    hosting_entity: str
    city: str
    country: str
    members: list[str]
    status: str
    capacity_split: CapacitySplitView
    systems: list[SystemView]
    total_gpus: int


class CountriesByStatus(View):
    member_state: list[str]
    participating_state: list[str]
    other: list[str]


class FederationSummary(View):
    factories: int
    factory_names: list[str]
    countries: int
    countries_by_status: CountriesByStatus
    systems_by_kind: dict[str, int]
    new_systems: int
    capacity_gpus_by_factory: dict[str, int]
    capacity_gpus: int
    capacity_nodes: int
    funding_by_source_eur: dict[str, int]
    funding_total_eur: int
    eu_funding_eur: int


class OrganisationView(View):
    id: int
    name: str
    type: str
    country_code: str
    staff_headcount: int | None
    annual_turnover_eur: int | None
    balance_sheet_eur: int | None
    home_domain: str | None = None  # matched to schac_home_organization at federated sign-in


class RoleView(View):
    role: str
    factory: str | None = None


class UserView(View):
    id: int
    username: str
    email: str
    full_name: str
    is_active: bool
    roles: list[RoleView]
    organisations: list[str]


class TokenView(View):
    id: int
    name: str
    prefix: str
    username: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewToken(TokenView):
    """A freshly created token: the only time the secret is ever shown."""

    token: str
