"""Federation registry: countries, factories, consortium members, systems, partitions, funding."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow


class Country(Base):
    __tablename__ = "countries"

    code: Mapped[str] = mapped_column(String(2), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(32))


class Factory(Base):
    __tablename__ = "factories"
    __table_args__ = (
        CheckConstraint(
            "eu_share >= 0 AND national_share >= 0 AND commercial_share >= 0", name="shares"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    hosting_entity: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    country_code: Mapped[str] = mapped_column(ForeignKey("countries.code"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    eu_share: Mapped[float] = mapped_column(Float)
    national_share: Mapped[float] = mapped_column(Float)
    commercial_share: Mapped[float] = mapped_column(Float)
    split_is_configuration: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[FactoryMember]] = relationship(
        back_populates="factory",
        cascade="all, delete-orphan",
        order_by="FactoryMember.country_code",
    )
    systems: Mapped[list[System]] = relationship(
        back_populates="factory", cascade="all, delete-orphan", order_by="System.name"
    )


class FactoryMember(Base):
    """A country that joined a factory's consortium (the host country is not listed here)."""

    __tablename__ = "factory_members"

    factory_id: Mapped[int] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), primary_key=True
    )
    country_code: Mapped[str] = mapped_column(
        ForeignKey("countries.code"), primary_key=True, index=True
    )

    factory: Mapped[Factory] = relationship(back_populates="members")


class System(Base):
    __tablename__ = "systems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factory_id: Mapped[int] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    base_system: Mapped[str | None] = mapped_column(String(100))
    deployment_year: Mapped[int | None] = mapped_column(Integer)
    experimental_platform: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")

    factory: Mapped[Factory] = relationship(back_populates="systems")
    partitions: Mapped[list[Partition]] = relationship(
        back_populates="system", cascade="all, delete-orphan", order_by="Partition.name"
    )


class Partition(Base):
    __tablename__ = "partitions"
    __table_args__ = (
        UniqueConstraint("system_id", "name", name="system_name"),
        CheckConstraint(
            "nodes >= 0 AND gpus_per_node >= 0 AND gpu_memory_gb >= 0 AND cpus_per_node >= 0"
            " AND memory_gb >= 0 AND charge_factor > 0 AND max_time_hours > 0",
            name="capacities",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    gpu_model: Mapped[str] = mapped_column(String(64))
    nodes: Mapped[int] = mapped_column(Integer)
    gpus_per_node: Mapped[int] = mapped_column(Integer)
    gpu_memory_gb: Mapped[float] = mapped_column(Float)
    cpus_per_node: Mapped[int] = mapped_column(Integer)
    memory_gb: Mapped[float] = mapped_column(Float)
    charge_factor: Mapped[float] = mapped_column(Float)
    max_time_hours: Mapped[float] = mapped_column(Float)
    configuration: Mapped[bool] = mapped_column(Boolean, default=True)

    system: Mapped[System] = relationship(back_populates="partitions")


class FundingLine(Base):
    """Money for the federation (factory_id NULL) or for one factory, by source."""

    __tablename__ = "funding_lines"
    __table_args__ = (CheckConstraint("amount_eur >= 0", name="amount"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factory_id: Mapped[int | None] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(200), default="")
    amount_eur: Mapped[int] = mapped_column(BigInteger)
    configuration: Mapped[bool] = mapped_column(Boolean, default=False)
