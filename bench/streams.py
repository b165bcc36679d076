"""A seeded command stream for the matching-core benchmark: one busy morning of one instrument.

``generate_stream(n, seed)`` returns ``n`` commands as a ``COMMAND_DTYPE`` array (default size
in the benchmark: 1,000,000), deterministic in ``seed``, built with vectorised numpy (about
0.5 s for a million rows). What it holds:

- one instrument, prior close 60.00 CNY/t (6000 fen), trading day 2024-03-04 (a Monday);
  timestamps strictly increasing, 1 µs apart from 09:30:00, so 1 M commands span one second
  of the morning session and no day ends inside the stream;
- the mix, by share of commands (``MIX``): 58 % NEW LIMIT DAY, 29 % CANCEL, 7 % NEW LIMIT IOC,
  1.5 % NEW LIMIT FOK, 1.5 % NEW MARKET IOC (price ``NO_PRICE``), 3 % AMEND;
- a mid price that random-walks one tick at a time (a step every 20 NEW rows on average),
  reflected inside 57.00 .. 63.00; a DAY limit sits from 12 ticks through the mid to 20 ticks
  behind it on its own side, an IOC or FOK limit from 20 through to 2 behind; every limit
  price is inside the ±10 % band (5400 .. 6600);
- quantities uniform in 1 .. 2000 t (all LISTED); 200 accounts (handles 0 .. 199), so
  self-trade prevention fires now and then; STP 90 % CANCEL_NEWEST, 5 % CANCEL_OLDEST, 5 %
  CANCEL_BOTH;
- CANCEL and AMEND rows target passive DAY orders entered a little earlier (exponential lag,
  mean ``LAG_MEAN`` commands), each order at most once, by its owner: most find the order
  still resting, and the book stays at a few thousand resting orders. AMEND moves the
  price by -3 .. +3 ticks (same quantity), or keeps the price and halves the quantity
  (priority kept, unless more than half has traded). With the default seed about 60 % of
  CANCELs find their order resting, and the book holds about 3,000 resting orders (at most
  about 4,500);
- order handles are dense: NEW rows carry 0 .. n_new - 1 in arrival order.

``generate_session_stream(n, seed)`` is the second stream: the same commands spread over three
trading days, each from before the open through the morning, the lunch break and the
afternoon to after 15:00, with BLOCK orders and orders on and just beyond the band edges (see
its docstring).

>>> cmds = generate_stream(1000, seed=1)
>>> len(cmds), bool((cmds["ts"][1:] - cmds["ts"][:-1] == 1).all())
(1000, True)
>>> s = stream_stats(cmds)
>>> s["action"]["NEW"] + s["action"]["CANCEL"] + s["action"]["AMEND"] == 1000
True
>>> bool((generate_stream(1000, seed=1) == cmds).all())
True
"""

from __future__ import annotations

import numpy as np

from engine.batch import empty_commands
from engine.codes import Action, OrderType, Segment, Side, Stp, TimeInForce
from engine.rules import band_limits
from engine.tradingdays import format_time, parse_time

PRIOR_CLOSE = 6000  # fen: 60.00 CNY/t
TRADING_DATE = "2024-03-04"
START_TS = parse_time(f"{TRADING_DATE}T09:30:00")  # µs; the morning session opens
ACCOUNTS = 200
MAX_QTY = 2000  # tonnes
BAND_LOWER, BAND_UPPER = band_limits(PRIOR_CLOSE, Segment.LISTED)  # 5400, 6600

#: Share of each kind of command in the stream.
MIX = {
    "NEW LIMIT DAY": 0.58,
    "CANCEL": 0.29,
    "NEW LIMIT IOC": 0.07,
    "NEW LIMIT FOK": 0.015,
    "NEW MARKET IOC": 0.015,
    "AMEND": 0.03,
}
#: Mean distance in commands from a DAY order to the CANCEL or AMEND that targets it.
LAG_MEAN = 1000
#: The mid moves one tick (up or down) with this probability per NEW; it stays within
#: PRIOR_CLOSE ± MID_RANGE ticks, reflected at the edges.
MID_STEP_P = 0.05
MID_RANGE = 300
#: Ticks behind the mid on the order's own side (negative: through the mid), inclusive.
DAY_BEHIND = (-12, 20)
IOC_BEHIND = (-20, 2)
STP_SHARES = {Stp.CANCEL_NEWEST: 0.90, Stp.CANCEL_OLDEST: 0.05, Stp.CANCEL_BOTH: 0.05}

