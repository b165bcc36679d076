"""The order file of spec §8: CSV rows in, the engine run over them, four result files out.

``read_order_file`` parses and checks each row once (the edge): a row's text becomes a raw
command whose ``check`` holds any reject the row earns on its own (MALFORMED, INVALID_QTY,
INVALID_PRICE). ``run_match`` feeds the commands to either book in one batch and
``write_results`` writes ``trades.csv``, ``orders.csv``, ``rejects.csv`` and ``days.csv``.

Optional columns after the ten (``EXTRA_COLUMNS``, any of them, in any order):
``instrument`` names the instrument of each NEW, TAKE or BLOCK_QUOTE row (several allowance
vintages in one file; without it every row trades the one instrument given), ``target`` the
order_id a TAKE row takes from (spec §3a), ``counterparty`` the account a BLOCK_QUOTE is
addressed to (spec §3b; empty: a public quote). A file with negotiation rows (BLOCK_QUOTE,
BLOCK_COUNTER, BLOCK_ACCEPT, BLOCK_WITHDRAW; their ``order_id`` is the quote's id) also
gets ``quotes.csv``.

>>> fen = parse_price("60.105"), parse_price("60.100"), parse_price("0.00"), parse_price("6e1")
>>> fen
(None, 6010, 0, None)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .csvfile import read_rows, write_csv
from .units import format_fen
from . import batch as B
from .api import Names
from .book import make_book
from .checks import new_order_codes_valid, order_check, qty_valid, take_check, terms_check
from .codes import (
    HUGE_PRICE, NO_TIME, Action, EventKind, OrderStatus, OrderType, QuoteEnd, Reason, Segment,
    Side, Stp, TimeInForce,
)
from .errors import EngineConfigError
from .tradingdays import TradingCalendar, date_of_day, format_time, parse_time

HEADER = ["time", "account", "action", "order_id", "side", "type", "tif", "price", "qty", "stp"]
#: the optional columns that may follow HEADER, each at most once, in any order
EXTRA_COLUMNS = ("instrument", "target", "counterparty")

_QTY_RE = re.compile(r"^[0-9]+$", re.ASCII)
_PRICE_RE = re.compile(r"^([0-9]+)(?:\.([0-9]+))?$", re.ASCII)
_ACTIONS = {"NEW": Action.NEW, "CANCEL": Action.CANCEL, "AMEND": Action.AMEND,
            "TAKE": Action.TAKE, "BLOCK_QUOTE": Action.BLOCK_QUOTE,
            "BLOCK_COUNTER": Action.BLOCK_COUNTER, "BLOCK_ACCEPT": Action.BLOCK_ACCEPT,
            "BLOCK_WITHDRAW": Action.BLOCK_WITHDRAW}
_NEGOTIATION = (Action.BLOCK_QUOTE, Action.BLOCK_COUNTER, Action.BLOCK_ACCEPT,
                Action.BLOCK_WITHDRAW)
_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
_TYPES = {"LIMIT": OrderType.LIMIT, "MARKET": OrderType.MARKET}
_TIFS = {"DAY": TimeInForce.DAY, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
_STPS = {"": Stp.CANCEL_NEWEST, "CANCEL_NEWEST": Stp.CANCEL_NEWEST,
         "CANCEL_OLDEST": Stp.CANCEL_OLDEST, "CANCEL_BOTH": Stp.CANCEL_BOTH}


class OrderFileError(Exception):
    """The order file cannot be read at all (missing, not CSV, wrong header)."""


def parse_price(text: str) -> int | None:
    """Fen for a price text matching ``^[0-9]+(\\.[0-9]+)?$`` in whole fen, else None.

    Zero parses (as 0); the caller rejects it. Prices too large for any band become
    ``HUGE_PRICE`` so they fail the band check, not the syntax check.
    """
    m = _PRICE_RE.match(text)
    if m is None:
        return None
    whole, frac = m.group(1), m.group(2) or ""
    if frac[2:].strip("0"):
        return None  # finer than a fen: 60.105
    fen = int(whole) * 100 + int(frac[:2].ljust(2, "0"))
    return min(fen, HUGE_PRICE)


def parse_qty(text: str) -> int | None:
    """Tonnes for a quantity text in 1 .. 100,000,000 matching ``^[0-9]+$``, else None."""
    if _QTY_RE.match(text) is None:
        return None
    qty = int(text)
    return qty if qty_valid(qty) else None


@dataclass
class OrderFile:
    """An order file parsed for the engine: the raw commands and what names they use."""

    commands: np.ndarray
    actions: list[str]  # each row's action, exactly as written
    order_ids: list[str]  # each row's order_id, exactly as written
    orders: Names = field(default_factory=Names)
    accounts: Names = field(default_factory=Names)
    instruments: list[str] = field(default_factory=list)
    has_instrument_column: bool = False
    columns: list[str] = field(default_factory=list)  # the optional columns, in file order
    has_negotiation: bool = False  # a BLOCK_* row: quotes.csv is written too


def read_csv_rows(path: str | os.PathLike, what: str, header: list[str],
                  error: type[Exception]) -> list[list[str]]:
    """The rows of a UTF-8 CSV file, header first (``engine.csvfile.read_rows``); an empty
    file's message names the ``header`` expected."""
    return read_rows(path, what, error, header)


