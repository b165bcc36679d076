"""The market's daily history (``sim/data/cea_daily.csv``) as integer records.

Prices in fen, volumes in tonnes, turnover in fen, exactly as published (no interpolation).
``gap_before`` marks a day whose previous trading day is missing from the data (the file's
two gaps, and the first day): its prior close is unknown, so a replay starts it from its own
open. ``composite`` marks days from 2023-08-28 whose published OHLC/close are a composite
across vintages, not the listed VWAP.

>>> days = load_history()
>>> days[1].date, days[1].open, days[1].close, days[1].listed_volume
('2021-07-19', 5280, 5230, 130800)
>>> days[0].open is None and days[0].gap_before
True
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from engine.units import parse_fen

from engine.orderfile import parse_price

DATA = Path(__file__).with_name("data") / "cea_daily.csv"
COLUMNS = ["date", "open", "high", "low", "close", "volume_t", "turnover_cny", "listed_vol_t",
           "listed_turnover_cny", "block_vol_t", "block_turnover_cny"]


class HistoryError(ValueError):
    """The history file cannot be read; the message names the line."""


@dataclass(frozen=True)
class HistoryDay:
    date: str
    open: int | None  # fen; None where the bulletin gives none
    high: int | None
    low: int | None
    close: int
    listed_volume: int  # t
    listed_turnover: int  # fen
    block_volume: int
    block_turnover: int
    composite: bool  # price_basis == composite: the close is not the listed VWAP
    gap_before: bool  # the previous trading day is not in the data
    flags: str


def _fen(text: str, line: int, name: str, required: bool = True) -> int | None:
    text = text.strip()
    if not text:
        if required:
            raise HistoryError(f"line {line}: {name} is empty")
        return None
    value = parse_price(text)
    if value is None:
        raise HistoryError(f"line {line}: {name} {text!r} is not a price in CNY")
    return value


def _tonnes(text: str, line: int, name: str) -> int:
    text = text.strip() or "0"
    if not text.isdigit():
        raise HistoryError(f"line {line}: {name} {text!r} is not whole tonnes")
    return int(text)


def _money(text: str, line: int, name: str) -> int:
    value = parse_fen(text.strip() or "0")
    if value is None:
        raise HistoryError(f"line {line}: {name} {text!r} is not CNY with at most 2 decimals")
    return value


def load_history(path: str | Path = DATA, calendar=None) -> list[HistoryDay]:
    """Every row of a history CSV (the columns of ``COLUMNS`` first), in date order."""
    from engine.tradingdays import TradingCalendar, day_of_date

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as e:
        raise HistoryError(f"{path}: cannot read: {e.strerror}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [h.strip() for h in rows[0][:len(COLUMNS)]] != COLUMNS:
        raise HistoryError(f"{path}: the header must start with {','.join(COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    col = {name: i for i, name in enumerate(header)}
    calendar = calendar or TradingCalendar.xshg()
    out: list[HistoryDay] = []
    previous = None
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        row = row + [""] * (len(header) - len(row))
        try:
            date = dt.date.fromisoformat(row[0].strip())
        except ValueError:
            raise HistoryError(f"line {line}: date {row[0]!r} is not YYYY-MM-DD") from None
        day = day_of_date(date)
        if previous is not None and day <= previous:
            raise HistoryError(f"line {line}: {date} is not after the row before")
        gap = previous is None or any(calendar.is_trading_day(d)
                                      for d in range(previous + 1, day))
        basis = row[col["price_basis"]].strip() if "price_basis" in col else "listed"
        out.append(HistoryDay(
            date.isoformat(), _fen(row[1], line, "open", False), _fen(row[2], line, "high", False),
            _fen(row[3], line, "low", False), _fen(row[4], line, "close"),
            _tonnes(row[7], line, "listed_vol_t"), _money(row[8], line, "listed_turnover_cny"),
            _tonnes(row[9], line, "block_vol_t"), _money(row[10], line, "block_turnover_cny"),
            basis == "composite", gap,
            row[col["flags"]].strip() if "flags" in col else ""))
        previous = day
    if not out:
        raise HistoryError(f"{path}: no rows")
    return out
