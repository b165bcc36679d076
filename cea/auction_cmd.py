"""``cea auction``: one-way bidding (the allowance auction) from a bid file, settled in the ledger.

The bid file is a CSV with the header ``bid_id,account,price,qty,time`` (columns in any
order), one sealed bid a line::

    bid_id,account,price,qty,time
    k1,B001,61.00,60000,2025-07-16T13:05:00

``price`` is CNY per tonne parsed as order files parse prices (``engine.orderfile``: digits,
optionally a point and decimals, nothing finer than the fen); ``qty`` whole tonnes (digits
only); ``time`` ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` exchange local time. A line's number is the
bid's arrival ``seq`` (ties at the same time go to the earlier line). A file that breaks this
syntax (a missing or unknown column, a bad field, an empty id or account, a bid id used twice)
is refused whole, naming the line, before the ledger is opened. Bids that parse but break a
market rule (outside the band or window, below the reserve, quantity 0, price 0, self-bid,
unknown account, insufficient funds) are rejects with a reason in ``rejects.csv``.

The auction's date is ``--date`` (default: the date of the earliest bid) and must be a trading
day (XSHG calendar, weekdays beyond its table); its window ``--window`` (default 09:30-15:00
[our modelling choice]: the exchange announces one-way bidding hours per auction) and the
trades are stamped at the window's end. ``--accounts`` opening balances are applied first,
as idempotent DEPOSIT / ALLOWANCE_IN operations dated the day before (as ``cea match
--accounts``); they stay even if the auction is then refused (unknown seller, seller short of
allowances), while the auction's own settlement is one transaction, all or nothing.

Outputs in ``--out``: ``fills.csv`` (one row per fill, in allocation order), ``rejects.csv``,
``summary.json``, put in place only once all three are written (``cea.outdir``); the ledger
defaults to ``DIR/ledger.sqlite`` (kept between runs, written in place, one transaction per
auction; re-running the same auction settles nothing twice; another auction needs another
``--auction-id``).
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from engine.csvfile import write_csv

from cea.common import check_input, check_out, fail, staged_outputs

#: The bid file's columns.
BID_COLUMNS = ("bid_id", "account", "price", "qty", "time")
_QTY_RE = re.compile(r"^[0-9]+$", re.ASCII)
_CLOCK_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$", re.ASCII)


class RuleChoice(str, Enum):
    pay_as_bid = "pay-as-bid"
    uniform = "uniform"


class BelowReserve(str, Enum):
    reject = "reject"
    unfilled = "unfilled"


def read_bid_file(path) -> list:
    """The bids of a bid file (``engine.auction.Bid``, seq = line number).

    Raises ``AuctionError`` naming the file and line of the first problem.
    """
    from engine.auction import MAX_BIDS, AuctionError, Bid
    from engine.orderfile import parse_price, read_csv_rows
    from engine.tradingdays import parse_time

    rows = read_csv_rows(path, "a bid file", list(BID_COLUMNS), AuctionError)
    header = [h.strip() for h in rows[0]]
    for name in header:
        if name not in BID_COLUMNS:
            raise AuctionError(f"{path}:1: unknown column {name!r} (the columns are "
                               f"{','.join(BID_COLUMNS)})")
        if header.count(name) > 1:
            raise AuctionError(f"{path}:1: column {name!r} appears twice")
    for name in BID_COLUMNS:
        if name not in header:
            raise AuctionError(f"{path}:1: missing column {name!r} (the columns are "
                               f"{','.join(BID_COLUMNS)})")
    col = {name: header.index(name) for name in BID_COLUMNS}
    bids, first_line = [], {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in row):
            continue  # blank lines are not bids
        where = f"{path}:{line}"
        if len(row) != len(header):
            raise AuctionError(f"{where}: {len(row)} fields, the header has {len(header)}")
        bid_id, account, price, qty, time = (row[col[n]].strip() for n in BID_COLUMNS)
        if not bid_id or not account:
            raise AuctionError(f"{where}: empty bid_id or account")
        if bid_id in first_line:
            raise AuctionError(f"{where}: bid id {bid_id!r} repeats line {first_line[bid_id]}")
        first_line[bid_id] = line
        fen = parse_price(price)
        if fen is None:
            raise AuctionError(f"{where}: price {price!r} is not CNY with at most two decimals "
                               "(e.g. 60.00)")
        if _QTY_RE.match(qty) is None or len(qty) > 15:
            raise AuctionError(f"{where}: qty {qty!r} is not whole tonnes (digits only)")
        ts = parse_time(time)
        if ts is None:
            raise AuctionError(f"{where}: time {time!r} is not YYYY-MM-DDTHH:MM:SS[.ffffff]")
        bids.append(Bid(bid_id, account, fen, int(qty), ts, line))
        if len(bids) > MAX_BIDS:
            raise AuctionError(f"{where}: more than {MAX_BIDS} bids in one auction")
    return bids


def _clock(text: str) -> int | None:
    """µs after midnight for ``HH:MM[:SS]``, else None."""
    m = _CLOCK_RE.match(text.strip())
    if m is None:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        return None
    return ((h * 60 + mi) * 60 + s) * 1_000_000


#: The offer's checks (engine.auction.Offer) by the option their message is about.
_OPTIONS = (("auction id", "--auction-id"), ("the offer needs a seller", "--seller"),
            ("the offer needs an instrument", "--instrument"), ("offered quantity", "--qty"),
            ("band", "--band-pct"), ("reserve price", "--reserve"),
            ("minimum bid quantity", "--min-bid-qty"), ("prior close", "--prior-close"))


def _with_option(message: str) -> str:
    """``message`` of a refused offer, prefixed with the option it is about."""
    for start, option in _OPTIONS:
        if message.startswith(start):
            return f"{option}: {message}"
    return message


def _money(fen: int | None) -> str:
    from ledger.statements import money

    return "" if fen is None else money(fen)


def _write_outputs(run, out: Path, date: str, ledger_url: str) -> list[Path]:
    from engine.accounts import fee
    from engine.auction import BidStatus

    result, offer = run.result, run.result.offer
    fills = [["fill", "trade_id", "bid_id", "account", "bid_price", "bid_qty", "price", "qty",
              "status", "amount", "buyer_fee", "seller_fee"]]
    for f, t in zip(result.fills, run.trades):
        each = fee(f.amount, run.fee_bps)
        fills.append([str(f.no), str(t.trade_id), f.bid_id, f.bidder, _money(f.bid.price),
                      str(f.bid.qty), _money(f.price), str(f.qty),
                      "PARTIALLY_FILLED" if f.partial else "FILLED", _money(f.amount),
                      _money(each), _money(each)])
    rejects = [["line", "bid_id", "account", "price", "qty", "reason"]]
    for r in result.rejects:
        b = r.bid
        rejects.append([str(b.seq), b.bid_id, b.bidder, _money(b.price), str(b.qty),
                        r.reason.name])
    paths = []
    for name, rows in (("fills", fills), ("rejects", rejects)):
        path = out / f"{name}.csv"
        write_csv(path, rows)
        paths.append(path)
    low_high = result.price_range
    buyer_fees, seller_fees = run.fees()
    summary = {
        "auction_id": offer.auction_id, "date": date, "instrument": offer.instrument,
        "seller": offer.seller, "rule": offer.rule.name, "offered_t": offer.quantity,
        "reserve_price": _money(offer.reserve_price), "prior_close": _money(offer.prior_close),
        "band": [_money(offer.band[0]), _money(offer.band[1])], "band_pct": offer.band_pct,
        "min_bid_qty_t": offer.min_bid_qty,
        "below_reserve": "reject" if offer.reject_below_reserve else "unfilled",
        "outcome": result.outcome, "sold_t": result.sold, "unsold_t": result.unsold,
        "clearing_price": _money(result.clearing_price),
        "price_low": _money(low_high[0]) if low_high else "",
        "price_high": _money(low_high[1]) if low_high else "",
        "average_price": _money(result.average_price), "turnover": _money(result.turnover),
        "fee_bps": run.fee_bps, "buyer_fees": _money(buyer_fees),
        "seller_fees": _money(seller_fees),
        "bids": {"total": len(result.outcomes),
                 "filled": result.count(BidStatus.FILLED),
                 "partially_filled": result.count(BidStatus.PARTIALLY_FILLED),
                 "not_filled": result.count(BidStatus.NOT_FILLED),
                 "rejected": result.count(BidStatus.REJECTED)},
        "rejects": _reject_counts(result),
        "ledger": ledger_url, "trades_settled": run.settled,
        "already_settled": run.already_settled,
    }
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    paths.append(path)
    return paths


def _reject_counts(result) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in result.rejects:
        counts[r.reason.name] = counts.get(r.reason.name, 0) + 1
    return dict(sorted(counts.items()))


def _print_summary(run, date: str, paths: list[Path], ledger_url: str) -> None:
    from engine.auction import BidStatus, ClearingRule

    result, offer = run.result, run.result.offer
    rule = "pay-as-bid" if offer.rule == ClearingRule.PAY_AS_BID else "uniform"
    lo, hi = offer.band
    typer.echo(f"auction {offer.auction_id} on {date}: {offer.seller} offers {offer.quantity} t "
               f"{offer.instrument}, reserve {_money(offer.reserve_price)}, band "
               f"{_money(lo)}..{_money(hi)}, {rule}")
    if result.outcome == "NO_SALE":
        typer.echo(f"no sale: no valid bid at or above the reserve; the {offer.quantity} t stay "
                   f"with {offer.seller}")
    else:
        low, high = result.price_range
        typer.echo(f"sold {result.sold} t, unsold {result.unsold} t; clearing price "
                   f"{_money(result.clearing_price)}, paid {_money(low)}..{_money(high)}, "
                   f"average {_money(result.average_price)}; turnover "
                   f"{_money(result.turnover)} CNY")
    rejects = ", ".join(f"{k} {v}" for k, v in _reject_counts(result).items())
    typer.echo(f"bids: {result.count(BidStatus.FILLED)} filled, "
               f"{result.count(BidStatus.PARTIALLY_FILLED)} partially filled, "
               f"{result.count(BidStatus.NOT_FILLED)} not filled, "
               f"{result.count(BidStatus.REJECTED)} rejected" + (f" ({rejects})" if rejects
                                                                  else ""))
    if run.already_settled:
        typer.echo(f"ledger {ledger_url}: already settled ({len(run.trades)} trades); "
                   "nothing written")
    else:
        typer.echo(f"ledger {ledger_url}: {run.settled} trades settled")
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


def auction(
    bids: Path = typer.Argument(..., metavar="BIDS", help="Bid file (CSV: bid_id, account, "
                                "price, qty, time).",
                                show_default=False),
    seller: str = typer.Option(..., "--seller", help="The seller's account (the authority: an "
                               "INSTITUTION account holding the allowances)."),
    qty: int = typer.Option(..., "--qty", help="Tonnes offered (1 or more)."),
    reserve: str = typer.Option(..., "--reserve", metavar="PRICE",
                                help="Reserve price, CNY (e.g. 60.00)."),
    prior_close: str = typer.Option(..., "--prior-close", metavar="PRICE", help="Previous "
                                    "close, CNY: the band's reference."),
    rule: RuleChoice = typer.Option(RuleChoice.pay_as_bid, "--rule",
                                    help="What a filled bid pays: its own price (pay-as-bid) "
                                    "or the clearing price (uniform)."),
    instrument: str = typer.Option("CEA", "--instrument", help="The allowance instrument "
                                   "offered (a vintage, where the ledger has several)."),
    ledger: Optional[str] = typer.Option(None, "--ledger", metavar="URL", help="Ledger: a "
                                         "SQLite path (default DIR/ledger.sqlite) or a "
                                         "postgresql:// URL."),
    accounts: Optional[Path] = typer.Option(
        None, "--accounts", metavar="FILE", help="CSV of opening balances "
        "(account, type, cash, <instrument>), applied once (idempotent) the day before the "
        "auction."),
    date: Optional[str] = typer.Option(None, "--date", metavar="YYYY-MM-DD", help="Auction "
                                       "date (default: the date of the earliest bid)."),
    window: str = typer.Option("09:30-15:00", "--window", metavar="HH:MM-HH:MM",
                               help="Bidding window on that date (end excluded; the auction "
                               "clears at its end)."),
    auction_id: int = typer.Option(1, "--auction-id", help="Auction number (1 or more), "
                                   "unique per ledger (trade ids derive from it)."),
    band_pct: int = typer.Option(10, "--band-pct", help="Band around the prior close, percent "
                                 "(1..99)."),
    min_bid_qty: int = typer.Option(1, "--min-bid-qty", help="Smallest bid, tonnes (1 up to "
                                    "--qty)."),
    below_reserve: BelowReserve = typer.Option(
        BelowReserve.reject, "--below-reserve", help="reject: bids below the reserve are "
        "rejected at entry (published reserve); unfilled: accepted, never filled."),
    fee_bps: int = typer.Option(0, "--fee-bps", min=0, max=1000,
                                help="Fee per side on auction trades, basis points."),
    out: Path = typer.Option(Path("out"), "--out", metavar="DIR", help="Directory for "
                             "fills.csv, rejects.csv, summary.json (and the default ledger)."),
) -> None:
    """One-way bidding: clear an offer against a bid file, settle the fills in the ledger.

    Example: cea auction docs/examples/auction-bids.csv --seller B002 --qty 100000
    --reserve 58.00 --prior-close 60.00 --window 13:00-15:00
    --accounts docs/examples/accounts.csv --out auction
    """
    import datetime as dt

    from engine.auction import AuctionError, ClearingRule, Offer
    from engine.errors import EngineConfigError
    from engine.orderfile import parse_price, parse_prior_close
    from engine.rules import DAY_US
    from engine.tradingdays import TradingCalendar, date_of_day, day_of_date
    from ledger.core import Ledger, LedgerError
    from ledger.store import StoreError

    try:
        close = parse_prior_close(prior_close)
    except EngineConfigError as e:
        fail(f"--prior-close: {e}")
    reserve_fen = parse_price(reserve.strip())
    if not reserve_fen:
        fail(f"--reserve {reserve!r} is not a positive price in CNY with at most two "
             "decimals (e.g. 60.00)")
    start_text, _, end_text = window.partition("-")
    start_us, end_us = _clock(start_text), _clock(end_text)
    if start_us is None or end_us is None or start_us >= end_us:
        fail(f"--window {window!r} is not HH:MM-HH:MM with the start before the end")
    check_input(bids, "BIDS")
    if accounts is not None:
        check_input(accounts, "--accounts")
    check_out(out)
    try:
        parsed = read_bid_file(bids)
    except AuctionError as e:
        fail(str(e))
    if date is None:
        if not parsed:
            fail(f"{bids}: no bids, so no date: pass --date")
        day = min(b.ts for b in parsed) // DAY_US
    else:
        try:
            day = day_of_date(dt.date.fromisoformat(date))
        except ValueError:
            fail(f"--date {date!r} is not a date YYYY-MM-DD")
    date_text = date_of_day(day).isoformat()
    if not TradingCalendar.xshg(weekdays_beyond=True).is_trading_day(day):
        fail(f"{date_text} is not a trading day (XSHG calendar)")
    try:
        offer = Offer(auction_id=auction_id, seller=seller, quantity=qty,
                      reserve_price=reserve_fen, prior_close=close,
                      window_start=day * DAY_US + start_us, window_end=day * DAY_US + end_us,
                      instrument=instrument,
                      rule=ClearingRule.UNIFORM if rule == RuleChoice.uniform
                      else ClearingRule.PAY_AS_BID,
                      min_bid_qty=min_bid_qty, band_pct=band_pct,
                      reject_below_reserve=below_reserve == BelowReserve.reject)
    except AuctionError as e:
        fail(_with_option(str(e)))
    try:
        opening = []
        if accounts is not None:
            from ledger.opening import open_balances, read_accounts_file

            opening = read_accounts_file(accounts, [instrument])
        if ledger is None:
            out.mkdir(parents=True, exist_ok=True)  # the ledger is kept there between runs
        url = ledger or str(out / "ledger.sqlite")
        with staged_outputs(out) as staged:
            led = Ledger.open(url, [instrument], fee_bps_auction=fee_bps)
            try:
                open_balances(led, opening, day - 1)
                from ledger.auction import run_auction

                run = run_auction(led, offer, parsed)
            finally:
                led.close()
            paths = _write_outputs(run, staged.path, date_text, url)
        paths = [staged.final_path(p) for p in paths]
    except (AuctionError, LedgerError, StoreError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{out}: cannot write the results: {e.strerror}")
    _print_summary(run, date_text, paths, url)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("auction")(auction)
