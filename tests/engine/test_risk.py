"""The risk stage: reservation on acceptance, settlement on fills, release on cancel and
expiry, T+1, fees, position limits and account checks, on both books.

Three layers: rules one by one through the ``Engine`` API (both implementations), seeded and
hypothesis streams run through both books with every balance compared after each chunk, and
the invariants (conservation, reservations = what open orders need, nothing negative) checked
after every chunk of long random sessions.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import (
    AccountError, AccountType, CancelOrder, AmendOrder, ClockTick, Engine, NewOrder, OrderType,
    Reason, RiskConfig, Side, Stp, TimeInForce, parse_time,
)
from engine import batch as B
from engine.accounts import (
    CA_PROCEEDS, CA_RESERVED, CA_TOTAL, HD_PENDING, MAX_BALANCE, RK_FEES, Accounts,
    check_reservations, fee, reserve_unit,
)
from engine.book import make_book
from engine.codes import EventKind
from engine.tradingdays import TradingCalendar

from .test_differential import assert_same_events, command_streams, make_stream, random_sizes, \
    to_array

IMPLS = ("numba", "reference")
T = parse_time("2024-03-04T10:00:00")
NEXT_DAY = parse_time("2024-03-05T10:00:00")
PM = parse_time("2024-03-04T13:30:00")


def engine(impl, risk=None, **accounts):
    """An engine with accounts; ``accounts`` maps a name to (cash fen, allowances t)."""
    eng = Engine({"CEA": 6000}, impl=impl, risk=risk or RiskConfig(),
                 calendar=TradingCalendar.from_dates(["2024-03-04", "2024-03-05"]))
    for name, (cash, tonnes) in accounts.items():
        eng.open_account(name)
        if cash:
            eng.deposit(name, cash)
        if tonnes:
            eng.allowance_in(name, tonnes)
    return eng


def reasons(events):
    return [e.reason.name for e in events if type(e).__name__ in ("OrderRejected",
                                                                    "OrderCancelled")]


def kinds(events):
    return [type(e).__name__ for e in events]


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


# ---------------------------------------------------------------------------- rules


def test_buy_reserves_price_times_qty_and_a_fill_consumes_it(impl):
    eng = engine(impl, B=(1_000_000, 0), S=(0, 500))
    assert kinds(eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000))) == [
        "OrderAccepted"]
    assert eng.balance("B").cash_reserved == 600_000
    assert eng.balance("B").cash_available == 400_000
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=40, price=6000))
    b, s = eng.balance("B"), eng.balance("S")
    assert (b.cash, b.cash_reserved, b.holdings[0].total) == (1_000_000 - 240_000, 360_000, 40)
    assert (s.cash, s.holdings[0].total, s.holdings[0].reserved) == (240_000, 460, 0)
    eng.check_invariants()


def test_price_improvement_releases_the_difference(impl):
    eng = engine(impl, B=(1_000_000, 0), S=(0, 500))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=100, price=5900))
    eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000))  # trades at 59.00
    b = eng.balance("B")
    assert (b.cash, b.cash_reserved, b.cash_available) == (410_000, 0, 410_000)


def test_insufficient_funds_and_allowances_are_rejected_and_change_nothing(impl):
    eng = engine(impl, B=(599_999, 0), S=(0, 99))
    before = eng.balance("B"), eng.balance("S")
    ev = eng.submit_many([NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000),
                          NewOrder(T, "S", "s1", Side.SELL, qty=100, price=6000)])
    assert reasons(ev) == ["INSUFFICIENT_FUNDS", "INSUFFICIENT_ALLOWANCES"]
    assert (eng.balance("B"), eng.balance("S")) == before
    assert eng.order("b1") is None


def test_market_buy_reserves_at_the_band_upper_limit(impl):
    # 10 t at the upper limit 66.00 is 66,000 fen: 65,999 is one fen short
    eng = engine(impl, B=(65_999, 0), C=(66_000, 0), S=(0, 500))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=500, price=6000))
    mkt = dict(type=OrderType.MARKET, tif=TimeInForce.IOC)
    assert reasons(eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=10, **mkt))) == [
        "INSUFFICIENT_FUNDS"]
    ev = eng.submit(NewOrder(T, "C", "c1", Side.BUY, qty=10, **mkt))
    assert kinds(ev) == ["OrderAccepted", "TradeExecuted"]
    c = eng.balance("C")
    assert (c.cash, c.cash_reserved) == (6_000, 0)  # paid 60,000 at 60.00, the rest released


def test_cancel_ioc_remainder_fok_and_expiry_release(impl):
    eng = engine(impl, B=(10_000_000, 0), S=(0, 5_000))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=50, price=6000))
    eng.submit(NewOrder(T, "B", "ioc", Side.BUY, qty=100, price=6000, tif=TimeInForce.IOC))
    eng.submit(NewOrder(T, "B", "fok", Side.BUY, qty=100, price=6000, tif=TimeInForce.FOK))
    assert eng.balance("B").cash_reserved == 0
    eng.submit(NewOrder(T, "B", "day", Side.BUY, qty=100, price=5900))
    eng.submit(NewOrder(T, "S", "s2", Side.SELL, qty=300, price=6100))
    assert eng.balance("B").cash_reserved == 590_000
    assert eng.balance("S").holdings[0].reserved == 300
    eng.submit(CancelOrder(T, "B", "day"))
    assert eng.balance("B").cash_reserved == 0
    eng.end_day()  # s2 expires
    assert eng.balance("S").holdings[0].reserved == 0
    eng.check_invariants()


def test_amend_reserves_only_what_it_adds_and_is_rejected_if_that_does_not_fit(impl):
    eng = engine(impl, B=(1_200_000, 0))
    eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000))
    assert reasons(eng.submit(AmendOrder(T, "B", "b1", qty=201, price=6000))) == [
        "INSUFFICIENT_FUNDS"]
    assert eng.balance("B").cash_reserved == 600_000  # the rejected amend changed nothing
    assert kinds(eng.submit(AmendOrder(T, "B", "b1", qty=200, price=6000))) == ["OrderAmended"]
    assert eng.balance("B").cash_reserved == 1_200_000
    eng.submit(AmendOrder(T, "B", "b1", qty=50, price=6000))  # in place, releases
    assert eng.balance("B").cash_reserved == 300_000
    eng.submit(AmendOrder(T, "B", "b1", qty=50, price=5800))
    assert eng.balance("B").cash_reserved == 290_000
    eng.check_invariants()


def test_allowances_bought_today_are_sellable_next_day_proceeds_usable_at_once(impl):
    eng = engine(impl, B=(1_000_000, 0), S=(0, 100), C=(0, 0))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=100, price=6000))
    eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000))
    b = eng.balance("B")
    assert (b.holdings[0].total, b.holdings[0].pending, b.holdings[0].sellable) == (100, 100, 0)
    assert reasons(eng.submit(NewOrder(T, "B", "b2", Side.SELL, qty=1, price=6000))) == [
        "INSUFFICIENT_ALLOWANCES"]
    s = eng.balance("S")
    assert (s.cash_available, s.withdrawable) == (600_000, 0)  # T+0 to trade, T+1 to withdraw
    with pytest.raises(AccountError, match="INSUFFICIENT_FUNDS"):
        eng.withdraw("S", 1)
    eng.submit(NewOrder(T, "S", "s-buys", Side.BUY, qty=10, price=6000))  # uses proceeds
    assert eng.balance("S").cash_reserved == 60_000
    eng.submit(ClockTick(NEXT_DAY))
    b, s = eng.balance("B"), eng.balance("S")
    assert (b.holdings[0].pending, b.holdings[0].sellable) == (0, 100)
    assert s.withdrawable == 600_000
    eng.withdraw("S", 600_000)
    assert kinds(eng.submit(NewOrder(NEXT_DAY, "B", "b3", Side.SELL, qty=100, price=6000))) == [
        "OrderAccepted"]


def test_t_plus_zero_when_configured(impl):
    eng = engine(impl, RiskConfig(t_plus_one=False), B=(1_000_000, 0), S=(0, 100))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=100, price=6000))
    eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=100, price=6000))
    assert eng.balance("B").holdings[0].sellable == 100


def test_fees_per_segment_go_to_the_exchange_and_are_reserved_rounded_up(impl):
    risk = RiskConfig(fee_bps_listed=5, fee_bps_block=2)
    eng = engine(impl, risk, B=(10**12, 0), S=(0, 10**6))
    eng.submit(NewOrder(T, "S", "s1", Side.SELL, qty=3, price=6001))
    eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=5, price=6001))
    # reserve 5 x (6001 + ceil(3.0005)) = 5 x 6005; trade 3 x 6001 = 18,003, fee 9.0015 -> 9
    b = eng.balance("B")
    assert reserve_unit(6001, 5) == 6005 and fee(18_003, 5) == 9
    assert (b.cash, b.cash_reserved) == (10**12 - 18_003 - 9, 2 * 6005)
    assert eng.balance("S").cash == 18_003 - 9
    assert int(eng.balances.risk[RK_FEES]) == 18
    eng.submit_many([NewOrder(PM, "S", "s2", Side.SELL, qty=100_000, price=6000),
                     NewOrder(PM, "B", "b2", Side.BUY, qty=100_000, price=6000)])
    assert int(eng.balances.risk[RK_FEES]) == 18 + 2 * fee(600_000_000, 2)
    cash, allowances = eng.balances.totals()
    assert cash == 10**12 and allowances == [10**6]
    eng.check_invariants()


def test_position_limit_per_account_type(impl):
    risk = RiskConfig(position_limits={AccountType.INDIVIDUAL: 150})
    eng = engine(impl, risk, S=(0, 1000))
    eng.open_account("I", AccountType.INDIVIDUAL)
    eng.deposit("I", 10**8)
    eng.allowance_in("I", 100)
    ev = eng.submit_many([NewOrder(T, "I", "i1", Side.BUY, qty=30, price=6000),
                          NewOrder(T, "I", "i2", Side.BUY, qty=21, price=6000),
                          NewOrder(T, "I", "i3", Side.BUY, qty=20, price=6000)])
    assert reasons(ev) == ["POSITION_LIMIT"]  # 100 held + 30 + 21 > 150
    eng.submit(CancelOrder(T, "I", "i1"))
    assert kinds(eng.submit(NewOrder(T, "I", "i4", Side.BUY, qty=30, price=6000))) == [
        "OrderAccepted"]
    assert reasons(eng.submit(AmendOrder(T, "I", "i4", qty=31, price=6000))) == [
        "POSITION_LIMIT"]


def test_unknown_frozen_and_not_admitted_accounts(impl):
    risk = RiskConfig(admitted=(AccountType.COVERED_ENTITY,))
    eng = engine(impl, risk, A=(10**8, 100))
    eng.open_account("I", AccountType.INSTITUTION)
    eng.deposit("I", 10**8)
    eng.submit(NewOrder(T, "A", "a1", Side.BUY, qty=1, price=5900))
    eng.freeze("A")
    ev = eng.submit_many([NewOrder(T, "X", "x1", Side.BUY, qty=1, price=6000),
                          NewOrder(T, "A", "a2", Side.BUY, qty=1, price=6000),
                          NewOrder(T, "I", "i1", Side.BUY, qty=1, price=6000),
                          AmendOrder(T, "A", "a1", qty=2, price=5900),
                          CancelOrder(T, "A", "a1")])  # cancels still pass
    assert reasons(ev) == ["UNKNOWN_ACCOUNT", "ACCOUNT_FROZEN", "ACCOUNT_NOT_ADMITTED",
                           "ACCOUNT_FROZEN", "USER"]
    eng.freeze("A", False)
    assert kinds(eng.submit(NewOrder(T, "A", "a3", Side.BUY, qty=1, price=6000))) == [
        "OrderAccepted"]


def test_spec_rejects_come_before_the_risk_stage(impl):
    eng = engine(impl, B=(0, 0))
    ev = eng.submit(NewOrder(T, "B", "b1", Side.BUY, qty=1, price=7000))
    assert reasons(ev) == ["PRICE_OUTSIDE_BAND"]


def test_account_operations_reject_bad_input_and_change_nothing():
    acc = Accounts(1)
    a = acc.open_account(AccountType.COVERED_ENTITY)
    before = acc.copy()
    for call, match in [
        (lambda: acc.deposit(a, 0), "1..10"),
        (lambda: acc.deposit(a, -5), "1..10"),
        (lambda: acc.deposit(a, 1.5), "integer"),
        (lambda: acc.deposit(a, True), "integer"),
        (lambda: acc.deposit(a, MAX_BALANCE + 1), "1..10"),
        (lambda: acc.deposit(7, 100), "UNKNOWN_ACCOUNT"),
        (lambda: acc.withdraw(a, 1), "INSUFFICIENT_FUNDS"),
        (lambda: acc.allowance_out(a, 0, 1), "INSUFFICIENT_ALLOWANCES"),
        (lambda: acc.allowance_in(a, 3, 1), "no instrument"),
        (lambda: acc.open_account(AccountType.COVERED_ENTITY, a), "already open"),
        (lambda: acc.open_account(7), "7"),
    ]:
        with pytest.raises((AccountError, ValueError), match=match):
            call()
    acc.deposit(a, MAX_BALANCE)
    with pytest.raises(AccountError, match="more than"):
        acc.deposit(a, 1)
    acc.withdraw(a, MAX_BALANCE)
    assert (acc.cash == before.cash).all() and (acc.holdings == before.holdings).all()
    with pytest.raises(AccountError, match="fee_bps_listed"):
        RiskConfig(fee_bps_listed=10_001).vector()


def test_an_engine_without_accounts_refuses_account_operations():
    eng = Engine({"CEA": 6000})
    with pytest.raises(Exception, match="no accounts"):
        eng.deposit("A", 1)


# ---------------------------------------------------------------------------- differential


def funded_accounts(seed: int, n_accounts: int, n_instruments: int,
                    config: RiskConfig | None = None) -> Accounts:
    """Accounts from poor to rich, so every risk reject happens in a random stream."""
    rnd = random.Random(seed)
    acc = Accounts(n_instruments, config or RiskConfig(fee_bps_listed=3, fee_bps_block=1))
    for a in range(n_accounts):
        acc.open_account(rnd.choice(list(AccountType)))
        acc.deposit(a, rnd.choice([10**5, 10**7, 10**9, 10**11]))
        for i in range(n_instruments):
            acc.allowance_in(a, i, rnd.choice([10, 10**3, 10**5, 10**7]))
    return acc


CONFIGS = [
    RiskConfig(fee_bps_listed=3, fee_bps_block=1),
    RiskConfig(t_plus_one=False, position_limits={AccountType.INDIVIDUAL: 5_000,
                                                  AccountType.INSTITUTION: 500_000}),
    RiskConfig(fee_bps_listed=1000, fee_bps_block=0,
               admitted=(AccountType.COVERED_ENTITY, AccountType.INSTITUTION)),
]


def assert_same_balances(a: Accounts, b: Accounts, seed) -> None:
    assert np.array_equal(a.cash, b.cash), f"seed {seed}: cash differs"
    assert np.array_equal(a.holdings, b.holdings), f"seed {seed}: holdings differ"
    assert np.array_equal(a.risk, b.risk), f"seed {seed}: fees differ"


def run_both(cmds, closes, n_accounts, seed, config, sizes):
    cal = TradingCalendar.xshg()
    ref_acc = funded_accounts(seed, n_accounts, len(closes), config)
    fast_acc = ref_acc.copy()
    totals = ref_acc.totals()
    ref = make_book("reference", list(closes), cal, accounts=ref_acc)
    fast = make_book("numba", list(closes), cal, accounts=fast_acc, slot_capacity=4,
                     order_capacity=4, event_capacity=64)
    start = 0
    for size in sizes:
        chunk = cmds[start:start + size]
        if not len(chunk):
            break
        assert_same_events(ref.submit_batch(chunk), fast.submit_batch(chunk), seed,
                           f"chunk at {start}")
        assert_same_balances(ref_acc, fast_acc, seed)
        # conservation: cash incl. fees and allowances per instrument never change by trading
        assert ref_acc.totals() == totals, f"seed {seed}: totals moved"
        check_reservations(ref_acc, ref.reservations())
        check_reservations(fast_acc, fast.reservations())
        start += size
    return ref_acc


@pytest.mark.parametrize("seed", range(12))
def test_seeded_streams_with_accounts_both_books(seed):
    rnd = random.Random(seed)
    closes = (6000,) if seed % 3 else (6000, 4210)
    n_accounts = 4 if seed % 2 else 7
    cmds = make_stream(seed, 2500, closes, n_accounts)
    acc = run_both(cmds, closes, n_accounts, seed, CONFIGS[seed % len(CONFIGS)],
                   random_sizes(rnd, len(cmds), 400))
    assert int(acc.cash[:, CA_RESERVED].sum()) >= 0


def test_accounts_not_opened_are_rejected_in_streams():
    # the stream names accounts 0..5; only 0..3 are opened
    cmds = make_stream(99, 1500, (6000,), 6)
    cal = TradingCalendar.xshg()
    acc = funded_accounts(99, 4, 1)
    events = make_book("numba", [6000], cal, accounts=acc).submit_batch(cmds)
    rejected = events[events[:, B.KIND] == EventKind.REJECTED]
    unknown = rejected[rejected[:, B.REASON] == Reason.UNKNOWN_ACCOUNT]
    assert len(unknown) and set(unknown[:, B.ACCOUNT].tolist()) <= {4, 5}
    trades = events[events[:, B.KIND] == EventKind.TRADE]
    assert not set(trades[:, B.ACCOUNT].tolist()) & {4, 5}


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(example=command_streams(), seed=st.integers(0, 2**16), config=st.sampled_from(CONFIGS))
def test_hypothesis_streams_with_accounts(example, seed, config):
    closes, rows, chunks = example
    cmds = to_array(rows)
    run_both(cmds, closes, 3, seed, config, chunks + [len(cmds)])


def test_long_session_over_days_keeps_every_invariant():
    """Several trading days of a busy stream: T+1 amounts reset at each day's open, fees
    accumulate, and the arrays stay equal to the reference's."""
    closes = (6000, 5000)
    cmds = make_stream(4242, 12_000, closes, 8, start="2024-03-04T09:30:00")
    acc = run_both(cmds, closes, 8, 4242, CONFIGS[0], [1000] * 12)
    assert int(acc.risk[RK_FEES]) > 0
    assert (acc.holdings[:, HD_PENDING] >= 0).all() and (acc.cash[:, CA_PROCEEDS] >= 0).all()
    assert (acc.cash[:, CA_TOTAL] >= 0).all()
