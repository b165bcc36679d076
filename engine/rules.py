"""The market's rules as plain integer functions: segments, bands, sessions, closing price.

Everything here is in the engine's units (spec §1): prices in fen, quantities in tonnes,
times in microseconds of exchange local time since 1970-01-01. The reference book and the
edges use these functions; the Numba kernels carry their own jitted twins
(``engine.fast.kernels``), and ``tests/engine/test_rules.py`` holds both to the spec's tables.

>>> band_limits(6000, Segment.LISTED)
(5400, 6600)
>>> band_limits(4666, Segment.LISTED)  # 46.66 x 1.1 = 51.326, rounded half up
(4199, 5133)
>>> segment_for_qty(99_999), segment_for_qty(100_000)
(<Segment.LISTED: 0>, <Segment.BLOCK: 1>)
>>> closing_price(turnover_fen=6000 * 3 + 6001 * 1, volume=4, prior_close=5900)
6000
"""

from .codes import Segment

#: Microseconds in one day.
DAY_US = 86_400_000_000
_HOUR_US = 3_600_000_000
_MIN_US = 60_000_000

#: Session bounds as microseconds after midnight (spec §2). A window includes its start
#: and excludes its end.
AM_OPEN_US = 9 * _HOUR_US + 30 * _MIN_US  # 09:30
AM_CLOSE_US = 11 * _HOUR_US + 30 * _MIN_US  # 11:30
PM_OPEN_US = 13 * _HOUR_US  # 13:00
DAY_CLOSE_US = 15 * _HOUR_US  # 15:00: continuous trading ends, resting orders expire

#: Order quantity range per segment, in tonnes (spec §2).
MIN_QTY = 1
LISTED_MAX_QTY = 99_999
BLOCK_MIN_QTY = 100_000
MAX_QTY = 100_000_000

#: Band half-widths in percent of the prior close (spec §2).
LISTED_BAND_PCT = 10
BLOCK_BAND_PCT = 30

#: Highest prior close the engine accepts, in fen (10,000.00 CNY/t, about 100 times the
#: market's price so far), given or reached by the closes: the fast book keeps a dense
#: ladder across the BLOCK band, 60 % of the prior close wide, bounded so to 600,001 levels.
MAX_PRIOR_CLOSE = 1_000_000

#: Best price levels a MARKET order may reach (spec §3).
MARKET_DEPTH_LEVELS = 5


def segment_for_qty(qty: int) -> Segment:
    """Segment an order of ``qty`` tonnes enters (qty must already lie in 1 .. MAX_QTY)."""
    return Segment.LISTED if qty <= LISTED_MAX_QTY else Segment.BLOCK


def qty_fits_segment(qty: int, segment: Segment) -> bool:
    """Whether ``qty`` tonnes lies in ``segment``'s quantity range (used by AMEND).

    >>> qty_fits_segment(99_999, Segment.BLOCK), qty_fits_segment(100_000, Segment.BLOCK)
    (False, True)
    """
    if segment == Segment.LISTED:
        return MIN_QTY <= qty <= LISTED_MAX_QTY
    return BLOCK_MIN_QTY <= qty <= MAX_QTY


def band_limits(prior_close: int, segment: Segment) -> tuple[int, int]:
    """Lowest and highest accepted limit price in fen, inclusive, rounded half up (spec §2)."""
    pct = LISTED_BAND_PCT if segment == Segment.LISTED else BLOCK_BAND_PCT
    lower = ((100 - pct) * prior_close + 50) // 100
    upper = ((100 + pct) * prior_close + 50) // 100
    return lower, upper


def in_session(segment: Segment, time_of_day_us: int) -> bool:
    """Whether NEW and AMEND are accepted for ``segment`` at this time of day (spec §2).

    >>> in_session(Segment.LISTED, AM_OPEN_US), in_session(Segment.LISTED, AM_CLOSE_US)
    (True, False)
    >>> in_session(Segment.BLOCK, AM_OPEN_US), in_session(Segment.BLOCK, PM_OPEN_US)
    (False, True)
    """
    if PM_OPEN_US <= time_of_day_us < DAY_CLOSE_US:
        return True
    return segment == Segment.LISTED and AM_OPEN_US <= time_of_day_us < AM_CLOSE_US


def check_prior_close(prior_close: int) -> int:
    """``prior_close`` if it lies in 1 .. MAX_PRIOR_CLOSE fen, else ``EngineConfigError``."""
    from .errors import EngineConfigError

    if not isinstance(prior_close, int) or not 1 <= prior_close <= MAX_PRIOR_CLOSE:
        raise EngineConfigError(
            f"prior close {prior_close} fen is outside 1 .. {MAX_PRIOR_CLOSE} fen "
            f"(0.01 .. {MAX_PRIOR_CLOSE // 100:,}.00 CNY/t)")
    return prior_close


def closing_price(turnover_fen: int, volume: int, prior_close: int) -> int:
    """Volume-weighted average of the day's LISTED trades, half up to the fen (spec §6).

    ``turnover_fen`` is the sum of price x qty over those trades; with no trade the close is
    the prior close.
    """
    if volume == 0:
        return prior_close
    return (turnover_fen + volume // 2) // volume