def read_order_file(path: str | os.PathLike, instruments: list[str]) -> OrderFile:
    """Parse an order file. Raises ``OrderFileError`` if it cannot be read as one."""
    rows = read_csv_rows(path, "an order file", HEADER, OrderFileError)
    header = [h.strip() for h in rows[0]]
    extra = header[len(HEADER):]
    if header[:len(HEADER)] != HEADER or len(set(extra)) != len(extra) or \
            not set(extra) <= set(EXTRA_COLUMNS):
        raise OrderFileError(
            f"{path}: wrong header {','.join(rows[0])!r}, expected {','.join(HEADER)}"
            " (optionally followed by ,instrument ,target ,counterparty, each at most once)")
    body = [r for r in rows[1:] if r]  # blank lines are not rows
    return parse_rows(body, instruments, columns=extra)


def parse_rows(rows: list[list[str]], instruments: list[str],
               with_instrument: bool = False, columns: list[str] | None = None) -> OrderFile:
    """Turn data rows (lists of field texts, header order) into an ``OrderFile``.
    ``columns``: the optional columns the rows carry after the ten, in order (default:
    ``instrument`` if ``with_instrument``)."""
    columns = list(columns) if columns is not None else (
        ["instrument"] if with_instrument else [])
    width = len(HEADER) + len(columns)
    cmds = B.empty_commands(len(rows))
    out = OrderFile(cmds, [], [], instruments=list(instruments),
                    has_instrument_column="instrument" in columns, columns=columns)
    index = {name: i for i, name in enumerate(instruments)}
    at = {name: len(HEADER) + k for k, name in enumerate(columns)}
    for i, fields in enumerate(rows):
        too_long = len(fields) > width
        fields = (fields + [""] * width)[:width]
        out.actions.append(fields[2])
        out.order_ids.append(fields[3])
        _parse_row(cmds[i], fields, out, index, at, too_long)
    return out


