"""Seeded random command streams that reach every rule: for differential and invariant tests.

A stream is a ``COMMAND_DTYPE`` array over a few accounts (so self-trade prevention fires),
prices clustered near the prior close with some outside the band, LISTED and BLOCK
quantities, every action, edge-level rejects, duplicates, and a clock that crosses lunch,
15:00, weekends and holidays, and now and then goes backwards.
"""

from __future__ import annotations

import numpy as np

from engine.batch import empty_commands
from engine.codes import NO_PRICE, NO_TIME, Action, OrderType, Reason, Side, Stp, TimeInForce
from engine.rules import DAY_US
from engine.tradingdays import parse_time

START = parse_time("2024-09-26T09:25:00")  # Thursday; 2024-09-28/29 weekend, 10-01..07 holiday

# moments within a day the clock jumps to, in microseconds after midnight
_MOMENTS_US = [
    9 * 3600e6 + 29 * 60e6, 9.5 * 3600e6, 10 * 3600e6, 11.5 * 3600e6 - 1, 11.5 * 3600e6,
    12 * 3600e6, 13 * 3600e6, 14 * 3600e6, 15 * 3600e6 - 1, 15 * 3600e6, 16 * 3600e6,
]


def random_stream(seed: int, n: int, instruments: int = 1, prior_closes=(6000,),
                  accounts: int = 4) -> np.ndarray:
    """``n`` commands, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    cmds = empty_commands(n)
    ts = START
    next_order = 0
    live: list[int] = []  # order handles of recent NEW rows
    owner: dict[int, int] = {}  # order handle -> account of its first NEW row
    for i in range(n):
        r = rng.random()
        time_of_day = ts % DAY_US
        in_session = 9.5 * 3600e6 <= time_of_day < 11.5 * 3600e6 or \
            13 * 3600e6 <= time_of_day < 15 * 3600e6
        if r < 0.006 or (not in_session and r < 0.05):
            # jump to another moment of this day or a later one: sessions, their edges,
            # lunch, 15:00 and after, weekends and holidays
            day = ts // DAY_US + (int(rng.integers(1, 4)) if rng.random() < 0.4 else 0)
            moment = int(_MOMENTS_US[rng.integers(0, len(_MOMENTS_US))])
            ts = max(ts, day * DAY_US + moment)
        else:
            ts += int(rng.integers(0, 200_000))
        row = cmds[i]
        row["ts"] = ts
        if rng.random() < 0.01:
            row["ts"] = ts - int(rng.integers(1, 10**7))  # earlier than the clock
        elif rng.random() < 0.003:
            row["ts"] = NO_TIME
        row["account"] = int(rng.integers(0, accounts))
        instrument = int(rng.integers(0, instruments))
        row["instrument"] = instrument
        prior = prior_closes[instrument]
        a = rng.random()
        if a < 0.62 or not live:
            row["action"] = Action.NEW
            if live and rng.random() < 0.02:
                row["order"] = live[int(rng.integers(0, len(live)))]  # duplicate id
            else:
                row["order"] = next_order
                owner[next_order] = int(row["account"])
                live.append(next_order)
                next_order += 1
            row["side"] = Side.BUY if rng.random() < 0.5 else Side.SELL
            t = rng.random()
            if t < 0.08:
                row["type"], row["tif"] = OrderType.MARKET, TimeInForce.IOC
            else:
                row["type"] = OrderType.LIMIT
                row["tif"] = (TimeInForce.DAY if t < 0.75 else
                              TimeInForce.IOC if t < 0.88 else TimeInForce.FOK)
            row["stp"] = (Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH)[
                int(rng.integers(0, 3))]
            row["qty"] = _qty(rng)
            row["price"] = NO_PRICE if row["type"] == OrderType.MARKET else _price(rng, prior)
        elif a < 0.85:
            row["action"] = Action.CANCEL
            row["order"] = _target(rng, live, next_order)
        elif a < 0.97:
            row["action"] = Action.AMEND
            row["order"] = _target(rng, live, next_order)
            row["qty"] = _qty(rng) if rng.random() < 0.3 else int(rng.integers(1, 60))
            row["price"] = _price(rng, prior)
        elif a < 0.985:
            row["action"] = Action.TICK
        else:
            row["action"] = Action.UNKNOWN
            row["check"] = Reason.MALFORMED
        if row["action"] in (Action.CANCEL, Action.AMEND) and rng.random() < 0.8:
            row["account"] = owner.get(int(row["order"]), int(row["account"]))
        if row["action"] in (Action.NEW, Action.AMEND) and rng.random() < 0.03:
            row["check"] = (Reason.MALFORMED, Reason.INVALID_QTY, Reason.INVALID_PRICE)[
                int(rng.integers(0, 3))]
        if len(live) > 60:
            del live[: len(live) - 60]
    return cmds


def _qty(rng) -> int:
    if rng.random() < 0.08:
        return int(rng.integers(100_000, 400_000))  # BLOCK
    return int(rng.integers(1, 400))


def _price(rng, prior: int) -> int:
    if rng.random() < 0.04:
        return int(prior * (0.6 + 0.8 * rng.random()))  # often outside the band
    return prior + int(rng.integers(-6, 7))


def _target(rng, live: list[int], next_order: int) -> int:
    if rng.random() < 0.05:
        return next_order + 5  # never entered
    return live[int(rng.integers(0, len(live)))]
