"""Ledger benchmark: the engine with and without the risk stage, and trades settled per second
into SQLite and PostgreSQL.

Scenario: ``bench.streams.generate_stream(orders, seed)`` (default 1,000,000 commands, one
instrument, 200 accounts). Every account is funded far beyond what it can trade (cash
10^13 fen, 10^9 t), so the risk stage rejects nothing and both runs match the same trades: the
events of the two runs must be equal (checked), and the difference in time is the
reservation and settlement work alone.

- ``engine_ns`` / ``engine_with_reservation_ns``: ns per command of one ``submit_batch`` call
  over the whole stream on a fresh, presized Numba book, median of ``ROUNDS`` rounds each,
  the two interleaved in one run; ``reservation_ratio`` is their quotient (target <= 1.5).
- ``sqlite_trades_per_s`` / ``postgres_trades_per_s``: the run's trades settled through
  ``Ledger.settle_events`` in batches of ``batch`` engine events' trades (default 10,000
  trades a transaction), each batch one durable commit (SQLite WAL ``synchronous=FULL``;
  PostgreSQL with ``synchronous_commit`` on), timed end to end including building the rows
  in Python (target >= 100,000 trades/s into SQLite). PostgreSQL is a server started for the
  run on loopback (``bench/pgserver.py``) unless ``--postgres URL`` names one; where neither
  is possible the figure is null with the reason.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import batch as B
from engine.accounts import Accounts, RiskConfig
from engine.book import make_book
from engine.codes import AccountType, EventKind
from engine.tradingdays import TradingCalendar

from .streams import ACCOUNTS, PRIOR_CLOSE, TRADING_DATE, generate_stream

ROUNDS = 5
TARGET_RATIO = 1.5
TARGET_SQLITE = 100_000


def _accounts() -> Accounts:
    acc = Accounts(1, RiskConfig(fee_bps_listed=3, fee_bps_block=1), capacity=ACCOUNTS)
    for a in range(ACCOUNTS):
        acc.open_account(AccountType.COVERED_ENTITY, a)
        acc.deposit(a, 10**13)
        acc.allowance_in(a, 0, 10**9)
    return acc


def _book(calendar, cmds, accounts):
    n_new = int((cmds["action"] == 1).sum())
    return make_book("numba", [PRIOR_CLOSE], calendar, accounts=accounts,
                     slot_capacity=n_new + 1, order_capacity=n_new + 1,
                     event_capacity=3 * len(cmds) + 1024)


def _time_engine(calendar, cmds, with_accounts: bool):
    book = _book(calendar, cmds, _accounts() if with_accounts else None)
    t = time.perf_counter_ns()
    events = book.submit_batch(cmds, copy=False)
    elapsed = time.perf_counter_ns() - t
    return elapsed / len(cmds), events.copy(), book


def _settle(url: str, events: np.ndarray, batch: int) -> tuple[float, int]:
    from ledger import Ledger

    led = Ledger.open(url, ["CEA"], 3, 1)
    for a in range(ACCOUNTS):
        led.open_account(f"A{a}", AccountType.COVERED_ENTITY)
        led.deposit(f"A{a}", 10**13, ref=f"open:{a}", day=0)
        led.allowance_in(f"A{a}", "CEA", 10**9, ref=f"open:{a}:cea", day=0)
    trades = events[events[:, B.KIND] == EventKind.TRADE]
    names = [f"A{a}" for a in range(ACCOUNTS)]
    account = names.__getitem__
    order = str
    t = time.perf_counter()
    for start in range(0, len(trades), batch):
        led.settle_events(trades[start:start + batch], account, order, ["CEA"])
    seconds = time.perf_counter() - t
    ok = led.reconcile().ok and led.trade_count() == len(trades)
    led.close()
    if not ok:
        raise RuntimeError(f"{url}: the benchmark's ledger does not reconcile")
    return len(trades) / seconds, len(trades)


def run_ledger_benchmark(orders: int = 1_000_000, seed: int = 7, batch: int = 10_000,
                         json_path=None, postgres: str | None = None, echo=print) -> dict:
    calendar = TradingCalendar.from_dates([TRADING_DATE])
    cmds = generate_stream(orders, seed)
    echo(f"stream: {orders} commands, seed {seed}; warming the kernels up ...")
    _time_engine(calendar, cmds[:2000], True)
    _time_engine(calendar, cmds[:2000], False)
    plain, reserved = [], []
    events = None
    for _ in range(ROUNDS):  # interleaved, so drift on a shared machine hits both alike
        ns, ev_plain, _ = _time_engine(calendar, cmds, False)
        plain.append(ns)
        ns, ev_res, book = _time_engine(calendar, cmds, True)
        reserved.append(ns)
        if not np.array_equal(ev_plain, ev_res):
            raise RuntimeError("with every account funded, reservation changed the events")
        events = ev_res
    engine_ns, with_res_ns = statistics.median(plain), statistics.median(reserved)
    n_trades = int((events[:, B.KIND] == EventKind.TRADE).sum())
    echo(f"engine {engine_ns:.1f} ns/cmd, with reservation {with_res_ns:.1f} ns/cmd "
         f"(x{with_res_ns / engine_ns:.2f}); {n_trades} trades")

    with tempfile.TemporaryDirectory() as tmp:
        sqlite_rate, _ = _settle(str(Path(tmp) / "bench.sqlite"), events, batch)
    echo(f"sqlite: {sqlite_rate:,.0f} trades/s settled ({batch} a transaction)")

    pg_rate, pg_note, stop = None, "", None
    try:
        url = postgres
        if url is None:
            from .pgserver import postgres_unavailable_reason, start_postgres

            pg_note = postgres_unavailable_reason() or ""
            if not pg_note:
                pg_dir = tempfile.mkdtemp(prefix="cea-bench-pg-")
                url, stop = start_postgres(pg_dir)
        if url:
            pg_rate, _ = _settle(url, events, batch)
            echo(f"postgresql: {pg_rate:,.0f} trades/s settled ({batch} a transaction)")
    except ImportError as e:
        pg_note = f"PostgreSQL unavailable: {e}"
    finally:
        if stop is not None:
            stop()
    if pg_rate is None:
        echo(f"postgresql: not measured ({pg_note})")

    result = {
        "orders": orders, "seed": seed, "trades": n_trades, "batch": batch,
        "engine_ns": round(engine_ns, 1), "engine_with_reservation_ns": round(with_res_ns, 1),
        "engine_ns_rounds": [round(x, 1) for x in plain],
        "engine_with_reservation_ns_rounds": [round(x, 1) for x in reserved],
        "reservation_ratio": round(with_res_ns / engine_ns, 3),
        "sqlite_trades_per_s": round(sqlite_rate),
        "postgres_trades_per_s": round(pg_rate) if pg_rate is not None else None,
        "postgres_note": pg_note,
        "targets": {"reservation_ratio_max": TARGET_RATIO,
                    "sqlite_trades_per_s_min": TARGET_SQLITE},
    }
    if json_path is not None:
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        echo(f"wrote {json_path}")
    return result
