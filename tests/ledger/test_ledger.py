"""The settlement ledger on both backends: DvP postings, fees, idempotency, operations, bad
input that changes nothing, migrations, end of day, statements, and long engine sessions whose
ledger reconciles with the engine's in-memory balances."""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from engine.accounts import Accounts, RiskConfig, fee
from engine.book import make_book
from engine.codes import AccountType, EventKind
from engine import batch as B
from engine.tradingdays import TradingCalendar, day_of_date
from ledger import Ledger, LedgerError, Trade
from ledger.core import CASH, FEES, engine_balances
from ledger.schema import LATEST

from ..engine.test_differential import make_stream
from ..engine.test_risk import funded_accounts

DAY = day_of_date(dt.date(2024, 3, 4))


def ledger_with(url, fee_listed=0, fee_block=0, **accounts) -> Ledger:
    led = Ledger.open(url, ["CEA"], fee_listed, fee_block)
    for name, (cash, tonnes) in accounts.items():
        led.open_account(name, AccountType.COVERED_ENTITY)
        if cash:
            led.deposit(name, cash, ref=f"open:{name}:cash", day=DAY - 1)
        if tonnes:
            led.allowance_in(name, "CEA", tonnes, ref=f"open:{name}:cea", day=DAY - 1)
    return led


def trade(tid, buyer="B", seller="S", price=6000, qty=100, segment=0):
    return Trade(tid, DAY, DAY * 86_400_000_000 + 36_000_000_000 + tid, "CEA", segment, price,
                 qty, buyer, seller, f"b{tid}", f"s{tid}")


def test_a_trade_settles_delivery_versus_payment_with_fees(ledger_url):
    led = ledger_with(ledger_url, 5, 2, B=(10**9, 0), S=(0, 10**6))
    assert led.settle_trades([trade(1, price=6001, qty=3),
                              trade(2, price=6000, qty=100_000, segment=1)]) == 2
    f1, f2 = fee(18_003, 5), fee(600_000_000, 2)
    bal = led.balances(include_external=True)
    assert bal["B"] == {CASH: 10**9 - 18_003 - f1 - 600_000_000 - f2, "CEA": 100_003}
    assert bal["S"] == {CASH: 18_003 - f1 + 600_000_000 - f2, "CEA": 10**6 - 100_003}
    assert bal[FEES][CASH] == 2 * (f1 + f2)
    # every asset sums to zero over all accounts, external ones included
    for asset in (CASH, "CEA"):
        assert sum(row[asset] for row in bal.values()) == 0
    led.close()


def test_a_trade_published_twice_is_settled_once(ledger_url):
    led = ledger_with(ledger_url, B=(10**9, 0), S=(0, 10**5))
    assert led.settle_trades([trade(i) for i in range(1, 6)]) == 5
    before = led.balances()
    assert led.settle_trades([trade(i) for i in range(1, 6)]) == 0
    assert led.settle_trades([trade(i) for i in range(3, 9)]) == 3  # 6..8 new
    assert led.trade_count() == 8
    assert led.balances()["B"]["CEA"] == before["B"]["CEA"] + 300
    assert led.reconcile().ok
    led.close()
    again = Ledger.open(ledger_url, ["CEA"])  # reopened: still once
    assert again.settle_trades([trade(i) for i in range(1, 9)]) == 0
    assert again.trade_count() == 8
    again.close()


def test_bad_trades_roll_back_the_whole_batch(ledger_url):
    led = ledger_with(ledger_url, B=(600_000, 0), S=(0, 1000))
    for batch, match in [
        ([trade(1), trade(2, buyer="NOBODY")], "UNKNOWN_ACCOUNT"),
        ([trade(1), trade(2, buyer="S", seller="S")], "buyer differ"),
        ([trade(1), trade(2, qty=0)], "positive"),
        ([trade(1), trade(2)], "below zero"),  # B can pay for one trade, not two
        ([trade(1), trade(1)], "twice"),
    ]:
        with pytest.raises(LedgerError, match=match):
            led.settle_trades(batch)
        assert led.trade_count() == 0
        assert led.balances()["B"] == {CASH: 600_000, "CEA": 0}
    assert led.reconcile().ok
    led.close()


