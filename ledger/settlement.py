"""Trade settlement and end of day: the engine's trades as double-entry postings, the closing
prices and the day's settlement report, and reading the settled trades back.

Settlement is delivery versus payment, trade by trade (docs/rules.md §11): per trade the buyer
pays price x qty plus its fee, the seller delivers the tonnes and receives price x qty less its
fee, the fees go to ``@FEES``. The engine has already locked both legs when it matched, so
settlement cannot fail for want of funds; the ledger still refuses (and rolls back the whole
batch) anything that would take a participant's balance below zero, an unknown account, or an
amount that is not a positive integer.

Trades arrive in batches (``settle_events`` takes the engine's event rows as they come out of
a batch, ``settle_trades`` takes ``Trade`` records); one batch is one transaction: the trade
rows, then their postings generated inside the database (``INSERT ... SELECT``, four or five
legs per trade), then the balance rows changed by the batch. A trade id already in the ledger
is skipped, so publishing a batch twice (a retry after a crash) settles each trade once.

Every function takes the ledger (a ``ledger.accounts.LedgerAccounts``) first;
``ledger.core.Ledger`` has each public one as a method of the same name.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from engine import batch as B
from engine.codes import EventKind
from engine.rules import DAY_US
from engine.tradingdays import date_of_day

from .accounts import CASH, CCER, FEES, SOURCE_TRADE, LedgerAccounts, LedgerError, Trade


def trade_fees(price: np.ndarray, qty: np.ndarray, bps: np.ndarray) -> np.ndarray:
    """The fee each side of each trade pays, in fen (int64 arrays, element by element).

    >>> trade_fees(np.array([6000, 1]), np.array([200, 1]), np.array([5, 5000])).tolist()
    [600, 1]
    """
    from engine.accounts import fee  # the rule's one definition (it takes arrays too)

    return fee(price * qty, bps)


def settle_trades(ledger: LedgerAccounts, trades: Iterable[Trade]) -> int:
    """Settle ``Trade`` records as one batch; return how many were new."""
    cols, buy_orders, sell_orders = [], [], []
    for t in trades:
        if t.instrument not in ledger.assets or t.instrument in (CASH, CCER):
            raise LedgerError(f"trade {t.trade_id}: no instrument {t.instrument!r}")
        cols.append((t.trade_id, t.day, t.ts, ledger.assets[t.instrument], t.segment, t.price,
                     t.qty, ledger.account_id(t.buyer), ledger.account_id(t.seller)))
        buy_orders.append(t.buy_order)
        sell_orders.append(t.sell_order)
    return _settle(ledger, np.array(cols, dtype=np.int64).reshape(-1, 9), buy_orders,
                   sell_orders)


def settle_events(ledger: LedgerAccounts, events: np.ndarray,
                  account_name: Callable[[int], str], order_name: Callable[[int], str],
                  instruments: Sequence[str], feed: tuple[str, int] | None = None) -> int:
    """Settle the TRADE rows of an engine event array and record its DAY_CLOSED rows,
    in one transaction. ``account_name`` / ``order_name`` turn engine handles into
    names; ``instruments`` names the engine's instruments by index. ``feed`` (name,
    position) records, in the same transaction, how far that source is now settled."""
    trades = events[events[:, B.KIND] == EventKind.TRADE]
    closed = events[events[:, B.KIND] == EventKind.DAY_CLOSED]
    asset_of = np.array([ledger.assets[name] for name in instruments], dtype=np.int64)
    # engine account handles -> ledger ids, looked up once per distinct handle
    handles = np.unique(np.concatenate([trades[:, B.TRADE_BUY_ACCOUNT],
                                        trades[:, B.TRADE_SELL_ACCOUNT]]))
    ids = np.array([ledger.account_id(account_name(int(h))) for h in handles.tolist()],
                   dtype=np.int64)
    cols = np.empty((len(trades), 9), dtype=np.int64)
    cols[:, 0] = trades[:, B.TRADE_ID]
    cols[:, 1] = trades[:, B.TS] // DAY_US
    cols[:, 2] = trades[:, B.TS]
    cols[:, 3] = asset_of[trades[:, B.INSTRUMENT]]
    cols[:, 4] = trades[:, B.SEGMENT]
    cols[:, 5] = trades[:, B.PRICE]
    cols[:, 6] = trades[:, B.QTY]
    cols[:, 7] = ids[np.searchsorted(handles, trades[:, B.TRADE_BUY_ACCOUNT])]
    cols[:, 8] = ids[np.searchsorted(handles, trades[:, B.TRADE_SELL_ACCOUNT])]
    buy_orders = [order_name(h) for h in trades[:, B.TRADE_BUY_ORDER].tolist()]
    sell_orders = [order_name(h) for h in trades[:, B.TRADE_SELL_ORDER].tolist()]
    closes = [(r[B.DAY_NUMBER], int(asset_of[r[B.INSTRUMENT]]), r[B.DAY_PRIOR_CLOSE],
               r[B.DAY_CLOSE], r[B.DAY_LISTED_VOLUME], r[B.DAY_BLOCK_VOLUME],
               r[B.DAY_LISTED_TURNOVER], r[B.DAY_BLOCK_TURNOVER]) for r in closed.tolist()]
    return _settle(ledger, cols, buy_orders, sell_orders, closes, feed)


def feed_position(ledger: LedgerAccounts, name: str) -> int:
    """How far the source ``name`` has been settled (-1: never)."""
    rows = ledger.store.query("SELECT position FROM feed WHERE name = ?", (name,))
    return int(rows[0][0]) if rows else -1


def _settle(ledger: LedgerAccounts, cols: np.ndarray, buy_orders: list[str],
            sell_orders: list[str], closes: list[tuple] = (),
            feed: tuple[str, int] | None = None) -> int:
    """cols: trade_id, day, ts, asset, segment, price, qty, buyer, seller (ledger ids)."""
    if len(cols):
        bad = np.flatnonzero((cols[:, 5] <= 0) | (cols[:, 6] <= 0) | (cols[:, 7] == cols[:, 8])
                             | (cols[:, 4] < 0) | (cols[:, 4] >= len(ledger.fee_bps)))
        if len(bad):
            raise LedgerError(f"trade {int(cols[bad[0], 0])}: price and quantity must be "
                              "positive, the buyer differ from the seller and the segment "
                              "be LISTED 0, BLOCK 1 or AUCTION 2")
        if len(np.unique(cols[:, 0])) != len(cols):
            raise LedgerError("a batch names the same trade id twice")
    store = ledger.store
    with store.transaction():
        new = 0
        if len(cols):
            lo, hi = int(cols[:, 0].min()), int(cols[:, 0].max())
            seen = np.array([t for (t,) in store.query(
                "SELECT trade_id FROM trade WHERE trade_id BETWEEN ? AND ?", (lo, hi))],
                dtype=np.int64)
            keep = ~np.isin(cols[:, 0], seen) if len(seen) else np.ones(len(cols), bool)
            cols = cols[keep]
            new = len(cols)
        if new:
            bps = np.array(ledger.fee_bps, dtype=np.int64)[cols[:, 4]]
            fees = trade_fees(cols[:, 5], cols[:, 6], bps)
            kept = np.flatnonzero(keep).tolist()
            rows = list(zip(*cols.T.tolist(), [buy_orders[k] for k in kept],
                            [sell_orders[k] for k in kept], fees.tolist(), fees.tolist()))
            store.bulk_insert("trade", 13, rows)
            _postings(ledger, np.sort(cols[:, 0]).tolist())
            ledger.apply_balances(_trade_deltas(ledger, cols, fees), "a trade batch")
        for c in closes:
            _close_day(ledger, *c)
        if feed is not None:
            store.execute("INSERT INTO feed VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
                          "position = excluded.position", feed)
    return new


def _postings(ledger: LedgerAccounts, ids: list[int]) -> None:
    """The legs of trades ``ids``, generated in SQL one contiguous id run at a time."""
    fees_account = ledger.accounts[FEES]
    runs, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] != ids[k - 1] + 1:
            runs.append((ids[start], ids[k - 1]))
            start = k
    legs = [
        "buyer, 0, -(price * qty + buyer_fee)",  # buyer pays
        "seller, 0, price * qty - seller_fee",  # seller is paid
        "seller, asset, -qty",  # seller delivers
        "buyer, asset, qty",  # buyer receives
    ]
    for lo, hi in runs:
        for leg in legs:
            ledger.store.execute(
                f"INSERT INTO posting SELECT {SOURCE_TRADE}, trade_id, day, {leg} FROM trade "
                "WHERE trade_id BETWEEN ? AND ?", (lo, hi))
        ledger.store.execute(
            f"INSERT INTO posting SELECT {SOURCE_TRADE}, trade_id, day, {fees_account}, 0, "
            "buyer_fee + seller_fee FROM trade WHERE trade_id BETWEEN ? AND ? "
            "AND buyer_fee + seller_fee > 0", (lo, hi))


def _trade_deltas(ledger: LedgerAccounts, t: np.ndarray, fee_each: np.ndarray):
    """Net change per (account, asset) of a batch of trades, exact in int64."""
    notional = t[:, 5] * t[:, 6]
    zeros = np.zeros(len(t), dtype=np.int64)
    acc = np.concatenate([t[:, 7], t[:, 8], t[:, 8], t[:, 7],
                          np.full(len(t), ledger.accounts[FEES])])
    asset = np.concatenate([zeros, zeros, t[:, 3], t[:, 3], zeros])
    amount = np.concatenate([-(notional + fee_each), notional - fee_each, -t[:, 6], t[:, 6],
                             2 * fee_each])
    key = acc * (len(ledger.assets) + 1) + asset
    order = np.argsort(key, kind="stable")
    key, acc, asset, amount = key[order], acc[order], asset[order], amount[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sums = np.add.reduceat(amount, starts)
    return list(zip(acc[starts].tolist(), asset[starts].tolist(), sums.tolist()))


def _close_day(ledger: LedgerAccounts, day, asset, prior_close, close, listed_volume,
               block_volume, listed_turnover, block_turnover) -> None:
    """A DAY_CLOSED row: the closing price, and once a day its settlement report."""
    ledger.store.execute(
        "INSERT INTO day_close VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day, asset) "
        "DO NOTHING", (day, asset, prior_close, close, listed_volume, block_volume,
                       listed_turnover, block_turnover))
    n, cash, tonnes, fees = ledger.store.query(
        "SELECT count(*), coalesce(sum(price * qty), 0), coalesce(sum(qty), 0), "
        "coalesce(sum(buyer_fee + seller_fee), 0) FROM trade WHERE day = ?", (day,))[0]
    ledger.store.execute("INSERT INTO settlement VALUES (?, ?, ?, ?, ?) ON CONFLICT (day) "
                         "DO UPDATE SET trades = excluded.trades, cash_moved = "
                         "excluded.cash_moved, tonnes_moved = excluded.tonnes_moved, "
                         "fees = excluded.fees", (day, n, cash, tonnes, fees))


# ---------------------------------------------------------------------- reading

def trade_count(ledger: LedgerAccounts) -> int:
    return ledger.store.query("SELECT count(*) FROM trade")[0][0]


def trades_between(ledger: LedgerAccounts, lo: int, hi: int) -> list[tuple[Trade, int, int]]:
    """The settled trades with ids ``lo`` .. ``hi``, by id, each with (buyer fee, seller
    fee) in fen."""
    rows = ledger.store.query(
        "SELECT trade_id, day, ts, asset, segment, price, qty, buyer, seller, buy_order, "
        "sell_order, buyer_fee, seller_fee FROM trade WHERE trade_id BETWEEN ? AND ? "
        "ORDER BY trade_id", (int(lo), int(hi)))
    names, assets = ledger.account_names, ledger.asset_names
    return [(Trade(int(tid), int(day), int(ts), assets[asset], int(seg), int(price),
                   int(qty), names[buyer], names[seller], bo, so), int(bf), int(sf))
            for tid, day, ts, asset, seg, price, qty, buyer, seller, bo, so, bf, sf in rows]


def days(ledger: LedgerAccounts) -> list[tuple]:
    """(date, instrument, prior close, close, listed volume, block volume) per day."""
    return [(date_of_day(d).isoformat(), ledger.asset_names[a], p, c, lv, bv)
            for d, a, p, c, lv, bv in ledger.store.query(
                "SELECT day, asset, prior_close, close, listed_volume, block_volume "
                "FROM day_close ORDER BY day, asset")]


__all__ = ["days", "feed_position", "settle_events", "settle_trades", "trade_count",
           "trade_fees", "trades_between"]
