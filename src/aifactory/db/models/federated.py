"""Federated sign-in: OpenID Connect identities, pending logins and claim-to-role rules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow


class OidcIdentity(Base):
    """A user's account at an OpenID provider: (issuer, subject) names one person for good."""

    __tablename__ = "oidc_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="oidc_issuer_subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OidcLogin(Base):
    """A sign-in sent to the provider and not yet back: kept in the database so that any server
    process can take the callback, and deleted when it is used (once) or expires.

    Only the SHA-256 of ``state`` is stored; ``browser_hash`` binds it to the browser that
    started it (the hash of that browser's form cookie)."""

    __tablename__ = "oidc_logins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    verifier: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str] = mapped_column(String(128))
    next_url: Mapped[str] = mapped_column(String(500), default="/")
    redirect_uri: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ClaimRule(Base):
    """Who holds a claim value gets a role (a factory operator: of one factory).

    ``value`` matches a claim value exactly, or as a prefix when it ends with ``*``."""

    __tablename__ = "claim_rules"
    __table_args__ = (
        UniqueConstraint("claim", "value", "role", "factory_id", name="claim_rule_once"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    claim: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(32))
    factory_id: Mapped[int | None] = mapped_column(
        ForeignKey("factories.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
