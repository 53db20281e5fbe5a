"""Placement policies (pure) shared by the live broker and the simulator."""

from aifactory.broker.placement import (
    PLACEMENT_POLICIES,
    Decision,
    JobRequest,
    PlacementPolicy,
    SiteView,
    get_placement_policy,
)

__all__ = [
    "PLACEMENT_POLICIES",
    "Decision",
    "JobRequest",
    "PlacementPolicy",
    "SiteView",
    "get_placement_policy",
]