# the NEW kinds, as (type, tif), in the order their codes are drawn
_NEW_KINDS = (
    ("NEW LIMIT DAY", OrderType.LIMIT, TimeInForce.DAY),
    ("NEW LIMIT IOC", OrderType.LIMIT, TimeInForce.IOC),
    ("NEW LIMIT FOK", OrderType.LIMIT, TimeInForce.FOK),
    ("NEW MARKET IOC", OrderType.MARKET, TimeInForce.IOC),
)


def generate_stream(n: int, seed: int = 7) -> np.ndarray:
    """``n`` commands (``COMMAND_DTYPE``), the same for the same ``seed``; see the module doc.

    The NEW rows are drawn first, each at time ``j / (1 - s)`` where ``s`` is the share of
    CANCEL and AMEND; each CANCEL or AMEND is scheduled at its target's time plus an
    exponential lag; all rows are merged by time and the first ``n`` kept. Cost: O(n log n).
    """
    if n < 1:
        raise ValueError("a stream needs at least one command")
    rng = np.random.default_rng(seed)
    scheduled_share = MIX["CANCEL"] + MIX["AMEND"]
    m = n  # NEW rows drawn: enough to fill the stream even with no scheduled row kept

    # --- NEW rows, in arrival order (handle j = row j of these arrays)
    weights = np.array([MIX[name] for name, _, _ in _NEW_KINDS])
    kind = rng.choice(len(_NEW_KINDS), size=m, p=weights / weights.sum())
    kind[0] = 0  # the stream opens with a DAY order
    is_day = kind == 0
    side = np.where(rng.random(m) < 0.5, Side.BUY, Side.SELL).astype(np.int8)
    sign = np.where(side == Side.BUY, 1, -1)
    account = rng.integers(0, ACCOUNTS, size=m).astype(np.int32)
    qty = rng.integers(1, MAX_QTY + 1, size=m)
    stp_codes = np.array([int(k) for k in STP_SHARES], dtype=np.int8)
    stp = stp_codes[rng.choice(len(stp_codes), size=m, p=list(STP_SHARES.values()))]
    mid = _mid_walk(rng, m)
    behind = np.where(is_day, rng.integers(DAY_BEHIND[0], DAY_BEHIND[1] + 1, size=m),
                      rng.integers(IOC_BEHIND[0], IOC_BEHIND[1] + 1, size=m))
    price = np.clip(mid - sign * behind, BAND_LOWER, BAND_UPPER)
    types = np.array([int(t) for _, t, _ in _NEW_KINDS], dtype=np.int8)[kind]
    tifs = np.array([int(t) for _, _, t in _NEW_KINDS], dtype=np.int8)[kind]
    price[types == OrderType.MARKET] = -1  # NO_PRICE
    t_new = np.arange(m, dtype=np.float64) / (1.0 - scheduled_share)

    # --- CANCEL and AMEND rows: passive DAY orders, each targeted at most once
    passive = np.flatnonzero(is_day & (behind >= 1))
    n_cancel = int(round(m * MIX["CANCEL"] / (1.0 - scheduled_share)))
    n_amend = int(round(m * MIX["AMEND"] / (1.0 - scheduled_share)))
    if n_cancel + n_amend > len(passive):  # only in tiny streams
        n_cancel = len(passive) * n_cancel // (n_cancel + n_amend)
        n_amend = len(passive) - n_cancel
    targets = rng.permutation(passive)[: n_cancel + n_amend]
    lag_mean = min(LAG_MEAN, max(4, n // 20))
    lag = 0.5 + rng.exponential(lag_mean, size=len(targets))
    t_sched = t_new[targets] + lag
    amend_delta = rng.integers(-3, 4, size=n_amend)

    # --- merge by time, keep the first n rows
    times = np.concatenate([t_new, t_sched])
    pick = np.argsort(times, kind="stable")[:n]
    cmds = empty_commands(n)
    cmds["ts"] = START_TS + np.arange(n, dtype=np.int64)
    cmds["instrument"] = 0

    new_rows = pick < m
    j = pick[new_rows]  # handle == index among NEW rows: kept NEW rows are a prefix of 0..m-1
    cmds["action"][new_rows] = Action.NEW
    cmds["order"][new_rows] = j
    cmds["account"][new_rows] = account[j]
    cmds["side"][new_rows] = side[j]
    cmds["type"][new_rows] = types[j]
    cmds["tif"][new_rows] = tifs[j]
    cmds["stp"][new_rows] = stp[j]
    cmds["price"][new_rows] = price[j]
    cmds["qty"][new_rows] = qty[j]

    k = pick[~new_rows] - m  # index into targets
    sched_rows = np.flatnonzero(~new_rows)
    target = targets[k]
    cancel = k < n_cancel
    cmds["action"][sched_rows] = np.where(cancel, Action.CANCEL, Action.AMEND)
    cmds["order"][sched_rows] = target
    cmds["account"][sched_rows] = account[target]
    amend_rows = sched_rows[~cancel]
    a_target = target[~cancel]
    delta = amend_delta[k[~cancel] - n_cancel]
    cmds["price"][amend_rows] = np.clip(price[a_target] + delta, BAND_LOWER, BAND_UPPER)
    cmds["qty"][amend_rows] = np.where(delta == 0, np.maximum(1, qty[a_target] // 2),
                                       qty[a_target])
    return cmds


def _mid_walk(rng: np.random.Generator, m: int) -> np.ndarray:
    """Mid price in fen per NEW row: ±1 tick steps, reflected inside PRIOR_CLOSE ± MID_RANGE."""
    steps = rng.choice(np.array([-1, 0, 1]), size=m,
                       p=[MID_STEP_P / 2, 1 - MID_STEP_P, MID_STEP_P / 2])
    w = MID_RANGE + np.cumsum(steps)  # starts at the prior close
    period = 4 * MID_RANGE
    y = np.mod(w, period)
    y = np.where(y > 2 * MID_RANGE, period - y, y)
    return PRIOR_CLOSE - MID_RANGE + y


def stream_stats(cmds: np.ndarray) -> dict:
    """Counts per action, and for NEW rows per type, per tif and per type+tif; plus shares of
    the whole stream, accounts used, price range of limit orders and the time span."""
    n = len(cmds)
    action = cmds["action"]
    new = action == Action.NEW
    out: dict = {"commands": n}
    out["action"] = {a.name: int(np.count_nonzero(action == a))
                     for a in (Action.NEW, Action.CANCEL, Action.AMEND)}
    out["new_type"] = {t.name: int(np.count_nonzero(new & (cmds["type"] == t))) for t in OrderType}
    out["new_tif"] = {t.name: int(np.count_nonzero(new & (cmds["tif"] == t))) for t in TimeInForce}
    kinds = {}
    for name, t, tif in _NEW_KINDS:
        kinds[name] = int(np.count_nonzero(new & (cmds["type"] == t) & (cmds["tif"] == tif)))
    kinds["CANCEL"] = out["action"]["CANCEL"]
    kinds["AMEND"] = out["action"]["AMEND"]
    out["mix"] = kinds
    out["mix_pct"] = {k: round(100.0 * v / n, 2) for k, v in kinds.items()}
    out["new_stp"] = {s.name: int(np.count_nonzero(new & (cmds["stp"] == s))) for s in Stp}
    out["accounts"] = int(len(np.unique(cmds["account"][cmds["account"] >= 0])))
    limit = new & (cmds["type"] == OrderType.LIMIT)
    if limit.any():
        out["limit_price_min"] = int(cmds["price"][limit].min())
        out["limit_price_max"] = int(cmds["price"][limit].max())
    out["qty_max"] = int(cmds["qty"].max())
    out["first_ts"] = format_time(int(cmds["ts"][0]))
    out["last_ts"] = format_time(int(cmds["ts"][-1]))
    return out


# ---------------------------------------------------------------- the second stream: sessions

#: Trading days of the sessions stream: Thursday, Friday and, past a weekend, Monday.
SESSION_DATES = ("2024-03-07", "2024-03-08", "2024-03-11")
_H_US, _MIN_US = 3_600_000_000, 60_000_000
#: Phases of each day: (name, first time of day µs, end µs, share of the day's commands).
#: Each phase's first command falls exactly on its start (09:30, 11:30, 13:00, 15:00).
SESSION_PHASES = (
    ("pre-open", 9 * _H_US + 15 * _MIN_US, 9 * _H_US + 30 * _MIN_US, 0.005),
    ("morning", 9 * _H_US + 30 * _MIN_US, 11 * _H_US + 30 * _MIN_US, 0.44),
    ("lunch", 11 * _H_US + 30 * _MIN_US, 13 * _H_US, 0.015),
    ("afternoon", 13 * _H_US, 15 * _H_US, 0.53),
    ("after close", 15 * _H_US, 15 * _H_US + 30 * _MIN_US, 0.01),
)
#: Share of NEW rows made BLOCK orders (>= 100,000 t): in the afternoon, and elsewhere (where
#: the BLOCK segment is closed).
BLOCK_SHARE_PM, BLOCK_SHARE_OTHER = 0.12, 0.01
#: Share of LISTED NEW rows of 99,999 t (the largest LISTED order).
LISTED_MAX_SHARE = 0.003
#: Share of LIMIT NEW rows priced on, or one tick beyond, an edge of their segment's band.
EDGE_SHARE = 0.015
BLOCK_BEHIND = 60  # a BLOCK limit sits up to this many ticks deeper on its own side
BLOCK_BAND_LOWER, BLOCK_BAND_UPPER = band_limits(PRIOR_CLOSE, Segment.BLOCK)  # 4200, 7800


def generate_session_stream(n: int, seed: int = 7) -> np.ndarray:
    """``n`` commands (``COMMAND_DTYPE``) over three trading days (``SESSION_DATES``), the
    same for the same ``seed``; the second stream of ``cea bench core``.

    ``generate_stream(n, seed)`` (the morning stream: its mix, prices, accounts, CANCEL and
    AMEND targets) re-timed and re-shaped:

    - time: the rows split evenly over the days; each day's rows over ``SESSION_PHASES``:
      before the open, the morning session, the lunch break, the afternoon, after 15:00,
      evenly spaced inside each (strictly increasing). The first row at 15:00:00 ends the day:
      every resting order expires and the day closes; the next day opens with that close as
      its prior close (so its bands move with it); a weekend lies between the second day and
      the third;
    - segments: ``BLOCK_SHARE_PM`` of the afternoon's NEW rows (``BLOCK_SHARE_OTHER`` of the
      others', rejected MARKET_CLOSED) become BLOCK orders of 100,000 t (a third of them) or
      100,000 .. 500,000 t, their limit prices up to ``BLOCK_BEHIND`` ticks deeper on their own
      side, inside the ±30 % band; ``LISTED_MAX_SHARE`` of the other NEW rows ask 99,999 t;
    - band edges: ``EDGE_SHARE`` of the LIMIT NEW rows are priced on the lower or upper limit
      of their segment's band, or one tick beyond it (±10 % LISTED, ±30 % BLOCK of
      ``PRIOR_CLOSE``: exactly the first day's bands; on later days they lie near the moved
      bands, inside or outside);
    - AMEND rows of orders made BLOCK or edge-priced keep their segment and move the price by
      the same -3 .. +3 ticks (or halve the quantity, at least 100,000 t for a BLOCK order).

    >>> cmds = generate_session_stream(5000, seed=1)
    >>> s = session_stats(cmds)
    >>> s["days"], s["phases"]["lunch"] > 0, s["block_new"] > 0, s["edge_new"] > 0
    (3, True, True, True)
    >>> bool((cmds["ts"][1:] > cmds["ts"][:-1]).all())
    True
    >>> bool((generate_session_stream(5000, seed=1) == cmds).all())
    True
    """
    from engine.tradingdays import DAY_US

    cmds = generate_stream(n, seed)
    rng = np.random.default_rng([seed, 2])  # independent of the morning stream's draws
    action = cmds["action"]
    new_rows = np.flatnonzero(action == Action.NEW)
    base_price = cmds["price"].copy()

    # --- time: days, then phases
    days = [parse_time(f"{d}T00:00:00") // DAY_US for d in SESSION_DATES]
    phase = np.zeros(n, dtype=np.int8)
    shares = np.array([p[3] for p in SESSION_PHASES])
    bounds = np.linspace(0, n, len(days) + 1).astype(np.int64)
    for d, day in enumerate(days):
        lo, hi = int(bounds[d]), int(bounds[d + 1])
        cuts = lo + np.round(np.cumsum(np.concatenate([[0], shares])) / shares.sum()
                             * (hi - lo)).astype(np.int64)
        for p, (_, start, end, _) in enumerate(SESSION_PHASES):
            a, b = int(cuts[p]), int(cuts[p + 1])
            k = b - a
            if k:
                cmds["ts"][a:b] = day * DAY_US + start + (np.arange(k) * (end - start)) // k
                phase[a:b] = p

    # --- segments: BLOCK orders, 99,999 t orders
    afternoon = phase[new_rows] == 3
    block = rng.random(len(new_rows)) < np.where(afternoon, BLOCK_SHARE_PM, BLOCK_SHARE_OTHER)
    b_rows = new_rows[block]
    b_qty = np.where(rng.random(len(b_rows)) < 1 / 3, 100_000,
                     rng.integers(100_000, 500_001, size=len(b_rows)))
    cmds["qty"][b_rows] = b_qty
    sign = np.where(cmds["side"][b_rows] == Side.BUY, 1, -1)
    limit_b = cmds["type"][b_rows] == OrderType.LIMIT
    deeper = cmds["price"][b_rows] - sign * rng.integers(0, BLOCK_BEHIND + 1, size=len(b_rows))
    cmds["price"][b_rows] = np.where(limit_b, np.clip(deeper, BLOCK_BAND_LOWER,
                                                      BLOCK_BAND_UPPER), -1)
    listed_rows = new_rows[~block]
    big = listed_rows[rng.random(len(listed_rows)) < LISTED_MAX_SHARE]
    cmds["qty"][big] = 99_999

    # --- band edges: on the limit, or one tick beyond it
    limit_new = new_rows[cmds["type"][new_rows] == OrderType.LIMIT]
    edge_rows = limit_new[rng.random(len(limit_new)) < EDGE_SHARE]
    is_block = cmds["qty"][edge_rows] >= 100_000
    upper = rng.random(len(edge_rows)) < 0.5
    beyond = rng.integers(0, 2, size=len(edge_rows))
    lower_edge = np.where(is_block, BLOCK_BAND_LOWER, BAND_LOWER)
    upper_edge = np.where(is_block, BLOCK_BAND_UPPER, BAND_UPPER)
    cmds["price"][edge_rows] = np.where(upper, upper_edge + beyond, lower_edge - beyond)

    # --- AMENDs of re-shaped orders: the same move from the order's new price and segment
    amend_rows = np.flatnonzero(action == Action.AMEND)
    target_row = new_rows[cmds["order"][amend_rows]]
    changed = (cmds["price"][target_row] != base_price[target_row]) | \
        (cmds["qty"][target_row] >= 100_000)
    a_rows, t_rows = amend_rows[changed], target_row[changed]
    delta = cmds["price"][a_rows] - base_price[t_rows]  # -3 .. +3 (0: halve the quantity)
    t_block = cmds["qty"][t_rows] >= 100_000
    moved = cmds["price"][t_rows] + delta
    cmds["price"][a_rows] = np.where(t_block, np.clip(moved, BLOCK_BAND_LOWER, BLOCK_BAND_UPPER),
                                     moved)
    half = np.where(t_block, np.maximum(100_000, cmds["qty"][t_rows] // 2),
                    np.maximum(1, cmds["qty"][t_rows] // 2))
    cmds["qty"][a_rows] = np.where(delta == 0, half, cmds["qty"][t_rows])
    return cmds


def session_stats(cmds: np.ndarray) -> dict:
    """``stream_stats`` plus what the sessions stream adds: commands per trading day and per
    phase, BLOCK and 99,999 t NEW rows, NEW rows priced on or beyond a band edge."""
    from engine.tradingdays import DAY_US

    out = stream_stats(cmds)
    ts = cmds["ts"]
    day = ts // DAY_US
    tod = ts % DAY_US
    out["days"] = int(len(np.unique(day)))
    out["per_day"] = {format_time(int(d) * DAY_US)[:10]: int(c)
                      for d, c in zip(*np.unique(day, return_counts=True))}
    out["phases"] = {name: int(np.count_nonzero((tod >= start) & (tod < end)))
                     for name, start, end, _ in SESSION_PHASES}
    new = cmds["action"] == Action.NEW
    out["block_new"] = int(np.count_nonzero(new & (cmds["qty"] >= 100_000)))
    out["listed_99999_new"] = int(np.count_nonzero(new & (cmds["qty"] == 99_999)))
    limit = new & (cmds["type"] == OrderType.LIMIT)
    price = cmds["price"]
    edges = (BAND_LOWER, BAND_LOWER - 1, BAND_UPPER, BAND_UPPER + 1, BLOCK_BAND_LOWER,
             BLOCK_BAND_LOWER - 1, BLOCK_BAND_UPPER, BLOCK_BAND_UPPER + 1)
    out["edge_new"] = int(np.count_nonzero(limit & np.isin(price, edges)))
    return out