def test_operations_are_idempotent_and_refuse_bad_input(ledger_url):
    led = ledger_with(ledger_url, A=(1000, 10))
    assert led.deposit("A", 500, ref="d-1", day=DAY) is True
    assert led.deposit("A", 500, ref="d-1", day=DAY) is False
    before = led.balances()
    for call, match in [
        (lambda: led.deposit("A", 0, ref="x1", day=DAY), "1.."),
        (lambda: led.deposit("A", -3, ref="x2", day=DAY), "1.."),
        (lambda: led.deposit("A", 2.5, ref="x3", day=DAY), "integer"),
        (lambda: led.deposit("A", 10**16, ref="x4", day=DAY), "1.."),
        (lambda: led.deposit("NOBODY", 5, ref="x5", day=DAY), "UNKNOWN_ACCOUNT"),
        (lambda: led.deposit("@BANK", 5, ref="x6", day=DAY), "UNKNOWN_ACCOUNT"),
        (lambda: led.withdraw("A", 1501, ref="x7", day=DAY), "below zero"),
        (lambda: led.allowance_out("A", "CEA", 11, ref="x8", day=DAY), "below zero"),
        (lambda: led.allowance_in("A", "XYZ", 1, ref="x9", day=DAY), "no instrument"),
        (lambda: led.deposit("A", 5, ref="", day=DAY), "ref"),
        (lambda: led.open_account("A", "INDIVIDUAL"), "already open"),
        (lambda: led.open_account("C", "TRADER"), "not one of"),
        (lambda: led.open_account("@X", "INDIVIDUAL"), "not starting with @"),
    ]:
        with pytest.raises(LedgerError, match=match):
            call()
    assert led.balances() == before
    led.withdraw("A", 1500, ref="w-1", day=DAY)
    led.allowance_out("A", "CEA", 10, ref="surrender-2024", day=DAY)
    assert led.balances()["A"] == {CASH: 0, "CEA": 0}
    assert led.reconcile().ok
    led.close()