def _parse_row(row, f: list[str], out: OrderFile, index: dict[str, int],
               at: dict[str, int], too_long: bool) -> None:
    time_text, account, action_text, order_id, side, otype, tif, price, qty, stp = f[:10]
    ts = parse_time(time_text)
    row["ts"] = NO_TIME if ts is None else ts
    action = _ACTIONS.get(action_text, Action.UNKNOWN)
    row["action"] = action
    if account:
        row["account"] = out.accounts.handle(account)
    if action in (Action.NEW, Action.TAKE, Action.BLOCK_QUOTE) and order_id:
        row["order"] = out.orders.handle(order_id)
    elif order_id:
        row["order"] = out.orders.find(order_id)

    # what the row says on its own (spec §7, engine.checks): every field a row of its action
    # needs is there, its codes are known, then the quantity, then the price
    well_formed = not too_long and action != Action.UNKNOWN and bool(account) and bool(order_id)
    instrument = index.get(f[at["instrument"]]) if "instrument" in at else 0
    if action == Action.TAKE:
        # §3a: a take needs its side, quantity and target; type, tif and stp are not its
        # fields (ignored); a price is INVALID_PRICE (it trades at the target's price)
        target = f[at["target"]] if "target" in at else ""
        row["instrument"] = instrument or 0
        row["side"] = _SIDES.get(side, 0)
        row["type"], row["tif"], row["stp"] = OrderType.TAKE, TimeInForce.IOC, Stp.CANCEL_NEWEST
        well_formed = (well_formed and instrument is not None and bool(qty) and bool(target)
                       and row["side"] != 0)
        q = parse_qty(qty)
        check = take_check(well_formed, q or 0, price != "")
        if check == Reason.NONE:
            row["qty"] = q
            row[B.TAKE_TARGET] = out.orders.find(target)  # not seen yet: NO_REF
        row["check"] = check
        return
    if action in _NEGOTIATION:
        # §3b: a quote needs side, price and qty; a counter a price and/or a qty; an accept
        # may state the terms it accepts; type, tif and stp are not their fields (ignored)
        out.has_negotiation = True
        q, p = parse_qty(qty) if qty else None, parse_price(price) if price else None
        if action == Action.BLOCK_QUOTE:
            row["instrument"] = instrument or 0
            row["side"] = _SIDES.get(side, 0)
            well_formed = (well_formed and instrument is not None and row["side"] != 0
                           and bool(qty) and bool(price))
            peer = f[at["counterparty"]] if "counterparty" in at else ""
            row["peer"] = out.accounts.handle(peer) if peer else -1
        elif action == Action.BLOCK_COUNTER:
            well_formed = well_formed and bool(qty or price)
        elif action == Action.BLOCK_WITHDRAW:
            qty = price = ""
        check = terms_check(well_formed, qty != "", q or 0, price != "", p or 0)
        if check == Reason.NONE:
            row["qty"] = q or 0
            row["price"] = p if price else -1
        row["check"] = check
        return
    if action == Action.NEW:
        codes = _SIDES.get(side, 0), _TYPES.get(otype, 0), _TIFS.get(tif, 0), _STPS.get(stp, 0)
        row["instrument"] = instrument or 0
        row["side"], row["type"], row["tif"], row["stp"] = codes
        well_formed = (well_formed and instrument is not None and bool(qty)
                       and new_order_codes_valid(*codes))
    elif action == Action.AMEND:
        well_formed = well_formed and bool(qty)
    if action == Action.CANCEL or not well_formed:
        row["check"] = Reason.NONE if well_formed else Reason.MALFORMED
        return
    # NEW and AMEND: a quantity or price that does not parse fails as zero would
    q = parse_qty(qty)
    is_market = action == Action.NEW and otype == "MARKET"
    p = parse_price(price) if price else None
    check = order_check(True, q or 0, is_market, price != "", p or 0)
    if q is not None:
        row["qty"] = q
    if check == Reason.NONE and not is_market:
        row["price"] = p
    row["check"] = check


@dataclass
class MatchResult:
    """Everything ``cea match`` writes, as rows of text fields (header first)."""

    trades: list[list[str]]
    orders: list[list[str]]
    rejects: list[list[str]]
    days: list[list[str]]
    events: np.ndarray | None = None  # the raw event rows (the ledger settles from them)
    book: object = None
    quotes: list[list[str]] | None = None  # quotes.csv, when the file negotiates (§3b)


def run_match(order_file: OrderFile, prior_closes: list[int], impl: str = "numba",
              calendar: TradingCalendar | None = None, check_invariants: bool = False,
              accounts=None) -> MatchResult:
    """Run one book over the whole file in one batch and build the four result tables.

    ``accounts`` (``engine.accounts.Accounts``, handles from ``order_file.accounts``) turns
    the risk stage on."""
    calendar = calendar or TradingCalendar.xshg()
    n = len(order_file.commands)
    book = make_book(impl, prior_closes, calendar, accounts=accounts,
                     order_capacity=max(16, len(order_file.orders)),
                     event_capacity=max(1024, 2 * n))  # about 1.5 rows a command
    events = book.submit_batch(order_file.commands)
    if check_invariants:
        book.check_invariants()
        if accounts is not None:
            from .accounts import check_reservations

            check_reservations(accounts, book.reservations())
    result = _results(order_file, book, events)
    result.events, result.book = events, book
    return result


