"""The market's rules as plain integer functions: segments, bands, sessions, closing price.

Everything here is in the engine's units (spec §1): prices in fen, quantities in tonnes,
times in microseconds of exchange local time since 1970-01-01. Each rule has this one
definition: the functions are ``register_jitable``, so the reference book, the edges, the
auction and the simulators call them as plain Python, and the Numba kernels
(``engine.fast.kernels``) inline the same code. ``tests/engine/test_rules.py`` holds both
forms to the spec's tables.

Numba keys its on-disk cache of a kernel on the kernel's own source file only: after editing
a rule here, run the kernels from a fresh cache (delete ``engine/fast/__pycache__`` or set
``NUMBA_CACHE_DIR``), or they keep the compiled old rule.

>>> band_limits(6000, Segment.LISTED)
(5400, 6600)
>>> band_limits(4666, Segment.LISTED)  # 46.66 x 1.1 = 51.326, rounded half up
(4199, 5133)
>>> segment_for_qty(99_999), segment_for_qty(100_000)
(<Segment.LISTED: 0>, <Segment.BLOCK: 1>)
>>> closing_price(turnover_fen=6000 * 3 + 6001 * 1, volume=4, prior_close=5900)
6000
"""

from numba.extending import register_jitable

from .codes import Segment, Side

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


# Every rule below is jitable and inlined where the kernels call it: the kernels' matching
# path inlines all its helpers (engine.fast.kernels says why), and these are among them.
_rule = register_jitable(inline="always")


@_rule
def segment_for_qty(qty: int) -> Segment:
    """Segment an order of ``qty`` tonnes enters (qty must already lie in 1 .. MAX_QTY)."""
    return Segment.LISTED if qty <= LISTED_MAX_QTY else Segment.BLOCK


@_rule
def qty_fits_segment(qty: int, segment: Segment) -> bool:
    """Whether ``qty`` tonnes lies in ``segment``'s quantity range (used by AMEND).

    >>> qty_fits_segment(99_999, Segment.BLOCK), qty_fits_segment(100_000, Segment.BLOCK)
    (False, True)
    """
    if segment == Segment.LISTED:
        return MIN_QTY <= qty <= LISTED_MAX_QTY
    return BLOCK_MIN_QTY <= qty <= MAX_QTY


@_rule
def band_limits_pct(prior_close: int, pct: int) -> tuple[int, int]:
    """Lowest and highest accepted price in fen, inclusive, ``pct`` percent around the prior
    close, each rounded half up to the fen (spec §2; the auction's band too).

    >>> band_limits_pct(6000, 10), band_limits_pct(4666, 30)
    ((5400, 6600), (3266, 6066))
    """
    return ((100 - pct) * prior_close + 50) // 100, ((100 + pct) * prior_close + 50) // 100


@_rule
def band_limits(prior_close: int, segment: Segment) -> tuple[int, int]:
    """Lowest and highest accepted limit price in fen, inclusive, rounded half up (spec §2)."""
    return band_limits_pct(prior_close,
                           LISTED_BAND_PCT if segment == Segment.LISTED else BLOCK_BAND_PCT)


@_rule
def in_band(price: int, lower: int, upper: int) -> bool:
    """Whether ``price`` lies in the band [lower, upper]: both limits are accepted prices.

    >>> in_band(6600, *band_limits(6000, Segment.LISTED)), in_band(6601, 5400, 6600)
    (True, False)
    """
    return lower <= price <= upper


@_rule
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


@_rule
def crosses(side: int, limit_price: int, level_price: int) -> bool:
    """Whether a limit order of ``side`` at ``limit_price`` trades with an opposite level at
    ``level_price``: a buy at that price or lower, a sell at that price or higher (spec §4).

    >>> crosses(Side.BUY, 6000, 6000), crosses(Side.BUY, 6000, 6001)
    (True, False)
    >>> crosses(Side.SELL, 6000, 6001), crosses(Side.SELL, 6000, 5999)
    (True, False)
    """
    if side == Side.BUY:
        return level_price <= limit_price
    return level_price >= limit_price


def check_prior_close(prior_close: int) -> int:
    """``prior_close`` if it lies in 1 .. MAX_PRIOR_CLOSE fen, else ``EngineConfigError``."""
    from .errors import EngineConfigError

    if not isinstance(prior_close, int) or not 1 <= prior_close <= MAX_PRIOR_CLOSE:
        raise EngineConfigError(
            f"prior close {prior_close} fen is outside 1 .. {MAX_PRIOR_CLOSE} fen "
            f"(0.01 .. {MAX_PRIOR_CLOSE // 100:,}.00 CNY/t)")
    return prior_close


@_rule
def vwap(turnover_fen: int, volume: int) -> int:
    """Volume-weighted average price of trades totalling ``turnover_fen`` (sum of price x qty)
    and ``volume`` tonnes (> 0), rounded half up to the fen (spec §6).

    >>> vwap(6000 * 3 + 6001 * 1, 4), vwap(6000 + 6001, 2)
    (6000, 6001)
    """
    return (turnover_fen + volume // 2) // volume


@_rule
def closing_price(turnover_fen: int, volume: int, prior_close: int) -> int:
    """The day's close: the VWAP of its LISTED trades, or the prior close without any (§6).

    ``turnover_fen`` and ``volume`` are the LISTED turnover and volume of the day.
    """
    if volume == 0:
        return prior_close
    return vwap(turnover_fen, volume)
