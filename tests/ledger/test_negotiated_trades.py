"""Negotiated block agreements' trades reach the ledger as any other (issue 20): a session
of the engine with accounts, mixing negotiations with every other command, each batch's events settled into the ledger (some twice, as a retry would);
the ledger then reconciles with the engine's balances, fees included, and holds each
negotiated trade once, as a BLOCK trade between the two parties at the accepted terms."""

from __future__ import annotations

import random

from engine import batch as B
from engine.accounts import RiskConfig
from engine.book import make_book
from engine.codes import AccountType, EventKind, QuoteEnd, Segment
from engine.tradingdays import TradingCalendar
from ledger import Ledger
from ledger.core import engine_balances

from ..engine.test_negotiation import make_negotiation_stream
from ..engine.test_risk import funded_accounts

DAY0 = 19_785  # 2024-03-03, the day before the streams start


def test_negotiated_trades_reconcile(ledger_url):
    rnd = random.Random(5)
    closes, names, n_accounts = (6000,), ["CEA"], 5
    config = RiskConfig(fee_bps_listed=3, fee_bps_block=1)
    acc = funded_accounts(81, n_accounts, 1, config)
    led = Ledger.open(ledger_url, names, config.fee_bps_listed, config.fee_bps_block)
    name = lambda h: f"ACC{h}"  # noqa: E731
    order = lambda h: f"o{h}"  # noqa: E731
    for a in range(n_accounts):
        led.open_account(name(a), AccountType(int(acc.cash[a, 1])))
        led.deposit(name(a), int(acc.cash[a, 3]), ref=f"open:{a}", day=DAY0)
        led.allowance_in(name(a), "CEA", int(acc.holdings[a, 0]), ref=f"open:{a}:0", day=DAY0)
    book = make_book("numba", list(closes), TradingCalendar.xshg(), accounts=acc)
    cmds = make_negotiation_stream(81, 2500, closes, n_accounts)
    negotiated, trades = [], 0
    for start in range(0, len(cmds), 200):
        events = book.submit_batch(cmds[start:start + 200])
        kinds = events[:, B.KIND]
        trades += int((kinds == EventKind.TRADE).sum())
        accepted = (kinds == EventKind.QUOTE_ENDED) & (events[:, B.QUOTE_END] ==
                                                        QuoteEnd.ACCEPTED)
        negotiated += [tuple(int(x) for x in events[k - 1, [B.TRADE_ID, B.PRICE, B.QTY]])
                       for k in accepted.nonzero()[0].tolist()]
        led.settle_events(events, name, order, names)
        if rnd.random() < 0.3:
            assert led.settle_events(events, name, order, names) == 0
    assert len(negotiated) >= 5
    assert led.trade_count() == trades
    expected, fees = engine_balances(acc, name, names)
    rec = led.reconcile(expected, fees)
    assert rec.ok, rec.problems
    # each negotiated trade is in the ledger once, as a BLOCK trade at the accepted terms
    for trade_id, price, qty in negotiated:
        [(t, _, _)] = led.trades_between(trade_id, trade_id)
        assert (t.segment, t.price, t.qty) == (Segment.BLOCK, price, qty)
        assert t.buyer != t.seller and t.buy_order == t.sell_order
    led.close()
