"""One-way bidding (单向竞价): clearing a seller's offer against sealed bids. Pure integers.

The market's third trading mode (docs/rules.md §9): one party offers a quantity of
allowances, the exchange publishes a bidding notice, buyers submit bids during the auction
window, and the offer is allocated when the window closes. The legal texts permit the mode and leave its hours
to exchange notices [verified in source]; how the offer is allocated is not published, so every
rule of the allocation below is [our modelling choice] and a parameter of ``Offer`` where a
different choice is plausible.

Where each rule comes from (confidence marks as in docs/compliance.md):

- Price tick 0.01 CNY (integer fen > 0), quantity tick 1 t (integer tonnes)  [verified in source]
- Band around the prior close, rounded half up like ``engine.rules.band_limits`` (§3): the
  rounding is [verified in data] for the listed band. The band's *width* for one-way bidding is
  not published; default ``AUCTION_BAND_PCT`` = 10, the listed mode's ±10 % [verified in source
  for listed]. Chosen because it is the narrower of the two published bands: a price inside it
  is admissible in both other modes, so an auction never prints a price the published rules
  forbid elsewhere; 30 (the block band) suits block-sized lots. [our modelling choice],
  ``Offer.band_pct``.
- Bids inside the window ``[window_start, window_end)`` (hours are announced per auction by
  the exchange [verified in source]; the half-open window is the engine's session convention).
- The seller sets the reserve price (the bidding notice's 底价) [our modelling choice, §2.3].
  A bid below it is rejected at entry with BELOW_RESERVE (the reserve is taken to be published
  in the notice); ``Offer.reject_below_reserve=False`` instead accepts it and leaves it unfilled
  (a secret reserve). Either way it never fills. [our modelling choice]
- Minimum bid quantity ``Offer.min_bid_qty`` (default 1 t, the quantity tick); a bid may not
  ask for more than the offer (INVALID_QTY). [our modelling choice]
- The seller may not bid on its own offer (SELF_BID); a bid id may be used once per auction,
  the first arrival keeps it (DUPLICATE_BID), as the engine's order ids. [our modelling choice]
- Allocation: price priority, then time (``ts``), then arrival (``seq``): "ties by time" (the
  issue; "price-then-time allocation" in the sources). Whole bids fill until the offer runs
  out; the marginal bid fills partially with what is left, even below the minimum bid
  quantity; equal-priced bids are not pro-rated. [our modelling choice]
- Price paid: PAY_AS_BID (default, as the sources describe) each filled bid pays its own price;
  UNIFORM every filled bid pays the clearing price, the lowest filled bid's price (the marginal
  price). [our modelling choice], ``Offer.rule``.
- No sale: with no valid bid at or above the reserve nothing trades and the whole offer stays
  with the seller (``AuctionResult.outcome == "NO_SALE"``); a partly sold offer leaves the
  remainder with the seller. [our modelling choice]

Checks run in this order and the first failing one gives the reason (as engine spec §7):
MALFORMED (empty bid id or bidder), INVALID_QTY, INVALID_PRICE, DUPLICATE_BID, OUTSIDE_WINDOW,
SELF_BID, PRICE_OUTSIDE_BAND, BELOW_RESERVE. Bids are checked in arrival order ``(ts, seq)``.
``ledger.auction`` adds the funds stage (UNKNOWN_ACCOUNT, INSUFFICIENT_FUNDS) between
``screen`` and ``allocate``.

>>> offer = Offer(auction_id=1, seller="MEE", quantity=1_000, reserve_price=6000,
...               prior_close=6000, window_start=0, window_end=100)
>>> bids = [Bid("b1", "A001", 6200, 600, ts=10, seq=1),
...         Bid("b2", "A002", 6100, 700, ts=11, seq=2),
...         Bid("b3", "A003", 5900, 100, ts=12, seq=3)]
>>> r = clear(offer, bids)
>>> [(f.bid_id, f.price, f.qty) for f in r.fills]  # 600 + 400 of 700 = 1,000 t
[('b1', 6200, 600), ('b2', 6100, 400)]
>>> r.turnover, r.clearing_price, r.unsold, r.outcome  # 6200*600 + 6100*400
(6160000, 6100, 0, 'SOLD')
>>> [(x.bid.bid_id, x.reason.name) for x in r.rejects]
[('b3', 'BELOW_RESERVE')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .checks import qty_valid
from .codes import Reason
from .rules import MAX_PRIOR_CLOSE, MAX_QTY, band_limits_pct, in_band, vwap

#: Default band half-width for one-way bidding, percent of the prior close (see above).
AUCTION_BAND_PCT = 10
#: Highest auction number: ``ledger.auction`` builds trade ids from it (1,000,000 per auction).
MAX_AUCTION_ID = 10**12 - 1
#: Most bids one auction takes (so fill numbers stay below 1,000,000).
MAX_BIDS = 999_999


class AuctionError(ValueError):
    """An auction that cannot run: a bad offer or bad call. ``reason``: a code, or None."""

    def __init__(self, message: str, reason: IntEnum | None = None):
        super().__init__(f"{reason.name}: {message}" if reason is not None else message)
        self.reason = reason


class ClearingRule(IntEnum):
    """What a filled bid pays per tonne."""

    PAY_AS_BID = 1  # its own price
    UNIFORM = 2  # the clearing price: the lowest filled bid's price


class AuctionReason(IntEnum):
    """Rejects of one-way bidding that ``engine.codes.Reason`` has no code for.

    Numbered from 101 so that a reject's integer code never means two things.
    """

    BELOW_RESERVE = 101
    OUTSIDE_WINDOW = 102
    SELF_BID = 103
    DUPLICATE_BID = 104


class BidStatus(IntEnum):
    FILLED = 1
    PARTIALLY_FILLED = 2
    NOT_FILLED = 3
    REJECTED = 4


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def auction_band_limits(prior_close: int, band_pct: int = AUCTION_BAND_PCT) -> tuple[int, int]:
    """Lowest and highest accepted bid price in fen, inclusive: the continuous market's band
    rule (``engine.rules.band_limits_pct``) at the auction's width.

    >>> auction_band_limits(6000), auction_band_limits(4666), auction_band_limits(6000, 30)
    ((5400, 6600), (4199, 5133), (4200, 7800))
    """
    return band_limits_pct(prior_close, band_pct)


@dataclass(frozen=True)
class Offer:
    """The seller's side of one auction, as the bidding notice states it.

    Prices in fen, quantities in tonnes, times in µs (exchange local time, engine convention).
    Raises ``AuctionError`` if a field is out of range.
    """

    auction_id: int  # 1 .. MAX_AUCTION_ID, unique per ledger
    seller: str  # the seller's account
    quantity: int  # tonnes offered
    reserve_price: int  # fen: no bid below it fills
    prior_close: int  # fen: the band's reference, the previous trading day's close
    window_start: int  # µs, first instant a bid is accepted
    window_end: int  # µs, exclusive; the auction clears at this instant
    instrument: str = "CEA"
    rule: ClearingRule = ClearingRule.PAY_AS_BID
    min_bid_qty: int = 1
    band_pct: int = AUCTION_BAND_PCT
    reject_below_reserve: bool = True

    def __post_init__(self):
        try:
            object.__setattr__(self, "rule", ClearingRule(self.rule))
        except ValueError:
            raise AuctionError(f"clearing rule must be PAY_AS_BID or UNIFORM, not {self.rule!r}"
                               ) from None
        if not _is_int(self.auction_id) or not 1 <= self.auction_id <= MAX_AUCTION_ID:
            raise AuctionError(f"auction id must be an integer 1..{MAX_AUCTION_ID}, "
                               f"not {self.auction_id!r}")
        if not isinstance(self.seller, str) or not self.seller:
            raise AuctionError(f"the offer needs a seller account, not {self.seller!r}")
        if not isinstance(self.instrument, str) or not self.instrument:
            raise AuctionError(f"the offer needs an instrument, not {self.instrument!r}")
        if not _is_int(self.quantity) or not qty_valid(self.quantity):
            raise AuctionError(f"offered quantity must be whole tonnes 1..{MAX_QTY}, "
                               f"not {self.quantity!r}")
        if not _is_int(self.prior_close) or not 1 <= self.prior_close <= MAX_PRIOR_CLOSE:
            raise AuctionError(f"prior close must be integer fen 1..{MAX_PRIOR_CLOSE}, "
                               f"not {self.prior_close!r}")
        if not _is_int(self.band_pct) or not 1 <= self.band_pct <= 99:
            raise AuctionError(f"band must be a whole percentage 1..99, not {self.band_pct!r}")
        upper = self.band[1]
        if not _is_int(self.reserve_price) or not 1 <= self.reserve_price <= upper:
            raise AuctionError(f"reserve price must be integer fen 1..{upper} (the band's upper "
                               f"limit), not {self.reserve_price!r}")
        if not _is_int(self.min_bid_qty) or not 1 <= self.min_bid_qty <= self.quantity:
            raise AuctionError(f"minimum bid quantity must be whole tonnes 1..{self.quantity} "
                               f"(the offer), not {self.min_bid_qty!r}")
        if not (_is_int(self.window_start) and _is_int(self.window_end)) \
                or self.window_start >= self.window_end:
            raise AuctionError(f"the window must be integer µs with start < end, not "
                               f"{self.window_start!r} .. {self.window_end!r}")
        if not isinstance(self.reject_below_reserve, bool):
            raise AuctionError("reject_below_reserve must be True or False")

    @property
    def band(self) -> tuple[int, int]:
        """(lowest, highest) accepted bid price in fen."""
        return auction_band_limits(self.prior_close, self.band_pct)


@dataclass(frozen=True)
class Bid:
    """One sealed bid. ``ts`` and ``seq`` (unique per auction) give its arrival order."""

    bid_id: str  # the bidder's (client) id of the bid
    bidder: str  # the bidder's account
    price: int  # fen per tonne: the most it pays
    qty: int  # tonnes wanted
    ts: int  # µs
    seq: int  # arrival order among bids of the same ts (a line number, a sequence number)


@dataclass(frozen=True)
class Reject:
    bid: Bid
    reason: IntEnum  # engine.codes.Reason or AuctionReason


@dataclass(frozen=True)
class Fill:
    """The allocation of part of the offer to one bid; ``no`` counts fills from 1."""

    no: int
    bid: Bid
    price: int  # fen per tonne paid
    qty: int  # tonnes allocated

    @property
    def bid_id(self) -> str:
        return self.bid.bid_id

    @property
    def bidder(self) -> str:
        return self.bid.bidder

    @property
    def partial(self) -> bool:
        return self.qty < self.bid.qty

    @property
    def amount(self) -> int:
        """Fen paid for the allocation, fees excluded: price x qty."""
        return self.price * self.qty


@dataclass(frozen=True)
class BidOutcome:
    bid: Bid
    status: BidStatus
    filled: int  # tonnes
    reason: IntEnum | None  # why REJECTED, or BELOW_RESERVE for an accepted bid left unfilled


@dataclass(frozen=True)
class AuctionResult:
    offer: Offer
    fills: tuple[Fill, ...]  # in allocation order: price, then time, then seq
    rejects: tuple[Reject, ...]  # in arrival order
    outcomes: tuple[BidOutcome, ...] = field(repr=False)  # every bid, in arrival order

    @property
    def sold(self) -> int:
        return sum(f.qty for f in self.fills)

    @property
    def unsold(self) -> int:
        """Tonnes that stay with the seller."""
        return self.offer.quantity - self.sold

    @property
    def turnover(self) -> int:
        """Fen paid for the allocations, fees excluded."""
        return sum(f.amount for f in self.fills)

    @property
    def outcome(self) -> str:
        """SOLD (all of the offer), PARTLY_SOLD, or NO_SALE (nothing traded)."""
        return "NO_SALE" if not self.fills else "SOLD" if not self.unsold else "PARTLY_SOLD"

    @property
    def clearing_price(self) -> int | None:
        """The lowest filled bid's price (the marginal price): what every fill pays under
        UNIFORM; under PAY_AS_BID the lowest price paid. None with no sale."""
        return min((f.bid.price for f in self.fills), default=None)

    @property
    def price_range(self) -> tuple[int, int] | None:
        """(lowest, highest) price paid, None with no sale."""
        if not self.fills:
            return None
        return min(f.price for f in self.fills), max(f.price for f in self.fills)

    @property
    def average_price(self) -> int | None:
        """Turnover / sold, rounded half up to the fen (as the closing price); None: no sale."""
        sold = self.sold
        return vwap(self.turnover, sold) if sold else None

    def count(self, status: BidStatus) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def arrival_order(bids) -> list[Bid]:
    """``bids`` sorted by (ts, seq); raises ``AuctionError`` on a bad or repeated ts/seq."""
    bids = list(bids)
    if len(bids) > MAX_BIDS:
        raise AuctionError(f"{len(bids)} bids: one auction takes at most {MAX_BIDS}")
    seen = set()
    for b in bids:
        if not isinstance(b, Bid):
            raise AuctionError(f"not a Bid: {b!r}")
        if not (_is_int(b.ts) and _is_int(b.seq)):
            raise AuctionError(f"bid {b.bid_id!r}: ts and seq must be integers")
        if b.seq in seen:
            raise AuctionError(f"bid {b.bid_id!r}: seq {b.seq} is not unique")
        seen.add(b.seq)
    return sorted(bids, key=lambda b: (b.ts, b.seq))


def check_bid(offer: Offer, bid: Bid, seen_ids: set[str]) -> IntEnum | None:
    """The first rule ``bid`` breaks (a reject reason), or None; registers its id.

    ``seen_ids`` holds the ids of the bids that arrived earlier, rejected or not.
    """
    if not isinstance(bid.bid_id, str) or not bid.bid_id \
            or not isinstance(bid.bidder, str) or not bid.bidder:
        return Reason.MALFORMED
    duplicate = bid.bid_id in seen_ids
    seen_ids.add(bid.bid_id)
    if not _is_int(bid.qty) or not offer.min_bid_qty <= bid.qty <= offer.quantity:
        return Reason.INVALID_QTY
    if not _is_int(bid.price) or bid.price <= 0:
        return Reason.INVALID_PRICE
    if duplicate:
        return AuctionReason.DUPLICATE_BID
    if not offer.window_start <= bid.ts < offer.window_end:
        return AuctionReason.OUTSIDE_WINDOW
    if bid.bidder == offer.seller:
        return AuctionReason.SELF_BID
    if not in_band(bid.price, *offer.band):
        return Reason.PRICE_OUTSIDE_BAND
    if bid.price < offer.reserve_price and offer.reject_below_reserve:
        return AuctionReason.BELOW_RESERVE
    return None


def screen(offer: Offer, bids) -> tuple[list[Bid], list[Reject]]:
    """Check every bid in arrival order: (accepted bids, rejects), both in arrival order."""
    accepted, rejects, seen = [], [], set()
    for bid in arrival_order(bids):
        reason = check_bid(offer, bid, seen)
        if reason is None:
            accepted.append(bid)
        else:
            rejects.append(Reject(bid, reason))
    return accepted, rejects


def allocate(offer: Offer, accepted, rejects=()) -> AuctionResult:
    """Allocate the offer to ``accepted`` bids (already screened) by price, time, seq.

    ``rejects`` are carried into the result (and its outcomes) unchanged.
    """
    accepted = arrival_order(accepted)
    rejects = sorted(rejects, key=lambda r: (r.bid.ts, r.bid.seq))
    eligible = [b for b in accepted if b.price >= offer.reserve_price]
    left, allocation = offer.quantity, []
    for bid in sorted(eligible, key=lambda b: (-b.price, b.ts, b.seq)):
        if left == 0:
            break
        qty = min(bid.qty, left)
        allocation.append((bid, qty))
        left -= qty
    marginal = allocation[-1][0].price if allocation else None
    fills = tuple(Fill(no, bid, marginal if offer.rule == ClearingRule.UNIFORM else bid.price,
                       qty) for no, (bid, qty) in enumerate(allocation, start=1))
    filled = {f.bid.seq: f.qty for f in fills}  # seq is unique per auction
    outcomes = [BidOutcome(r.bid, BidStatus.REJECTED, 0, r.reason) for r in rejects]
    for bid in accepted:
        got = filled.get(bid.seq, 0)
        status = (BidStatus.FILLED if got == bid.qty else BidStatus.PARTIALLY_FILLED if got
                  else BidStatus.NOT_FILLED)
        below = bid.price < offer.reserve_price
        outcomes.append(BidOutcome(bid, status, got, AuctionReason.BELOW_RESERVE if below
                                   else None))
    outcomes.sort(key=lambda o: (o.bid.ts, o.bid.seq))
    return AuctionResult(offer, fills, tuple(rejects), tuple(outcomes))


def clear(offer: Offer, bids) -> AuctionResult:
    """Screen ``bids`` and allocate the offer: the whole auction without accounts."""
    return allocate(offer, *screen(offer, bids))


__all__ = [
    "AUCTION_BAND_PCT", "MAX_AUCTION_ID", "MAX_BIDS", "AuctionError", "AuctionReason",
    "AuctionResult", "Bid", "BidOutcome", "BidStatus", "ClearingRule", "Fill", "Offer", "Reject",
    "allocate", "arrival_order", "auction_band_limits", "check_bid", "clear", "screen",
]
