"""Property tests: the ledger invariant holds under random operation sequences."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from aifactory.domain.enums import LedgerKind as K
from aifactory.domain.ledger import (
    FundingSplit,
    LedgerEntry,
    LedgerState,
    apply,
    attribute,
    balance,
    check_adjust,
    check_charge,
    check_grant,
    check_release,
    check_reserve,
    expiry_entry,
    settle,
    summarise,
)
from aifactory.errors import AIFactoryError, QuotaExceeded

amounts = st.integers(min_value=-5_000, max_value=50_000)
ops = st.lists(st.tuples(st.sampled_from(list(K)), amounts), max_size=60)

CHECKS = {
    K.GRANT: check_grant,
    K.RESERVE: check_reserve,
    K.RELEASE: check_release,
    K.CHARGE: check_charge,
    K.ADJUST: check_adjust,
}


def assert_invariant(entries: list[LedgerEntry], state: LedgerState) -> None:
    assert summarise(entries) == state
    assert balance(entries) == state.remaining  # balance = sum of entries
    assert state.remaining >= 0  # never negative
    assert state.reserved >= 0
    assert state.used + state.reserved + state.expired <= state.granted  # never overspent


@given(ops)
def test_checked_operations_keep_the_invariant(sequence: list[tuple[K, int]]) -> None:
    entries: list[LedgerEntry] = []
    state = LedgerState()
    for kind, amount in sequence:
        try:
            entry = expiry_entry(state) if kind is K.EXPIRE else CHECKS[kind](state, amount)
        except AIFactoryError:
            continue
        if entry is None:
            continue
        entries.append(entry)
        state = summarise(entries)
        assert_invariant(entries, state)


@given(ops)
def test_reserve_is_refused_exactly_when_it_exceeds_what_remains(
    sequence: list[tuple[K, int]],
) -> None:
    state = LedgerState()
    for kind, amount in sequence:
        if kind is K.RESERVE and amount > 0:
            try:
                check_reserve(state, amount)
                assert amount <= state.remaining
            except QuotaExceeded:
                assert amount > state.remaining
        try:
            state = apply(
                state,
                LedgerEntry(
                    kind, amount if kind in (K.GRANT, K.RELEASE, K.ADJUST) else -abs(amount)
                ),
            )
        except AIFactoryError:
            continue
        assert state.remaining >= 0 and state.reserved >= 0


@given(st.lists(st.tuples(st.sampled_from(list(K)), amounts.filter(bool)), max_size=60))
def test_apply_never_lets_a_raw_entry_break_the_invariant(raw: list[tuple[K, int]]) -> None:
    entries: list[LedgerEntry] = []
    state = LedgerState()
    for kind, amount in raw:
        try:
            entry = LedgerEntry(kind, amount)
            state = apply(state, entry)
        except AIFactoryError:
            continue
        entries.append(entry)
        assert_invariant(entries, state)


class LedgerMachine(RuleBasedStateMachine):
    """Jobs reserve, settle (release + capped charge), operators adjust, the end date expires."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[LedgerEntry] = []
        self.holds: list[int] = []

    @property
    def state(self) -> LedgerState:
        return summarise(self.entries)

    def _append(self, entry: LedgerEntry | None) -> None:
        if entry is not None:
            apply(self.state, entry)  # the same checks a service would run
            self.entries.append(entry)

    @rule(amount=st.integers(min_value=1, max_value=100_000))
    def grant(self, amount: int) -> None:
        self._append(check_grant(self.state, amount))

    @rule(amount=st.integers(min_value=1, max_value=100_000))
    def reserve(self, amount: int) -> None:
        try:
            self._append(check_reserve(self.state, amount))
        except QuotaExceeded:
            return
        self.holds.append(amount)

    @rule(fraction=st.integers(min_value=0, max_value=150))
    def settle_job(self, fraction: int) -> None:
        if not self.holds:
            return
        hold = self.holds.pop()
        result = settle(self.state, hold, hold * fraction // 100)
        for entry in result.entries:
            self._append(entry)

    @rule(delta=st.integers(min_value=-50_000, max_value=50_000).filter(bool))
    def adjust(self, delta: int) -> None:
        try:
            self._append(check_adjust(self.state, delta))
        except QuotaExceeded:
            assert -delta > self.state.remaining

    @rule()
    def expire(self) -> None:
        self._append(expiry_entry(self.state))

    @invariant()
    def ledger_invariant(self) -> None:
        assert_invariant(self.entries, self.state)
        assert self.state.reserved == sum(self.holds)


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_ledger_state_machine = LedgerMachine.TestCase


@given(
    amount=st.integers(min_value=-(10**9), max_value=10**9),
    eu=st.integers(min_value=0, max_value=100),
    national=st.integers(min_value=0, max_value=100),
)
def test_attribution_always_sums_to_the_amount(amount: int, eu: int, national: int) -> None:
    national = min(national, 100 - eu)
    split = FundingSplit(D(eu) / 100, D(national) / 100, D(100 - eu - national) / 100)
    parts = attribute(amount, split)
    assert sum(parts.values()) == amount
    for name, share in split.as_dict().items():
        assert abs(parts[name] - share * amount) < 1
