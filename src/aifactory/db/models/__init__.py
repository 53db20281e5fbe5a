"""All models; importing this module registers every table on ``Base.metadata``."""

from aifactory.db.models.access import (
    Allocation,
    Event,
    LedgerDay,
    LedgerRow,
    Project,
    ProjectMember,
    Proposal,
    ProposalAttachment,
    ProposalResource,
    ProposalTransition,
    ReviewAssignment,
)
from aifactory.db.models.base import Base
from aifactory.db.models.estimates import SiteEstimate
from aifactory.db.models.failover import CheckpointCopy, SiteOutage, StaleAttempt
from aifactory.db.models.federated import ClaimRule, OidcIdentity, OidcLogin
from aifactory.db.models.identity import (
    ApiToken,
    Membership,
    Organisation,
    RoleGrant,
    SiteAccount,
    User,
)
from aifactory.db.models.invitations import ProjectInvitation
from aifactory.db.models.jobs import (
    ControllerBeat,
    Job,
    JobAttempt,
    JobTransition,
    Lease,
    SiteQueue,
    SiteStatus,
)
from aifactory.db.models.portal import PortalSession
from aifactory.db.models.registry import (
    Country,
    Factory,
    FactoryMember,
    FundingLine,
    Partition,
    System,
)
from aifactory.db.models.security import AuditEvent, AuthThrottle, IdempotencyKey
from aifactory.db.models.serving import (
    Endpoint,
    EndpointKey,
    EndpointReplica,
    EndpointRequest,
    InteractiveSession,
)

__all__ = [
    "Allocation",
    "ApiToken",
    "AuditEvent",
    "AuthThrottle",
    "Base",
    "CheckpointCopy",
    "ClaimRule",
    "ControllerBeat",
    "Country",
    "Endpoint",
    "EndpointKey",
    "EndpointReplica",
    "EndpointRequest",
    "Event",
    "Factory",
    "FactoryMember",
    "FundingLine",
    "IdempotencyKey",
    "InteractiveSession",
    "Job",
    "JobAttempt",
    "JobTransition",
    "Lease",
    "LedgerDay",
    "LedgerRow",
    "Membership",
    "OidcIdentity",
    "OidcLogin",
    "Organisation",
    "Partition",
    "PortalSession",
    "Project",
    "ProjectInvitation",
    "ProjectMember",
    "Proposal",
    "ProposalAttachment",
    "ProposalResource",
    "ProposalTransition",
    "ReviewAssignment",
    "RoleGrant",
    "SiteAccount",
    "SiteEstimate",
    "SiteOutage",
    "SiteQueue",
    "SiteStatus",
    "StaleAttempt",
    "System",
    "User",
]
