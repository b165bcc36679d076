"""One-way bidding against the ledger: bids reserve cash, fills settle as AUCTION trades.

``run_auction(ledger, offer, bids)`` runs one auction (``engine.auction``) with the reservation
and settlement path of continuous trading:

1. **The offer.** The seller must be a participant account of the ledger (else the auction is
   refused: ``AuctionError`` UNKNOWN_ACCOUNT) holding at least the offered quantity of the
   instrument (else INSUFFICIENT_ALLOWANCES), before any bid is looked at. The whole offer is
   held for the auction; what is not sold stays with the seller.
2. **Bids**, in arrival order (ts, seq): the engine's rules first (``engine.auction.screen``),
   then the funds stage: a bid whose bidder has no participant account is rejected
   UNKNOWN_ACCOUNT; a bid is accepted only if the bidder's available cash, its ledger CNY
   balance less what its earlier accepted bids in this auction reserved, covers
   ``qty x engine.accounts.reserve_unit(price, fee_bps_auction)``: the price plus the fee
   rounded up per tonne, as the engine reserves a buy; otherwise INSUFFICIENT_FUNDS. Funds are
   locked on acceptance [unverified]; a filled bid pays at most its reservation (its fee is
   rounded half up on the smaller or equal notional), an unfilled one is released when the
   auction clears.
3. **Allocation** by price, time, seq (``engine.auction.allocate``).
4. **Settlement**: each fill becomes one ``ledger.core.Trade`` of segment ``AUCTION`` (2)
   between the bidder (buyer) and the seller, at the fill's price and quantity, stamped at the
   window's end (the instant the auction clears) and on that day; ``buy_order`` is the bid id,
   ``sell_order`` ``auction-<id>``. All of them go to ``Ledger.settle_trades`` in one call, so
   one store transaction: delivery versus payment and the fees (``fee_bps_auction`` per side,
   rounded half up as every trade's) are those of any trade, and a failure writes nothing.

Trade ids: ``AUCTION_TRADE_BASE + auction_id x 1,000,000 + fill number`` (fills count from 1,
an auction has at most 999,999 bids). The engine numbers its trades from 1 upwards; the base,
4 x 10^18, is far beyond any count it reaches, and the highest auction id (10^12 - 1) keeps
every id below 5 x 10^18 < 2^63. Re-running an auction is idempotent: if the ledger already
holds trades of this auction id, the balances are taken back to before them (their postings
undone in memory only), the auction is cleared again, and it must give exactly the recorded
trades: then nothing is written (``already_settled``); otherwise ``AuctionError`` says the id
was used by a different auction, and nothing is written. An auction that sold nothing leaves no
trace in the ledger.

Reserved cash lives only for the auction's duration (in memory): the ledger knows no locks, so
run an auction against balances that no open order of the continuous books has locked, e.g.
outside trading hours or with the engine's reservations already released.

Who sells when the authority auctions allowances (paid allocation)? A normal participant
account, opened as INSTITUTION (e.g. ``MEE``), receiving the allowances to auction from the
registry with ``Ledger.allowance_in``; its proceeds stay in its cash balance. The ledger's
external accounts (``@REGISTRY``...) never trade. [our modelling choice]

>>> from ledger import Ledger
>>> from engine.rules import DAY_CLOSE_US, PM_OPEN_US
>>> led = Ledger.open(":memory:", instruments=["CEA"])
>>> for name, kind in (("MEE", "INSTITUTION"), ("A001", "COVERED_ENTITY")):
...     led.open_account(name, kind)
>>> led.allowance_in("MEE", "CEA", 1_000, ref="alloc", day=20284)
True
>>> led.deposit("A001", 5_000_000, ref="d1", day=20284)
True
>>> day = 20285 * DAY_US  # 2025-07-16, auction window 13:00-15:00
>>> offer = Offer(auction_id=7, seller="MEE", quantity=1_000, reserve_price=6000,
...               prior_close=6000, window_start=day + PM_OPEN_US, window_end=day + DAY_CLOSE_US)
>>> bid = Bid("b1", "A001", 6100, 800, ts=day + PM_OPEN_US + 1, seq=1)
>>> run = run_auction(led, offer, [bid])
>>> run.settled, run.result.sold, run.result.unsold, run.trades[0].trade_id
(1, 800, 200, 4000000000007000001)
>>> led.balances()["A001"], led.balances()["MEE"]  # 6100 x 800 = 4,880,000 fen
({'CNY': 120000, 'CEA': 800}, {'CNY': 4880000, 'CEA': 200})
>>> run_auction(led, offer, [bid]).settled  # the same auction again: nothing new
0
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.accounts import fee, reserve_unit
from engine.auction import (
    MAX_AUCTION_ID, AuctionError, AuctionResult, Bid, Offer, Reject, allocate, screen,
)
from engine.codes import Reason
from engine.rules import DAY_US

from .core import AUCTION, CASH, Ledger, Trade

#: First trade id of the auction range (see the module docstring).
AUCTION_TRADE_BASE = 4 * 10**18
#: Trade ids per auction: fill numbers run 1 .. 999,999.
TRADES_PER_AUCTION = 1_000_000


def auction_trade_id(auction_id: int, fill_no: int) -> int:
    """The ledger trade id of fill ``fill_no`` (from 1) of auction ``auction_id``.

    >>> auction_trade_id(1, 1), auction_trade_id(10**12 - 1, 999_999) < 2**63
    (4000000000001000001, True)
    """
    if not 1 <= auction_id <= MAX_AUCTION_ID or not 1 <= fill_no < TRADES_PER_AUCTION:
        raise AuctionError(f"no trade id for auction {auction_id}, fill {fill_no}")
    return AUCTION_TRADE_BASE + auction_id * TRADES_PER_AUCTION + fill_no


@dataclass(frozen=True)
class SettledAuction:
    """An auction run against the ledger: the clearing result and what was settled."""

    result: AuctionResult
    trades: tuple[Trade, ...]  # one per fill, in fill order
    settled: int  # trades new in the ledger (0 when already settled, or no sale)
    already_settled: bool  # the ledger held exactly these trades before this run
    fee_bps: int  # fee per side, basis points of the notional (the ledger's auction rate)

    def fees(self) -> tuple[int, int]:
        """(buyers' fees, seller's fees) in fen, as the ledger charges them."""
        each = sum(fee(t.price * t.qty, self.fee_bps) for t in self.trades)
        return each, each


def auction_trades(result: AuctionResult) -> list[Trade]:
    """The ledger trades of an auction's fills (see the module docstring)."""
    offer = result.offer
    ts = offer.window_end
    return [Trade(auction_trade_id(offer.auction_id, f.no), ts // DAY_US, ts, offer.instrument,
                  AUCTION, f.price, f.qty, f.bidder, offer.seller, f.bid_id,
                  f"auction-{offer.auction_id}") for f in result.fills]