def test_migrations_are_versioned_and_a_newer_ledger_is_refused(ledger_url):
    led = Ledger.open(ledger_url, ["CEA"])
    assert led.version == LATEST
    versions = led.store.query("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, LATEST + 1))
    led.close()
    led = Ledger.open(ledger_url, ["CEA", "CEA24"])  # reopened: nothing re-applied
    assert len(led.store.query("SELECT version FROM schema_version")) == LATEST
    assert set(led.assets) == {CASH, "CEA", "CEA24"}
    led.store.execute("INSERT INTO schema_version VALUES (?, ?)", (LATEST + 1, "future"))
    led.close()
    with pytest.raises(LedgerError, match="upgrade"):
        Ledger.open(ledger_url, ["CEA"])


def test_statement_opening_trades_fees_operations_closing(ledger_url):
    led = ledger_with(ledger_url, 10, 0, B=(10**7, 0), S=(0, 1000))
    led.settle_trades([trade(1, qty=100), trade(2, qty=50, price=6010)])
    led.deposit("B", 1234, ref="top-up", day=DAY)
    st = led.statement("B", "2024-03-04")
    assert st.opening == {CASH: 10**7, "CEA": 0}
    assert [(t.trade_id, t.side, t.qty, t.counterparty) for t in st.trades] == [
        (1, "BUY", 100, "S"), (2, "BUY", 50, "S")]
    assert st.fees == fee(600_000, 10) + fee(300_500, 10)
    assert st.closing == led.balances()["B"]
    assert st.closing[CASH] == 10**7 - 600_000 - 300_500 - st.fees + 1234
    nxt = led.statement("B", "2024-03-05")
    assert nxt.opening == st.closing and nxt.trades == [] and nxt.closing == st.closing
    with pytest.raises(LedgerError, match="YYYY-MM-DD"):
        led.statement("B", "04/03/2024")
    led.close()


def test_reconcile_finds_a_tampered_balance(ledger_url):
    led = ledger_with(ledger_url, B=(10**7, 0), S=(0, 1000))
    led.settle_trades([trade(1)])
    assert led.reconcile().ok
    led.store.execute("UPDATE balance SET amount = amount + 1 WHERE account = ? AND asset = 0",
                      (led.accounts["S"],))
    rec = led.reconcile()
    assert not rec.ok and any("S in CNY" in p or "of S in CNY" in p for p in rec.problems)
    rec = led.reconcile({"B": {CASH: 1, "CEA": 0}}, expected_fees=0)
    assert any("B CNY: ledger" in p for p in rec.problems)
    led.close()


# ---------------------------------------------------------------------------- sessions


def run_session(ledger_url, seed, n=4000, chunk=300, republish=True, config=None):
    """A random multi-day engine session with accounts; every batch's events settled into the
    ledger (some batches published twice, as a retry would)."""
    rnd = random.Random(seed)
    closes = (6000, 5000)
    names = ["CEA", "CEA24"]
    n_accounts = 6
    config = config or RiskConfig(fee_bps_listed=3, fee_bps_block=1)
    acc = funded_accounts(seed, n_accounts, len(closes), config)
    led = Ledger.open(ledger_url, names, config.fee_bps_listed, config.fee_bps_block)
    name = lambda h: f"ACC{h}"  # noqa: E731
    order = lambda h: f"o{h}"  # noqa: E731
    for a in range(n_accounts):
        led.open_account(name(a), AccountType(int(acc.cash[a, 1])))
        led.deposit(name(a), int(acc.cash[a, 3]), ref=f"open:{a}", day=DAY - 1)
        for i, inst in enumerate(names):
            led.allowance_in(name(a), inst, int(acc.holdings[a * 2 + i, 0]), ref=f"open:{a}:{i}",
                             day=DAY - 1)
    book = make_book("numba", list(closes), TradingCalendar.xshg(), accounts=acc)
    cmds = make_stream(seed, n, closes, n_accounts, start="2024-03-04T09:30:00")
    trades = 0
    for start in range(0, n, chunk):
        events = book.submit_batch(cmds[start:start + chunk])
        trades += int((events[:, B.KIND] == EventKind.TRADE).sum())
        led.settle_events(events, name, order, names)
        if republish and rnd.random() < 0.3:
            assert led.settle_events(events, name, order, names) == 0
    return led, acc, names, name, trades


def test_an_engine_session_reconciles_with_the_ledger(ledger_url):
    led, acc, names, name, trades = run_session(ledger_url, seed=11)
    assert trades > 100 and led.trade_count() == trades
    expected, fees = engine_balances(acc, name, names)
    rec = led.reconcile(expected, fees)
    assert rec.ok, rec.problems
    # the statements of each day chain: one day's closing is the next day's opening
    dates = [d for d, inst, *_ in led.days() if inst == "CEA"]
    assert len(dates) >= 2
    for account in expected:
        previous = None
        for date in dates:
            st = led.statement(account, date)
            if previous is not None:
                assert st.opening == previous
            previous = st.closing
        assert previous == led.balances()[account]
    led.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_long_sessions_conserve_and_replay_equals_memory(seed, tmp_path):
    """Conservation and replay on SQLite over long sessions with several fee settings."""
    configs = [RiskConfig(), RiskConfig(fee_bps_listed=1000, fee_bps_block=500),
               RiskConfig(fee_bps_listed=7, t_plus_one=False)]
    led, acc, names, name, trades = run_session(str(tmp_path / "l.sqlite"), seed, n=8000,
                                                chunk=700, config=configs[seed - 1])
    bal = led.balances(include_external=True)
    for asset in [CASH] + names:
        assert sum(row[asset] for row in bal.values()) == 0
    totals = acc.totals()
    assert sum(row[CASH] for n, row in bal.items() if not n.startswith("@")) + \
        bal[FEES][CASH] == totals[0]
    expected, fees = engine_balances(acc, name, names)
    assert led.reconcile(expected, fees).ok
    settlement = led.store.query("SELECT sum(trades) FROM settlement")[0][0] or 0
    closed = led.store.query("SELECT count(*) FROM trade WHERE day IN (SELECT day FROM "
                             "settlement)")[0][0]
    assert settlement == closed
    led.close()
