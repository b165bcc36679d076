"""Trading days and exchange local time: the XSHG calendar as a day table, and ISO time text.

The engine counts time in microseconds of Asia/Shanghai local time since 1970-01-01 (no zone
arithmetic: the market has no daylight saving) and days as ``ts_us // DAY_US``. Which days
trade comes from the Shanghai Stock Exchange calendar (``exchange_calendars``, code XSHG),
turned once into a flat table of flags that both books and the jitted kernel read.

>>> ts = parse_time("2024-03-04T09:31:10.5")
>>> format_time(ts)
'2024-03-04T09:31:10.500000'
>>> cal = TradingCalendar.xshg()
>>> cal.is_trading_day(day_of(ts)), cal.is_trading_day(day_of(parse_time("2024-10-01T10:00:00")))
(True, False)
"""

from __future__ import annotations

import datetime as _dt
import functools
import re

import numpy as np

from .rules import DAY_US

_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$"
)


def parse_time(text: str) -> int | None:
    """Microseconds since 1970-01-01 local for ``YYYY-MM-DDTHH:MM:SS[.ffffff]``, else None.

    Up to six fractional digits; no zone. Impossible dates (Feb 30) give None.

    >>> parse_time("1970-01-02T00:00:00.000001")
    86400000001
    >>> parse_time("2024-02-30T10:00:00") is None, parse_time("2024-03-04T10:00:00Z") is None
    (True, True)
    """
    m = _TIME_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac = m.groups()
    try:
        date = _dt.date(int(year), int(month), int(day))
    except ValueError:
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 59:
        return None
    micros = int(frac.ljust(6, "0")) if frac else 0
    days = date.toordinal() - _EPOCH_ORDINAL
    return days * DAY_US + ((h * 60 + mi) * 60 + s) * 1_000_000 + micros


def format_time(ts_us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffff`` for a time in microseconds (spec §8)."""
    days, rest = divmod(ts_us, DAY_US)
    seconds, micros = divmod(rest, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    date = _dt.date.fromordinal(days + _EPOCH_ORDINAL)
    return f"{date.isoformat()}T{hour:02d}:{minute:02d}:{sec:02d}.{micros:06d}"


def day_of(ts_us: int) -> int:
    """Day number (days since 1970-01-01) of a time."""
    return ts_us // DAY_US


def date_of_day(day: int) -> _dt.date:
    """The calendar date of a day number.

    >>> date_of_day(19786)
    datetime.date(2024, 3, 4)
    """
    return _dt.date.fromordinal(day + _EPOCH_ORDINAL)


def day_of_date(date: _dt.date) -> int:
    """Day number of a calendar date."""
    return date.toordinal() - _EPOCH_ORDINAL


class TradingCalendar:
    """Which days trade, as a table of int8 flags indexed by ``day - first_day``.

    Days outside the table are not trading days, unless ``weekdays_beyond`` is set, in which
    case Monday to Friday after the table's end count as trading days (for simulations that
    run past the years whose holidays the exchange has published).

    >>> cal = TradingCalendar.from_dates(["2024-03-04", "2024-03-06"])
    >>> [cal.is_trading_day(day_of_date(_dt.date(2024, 3, d))) for d in (4, 5, 6)]
    [True, False, True]
    """

    def __init__(self, first_day: int, flags: np.ndarray, weekdays_beyond: bool = False):
        self.first_day = int(first_day)
        self.flags = np.ascontiguousarray(flags, dtype=np.int8)
        self.weekdays_beyond = weekdays_beyond

    @classmethod
    @functools.cache
    def xshg(cls, weekdays_beyond: bool = False) -> TradingCalendar:
        """The Shanghai Stock Exchange calendar, for every year whose holidays are recorded."""
        import exchange_calendars

        cal = exchange_calendars.get_calendar("XSHG", start="1991-01-02")
        days = [day_of_date(ts.date()) for ts in cal.sessions]
        first, last = days[0], days[-1]
        flags = np.zeros(last - first + 1, dtype=np.int8)
        flags[np.asarray(days, dtype=np.int64) - first] = 1
        return cls(first, flags, weekdays_beyond)

    @classmethod
    def from_dates(cls, dates, weekdays_beyond: bool = False) -> TradingCalendar:
        """A calendar trading exactly on ``dates`` (ISO strings or ``datetime.date``)."""
        days = sorted(
            day_of_date(d if isinstance(d, _dt.date) else _dt.date.fromisoformat(d))
            for d in dates
        )
        if not days:
            raise ValueError("a calendar needs at least one trading day")
        flags = np.zeros(days[-1] - days[0] + 1, dtype=np.int8)
        flags[np.asarray(days, dtype=np.int64) - days[0]] = 1
        return cls(days[0], flags, weekdays_beyond)

    @property
    def last_day(self) -> int:
        return self.first_day + len(self.flags) - 1

    def is_trading_day(self, day: int) -> bool:
        i = day - self.first_day
        if 0 <= i < len(self.flags):
            return bool(self.flags[i])
        # 1970-01-01 was a Thursday: day % 7 gives 0=Thu .. 2=Sat, 3=Sun
        return self.weekdays_beyond and i >= len(self.flags) and day % 7 not in (2, 3)

    def table(self, through_day: int) -> np.ndarray:
        """Flags from ``first_day`` through ``through_day``, extended as the policy says."""
        n = max(len(self.flags), through_day - self.first_day + 1)
        if n == len(self.flags):
            return self.flags
        out = np.zeros(n, dtype=np.int8)
        out[: len(self.flags)] = self.flags
        if self.weekdays_beyond:
            days = np.arange(len(self.flags), n, dtype=np.int64) + self.first_day
            out[len(self.flags):] = ~np.isin(days % 7, (2, 3))
        return out