def _recorded(ledger: Ledger, auction_id: int) -> list[tuple[Trade, int, int]]:
    """Trades of ``auction_id`` already in the ledger, with their buyer and seller fees."""
    return ledger.trades_between(auction_trade_id(auction_id, 1),
                                 auction_trade_id(auction_id, TRADES_PER_AUCTION - 1))


def _before(balances: dict[str, dict[str, int]], recorded) -> dict[str, dict[str, int]]:
    """``balances`` with the recorded trades' postings taken back (a copy)."""
    out = {name: dict(row) for name, row in balances.items()}
    for t, buyer_fee, seller_fee in recorded:
        out[t.buyer][CASH] += t.price * t.qty + buyer_fee
        out[t.buyer][t.instrument] -= t.qty
        out[t.seller][CASH] -= t.price * t.qty - seller_fee
        out[t.seller][t.instrument] += t.qty
    return out


def fund_bids(accepted: list[Bid], cash: dict[str, int], bps: int
              ) -> tuple[list[Bid], list[Reject]]:
    """The funds stage: (funded bids, rejects), walking ``accepted`` in arrival order.

    ``cash`` maps each participant account to its CNY balance in fen; a bidder not in it has
    no account.

    >>> bids = [Bid("x", "A", 6000, 10, 1, 1), Bid("y", "A", 6000, 10, 2, 2),
    ...         Bid("z", "Q", 6000, 1, 3, 3)]
    >>> funded, rejects = fund_bids(bids, {"A": 100_000}, 0)  # 60,000 + 60,000 > 100,000
    >>> [b.bid_id for b in funded], [(r.bid.bid_id, r.reason.name) for r in rejects]
    (['x'], [('y', 'INSUFFICIENT_FUNDS'), ('z', 'UNKNOWN_ACCOUNT')])
    """
    funded, rejects, reserved = [], [], {}
    for bid in accepted:
        if bid.bidder not in cash:
            rejects.append(Reject(bid, Reason.UNKNOWN_ACCOUNT))
            continue
        need = bid.qty * reserve_unit(bid.price, bps)
        have = reserved.get(bid.bidder, 0)
        if have + need > cash[bid.bidder]:
            rejects.append(Reject(bid, Reason.INSUFFICIENT_FUNDS))
            continue
        reserved[bid.bidder] = have + need
        funded.append(bid)
    return funded, rejects


def run_auction(ledger: Ledger, offer: Offer, bids) -> SettledAuction:
    """Clear ``offer`` against ``bids`` with the ledger's balances; settle the fills.

    Raises ``AuctionError`` (nothing written) when the auction cannot run: unknown instrument,
    unknown seller (UNKNOWN_ACCOUNT), seller short of allowances (INSUFFICIENT_ALLOWANCES),
    bad bid records, or an auction id the ledger already used for different trades. The
    ledger's own refusals (``LedgerError``) also leave it unchanged.
    """
    if offer.instrument == CASH or offer.instrument not in ledger.assets:
        raise AuctionError(f"the ledger has no instrument {offer.instrument!r}")
    bps = ledger.fee_bps[AUCTION]
    recorded = _recorded(ledger, offer.auction_id)
    balances = _before(ledger.balances(), recorded)
    seller = balances.get(offer.seller)
    if seller is None:
        raise AuctionError(f"no participant account {offer.seller!r} to sell",
                           Reason.UNKNOWN_ACCOUNT)
    if seller[offer.instrument] < offer.quantity:
        raise AuctionError(f"seller {offer.seller} holds {seller[offer.instrument]} t "
                           f"{offer.instrument}, the offer is {offer.quantity} t",
                           Reason.INSUFFICIENT_ALLOWANCES)
    accepted, rejects = screen(offer, bids)
    funded, unfunded = fund_bids(accepted, {n: row[CASH] for n, row in balances.items()}, bps)
    result = allocate(offer, funded, rejects + unfunded)
    trades = auction_trades(result)
    if recorded:
        if [t for t, _, _ in recorded] != trades:
            raise AuctionError(f"auction {offer.auction_id} is already in the ledger with "
                               f"other fills ({len(recorded)} trades): use another auction id")
        return SettledAuction(result, tuple(trades), 0, True, bps)
    settled = ledger.settle_trades(trades) if trades else 0
    return SettledAuction(result, tuple(trades), settled, False, bps)


__all__ = ["AUCTION_TRADE_BASE", "TRADES_PER_AUCTION", "SettledAuction", "auction_trade_id",
           "auction_trades", "fund_bids", "run_auction"]
