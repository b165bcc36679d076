"""One-way bidding against the ledger (ledger/auction.py) and ``cea auction``.

- a hand-worked auction with fees, settled on SQLite and PostgreSQL: who pays what, the
  reservation boundary (exactly enough passes, one fen less is INSUFFICIENT_FUNDS, earlier
  accepted bids count), conservation, reconciliation, an idempotent rerun;
- refusals before any bid (unknown seller, seller short of allowances), unknown bidders, an
  auction id reused for different fills, a settlement the ledger refuses: nothing written;
- properties over generated auctions: cash and allowances conserved, each side's balance
  moves by exactly its payments and fees, funds rejects exactly when the cash is short;
- the CLI on docs/examples/auction-bids.csv, and bad files refused with their line number.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from cea.cli import app
from engine.accounts import fee, reserve_unit
from engine.auction import AuctionError, AuctionReason, Bid, ClearingRule, Offer, clear
from engine.codes import Reason
from engine.rules import DAY_CLOSE_US, DAY_US, PM_OPEN_US
from ledger.auction import (
    AUCTION_TRADE_BASE, auction_trade_id, auction_trades, run_auction,
)
from ledger.core import AUCTION, CASH, FEES, Ledger, LedgerError, Trade

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BIDS = ROOT / "docs" / "examples" / "auction-bids.csv"
EXAMPLE_ACCOUNTS = ROOT / "docs" / "examples" / "accounts.csv"
DAY = 20285  # 2025-07-16, a Wednesday
T0 = DAY * DAY_US + PM_OPEN_US  # 13:00


def make_offer(**kw) -> Offer:
    base = dict(auction_id=3, seller="MEE", quantity=1_000, reserve_price=6000,
                prior_close=6000, window_start=T0, window_end=DAY * DAY_US + DAY_CLOSE_US)
    base.update(kw)
    return Offer(**base)


def open_ledger(url: str, cash: dict[str, int], fee_bps: int = 0, allowances: int = 1_000
                ) -> Ledger:
    led = Ledger.open(url, ["CEA"], fee_bps_auction=fee_bps)
    led.open_account("MEE", "INSTITUTION")  # the authority: paid allocation
    if allowances:
        led.allowance_in("MEE", "CEA", allowances, ref="issue:MEE", day=DAY - 1)
    for name, fen in cash.items():
        led.open_account(name, "COVERED_ENTITY")
        if fen:
            led.deposit(name, fen, ref=f"d:{name}", day=DAY - 1)
    return led


def totals(led: Ledger) -> dict[str, int]:
    """Sum over every account, external ones included, per asset: always zero."""
    out: dict[str, int] = {}
    for row in led.balances(include_external=True).values():
        for asset, amount in row.items():
            out[asset] = out.get(asset, 0) + amount
    return out


def conserved(led: Ledger) -> bool:
    """Every asset (cash, allowances, and any other the ledger holds) sums to zero."""
    return all(v == 0 for v in totals(led).values())


def held(led: Ledger) -> dict[str, tuple[int, int]]:
    """{account: (cash fen, CEA tonnes)} over the participants."""
    return {name: (row[CASH], row["CEA"]) for name, row in led.balances().items()}


# fee 25 bps per side. Reservation per tonne = price + ceil(price x 25 / 10,000):
#   61.00 -> 6100 + ceil(15.25) = 6116;  60.50 -> 6050 + ceil(15.125) = 6066;
#   62.00 -> 6200 + ceil(15.5) = 6216;   60.10 -> 6110 + ceil(15.275)... = 6126 (A's 2nd bid)
CASH_IN = {"A": 600 * 6116, "B": 5_000_000, "C": 1_000_000, "D": 100 * 6216 - 1}
BOOK = [
    Bid("a1", "A", 6100, 600, T0 + 1, 1),  # needs 3,669,600: exactly A's cash
    Bid("a2", "A", 6110, 1, T0 + 2, 2),  # needs 6,126 more: A has nothing left unreserved
    Bid("b1", "B", 6050, 500, T0 + 3, 3),  # needs 3,033,000 of 5,000,000
    Bid("d1", "D", 6200, 100, T0 + 4, 4),  # needs 621,600, D has 621,599
    Bid("c1", "C", 6020, 100, T0 + 5, 5),  # needs 602,000 + fee: fine, but ranks last
    Bid("x1", "X", 6300, 10, T0 + 6, 6),  # no account
]


def test_hand_worked_auction_with_fees_settles_dvp(ledger_url):
    led = open_ledger(ledger_url, CASH_IN, fee_bps=25)
    try:
        run = run_auction(led, make_offer(), BOOK)
        r = run.result
        assert [(x.bid.bid_id, x.reason) for x in r.rejects] == [
            ("a2", Reason.INSUFFICIENT_FUNDS), ("d1", Reason.INSUFFICIENT_FUNDS),
            ("x1", Reason.UNKNOWN_ACCOUNT)]
        # a1 600 t at 61.00; b1 the remaining 400 of its 500 at 60.50; c1 nothing
        assert [(f.bid_id, f.price, f.qty) for f in r.fills] == [("a1", 6100, 600),
                                                                 ("b1", 6050, 400)]
        assert [t.trade_id for t in run.trades] == [AUCTION_TRADE_BASE + 3_000_001,
                                                    AUCTION_TRADE_BASE + 3_000_002]
        assert all(t.segment == AUCTION and t.seller == "MEE" for t in run.trades)
        assert run.settled == 2 and not run.already_settled
        # notional: 6100 x 600 = 3,660,000 -> fee (91,500,000 + 5,000) // 10,000 = 9,150
        #           6050 x 400 = 2,420,000 -> fee (60,500,000 + 5,000) // 10,000 = 6,050
        assert run.fees() == (15_200, 15_200)
        bal = held(led)
        assert bal["A"] == (3_669_600 - 3_660_000 - 9_150, 600)  # 450 fen left
        assert bal["B"] == (5_000_000 - 2_420_000 - 6_050, 400)
        assert bal["C"] == (1_000_000, 0)
        assert bal["D"] == (621_599, 0)
        # seller: turnover 6,080,000 less its fees 15,200
        assert bal["MEE"] == (6_080_000 - 15_200, 0)
        assert led.balances(include_external=True)[FEES][CASH] == 30_400
        assert conserved(led)
        assert led.reconcile().ok
        st_a = led.statement("A", "2025-07-16")
        assert [(t.segment, t.side, t.price, t.qty, t.fee) for t in st_a.trades] == [
            ("AUCTION", "BUY", 6100, 600, 9_150)]
        # the same auction again: same result, nothing new
        before = led.balances(include_external=True)
        again = run_auction(led, make_offer(), BOOK)
        assert again.already_settled and again.settled == 0 and again.result == r
        assert led.balances(include_external=True) == before and led.trade_count() == 2
    finally:
        led.close()


def test_rerun_with_different_fills_under_the_same_id_writes_nothing():
    led = open_ledger(":memory:", {"A": 10_000_000})
    run_auction(led, make_offer(), [Bid("a1", "A", 6100, 600, T0, 1)])
    before = led.balances(include_external=True)
    with pytest.raises(AuctionError, match="already in the ledger"):
        run_auction(led, make_offer(), [Bid("a1", "A", 6100, 500, T0, 1)])
    assert led.balances(include_external=True) == before and led.trade_count() == 1
    # another id is another auction (MEE still holds 400 t)
    other = run_auction(led, make_offer(auction_id=4, quantity=400),
                        [Bid("a1", "A", 6100, 400, T0, 1)])
    assert other.settled == 1 and other.trades[0].trade_id == auction_trade_id(4, 1)


def test_seller_short_of_allowances_or_unknown_refuses_before_any_bid():
    led = open_ledger(":memory:", {"A": 10_000_000}, allowances=999)
    before = led.balances(include_external=True)
    with pytest.raises(AuctionError, match="INSUFFICIENT_ALLOWANCES") as e:
        run_auction(led, make_offer(), [Bid("a1", "A", 6100, 600, T0, 1)])
    assert e.value.reason == Reason.INSUFFICIENT_ALLOWANCES
    with pytest.raises(AuctionError, match="UNKNOWN_ACCOUNT"):
        run_auction(led, make_offer(seller="NOBODY"), [])
    with pytest.raises(AuctionError, match="UNKNOWN_ACCOUNT"):
        run_auction(led, make_offer(seller="@REGISTRY"), [])  # external accounts never trade
    with pytest.raises(AuctionError, match="no instrument"):
        run_auction(led, make_offer(instrument="CEA24"), [])
    assert led.balances(include_external=True) == before and led.trade_count() == 0


def test_no_sale_writes_no_trade():
    led = open_ledger(":memory:", {"A": 10_000_000})
    before = led.balances(include_external=True)
    for bids in ([], [Bid("a1", "A", 5999, 600, T0, 1)]):
        run = run_auction(led, make_offer(), bids)
        assert run.result.outcome == "NO_SALE" and run.settled == 0 and run.trades == ()
    assert led.balances(include_external=True) == before and led.trade_count() == 0


def test_uniform_price_settles_at_the_clearing_price_and_reserves_at_the_bid():
    # B can afford 400 t at its own 62.00 (the reservation), so it is accepted, and pays the
    # clearing price 60.00 for what it gets
    led = open_ledger(":memory:", {"A": 10_000_000, "B": 400 * 6200})
    bids = [Bid("b1", "B", 6200, 400, T0, 1), Bid("a1", "A", 6000, 1_000, T0 + 1, 2)]
    run = run_auction(led, make_offer(rule=ClearingRule.UNIFORM), bids)
    # b1 400 t, a1 the last 600 t; both at 60.00: turnover 6000 x 1,000
    assert [(f.bid_id, f.price, f.qty) for f in run.result.fills] == [("b1", 6000, 400),
                                                                     ("a1", 6000, 600)]
    bal = led.balances()
    assert bal["B"][CASH] == 400 * 6200 - 400 * 6000 and bal["MEE"][CASH] == 6_000_000


def test_auction_ids_do_not_collide_with_engine_trade_ids():
    led = open_ledger(":memory:", {"A": 10_000_000})
    led.settle_trades([Trade(1, DAY, T0, "CEA", 0, 6000, 10, "A", "MEE", "o1", "o2")])
    run = run_auction(led, make_offer(auction_id=1, quantity=990),
                      [Bid("a1", "A", 6100, 5, T0, 1)])
    assert run.settled == 1 and led.trade_count() == 2
    assert run.trades[0].trade_id > 4 * 10**18 and auction_trade_id(10**12 - 1, 999_999) < 2**63


def test_a_settlement_the_ledger_refuses_is_written_not_at_all():
    # clearing without the funds stage lets through a bid B cannot pay: the ledger refuses
    # the one transaction, and A's good fill is not written either
    led = open_ledger(":memory:", {"A": 10_000_000, "B": 100})
    r = clear(make_offer(), [Bid("a1", "A", 6100, 600, T0, 1), Bid("b1", "B", 6000, 400, T0, 2)])
    before = led.balances(include_external=True)
    with pytest.raises(LedgerError, match="below zero"):
        led.settle_trades(auction_trades(r))
    assert led.balances(include_external=True) == before and led.trade_count() == 0


# ---------------------------------------------------------------- properties

BIDDERS = ["A", "B", "C", "D"]


@st.composite
def auctions(draw):
    quantity = draw(st.integers(1, 500))
    o = make_offer(quantity=quantity, reserve_price=draw(st.integers(5800, 6200)),
                   rule=draw(st.sampled_from(list(ClearingRule))))
    cash = {b: draw(st.integers(0, 4_000_000)) for b in BIDDERS}
    bids = []
    for seq in range(draw(st.integers(0, 15))):
        bids.append(Bid(f"k{seq}", draw(st.sampled_from(BIDDERS + ["MEE", "Z"])),
                        draw(st.integers(5350, 6650)), draw(st.integers(1, quantity)),
                        T0 + draw(st.integers(0, 5)), seq))
    return o, cash, bids, draw(st.sampled_from([0, 5, 25, 1000]))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(example=auctions())
def test_settlement_properties(example):
    o, cash, bids, bps = example
    led = open_ledger(":memory:", cash, fee_bps=bps, allowances=o.quantity + 7)
    try:
        before = led.balances()
        run = run_auction(led, o, bids)
        r, after = run.result, led.balances()
        # conservation: per asset, all accounts (external included) sum to zero; participants
        # lose exactly the fees; allowances only move between participants
        assert conserved(led)
        fees_each = [fee(f.amount, bps) for f in r.fills]
        assert sum(v[CASH] for v in before.values()) - sum(v[CASH] for v in after.values()) \
            == 2 * sum(fees_each)
        assert sum(v["CEA"] for v in before.values()) == sum(v["CEA"] for v in after.values())
        # each bidder pays price x filled plus its fee and receives the tonnes
        for name in BIDDERS:
            mine = [(f, c) for f, c in zip(r.fills, fees_each) if f.bidder == name]
            assert after[name][CASH] == before[name][CASH] - sum(f.amount + c for f, c in mine)
            assert after[name]["CEA"] == before[name]["CEA"] + sum(f.qty for f, _ in mine)
            assert after[name][CASH] >= 0
        # the seller is paid the turnover less its fees and delivers what was sold
        assert after["MEE"][CASH] == before["MEE"][CASH] + r.turnover - sum(fees_each)
        assert after["MEE"]["CEA"] == before["MEE"]["CEA"] - r.sold
        # the funds stage, redone by hand in arrival order over the bids the rules accept
        reserved = {}
        reasons = {x.bid.seq: x.reason for x in r.rejects}
        for b in sorted(bids, key=lambda b: (b.ts, b.seq)):
            if b.seq in reasons and reasons[b.seq] not in (Reason.INSUFFICIENT_FUNDS,
                                                            Reason.UNKNOWN_ACCOUNT):
                continue
            if b.bidder not in cash:
                assert reasons[b.seq] == Reason.UNKNOWN_ACCOUNT
                continue
            need = b.qty * reserve_unit(b.price, bps)
            short = reserved.get(b.bidder, 0) + need > cash[b.bidder]
            assert (reasons.get(b.seq) == Reason.INSUFFICIENT_FUNDS) == short
            if not short:
                reserved[b.bidder] = reserved.get(b.bidder, 0) + need
        assert not any(f.bid.seq in reasons for f in r.fills)
        assert all(x.reason != AuctionReason.BELOW_RESERVE or x.bid.price < o.reserve_price
                   for x in r.rejects)
        assert led.reconcile().ok
        # idempotent
        again = run_auction(led, o, bids)
        assert again.result == r and again.settled == 0 and led.balances() == after
    finally:
        led.close()


# ---------------------------------------------------------------- the command line

def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def example_args(out: Path, *extra) -> list:
    return [EXAMPLE_BIDS, "--seller", "B002", "--qty", "100000", "--reserve", "58.00",
            "--prior-close", "60.00", "--window", "13:00-15:00", "--accounts", EXAMPLE_ACCOUNTS,
            "--out", out, *extra]


#: docs/examples/auction-bids.csv, B002 offering 100,000 t at reserve 58.00, prior close 60.00
#: (band 54.00..66.00), window 13:00-15:00, balances docs/examples/accounts.csv, worked by hand:
#: k1 B001 61.00 x 60,000 (3,660,000.00 of its 10,000,000.00); k2 A004 and k3 A001 both at
#: 60.50, k2 earlier: 10,000 then 8,000 t; k4 B001 60.00 x 30,000 (B001 now reserves
#: 5,460,000.00) gets the last 100,000 - 78,000 = 22,000 t; k5 A002 60.00 is later than k4:
#: nothing; k6 A007 59.50: nothing; k7 57.50 < reserve; k8 A005 needs 29,500.00 of 10,000.00;
#: k9 66.50 > 66.00; k10 is B002's own; k11 A006 needs 12,040.00 of 0; k12 at 15:00 is late.
EXAMPLE_FILLS = """\
fill,trade_id,bid_id,account,bid_price,bid_qty,price,qty,status,amount,buyer_fee,seller_fee
1,4000000000001000001,k1,B001,61.00,60000,61.00,60000,FILLED,3660000.00,0.00,0.00
2,4000000000001000002,k2,A004,60.50,10000,60.50,10000,FILLED,605000.00,0.00,0.00
3,4000000000001000003,k3,A001,60.50,8000,60.50,8000,FILLED,484000.00,0.00,0.00
4,4000000000001000004,k4,B001,60.00,30000,60.00,22000,PARTIALLY_FILLED,1320000.00,0.00,0.00
"""
EXAMPLE_REJECTS = """\
line,bid_id,account,price,qty,reason
8,k7,A007,57.50,1000,BELOW_RESERVE
9,k8,A005,59.00,500,INSUFFICIENT_FUNDS
10,k9,A003,66.50,100,PRICE_OUTSIDE_BAND
11,k10,B002,61.00,100,SELF_BID
12,k11,A006,60.20,200,INSUFFICIENT_FUNDS
13,k12,A001,62.00,100,OUTSIDE_WINDOW
"""


def test_cli_example_pay_as_bid_then_rerun(tmp_path):
    out = tmp_path / "out"
    res = invoke("auction", *example_args(out))
    assert res.exit_code == 0, res.output
    assert (out / "fills.csv").read_text() == EXAMPLE_FILLS
    assert (out / "rejects.csv").read_text() == EXAMPLE_REJECTS
    summary = json.loads((out / "summary.json").read_text())
    # 3,660,000 + 605,000 + 484,000 + 1,320,000 = 6,069,000.00; / 100,000 t = 60.69
    assert {k: summary[k] for k in ("outcome", "sold_t", "unsold_t", "clearing_price",
                                    "price_low", "price_high", "average_price", "turnover",
                                    "trades_settled")} == {
        "outcome": "SOLD", "sold_t": 100000, "unsold_t": 0, "clearing_price": "60.00",
        "price_low": "60.00", "price_high": "61.00", "average_price": "60.69",
        "turnover": "6069000.00", "trades_settled": 4}
    assert summary["bids"] == {"total": 12, "filled": 3, "partially_filled": 1,
                               "not_filled": 2, "rejected": 6}
    assert "sold 100000 t, unsold 0 t; clearing price 60.00" in res.output
    assert "bids: 3 filled, 1 partially filled, 2 not filled, 6 rejected" in res.output
    led = Ledger.open(str(out / "ledger.sqlite"), ["CEA"])
    try:
        bal = held(led)
        assert bal["B002"] == (6_069_000_00, 200_000 - 100_000)
        assert bal["B001"] == (10_000_000_00 - 4_980_000_00, 82_000)
        assert conserved(led) and led.reconcile().ok
    finally:
        led.close()
    again = invoke("auction", *example_args(out))
    assert again.exit_code == 0 and "already settled (4 trades); nothing written" in again.output
    clash = invoke("auction", *example_args(out, "--rule", "uniform"))
    assert clash.exit_code == 2 and "already in the ledger" in clash.output


def test_cli_example_uniform(tmp_path):
    out = tmp_path / "u"
    res = invoke("auction", *example_args(out, "--rule", "uniform", "--fee-bps", "5"))
    assert res.exit_code == 0, res.output
    rows = [r.split(",") for r in (out / "fills.csv").read_text().splitlines()[1:]]
    assert [(r[2], r[6], r[7]) for r in rows] == [("k1", "60.00", "60000"),
                                                 ("k2", "60.00", "10000"),
                                                 ("k3", "60.00", "8000"),
                                                 ("k4", "60.00", "22000")]
    # 60.00 x 60,000 = 3,600,000.00 -> fee 5 bps = 1,800.00
    assert rows[0][10:] == ["1800.00", "1800.00"]
    assert json.loads((out / "summary.json").read_text())["turnover"] == "6000000.00"


def test_cli_no_bids_is_no_sale(tmp_path):
    bids = tmp_path / "bids.csv"
    bids.write_text("bid_id,account,price,qty,time\n")
    res = invoke("auction", bids, "--seller", "B002", "--qty", "10", "--reserve", "60.00",
                 "--prior-close", "60.00", "--accounts", EXAMPLE_ACCOUNTS, "--date",
                 "2025-07-16", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "no sale" in res.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["outcome"] == "NO_SALE"
    nodate = invoke("auction", bids, "--seller", "B002", "--qty", "10", "--reserve", "60.00",
                    "--prior-close", "60.00", "--out", tmp_path / "o")
    assert nodate.exit_code == 2 and "pass --date" in nodate.output


GOOD_ROW = "k1,A001,60.00,10,2025-07-16T13:00:00"


@pytest.mark.parametrize("text, message", [
    ("bid_id,account,price,qty\n" + "k1,A001,60.00,10\n", "bids.csv:1: missing column 'time'"),
    ("bid_id,account,price,qty,time,side\n", "bids.csv:1: unknown column 'side'"),
    ("bid_id,account,price,qty,time\n" + GOOD_ROW + "\nk2,A001,60.001,10,2025-07-16T13:00:01\n",
     "bids.csv:3: price '60.001'"),
    ("bid_id,account,price,qty,time\nk2,A001,60.00,-10,2025-07-16T13:00:01\n",
     "bids.csv:2: qty '-10'"),
    ("bid_id,account,price,qty,time\n" + GOOD_ROW + "\n\n" + GOOD_ROW + "\n",
     "bids.csv:4: bid id 'k1' repeats line 2"),
    ("bid_id,account,price,qty,time\nk2,A001,60.00,10,16/07/2025\n", "bids.csv:2: time"),
    ("bid_id,account,price,qty,time\nk2,A001,60.00,10\n", "bids.csv:2: 4 fields"),
    ("bid_id,account,price,qty,time\n,A001,60.00,10,2025-07-16T13:00:01\n",
     "bids.csv:2: empty bid_id"),
    ("", "empty file"),
])
def test_cli_bad_bid_files_write_nothing(tmp_path, text, message):
    bids = tmp_path / "bids.csv"
    bids.write_text(text)
    out = tmp_path / "out"
    res = invoke("auction", bids, "--seller", "B002", "--qty", "10", "--reserve", "60.00",
                 "--prior-close", "60.00", "--accounts", EXAMPLE_ACCOUNTS, "--out", out,
                 "--date", "2025-07-16")
    assert res.exit_code == 2
    line = res.output.strip()
    assert line.startswith("cea: error: ") and message in line and "\n" not in line
    assert not out.exists()  # no ledger, no outputs


@pytest.mark.parametrize("extra, message", [
    (["--reserve", "60.001"], "--reserve"),
    (["--prior-close", "0"], "prior close"),
    (["--window", "15:00-13:00"], "--window"),
    (["--date", "2025-10-01"], "not a trading day"),
    (["--date", "2025-13-01"], "not a date"),
    (["--qty", "0"], "offered quantity"),
    (["--reserve", "66.01"], "reserve price"),
    (["--seller", "NOBODY"], "UNKNOWN_ACCOUNT"),
    (["--qty", "300000"], "INSUFFICIENT_ALLOWANCES"),
])
def test_cli_bad_options_and_refused_auctions(tmp_path, extra, message):
    args = example_args(tmp_path / "o")
    for k in range(0, len(extra), 2):
        if extra[k] in args:
            args[args.index(extra[k]) + 1] = extra[k + 1]
        else:
            args += extra[k:k + 2]
    res = invoke("auction", *args)
    assert res.exit_code == 2 and res.output.startswith("cea: error: ")
    assert message in res.output
    assert not (tmp_path / "o" / "fills.csv").exists()