def _results(f: OrderFile, book, events: np.ndarray) -> MatchResult:
    multi = f.has_instrument_column
    extra = ["instrument"] if multi else []
    orders, accounts, instruments = f.orders.name, f.accounts.name, f.instruments
    trades = [["trade_id", "time", "segment", "price", "qty", "buy_order_id", "sell_order_id",
               "buy_account", "sell_account", "aggressor"] + extra]
    order_rows = [["order_id", "account", "segment", "side", "status", "reason", "filled_qty",
                   "open_qty"] + extra]
    rejects = [["line", "action", "order_id", "reason"]]
    days = [["date", "prior_close", "close", "listed_volume", "block_volume", "listed_turnover",
             "block_turnover"] + extra]
    accepted = []
    quotes: dict[int, list[str]] = {}  # quote handle -> its row, in the order made
    for row in events.tolist():
        kind = row[B.KIND]
        tail = [instruments[row[B.INSTRUMENT]]] if multi else []
        if kind in (EventKind.QUOTE, EventKind.QUOTE_ENDED):
            peer = row[B.QUOTE_COUNTERPARTY]
            q = quotes.setdefault(row[B.ORDER], [orders(row[B.ORDER]), "", "", "", "", "",
                                                 "LIVE", "", "-1"] + tail)
            q[1:6] = [accounts(row[B.QUOTE_MAKER]), accounts(peer) if peer >= 0 else "",
                      Side(row[B.SIDE]).name, format_fen(row[B.PRICE]), str(row[B.QTY])]
            if kind == EventKind.QUOTE:
                q[8] = str(int(q[8]) + 1)  # the quote itself counts -1 + 1 = 0 counters
            else:
                by = row[B.QUOTE_ENDED_BY]
                q[6] = QuoteEnd(row[B.QUOTE_END]).name
                q[7] = accounts(by) if by >= 0 else ""
            continue
        if kind == EventKind.TRADE:
            trades.append([
                str(row[B.TRADE_ID]), format_time(row[B.TS]), Segment(row[B.SEGMENT]).name,
                format_fen(row[B.PRICE]), str(row[B.QTY]), orders(row[B.TRADE_BUY_ORDER]),
                orders(row[B.TRADE_SELL_ORDER]), accounts(row[B.TRADE_BUY_ACCOUNT]),
                accounts(row[B.TRADE_SELL_ACCOUNT]), Side(row[B.TRADE_AGGRESSOR]).name] + tail)
        elif kind == EventKind.ACCEPTED:
            accepted.append((row[B.ORDER], row[B.ACCOUNT], row[B.SEGMENT], row[B.SIDE], tail))
        elif kind == EventKind.REJECTED:
            i = row[B.CMD]
            rejects.append([str(i + 1), f.actions[i], f.order_ids[i], Reason(row[B.REASON]).name])
        elif kind == EventKind.DAY_CLOSED:
            days.append(_day_row(row[B.DAY_NUMBER], row[B.DAY_PRIOR_CLOSE], row[B.DAY_CLOSE],
                                 row[B.DAY_LISTED_VOLUME], row[B.DAY_BLOCK_VOLUME],
                                 row[B.DAY_LISTED_TURNOVER], row[B.DAY_BLOCK_TURNOVER]) + tail)
    for ref, account, segment, side, tail in accepted:
        status, reason, _, filled, open_qty = book.order_state(ref)
        order_rows.append([
            orders(ref), accounts(account), Segment(segment).name, Side(side).name,
            OrderStatus(status).name, Reason(reason).name if status == OrderStatus.CANCELLED
            else "", str(filled), str(open_qty)] + tail)
    day = book.open_day()
    if day is not None and day[2]:  # the input ended inside a trading day (spec §6)
        number, figures, _ = day
        for name, fig in zip(instruments, figures):
            days.append(_day_row(number, *fig) + ([name] if multi else []))
    quote_rows = None
    if f.has_negotiation:
        quote_rows = [["quote_id", "maker", "counterparty", "side", "price", "qty", "status",
                       "ended_by", "counters"] + extra] + list(quotes.values())
    return MatchResult(trades, order_rows, rejects, days, quotes=quote_rows)


def _day_row(day, prior_close, close, listed_volume, block_volume, listed_turnover,
             block_turnover) -> list[str]:
    return [date_of_day(day).isoformat(), format_fen(prior_close), format_fen(close), str(listed_volume),
            str(block_volume), format_fen(listed_turnover), format_fen(block_turnover)]


def write_results(result: MatchResult, out_dir: str | os.PathLike) -> list[Path]:
    """Write the four CSV files into ``out_dir`` (created if needed); return their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OrderFileError(f"{out_dir}: cannot create output directory: {e.strerror}") from None
    paths = []
    tables = [("trades", result.trades), ("orders", result.orders),
              ("rejects", result.rejects), ("days", result.days)]
    if result.quotes is not None:
        tables.append(("quotes", result.quotes))
    for name, rows in tables:
        path = out / f"{name}.csv"
        write_csv(path, rows)
        paths.append(path)
    return paths


def parse_prior_close(text: str) -> int:
    """Fen for a ``--prior-close`` value such as ``60.00``; raises ``EngineConfigError``."""
    fen = parse_price(text.strip())
    if not fen or fen >= HUGE_PRICE:
        raise EngineConfigError(f"prior close {text!r} is not a positive price in CNY with at "
                                "most two decimals (e.g. 60.00)")
    return fen


__all__ = [
    "HEADER", "MatchResult", "OrderFile", "OrderFileError", "parse_price", "parse_prior_close",
    "parse_qty", "parse_rows", "read_order_file", "run_match", "write_results",
]
