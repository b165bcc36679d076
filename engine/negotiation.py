"""Negotiated block agreements (spec §3b, the market's 大宗协议交易): quotes, counters,
acceptance, withdrawal and expiry, one definition for both books.

A participant proposes terms (side, price, quantity) for the BLOCK segment, to one
counterparty or to every participant; the two parties counter each other's terms until the
one who did not make the latest terms accepts them, and that acceptance is one BLOCK trade
at those terms. Beside the BLOCK book, not in it: a quote never matches by price.

The commands arrive through a book's own sequence (``Action.BLOCK_*`` rows of the raw
command array), after the book has checked the row's time and moved its clock. This module
holds the live quotes and makes every other check and effect through a small interface each
book gives (``Venue``): its session hours and bands, its order-id space, its trade ids and
day figures, its event rows and its accounts. So the reference book and the Numba book run
this same code, in the same order, and give the same events.

Reservations: each party reserves, from the moment it proposes terms (its quote or its
counter), what those terms need on its side (cash for a buyer, allowances for a seller, as a
BLOCK LIMIT order of that price and quantity); a new proposal of its own moves its
reservation to the new terms; an acceptance checks the acceptor for the accepted terms
(its own earlier reservation given back first), and the trade settles from both parties'
reservations. Withdrawal and expiry give back whatever is reserved.

>>> from engine import Engine, Side, parse_time
>>> from engine.messages import BlockQuote, BlockCounter, BlockAccept
>>> eng = Engine({"CEA": 6000})
>>> t = parse_time("2024-03-04T13:05:00")
>>> [type(e).__name__ for e in eng.submit(BlockQuote(t, "A", "q1", Side.SELL, 150_000, 5800,
...                                                  counterparty="B"))]
['QuoteUpdated']
>>> eng.submit(BlockCounter(t + 1, "B", "q1", price=5700))[0].price
5700
>>> [type(e).__name__ for e in eng.submit(BlockAccept(t + 2, "A", "q1"))]
['TradeExecuted', 'QuoteEnded']
>>> eng.day()[0].block_volume, eng.day()[0].block_turnover
(150000, 855000000)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from . import batch as B
from .codes import NO_PRICE, NO_REF, Action, EventKind, QuoteEnd, Reason, Segment, Side
from .rules import in_band, qty_fits_segment


class Venue(Protocol):
    """What a book lends the negotiation (both books implement it)."""

    accounts: object  # engine.accounts.Accounts (``enabled`` False: no risk stage)

    def n_instruments(self) -> int: ...
    def block_session_open(self, ts: int) -> bool: ...
    def is_trading_day(self, ts: int) -> bool: ...
    def block_band(self, instrument: int) -> tuple[int, int]: ...
    def order_id_used(self, ref: int) -> bool: ...
    def use_order_id(self, ref: int) -> None: ...
    def block_trade(self, instrument: int, price: int, qty: int) -> int: ...
    def event(self, kind: int, cmd: int, ts: int): ...


@dataclass
class Quote:
    """One live negotiation. ``reserved``: account -> (price, qty) it has reserved for."""

    ref: int
    instrument: int
    maker: int
    side: int  # the maker's side
    counterparty: int  # NO_REF: public (anyone but the maker may counter or accept)
    price: int
    qty: int
    proposer: int  # who made the terms now on the table
    seq: int  # order of making: expiry reports quotes in this order
    reserved: dict[int, tuple[int, int]] = field(default_factory=dict)

    def party(self, account: int) -> bool:
        """``account`` may act on it: its maker, its counterparty, or anyone while public."""
        return account == self.maker or account == self.counterparty or (
            self.counterparty == NO_REF and account >= 0)

    def side_of(self, account: int) -> int:
        if account == self.maker:
            return self.side
        return Side.SELL if self.side == Side.BUY else Side.BUY


class Negotiations:
    """The live block quotes of one book, and the commands on them."""

    def __init__(self):
        self.live: dict[int, Quote] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self.live)

    # ------------------------------------------------------------------ commands

    def handle(self, venue: Venue, cmd: int, c) -> None:
        """Process command row ``c`` (index ``cmd`` in its batch); its time has been checked
        and the book's clock moved to it."""
        action = int(c["action"])
        if action == Action.BLOCK_QUOTE:
            self._quote(venue, cmd, c)
        elif action == Action.BLOCK_COUNTER:
            self._counter(venue, cmd, c)
        elif action == Action.BLOCK_ACCEPT:
            self._accept(venue, cmd, c)
        else:
            self._withdraw(venue, cmd, c)

    def _terms_fit(self, venue: Venue, instrument: int, price: int, qty: int) -> Reason:
        """The block segment's rules for terms: quantity range, then band (spec §2)."""
        if not qty_fits_segment(qty, Segment.BLOCK):
            return Reason.INVALID_QTY
        lower, upper = venue.block_band(instrument)
        if not in_band(price, lower, upper):
            return Reason.PRICE_OUTSIDE_BAND
        return Reason.NONE

    def _quote(self, venue: Venue, cmd: int, c) -> None:
        # §3b BLOCK_QUOTE: MALFORMED, INVALID_QTY, INVALID_PRICE (edge), DUPLICATE_ORDER_ID,
        # MARKET_CLOSED (13:00-15:00), INVALID_QTY (block range), PRICE_OUTSIDE_BAND,
        # UNKNOWN_COUNTERPARTY, then the risk stage for the maker.
        ref, account, instrument = int(c["order"]), int(c["account"]), int(c["instrument"])
        ts, peer = int(c["ts"]), int(c["peer"])
        # a quote's id is used by the row whatever its outcome, as a NEW's (§3)
        used = ref >= 0 and venue.order_id_used(ref)
        if ref >= 0:
            venue.use_order_id(ref)
        if c["check"] != Reason.NONE:
            return self._reject(venue, cmd, c, int(c["check"]))
        if ref < 0 or account < 0 or not 0 <= instrument < venue.n_instruments() or \
                int(c["side"]) not in (Side.BUY, Side.SELL):
            return self._reject(venue, cmd, c, Reason.MALFORMED)
        if used:
            return self._reject(venue, cmd, c, Reason.DUPLICATE_ORDER_ID)
        if not venue.block_session_open(ts):
            return self._reject(venue, cmd, c, Reason.MARKET_CLOSED)
        price, qty, side = int(c["price"]), int(c["qty"]), int(c["side"])
        reason = self._terms_fit(venue, instrument, price, qty)
        if reason != Reason.NONE:
            return self._reject(venue, cmd, c, reason)
        acc = venue.accounts
        if peer == account or peer < NO_REF or (
                peer != NO_REF and acc.enabled and not acc.is_known(peer)):
            return self._reject(venue, cmd, c, Reason.UNKNOWN_COUNTERPARTY)
        reason = self._reserve(venue, account, instrument, side, price, qty)
        if reason != Reason.NONE:
            return self._reject(venue, cmd, c, reason)
        q = Quote(ref, instrument, account, side, peer, price, qty, account, self._seq)
        self._seq += 1
        q.reserved[account] = (price, qty)
        self.live[ref] = q
        self._event(venue, EventKind.QUOTE, cmd, ts, q, Action.BLOCK_QUOTE, account)

    def _counter(self, venue: Venue, cmd: int, c) -> None:
        # §3b BLOCK_COUNTER: MALFORMED, INVALID_QTY, INVALID_PRICE (edge), MARKET_CLOSED,
        # UNKNOWN_QUOTE, INVALID_QTY (block range), PRICE_OUTSIDE_BAND, then the risk stage
        # for the party countering (its reservation moves to the new terms).
        q = self._party_quote(venue, cmd, c, session=True)
        if q is None:
            return
        account, ts = int(c["account"]), int(c["ts"])
        price = q.price if int(c["price"]) == NO_PRICE else int(c["price"])
        qty = q.qty if int(c["qty"]) == 0 else int(c["qty"])
        reason = self._terms_fit(venue, q.instrument, price, qty)
        if reason != Reason.NONE:
            return self._reject(venue, cmd, c, reason)
        side = q.side_of(account)
        old = q.reserved.pop(account, None)
        if old is not None:
            self._release(venue, account, q.instrument, side, *old)
        reason = self._reserve(venue, account, q.instrument, side, price, qty)
        if reason != Reason.NONE:
            if old is not None:  # as it was
                self._reserve(venue, account, q.instrument, side, *old, check=False)
                q.reserved[account] = old
            return self._reject(venue, cmd, c, reason)
        q.reserved[account] = (price, qty)
        if q.counterparty == NO_REF and account != q.maker:
            q.counterparty = account  # a public quote countered: now between these two
        q.price, q.qty, q.proposer = price, qty, account
        self._event(venue, EventKind.QUOTE, cmd, ts, q, Action.BLOCK_COUNTER, account)

    def _accept(self, venue: Venue, cmd: int, c) -> None:
        # §3b BLOCK_ACCEPT: MALFORMED, INVALID_QTY, INVALID_PRICE (edge: terms stated with a
        # bad syntax), MARKET_CLOSED, UNKNOWN_QUOTE, NOT_YOUR_TURN, TERMS_CHANGED, then the
        # risk stage for the acceptor; then the trade.
        q = self._party_quote(venue, cmd, c, session=True)
        if q is None:
            return
        account, ts = int(c["account"]), int(c["ts"])
        if account == q.proposer:
            return self._reject(venue, cmd, c, Reason.NOT_YOUR_TURN)
        want_price, want_qty = int(c["price"]), int(c["qty"])
        if (want_price != NO_PRICE and want_price != q.price) or \
                (want_qty != 0 and want_qty != q.qty):
            return self._reject(venue, cmd, c, Reason.TERMS_CHANGED)
        side = q.side_of(account)
        old = q.reserved.pop(account, None)
        if old is not None:
            self._release(venue, account, q.instrument, side, *old)
        reason = self._reserve(venue, account, q.instrument, side, q.price, q.qty)
        if reason != Reason.NONE:
            if old is not None:
                self._reserve(venue, account, q.instrument, side, *old, check=False)
                q.reserved[account] = old
            return self._reject(venue, cmd, c, reason)
        q.reserved[account] = (q.price, q.qty)
        if q.counterparty == NO_REF:
            q.counterparty = account  # accepted directly from the board
        buyer, seller = (account, q.proposer) if side == Side.BUY else (q.proposer, account)
        acc = venue.accounts
        if acc.enabled:
            acc.settle(q.instrument, Segment.BLOCK, buyer, seller, q.price, q.qty,
                       acc.unit(Side.BUY, q.price, Segment.BLOCK))
        q.reserved.clear()
        del self.live[q.ref]
        trade_id = venue.block_trade(q.instrument, q.price, q.qty)
        row = venue.event(EventKind.TRADE, cmd, ts)
        row[B.TRADE_ID] = trade_id
        row[B.INSTRUMENT] = q.instrument
        row[B.SEGMENT] = Segment.BLOCK
        row[B.PRICE] = q.price
        row[B.QTY] = q.qty
        row[B.TRADE_AGGRESSOR] = side
        row[B.TRADE_BUY_ORDER] = row[B.TRADE_SELL_ORDER] = q.ref
        row[B.TRADE_BUY_ACCOUNT], row[B.TRADE_SELL_ACCOUNT] = buyer, seller
        self._event(venue, EventKind.QUOTE_ENDED, cmd, ts, q, QuoteEnd.ACCEPTED, account)

    def _withdraw(self, venue: Venue, cmd: int, c) -> None:
        # §3b BLOCK_WITHDRAW: MALFORMED (edge), MARKET_CLOSED (a non-trading day only),
        # UNKNOWN_QUOTE. Either party may end a negotiation; a public one only its maker.
        q = self._party_quote(venue, cmd, c, session=False)
        if q is None:
            return
        account = int(c["account"])
        if q.counterparty == NO_REF and account != q.maker:
            return self._reject(venue, cmd, c, Reason.UNKNOWN_QUOTE)
        self._end(venue, cmd, int(c["ts"]), q, QuoteEnd.WITHDRAWN, account)

    def expire_all(self, venue: Venue, cmd: int, ts: int) -> None:
        """15:00: every live quote expires (in the order they were made), giving back what
        its parties reserved."""
        for q in sorted(self.live.values(), key=lambda q: q.seq):
            self._end(venue, cmd, ts, q, QuoteEnd.EXPIRED, NO_REF)

    # ------------------------------------------------------------------ helpers

    def _party_quote(self, venue: Venue, cmd: int, c, session: bool) -> Quote | None:
        """COUNTER/ACCEPT/WITHDRAW's checks up to UNKNOWN_QUOTE: the quote, or None
        (rejected)."""
        if c["check"] != Reason.NONE:
            self._reject(venue, cmd, c, int(c["check"]))
            return None
        account, ts = int(c["account"]), int(c["ts"])
        if account < 0:
            self._reject(venue, cmd, c, Reason.MALFORMED)
            return None
        if not (venue.block_session_open(ts) if session else venue.is_trading_day(ts)):
            self._reject(venue, cmd, c, Reason.MARKET_CLOSED)
            return None
        q = self.live.get(int(c["order"]))
        if q is None or not q.party(account):
            self._reject(venue, cmd, c, Reason.UNKNOWN_QUOTE)
            return None
        return q

    def _end(self, venue: Venue, cmd: int, ts: int, q: Quote, how: QuoteEnd, by: int) -> None:
        for account, (price, qty) in q.reserved.items():
            self._release(venue, account, q.instrument, q.side_of(account), price, qty)
        q.reserved.clear()
        del self.live[q.ref]
        self._event(venue, EventKind.QUOTE_ENDED, cmd, ts, q, how, by)

    @staticmethod
    def _reserve(venue: Venue, account: int, instrument: int, side: int, price: int, qty: int,
                 check: bool = True) -> Reason:
        acc = venue.accounts
        if not acc.enabled:
            return Reason.NONE
        if check:
            reason = acc.check_order(account, instrument, side, Segment.BLOCK, price, qty)
            if reason != Reason.NONE:
                return reason
        acc.reserve(account, instrument, side, Segment.BLOCK, price, qty)
        return Reason.NONE

    @staticmethod
    def _release(venue: Venue, account: int, instrument: int, side: int, price: int,
                 qty: int) -> None:
        if venue.accounts.enabled:
            venue.accounts.release(account, instrument, side, Segment.BLOCK, price, qty)

    @staticmethod
    def _event(venue: Venue, kind: int, cmd: int, ts: int, q: Quote, aux1: int,
               aux2: int) -> None:
        row = venue.event(kind, cmd, ts)
        row[B.ORDER] = q.ref
        row[B.QUOTE_MAKER] = q.maker
        row[B.QUOTE_COUNTERPARTY] = q.counterparty
        row[B.INSTRUMENT] = q.instrument
        row[B.SEGMENT] = Segment.BLOCK
        row[B.SIDE] = q.side
        row[B.PRICE] = q.price
        row[B.QTY] = q.qty
        row[B.AUX1] = aux1
        row[B.AUX2] = aux2

    @staticmethod
    def _reject(venue: Venue, cmd: int, c, reason: int) -> None:
        row = venue.event(EventKind.REJECTED, cmd, int(c["ts"]))
        row[B.ORDER] = int(c["order"])
        row[B.ACCOUNT] = int(c["account"])
        row[B.INSTRUMENT] = int(c["instrument"])
        row[B.REASON] = reason
        row[B.REJECTED_ACTION] = int(c["action"])

    # ------------------------------------------------------------------ queries

    def reservations(self):
        """What the live quotes reserve, as ``Book.resting_orders()`` rows (instrument,
        segment, side, price, quote, account, qty, -1), for ``check_reservations``."""
        for q in sorted(self.live.values(), key=lambda q: q.seq):
            for account, (price, qty) in q.reserved.items():
                yield (q.instrument, Segment.BLOCK, q.side_of(account), price, q.ref, account,
                       qty, -1)

    def state(self) -> list[tuple]:
        """Every live quote as a tuple of integers, in the order made (for state hashes and
        comparisons)."""
        return [(q.ref, q.instrument, q.maker, q.side, q.counterparty, q.price, q.qty,
                 q.proposer, q.seq, *sorted((a, *t) for a, t in q.reserved.items()))
                for q in sorted(self.live.values(), key=lambda q: q.seq)]
