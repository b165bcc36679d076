"""Negotiated block agreements (spec §3b, the market's 大宗协议交易): BLOCK_QUOTE,
BLOCK_COUNTER, BLOCK_ACCEPT, BLOCK_WITHDRAW and expiry at 15:00.

- every reject reason of each command, in its order of checks, on both books;
- the flows: an addressed negotiation, a public quote accepted from the board, a public
  quote countered (then private), the maker revising its terms, who may see what;
- the risk stage: each party's reservation from its own proposal, moved by its counters,
  settled by the acceptance, given back by withdrawal, a refused counter and expiry; the
  reservations always what the open orders and quotes need;
- the trade: a BLOCK trade at the accepted terms, the acceptor the aggressor, trade ids
  shared with the book's, counted in the block volume and never in the close;
- differential: seeded streams mixing negotiations (aimed at the live quotes) with every
  other command, reference and Numba books, one batch and chunked, with and without
  accounts.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine import (
    BlockAccept, BlockCounter, BlockQuote, BlockWithdraw, ClockTick, Engine, NewOrder, QuoteEnd,
    RiskConfig, Side, parse_time,
)
from engine import batch as B
from engine.batch import empty_commands
from engine.book import make_book
from engine.codes import NO_PRICE, NO_REF, Action, EventKind, Reason, Segment
from engine.orderfile import read_order_file, run_match, write_results
from engine.tradingdays import TradingCalendar

from .test_differential import (
    TINY, assert_same_events, assert_same_state, make_stream, n_handles, random_sizes,
    run_chunked,
)
from .test_risk import CONFIGS, run_both

IMPLS = ("numba", "reference")
CAL = TradingCalendar.from_dates(["2024-03-04", "2024-03-05"])
PM = parse_time("2024-03-04T13:05:00")
AM = parse_time("2024-03-04T10:00:00")


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


def engine(impl, accounts=None, fee_block=0):
    """An engine; ``accounts`` maps names to (cash fen, allowances t) and turns risk on."""
    if accounts is None:
        return Engine({"CEA": 6000}, impl=impl, calendar=CAL)
    eng = Engine({"CEA": 6000}, impl=impl, calendar=CAL,
                 risk=RiskConfig(fee_bps_block=fee_block))
    for name, (cash, tonnes) in accounts.items():
        eng.open_account(name)
        if cash:
            eng.deposit(name, cash)
        if tonnes:
            eng.allowance_in(name, tonnes)
    return eng


def names(events):
    return [type(e).__name__ for e in events]


def rejected(eng, cmd) -> str:
    events = eng.submit(cmd)
    assert names(events)[-1] == "OrderRejected", events
    return events[-1].reason.name


# ---------------------------------------------------------------------------- flows

def test_addressed_negotiation_ends_in_one_block_trade(impl):
    eng = engine(impl)
    eng.submit(NewOrder(AM, "L", "l1", Side.BUY, qty=10, price=6000))
    eng.submit(NewOrder(AM, "M", "m1", Side.SELL, qty=10, price=6000))  # trade 1 (listed)
    [made] = eng.submit(BlockQuote(PM, "A", "q1", Side.SELL, 200_000, 5800, counterparty="B"))
    assert (made.maker, made.counterparty, made.side, made.price, made.qty, made.action,
            made.by) == ("A", "B", Side.SELL, 5800, 200_000, "BLOCK_QUOTE", "A")
    [c1] = eng.submit(BlockCounter(PM + 1, "B", "q1", price=5600, qty=300_000))
    assert (c1.price, c1.qty, c1.action, c1.by) == (5600, 300_000, "BLOCK_COUNTER", "B")
    [c2] = eng.submit(BlockCounter(PM + 2, "A", "q1", price=5700))  # qty as it is
    assert (c2.price, c2.qty, c2.by) == (5700, 300_000, "A")
    trade, ended = eng.submit(BlockAccept(PM + 3, "B", "q1"))
    assert (trade.trade_id, trade.segment, trade.price, trade.qty) == (2, Segment.BLOCK, 5700,
                                                                     300_000)
    assert (trade.buy_account, trade.sell_account, trade.aggressor) == ("B", "A", Side.BUY)
    assert (trade.buy_order_id, trade.sell_order_id, trade.buy_open, trade.sell_open) == (
        "q1", "q1", 0, 0)
    assert (ended.how, ended.by, ended.price, ended.qty) == (QuoteEnd.ACCEPTED, "B", 5700,
                                                             300_000)
    assert eng.quotes() == []
    day = eng.day()[0]
    # block trades count in the block figures and never set the close (spec §2)
    assert (day.block_volume, day.block_turnover) == (300_000, 300_000 * 5700)
    assert day.close == 6000 and day.listed_volume == 10
    # the quote's id is used: a NEW with it is a duplicate
    assert rejected(eng, NewOrder(PM + 10, "A", "q1", Side.BUY, qty=1, price=6000)) == \
        "DUPLICATE_ORDER_ID"


def test_public_quote_on_the_board(impl):
    eng = engine(impl)
    eng.submit(BlockQuote(PM, "A", "q1", Side.BUY, 100_000, 6100))
    eng.submit(BlockQuote(PM, "A", "q2", Side.BUY, 100_000, 6000, counterparty="B"))
    # everyone sees the public quote; only the parties the addressed one
    assert [q.quote_id for q in eng.quotes("C")] == ["q1"]
    assert [q.quote_id for q in eng.quotes("B")] == ["q1", "q2"]
    assert [q.quote_id for q in eng.quotes("A")] == ["q1", "q2"]
    assert rejected(eng, BlockAccept(PM, "C", "q2")) == "UNKNOWN_QUOTE"  # not C's business
    # anyone but the maker may accept a public quote directly
    assert rejected(eng, BlockAccept(PM, "A", "q1")) == "NOT_YOUR_TURN"
    trade, ended = eng.submit(BlockAccept(PM, "C", "q1", price=6100, qty=100_000))
    assert (trade.buy_account, trade.sell_account, trade.aggressor, ended.counterparty) == (
        "A", "C", Side.SELL, "C")
    # a public quote countered becomes a negotiation between those two
    eng.submit(BlockQuote(PM, "A", "q3", Side.SELL, 100_000, 6000))
    [c] = eng.submit(BlockCounter(PM, "D", "q3", qty=150_000))
    assert (c.counterparty, c.price, c.qty) == ("D", 6000, 150_000)
    assert [q.quote_id for q in eng.quotes("E")] == []
    assert rejected(eng, BlockAccept(PM, "E", "q3")) == "UNKNOWN_QUOTE"
    assert rejected(eng, BlockAccept(PM, "D", "q3")) == "NOT_YOUR_TURN"
    # the maker revises a public quote: still public
    eng.submit(BlockQuote(PM, "F", "q4", Side.SELL, 100_000, 6000))
    [c] = eng.submit(BlockCounter(PM, "F", "q4", price=5900))
    assert c.counterparty == "" and [q.price for q in eng.quotes("Z") if q.quote_id == "q4"] \
        == [5900]
    # withdrawal: a public quote by its maker only; a negotiation by either party
    assert rejected(eng, BlockWithdraw(PM, "Z", "q4")) == "UNKNOWN_QUOTE"
    [w] = eng.submit(BlockWithdraw(PM, "F", "q4"))
    assert (w.how, w.by) == (QuoteEnd.WITHDRAWN, "F")
    [w] = eng.submit(BlockWithdraw(PM, "D", "q3"))
    assert (w.how, w.by) == (QuoteEnd.WITHDRAWN, "D")
    assert rejected(eng, BlockWithdraw(PM, "A", "q3")) == "UNKNOWN_QUOTE"  # gone


def test_quotes_expire_at_15_00(impl):
    eng = engine(impl)
    eng.submit(BlockQuote(PM, "A", "q1", Side.SELL, 100_000, 6000, counterparty="B"))
    eng.submit(BlockQuote(PM, "C", "q2", Side.BUY, 100_000, 6000))
    eng.submit(NewOrder(PM, "D", "d1", Side.BUY, qty=100_000, price=5000))
    events = eng.submit(ClockTick(parse_time("2024-03-04T15:00:00")))
    assert names(events) == ["QuoteEnded", "QuoteEnded", "OrderExpired", "DayClosed"]
    assert [(e.quote_id, e.how, e.by) for e in events[:2]] == [
        ("q1", QuoteEnd.EXPIRED, ""), ("q2", QuoteEnd.EXPIRED, "")]
    assert all(e.ts_us == parse_time("2024-03-04T15:00:00") for e in events)
    assert eng.quotes() == []
    # the next trading day's first command ends the day too: expiry happens then
    eng2 = engine(impl)
    eng2.submit(BlockQuote(PM, "A", "q1", Side.SELL, 100_000, 6000))
    events = eng2.submit(NewOrder(parse_time("2024-03-05T10:00:00"), "X", "x", Side.BUY,
                                  qty=1, price=6000))
    assert names(events)[:2] == ["QuoteEnded", "DayClosed"]
    assert events[0].ts_us == parse_time("2024-03-04T15:00:00")


def test_every_reject_reason_in_the_order_of_checks(impl):
    eng = engine(impl)
    eng.submit(BlockQuote(PM, "A", "live", Side.SELL, 100_000, 6000, counterparty="B"))
    cases = [
        # BLOCK_QUOTE: MALFORMED, INVALID_QTY, INVALID_PRICE, DUPLICATE_ORDER_ID,
        # MARKET_CLOSED, INVALID_QTY (block range), PRICE_OUTSIDE_BAND, UNKNOWN_COUNTERPARTY
        (BlockQuote(PM, "", "a", Side.SELL, 100_000, 6000), "MALFORMED"),
        (BlockQuote(PM, "A", "", Side.SELL, 100_000, 6000), "MALFORMED"),
        (BlockQuote(PM, "A", "b", Side.SELL, 100_000, 6000, instrument="X"), "MALFORMED"),
        (BlockQuote(PM, "A", "c", Side.SELL, 0, 6000), "INVALID_QTY"),
        (BlockQuote(PM, "A", "d", Side.SELL, 100_000_001, 6000), "INVALID_QTY"),
        (BlockQuote(PM, "A", "e", Side.SELL, 100_000, 0), "INVALID_PRICE"),
        (BlockQuote(PM, "A", "live", Side.SELL, 100_000, 6000), "DUPLICATE_ORDER_ID"),
        (BlockQuote(PM, "A", "g", Side.SELL, 99_999, 6000), "INVALID_QTY"),
        (BlockQuote(PM, "A", "h", Side.SELL, 100_000, 4199), "PRICE_OUTSIDE_BAND"),
        (BlockQuote(PM, "A", "i", Side.SELL, 100_000, 7801), "PRICE_OUTSIDE_BAND"),
        (BlockQuote(PM, "A", "j", Side.SELL, 100_000, 7800, counterparty="A"),
         "UNKNOWN_COUNTERPARTY"),
        # BLOCK_COUNTER: MALFORMED, INVALID_QTY, INVALID_PRICE, MARKET_CLOSED, UNKNOWN_QUOTE,
        # INVALID_QTY (block range), PRICE_OUTSIDE_BAND
        (BlockCounter(PM, "B", "live"), "MALFORMED"),  # neither price nor qty
        (BlockCounter(PM, "", "live", price=6000), "MALFORMED"),
        (BlockCounter(PM, "B", "live", qty=0), "INVALID_QTY"),
        (BlockCounter(PM, "B", "live", price=-5), "INVALID_PRICE"),
        (BlockCounter(PM, "C", "live", price=6000), "UNKNOWN_QUOTE"),  # not a party
        (BlockCounter(PM, "B", "none", price=6000), "UNKNOWN_QUOTE"),
        (BlockCounter(PM, "B", "live", qty=5), "INVALID_QTY"),
        (BlockCounter(PM, "B", "live", price=8000), "PRICE_OUTSIDE_BAND"),
        # BLOCK_ACCEPT: MALFORMED, INVALID_QTY / INVALID_PRICE (stated terms), MARKET_CLOSED,
        # UNKNOWN_QUOTE, NOT_YOUR_TURN, TERMS_CHANGED
        (BlockAccept(PM, "", "live"), "MALFORMED"),
        (BlockAccept(PM, "B", "live", qty=0), "INVALID_QTY"),
        (BlockAccept(PM, "B", "live", price=0), "INVALID_PRICE"),
        (BlockAccept(PM, "C", "live"), "UNKNOWN_QUOTE"),
        (BlockAccept(PM, "A", "live"), "NOT_YOUR_TURN"),
        (BlockAccept(PM, "B", "live", price=6001), "TERMS_CHANGED"),
        (BlockAccept(PM, "B", "live", qty=100_001), "TERMS_CHANGED"),
        # BLOCK_WITHDRAW: MALFORMED, MARKET_CLOSED (a non-trading day), UNKNOWN_QUOTE
        (BlockWithdraw(PM, "", "live"), "MALFORMED"),
        (BlockWithdraw(PM, "C", "live"), "UNKNOWN_QUOTE"),
    ]
    for cmd, reason in cases:
        assert rejected(eng, cmd) == reason, cmd
    # nothing changed: the quote is as it was, and B can still take it
    [q] = eng.quotes()
    assert (q.quote_id, q.price, q.qty, q.by) == ("live", 6000, 100_000, "A")
    # MARKET_CLOSED: before 13:00 (checked before everything that needs a quote), and from
    # 15:00, when the quote has expired; a withdrawal then finds nothing (it is accepted at
    # any time of a trading day, like a cancel), and on a non-trading day it is closed
    late = parse_time("2024-03-04T15:30:00")
    assert rejected(eng, BlockQuote(late, "A", "f", Side.SELL, 100_000, 6000)) == \
        "MARKET_CLOSED"
    assert rejected(eng, BlockCounter(late, "B", "live", price=6000)) == "MARKET_CLOSED"
    assert rejected(eng, BlockAccept(late, "B", "live")) == "MARKET_CLOSED"
    assert rejected(eng, BlockWithdraw(late, "A", "live")) == "UNKNOWN_QUOTE"
    assert rejected(eng, BlockQuote(parse_time("2024-03-05T11:00:00"), "A", "g2", Side.SELL,
                                    100_000, 6000)) == "MARKET_CLOSED"
    assert rejected(eng, BlockWithdraw(parse_time("2024-03-09T10:00:00"), "A", "live")) == \
        "MARKET_CLOSED"


def test_a_quote_id_is_used_whatever_its_outcome(impl):
    eng = engine(impl)
    assert rejected(eng, BlockQuote(AM, "A", "q1", Side.SELL, 100_000, 6000)) == \
        "MARKET_CLOSED"
    assert rejected(eng, BlockQuote(PM, "A", "q1", Side.SELL, 100_000, 6000)) == \
        "DUPLICATE_ORDER_ID"
    eng.submit(NewOrder(PM, "A", "o1", Side.SELL, qty=5, price=6000))
    assert rejected(eng, BlockQuote(PM, "A", "o1", Side.SELL, 100_000, 6000)) == \
        "DUPLICATE_ORDER_ID"


# ---------------------------------------------------------------------------- risk stage

def test_reservations_follow_each_party_proposals(impl):
    eng = engine(impl, {"A": (0, 300_000), "B": (2 * 10**9, 0), "P": (10**9, 0)},
                 fee_block=1)
    eng.submit(BlockQuote(PM, "A", "q1", Side.SELL, 200_000, 6000, counterparty="B"))
    assert eng.balance("A").holdings[0].reserved == 200_000
    # a counter reserves for the counterer's own terms
    eng.submit(BlockCounter(PM, "B", "q1", price=5800, qty=150_000))
    unit = 5800 + 1  # the price and the fee per tonne, rounded up (1 bps)
    assert eng.balance("B").cash_reserved == 150_000 * unit
    assert eng.balance("A").holdings[0].reserved == 200_000  # A's own terms, unchanged
    eng.check_invariants()
    # B moves its terms: its reservation moves with them
    eng.submit(BlockCounter(PM, "B", "q1", price=5900))
    assert eng.balance("B").cash_reserved == 150_000 * (5900 + 1)
    # A accepts: A's reservation is for the accepted terms, then the trade settles both
    trade, _ = eng.submit(BlockAccept(PM, "A", "q1"))
    notional, fee = 150_000 * 5900, 150_000 * 5900 // 10_000
    a, b = eng.balance("A"), eng.balance("B")
    assert (a.cash, a.holdings[0].total, a.holdings[0].reserved) == (notional - fee, 150_000, 0)
    assert (b.cash, b.cash_reserved, b.holdings[0].total) == (2 * 10**9 - notional - fee, 0,
                                                               150_000)
    eng.check_invariants()
    # a buyer without the funds: the quote is refused; a counter refused leaves the old
    # reservation in place
    assert rejected(eng, BlockQuote(PM, "P", "q2", Side.BUY, 200_000, 6000)) == \
        "INSUFFICIENT_FUNDS"
    eng.submit(BlockQuote(PM, "P", "q3", Side.BUY, 100_000, 4300, counterparty="A"))
    before = eng.balance("P").cash_reserved
    assert rejected(eng, BlockCounter(PM, "P", "q3", price=7000, qty=200_000)) == \
        "INSUFFICIENT_FUNDS"
    assert eng.balance("P").cash_reserved == before
    # the seller accepting must have the allowances (A has 150,000 left)
    assert names(eng.submit(BlockCounter(PM, "P", "q3", qty=160_000))) == ["QuoteUpdated"]
    assert rejected(eng, BlockAccept(PM, "A", "q3")) == "INSUFFICIENT_ALLOWANCES"
    assert eng.balance("A").holdings[0].reserved == 0
    eng.check_invariants()
    # withdrawal gives back everything the parties reserved
    eng.submit(BlockCounter(PM, "A", "q3", qty=100_000, price=5000))
    assert eng.balance("A").holdings[0].reserved == 100_000
    eng.submit(BlockWithdraw(PM, "A", "q3"))
    assert eng.balance("A").holdings[0].reserved == 0 and eng.balance("P").cash_reserved == 0
    eng.check_invariants()


def test_expiry_gives_back_the_reservations(impl):
    eng = engine(impl, {"A": (0, 300_000), "B": (2 * 10**9, 0)})
    eng.submit(BlockQuote(PM, "A", "q1", Side.SELL, 200_000, 6000, counterparty="B"))
    eng.submit(BlockCounter(PM, "B", "q1", price=5800))
    assert eng.balance("B").cash_reserved > 0
    eng.end_day()
    assert eng.balance("A").holdings[0].reserved == 0 and eng.balance("B").cash_reserved == 0
    eng.check_invariants()


def test_unknown_counterparty_with_accounts(impl):
    eng = engine(impl, {"A": (0, 300_000)})
    assert rejected(eng, BlockQuote(PM, "A", "q1", Side.SELL, 100_000, 6000,
                                    counterparty="NOBODY")) == "UNKNOWN_COUNTERPARTY"
    assert rejected(eng, BlockQuote(PM, "Z", "q2", Side.SELL, 100_000, 6000)) == \
        "UNKNOWN_ACCOUNT"


def test_order_file_negotiation(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "time,account,action,order_id,side,type,tif,price,qty,stp,counterparty\n"
        "2024-03-04T13:00:00,A,BLOCK_QUOTE,q1,SELL,,,58.00,200000,,B\n"
        "2024-03-04T13:00:01,B,BLOCK_COUNTER,q1,,,,56.00,,,\n"
        "2024-03-04T13:00:02,A,BLOCK_ACCEPT,q1,,,,56.00,200000,,\n"
        "2024-03-04T13:00:03,C,BLOCK_QUOTE,q2,BUY,,,60.00,100000,,\n"
        "2024-03-04T13:00:04,C,BLOCK_COUNTER,q2,,,,,abc,,\n"
        "2024-03-04T13:00:05,C,BLOCK_QUOTE,q3,BUY,,,60.00,,,\n"
        "2024-03-04T13:00:06,C,BLOCK_QUOTE,q4,BUY,,,60.00,100000,,\n"
        "2024-03-04T13:00:07,C,BLOCK_WITHDRAW,q4,,,,,,,\n")
    for impl in IMPLS:
        result = run_match(read_order_file(path, ["CEA"]), [6000], impl)
        assert result.trades[1][2:10] == ["BLOCK", "56.00", "200000", "q1", "q1", "B", "A",
                                          "SELL"]
        assert [r[1:] for r in result.rejects[1:]] == [
            ["BLOCK_COUNTER", "q2", "INVALID_QTY"], ["BLOCK_QUOTE", "q3", "MALFORMED"]]
        assert result.quotes == [
            ["quote_id", "maker", "counterparty", "side", "price", "qty", "status", "ended_by",
             "counters"],
            ["q1", "A", "B", "SELL", "56.00", "200000", "ACCEPTED", "A", "1"],
            ["q2", "C", "", "BUY", "60.00", "100000", "LIVE", "", "0"],  # input ends: still live
            ["q4", "C", "", "BUY", "60.00", "100000", "WITHDRAWN", "C", "0"]]
        written = write_results(result, tmp_path / impl)
        assert (tmp_path / impl / "quotes.csv") in written


# ---------------------------------------------------------------------------- differential

def make_negotiation_stream(seed: int, n: int, closes, accounts: int) -> np.ndarray:
    """A seeded stream (``make_stream``, with some takes) with negotiations: after every few
    rows a reference book that has run the stream so far shows its live quotes, and quotes,
    counters, acceptances and withdrawals are aimed at them (mostly by a party, now and then
    not; terms inside and outside the block rules; stated terms right and wrong); the
    stream is then run from scratch by both books."""
    rnd = random.Random(seed * 7_919 + 1)
    base = make_stream(seed, n, closes, accounts, spread=8, takes=0.03)
    oracle = make_book("reference", closes, TradingCalendar.xshg())
    out, next_id, k = [], int(base["order"].max()) + 5_000, 0
    while k < len(base):
        step = rnd.randint(1, 10)
        chunk = base[k:k + step]
        oracle.submit_batch(chunk)
        out.append(chunk)
        k += step
        ts = int(chunk["ts"].max())
        if ts <= 0:
            continue
        if rnd.random() < 0.5:  # an afternoon: most negotiations land in the session
            day, tod = divmod(ts, 86_400_000_000)
            if tod < 13 * 3_600_000_000:
                ts = day * 86_400_000_000 + 13 * 3_600_000_000 + rnd.randint(0, 10**9)
        rows = empty_commands(rnd.randint(1, 3))
        for j in range(len(rows)):
            row = rows[j]
            row["ts"] = ts
            live = sorted(oracle.negotiations.live.values(), key=lambda q: q.seq)
            r = rnd.random()
            instrument = rnd.randrange(len(closes))
            prior = closes[instrument]
            price = prior + rnd.randint(-prior // 5, prior // 5) if rnd.random() < 0.9 else \
                prior + rnd.choice((-1, 1)) * (prior * 3 // 10 + rnd.randint(1, 5))
            qty = rnd.randint(100_000, 400_000) if rnd.random() < 0.9 else rnd.randint(1, 99_999)
            if r < 0.3 or not live:
                row["action"], row["order"] = Action.BLOCK_QUOTE, next_id
                next_id += 1
                if rnd.random() < 0.03 and live:
                    row["order"] = rnd.choice(live).ref  # a used id
                row["account"] = rnd.randrange(accounts)
                row["instrument"] = instrument
                row["side"] = rnd.choice((Side.BUY, Side.SELL))
                row["price"], row["qty"] = price, qty
                p = rnd.random()
                row["peer"] = NO_REF if p < 0.4 else (
                    row["account"] if p < 0.45 else rnd.randrange(accounts + 1))
            else:
                q = rnd.choice(live)
                parties = [q.maker] + ([q.counterparty] if q.counterparty >= 0 else [])
                if q.counterparty < 0:
                    parties += [a for a in range(accounts) if a != q.maker]
                row["order"] = q.ref if rnd.random() < 0.95 else next_id + 77
                row["account"] = rnd.choice(parties) if rnd.random() < 0.9 else \
                    rnd.randrange(accounts)
                a = rnd.random()
                if a < 0.4:
                    row["action"] = Action.BLOCK_COUNTER
                    c = rnd.random()
                    row["price"] = NO_PRICE if c < 0.3 else (
                        q.price + rnd.randint(-50, 50) if rnd.random() < 0.9 else price)
                    row["qty"] = 0 if 0.3 <= c < 0.6 or (c < 0.3 and rnd.random() < 0.5) \
                        else (q.qty + rnd.randint(-50_000, 50_000) if rnd.random() < 0.9
                              else qty)
                    if row["price"] == NO_PRICE and row["qty"] == 0:
                        row["check"] = Reason.MALFORMED
                elif a < 0.85:
                    row["action"] = Action.BLOCK_ACCEPT
                    others = [p for p in parties if p != q.proposer]
                    if others and rnd.random() < 0.85:
                        row["account"] = rnd.choice(others)
                    s = rnd.random()
                    row["price"] = q.price if s < 0.2 else (q.price + 1 if s < 0.25 else NO_PRICE)
                    row["qty"] = q.qty if 0.25 <= s < 0.4 else 0
                else:
                    row["action"] = Action.BLOCK_WITHDRAW
            if rnd.random() < 0.03:
                row["check"] = rnd.choice((Reason.MALFORMED, Reason.INVALID_QTY,
                                           Reason.INVALID_PRICE))
            oracle.submit_batch(rows[j:j + 1])
        out.append(rows)
    return np.concatenate(out)


NEG_SEEDS = [(seed, ((6000,), (6000, 5800))[seed % 2], 3 + seed % 3) for seed in range(70, 80)]


@pytest.mark.parametrize("seed,closes,accounts", NEG_SEEDS)
def test_negotiation_streams_both_books(seed, closes, accounts):
    cal = TradingCalendar.xshg()
    cmds = make_negotiation_stream(seed, 2000, closes, accounts)
    ref = make_book("reference", closes, cal)
    fast = make_book("numba", closes, cal, **TINY)
    ev_ref = ref.submit_batch(cmds)
    assert_same_events(ev_ref, fast.submit_batch(cmds), seed, "(negotiations, one batch)")
    assert_same_state(ref, fast, n_handles(cmds), len(closes), seed)
    assert ref.negotiations.state() == fast.negotiations.state()
    fast.check_invariants()
    fast2 = make_book("numba", closes, cal, **TINY)
    sizes = random_sizes(random.Random(seed), len(cmds), 60)
    assert_same_events(ev_ref, run_chunked(fast2, cmds, sizes), seed, "(negotiations, chunked)")
    assert fast2.negotiations.state() == ref.negotiations.state()

    kinds = ev_ref[:, B.KIND]
    ended = ev_ref[kinds == EventKind.QUOTE_ENDED]
    assert {int(x) for x in ended[:, B.QUOTE_END]} == {QuoteEnd.ACCEPTED, QuoteEnd.WITHDRAWN,
                                                       QuoteEnd.EXPIRED}, seed
    # every acceptance: a BLOCK trade just before, at the quote's last terms
    for k in np.flatnonzero((kinds == EventKind.QUOTE_ENDED)
                            & (ev_ref[:, B.QUOTE_END] == QuoteEnd.ACCEPTED)).tolist():
        trade, end = ev_ref[k - 1], ev_ref[k]
        assert trade[B.KIND] == EventKind.TRADE and trade[B.SEGMENT] == Segment.BLOCK
        assert (trade[B.PRICE], trade[B.QTY], trade[B.TRADE_BUY_ORDER]) == (
            end[B.PRICE], end[B.QTY], end[B.ORDER])
        assert trade[B.TRADE_BUY_ACCOUNT] != trade[B.TRADE_SELL_ACCOUNT]
    # trade ids stay consecutive across book and negotiated trades
    ids = ev_ref[kinds == EventKind.TRADE, B.TRADE_ID]
    assert ids.tolist() == list(range(1, len(ids) + 1))


def test_negotiation_streams_reach_every_reason():
    seen: set[int] = set()
    for seed, closes, accounts in NEG_SEEDS:
        cmds = make_negotiation_stream(seed, 2000, closes, accounts)
        ev = make_book("reference", closes, TradingCalendar.xshg()).submit_batch(cmds)
        neg = np.isin(cmds["action"][ev[:, B.CMD]], [Action.BLOCK_QUOTE, Action.BLOCK_COUNTER,
                                                      Action.BLOCK_ACCEPT,
                                                      Action.BLOCK_WITHDRAW])
        rej = ev[(ev[:, B.KIND] == EventKind.REJECTED) & neg]
        seen |= set(rej[:, B.REASON].tolist())
    assert {Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE,
            Reason.DUPLICATE_ORDER_ID, Reason.MARKET_CLOSED, Reason.PRICE_OUTSIDE_BAND,
            Reason.UNKNOWN_QUOTE, Reason.UNKNOWN_COUNTERPARTY, Reason.NOT_YOUR_TURN,
            Reason.TERMS_CHANGED} <= seen


@pytest.mark.parametrize("seed", range(80, 86))
def test_negotiation_streams_with_accounts_both_books(seed):
    """With the risk stage on: balances equal after every chunk, totals conserved, the
    reservations exactly what open orders and live quotes need (``test_risk.run_both``)."""
    closes = (6000,) if seed % 2 else (6000, 4210)
    n_accounts = 3 + seed % 3
    cmds = make_negotiation_stream(seed, 2000, closes, n_accounts)
    run_both(cmds, closes, n_accounts, seed, CONFIGS[seed % len(CONFIGS)],
             random_sizes(random.Random(seed), len(cmds), 250))
