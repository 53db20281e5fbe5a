"""The one transition function for factory statuses: legal moves pass, all else is refused."""

from __future__ import annotations

import itertools

import pytest

from aifactory.domain.registry import FactoryStatus as F
from aifactory.domain.registry import factory_transition
from aifactory.errors import Conflict

LEGAL = {
    (F.SELECTED, F.DEPLOYING),
    (F.DEPLOYING, F.OPERATIONAL),
    (F.OPERATIONAL, F.DRAINING),
    (F.DRAINING, F.OPERATIONAL),
    *((s, F.RETIRED) for s in F if s != F.RETIRED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(F, F)))
def test_only_the_documented_moves_are_legal(current: F, target: F) -> None:
    if (current, target) in LEGAL or current == target:
        assert factory_transition(current, target) == target
        return
    with pytest.raises(Conflict) as err:
        factory_transition(current, target)
    assert err.value.details[0].rule == "legal_transition"
    assert err.value.extra["from"] == current and err.value.extra["to"] == target
