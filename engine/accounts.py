"""Accounts next to the book: cash and allowance balances the risk stage checks and reserves.

The engine's risk stage (exchange-core's model) runs inside the same batch as matching: a buy
reserves ``qty x (price + fee per tonne)`` of cash (a MARKET buy at the band's upper limit), a
sell reserves ``qty`` allowances; fills consume reservations, cancels and expiry release them.
Balances live in int64 arrays so the Numba kernel reads them directly; the reference book
applies the same rules through the plain methods of this class (``reserve``, ``release``,
``settle``), and the differential tests compare both sets of arrays.

Layout (every amount an integer: cash in fen, allowances in tonnes):

==========  ==============================  =================================================
array       shape                           what
==========  ==============================  =================================================
cash        (accounts, CA_FIELDS)           known flag, type, frozen flag, total, reserved,
                                            proceeds received today (withdrawable T+1)
holdings    (accounts * instruments,        total, reserved for open sells, bought today
             HD_FIELDS)                     (sellable T+1), open buy quantity
risk        (RK_FIELDS,)                    on/off, fee bps per segment, T+1 flag, fees
                                            collected, position limit per account type,
                                            admitted types (bit mask)
==========  ==============================  =================================================

Available cash is ``total - reserved``; sellable allowances ``total - reserved - bought
today``; withdrawable cash ``total - reserved - proceeds today`` (the T+0/T+1 defaults of
docs/rules.md §10, a modelling choice, configurable through ``RiskConfig``).

>>> acc = Accounts(n_instruments=1)
>>> a = acc.open_account(AccountType.COVERED_ENTITY)
>>> acc.deposit(a, 1_000_000); acc.allowance_in(a, 0, 500)
>>> acc.available_cash(a), acc.sellable(a, 0)
(1000000, 500)
>>> acc.withdraw(a, 2_000_000)
Traceback (most recent call last):
...
engine.accounts.AccountError: INSUFFICIENT_FUNDS: account 0 can withdraw 1000000 fen, not 2000000
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba.extending import register_jitable

from .codes import AccountType, Reason, Segment, Side

# cash rows
CA_KNOWN = 0  # 1 once the account is opened
CA_TYPE = 1
CA_FROZEN = 2
CA_TOTAL = 3
CA_RESERVED = 4
CA_PROCEEDS = 5  # sale proceeds received today: usable T+0, withdrawable T+1
CA_FIELDS = 6

# holding rows, one per (account, instrument): account * n_instruments + instrument
HD_TOTAL = 0
HD_RESERVED = 1  # held for open sell orders
HD_PENDING = 2  # bought today, sellable from the next trading day (T+1)
HD_BUY_OPEN = 3  # open quantity of the account's buy orders (for the position limit)
HD_FIELDS = 4

# the risk vector
RK_ON = 0
RK_FEE_BPS_LISTED = 1
RK_FEE_BPS_BLOCK = 2
RK_T1 = 3  # 1: allowances bought today are sellable from the next trading day
RK_FEES = 4  # fees collected (fen), owed to the exchange's fee account
RK_LIMIT = 5  # RK_LIMIT + account type: position limit in tonnes, -1 none
RK_ADMITTED = 9  # bit (1 << account type) set: that type may enter orders
RK_FIELDS = 10

NO_LIMIT = -1
#: Per-account and system-wide bounds that keep every sum inside int64 (2**63 ~ 9.2e18):
#: a deposit or transfer that would pass them is refused rather than clamped.
MAX_BALANCE = 10**15  # fen per account (10 trillion CNY) and tonnes per holding
MAX_SYSTEM_TOTAL = 2**62  # all cash (fen) in the system; all allowances of one instrument
MAX_FEE_BPS = 1000  # 10 %: notional (<= 1.3e14 fen) x bps stays far inside int64


class AccountError(ValueError):
    """An account operation refused; ``reason`` is the ``Reason`` code (or None)."""

    def __init__(self, reason: Reason | None, message: str):
        super().__init__(f"{reason.name}: {message}" if reason is not None else message)
        self.reason = reason


# The money rules below have this one definition: the kernels (engine.fast.kernels) inline
# them as they inline every helper on the matching path, the plain methods of ``Accounts``,
# the ledger and the auction call them as Python (so they take NumPy arrays too). Numba keys
# a kernel's on-disk cache on the kernel's file only: after editing one, use a fresh cache.
_money_rule = register_jitable(inline="always")


@_money_rule
def fee(notional: int, bps: int) -> int:
    """The fee one side pays on a trade of ``notional`` fen: bps of it, rounded half up.

    >>> fee(6000 * 200, 5), fee(1, 5000), fee(1, 4999)
    (600, 1, 0)
    """
    return (notional * bps + 5000) // 10000


@_money_rule
def reserve_unit(price: int, bps: int) -> int:
    """Cash a buy reserves per tonne at ``price``: the price plus the fee rounded *up*.

    Rounding up makes the reservation cover any fill: for a fill of q tonnes at p <= price,
    fee(q x p) <= ceil(q x p x bps) <= q x ceil(price x bps), so the consumed part never
    exceeds what was reserved, and the order's reservation stays exactly open x unit.

    >>> reserve_unit(6000, 5), reserve_unit(6001, 5)
    (6003, 6005)
    """
    return price + (price * bps + 9999) // 10000


@_money_rule
def segment_fee_bps(risk, segment: int) -> int:
    """The fee rate of ``segment``'s trades in basis points, from the risk vector."""
    return risk[RK_FEE_BPS_LISTED] if segment == Segment.LISTED else risk[RK_FEE_BPS_BLOCK]


@_money_rule
def order_unit(risk, side: int, price: int, segment: int) -> int:
    """What one open tonne of an order reserves: cash for a buy (``reserve_unit`` at the
    segment's fee), one allowance tonne for a sell.

    >>> risk = RiskConfig(fee_bps_listed=5).vector()
    >>> int(order_unit(risk, Side.BUY, 6001, Segment.LISTED)), order_unit(risk, Side.SELL, 6001, 0)
    (6005, 1)
    """
    if side != Side.BUY:
        return 1
    return reserve_unit(price, segment_fee_bps(risk, segment))


@dataclass
class RiskConfig:
    """The risk stage's parameters (docs/rules.md §10: fees, T+1 and limits are modelling
    choices, defaults: no fees, T+1 allowances, no position limit, every type admitted)."""

    fee_bps_listed: int = 0
    fee_bps_block: int = 0
    t_plus_one: bool = True
    position_limits: dict[AccountType, int] = field(default_factory=dict)  # tonnes
    admitted: tuple[AccountType, ...] = tuple(AccountType)

    def vector(self) -> np.ndarray:
        for name, bps in (("listed", self.fee_bps_listed), ("block", self.fee_bps_block)):
            if not (isinstance(bps, int) and 0 <= bps <= MAX_FEE_BPS):
                raise AccountError(None, f"fee_bps_{name} must be an integer 0..{MAX_FEE_BPS}, "
                                         f"not {bps!r}")
        risk = np.zeros(RK_FIELDS, dtype=np.int64)
        risk[RK_ON] = 1
        risk[RK_FEE_BPS_LISTED] = self.fee_bps_listed
        risk[RK_FEE_BPS_BLOCK] = self.fee_bps_block
        risk[RK_T1] = int(bool(self.t_plus_one))
        risk[RK_LIMIT: RK_LIMIT + 4] = NO_LIMIT
        for kind, limit in self.position_limits.items():
            if not (isinstance(limit, int) and 0 <= limit <= MAX_BALANCE):
                raise AccountError(None, f"position limit of {AccountType(kind).name} must be "
                                         f"0..{MAX_BALANCE} t, not {limit!r}")
            risk[RK_LIMIT + int(AccountType(kind))] = limit
        for kind in self.admitted:
            risk[RK_ADMITTED] |= 1 << int(AccountType(kind))
        return risk


class Accounts:
    """Cash and allowance holdings of every account, as the arrays the kernel reads.

    Account handles are dense ints (``open_account`` returns the next one, or takes one the
    engine already interned). Operations outside trading (deposit, withdraw, allowance in/out,
    freeze) raise ``AccountError`` with a reason and change nothing when refused.
    """

    def __init__(self, n_instruments: int, config: RiskConfig | None = None,
                 capacity: int = 16):
        self.n_instruments = int(n_instruments)
        self.config = config or RiskConfig()
        self.risk = self.config.vector()
        self.cash = np.zeros((max(1, capacity), CA_FIELDS), dtype=np.int64)
        self.holdings = np.zeros((max(1, capacity) * self.n_instruments, HD_FIELDS),
                                 dtype=np.int64)

    @classmethod
    def disabled(cls, n_instruments: int) -> "Accounts":
        """Placeholder arrays with the risk stage off (the engine without accounts)."""
        acc = cls(n_instruments, capacity=1)
        acc.risk[RK_ON] = 0
        return acc

    @property
    def enabled(self) -> bool:
        return bool(self.risk[RK_ON])

    # ------------------------------------------------------------------ registry

    def __len__(self) -> int:
        return int(self.cash[:, CA_KNOWN].sum())

    def _grow(self, n: int) -> None:
        cap = self.cash.shape[0]
        if n <= cap:
            return
        new = max(n, cap * 2)
        cash = np.zeros((new, CA_FIELDS), dtype=np.int64)
        cash[:cap] = self.cash
        holdings = np.zeros((new * self.n_instruments, HD_FIELDS), dtype=np.int64)
        holdings[: self.holdings.shape[0]] = self.holdings
        self.cash, self.holdings = cash, holdings

    def open_account(self, kind: AccountType, handle: int | None = None) -> int:
        """Open an account of participant type ``kind``; return its handle."""
        kind = AccountType(kind)
        if handle is None:
            handle = int(np.flatnonzero(self.cash[:, CA_KNOWN] == 0)[0]) if len(self) < \
                self.cash.shape[0] else self.cash.shape[0]
        if handle < 0:
            raise AccountError(None, f"account handle must be >= 0, not {handle}")
        self._grow(handle + 1)
        if self.cash[handle, CA_KNOWN]:
            raise AccountError(None, f"account {handle} is already open")
        self.cash[handle, CA_KNOWN] = 1
        self.cash[handle, CA_TYPE] = int(kind)
        return handle

    def is_known(self, account: int) -> bool:
        return 0 <= account < self.cash.shape[0] and bool(self.cash[account, CA_KNOWN])

    def _known(self, account: int) -> int:
        account = int(account)
        if not self.is_known(account):
            raise AccountError(Reason.UNKNOWN_ACCOUNT, f"no account {account}")
        return account

    def _instrument(self, instrument: int) -> int:
        instrument = int(instrument)
        if not 0 <= instrument < self.n_instruments:
            raise AccountError(None, f"no instrument {instrument}")
        return instrument

    def row(self, account: int, instrument: int) -> int:
        return account * self.n_instruments + instrument

    @staticmethod
    def _amount(amount: int, what: str) -> int:
        if isinstance(amount, bool) or not isinstance(amount, (int, np.integer)):
            raise AccountError(None, f"{what} must be an integer, not {amount!r}")
        amount = int(amount)
        if not 0 < amount <= MAX_BALANCE:
            raise AccountError(None, f"{what} must be 1..{MAX_BALANCE}, not {amount}")
        return amount

    # ------------------------------------------------------------------ operations

    def deposit(self, account: int, fen: int) -> None:
        """Cash paid in from the participant's settlement bank."""
        account, fen = self._known(account), self._amount(fen, "a deposit (fen)")
        if self.cash[account, CA_TOTAL] + fen > MAX_BALANCE:
            raise AccountError(None, f"account {account} would hold more than {MAX_BALANCE} fen")
        if int(self.cash[:, CA_TOTAL].sum()) + int(self.risk[RK_FEES]) + fen > MAX_SYSTEM_TOTAL:
            raise AccountError(None, "cash in the system would pass its int64 bound")
        self.cash[account, CA_TOTAL] += fen

    def withdraw(self, account: int, fen: int) -> None:
        """Cash paid out; today's sale proceeds stay until the next trading day (T+1)."""
        account, fen = self._known(account), self._amount(fen, "a withdrawal (fen)")
        free = self.withdrawable(account)
        if fen > free:
            raise AccountError(Reason.INSUFFICIENT_FUNDS,
                               f"account {account} can withdraw {free} fen, not {fen}")
        self.cash[account, CA_TOTAL] -= fen

    def allowance_in(self, account: int, instrument: int, tonnes: int) -> None:
        """Allowances transferred in from the registry (allocation, purchase elsewhere)."""
        account, instrument = self._known(account), self._instrument(instrument)
        tonnes = self._amount(tonnes, "a transfer (t)")
        r = self.row(account, instrument)
        if self.holdings[r, HD_TOTAL] + tonnes > MAX_BALANCE:
            raise AccountError(None, f"account {account} would hold more than {MAX_BALANCE} t")
        total = int(self.holdings[instrument:: self.n_instruments, HD_TOTAL].sum())
        if total + tonnes > MAX_SYSTEM_TOTAL:
            raise AccountError(None, "allowances in the system would pass their int64 bound")
        self.holdings[r, HD_TOTAL] += tonnes

    def allowance_out(self, account: int, instrument: int, tonnes: int) -> None:
        """Allowances transferred out to the registry (surrender for compliance)."""
        account, instrument = self._known(account), self._instrument(instrument)
        tonnes = self._amount(tonnes, "a transfer (t)")
        free = self.sellable(account, instrument)
        if tonnes > free:
            raise AccountError(Reason.INSUFFICIENT_ALLOWANCES,
                               f"account {account} can transfer {free} t, not {tonnes}")
        self.holdings[self.row(account, instrument), HD_TOTAL] -= tonnes

    def freeze(self, account: int, frozen: bool = True) -> None:
        """Stop (or allow again) new orders and amendments of ``account``; cancels still pass."""
        self.cash[self._known(account), CA_FROZEN] = int(bool(frozen))

    # ------------------------------------------------------------------ balances

    def available_cash(self, account: int) -> int:
        return int(self.cash[account, CA_TOTAL] - self.cash[account, CA_RESERVED])

    def withdrawable(self, account: int) -> int:
        return max(0, self.available_cash(account) - int(self.cash[account, CA_PROCEEDS]))

    def sellable(self, account: int, instrument: int) -> int:
        h = self.holdings[self.row(account, instrument)]
        return int(h[HD_TOTAL] - h[HD_RESERVED] - h[HD_PENDING])

    def totals(self) -> tuple[int, list[int]]:
        """(all cash incl. fees collected, [all allowances per instrument])."""
        cash = int(self.cash[:, CA_TOTAL].sum()) + int(self.risk[RK_FEES])
        return cash, [int(self.holdings[i:: self.n_instruments, HD_TOTAL].sum())
                      for i in range(self.n_instruments)]

    def copy(self) -> "Accounts":
        out = Accounts.__new__(Accounts)
        out.n_instruments, out.config = self.n_instruments, self.config
        out.risk, out.cash, out.holdings = self.risk.copy(), self.cash.copy(), self.holdings.copy()
        return out

    # ------------------------------------------------------------------ the risk stage
    # The plain twin of the kernel's helpers (engine.fast.kernels); the reference book calls
    # these, the fast book runs the same steps in Numba over the same arrays.

    def fee_bps(self, segment: int) -> int:
        return int(segment_fee_bps(self.risk, segment))

    def unit(self, side: int, price: int, segment: int) -> int:
        """What one open tonne of an order reserves: cash (buy) or one tonne (sell)."""
        return int(order_unit(self.risk, side, price, segment))

    def check_order(self, account: int, instrument: int, side: int, segment: int,
                    price: int, qty: int, old_qty: int = 0, old_price: int = 0) -> Reason:
        """The reason a NEW (or an AMEND from ``old_qty`` at ``old_price``) fails, or NONE."""
        if not (0 <= account < self.cash.shape[0]) or not self.cash[account, CA_KNOWN]:
            return Reason.UNKNOWN_ACCOUNT
        if self.cash[account, CA_FROZEN]:
            return Reason.ACCOUNT_FROZEN
        if not (int(self.risk[RK_ADMITTED]) >> int(self.cash[account, CA_TYPE])) & 1:
            return Reason.ACCOUNT_NOT_ADMITTED
        h = self.holdings[self.row(account, instrument)]
        if side == Side.BUY:
            limit = int(self.risk[RK_LIMIT + int(self.cash[account, CA_TYPE])])
            if limit != NO_LIMIT and qty > old_qty and \
                    int(h[HD_TOTAL] + h[HD_BUY_OPEN]) - old_qty + qty > limit:
                return Reason.POSITION_LIMIT
            bps = self.fee_bps(segment)
            need = qty * reserve_unit(price, bps) - old_qty * reserve_unit(old_price, bps)
            if need > self.available_cash(account):
                return Reason.INSUFFICIENT_FUNDS
        elif qty - old_qty > self.sellable(account, instrument):
            return Reason.INSUFFICIENT_ALLOWANCES
        return Reason.NONE

    def reserve(self, account: int, instrument: int, side: int, segment: int, price: int,
                qty: int) -> None:
        """Reserve for ``qty`` open tonnes at ``price`` (negative ``qty`` releases)."""
        if side == Side.BUY:
            self.cash[account, CA_RESERVED] += qty * self.unit(side, price, segment)
            self.holdings[self.row(account, instrument), HD_BUY_OPEN] += qty
        else:
            self.holdings[self.row(account, instrument), HD_RESERVED] += qty

    def release(self, account: int, instrument: int, side: int, segment: int, price: int,
                qty: int) -> None:
        self.reserve(account, instrument, side, segment, price, -qty)

    def settle(self, instrument: int, segment: int, buyer: int, seller: int, price: int,
               qty: int, buyer_unit: int) -> None:
        """A trade, delivery versus payment from the reservations: the buyer pays price x
        qty plus its fee out of ``qty x buyer_unit`` reserved, the seller delivers qty
        reserved tonnes and receives price x qty less its fee; fees go to the exchange."""
        notional = price * qty
        bps = self.fee_bps(segment)
        fee_each = fee(notional, bps)
        self.cash[buyer, CA_TOTAL] -= notional + fee_each
        self.cash[buyer, CA_RESERVED] -= qty * buyer_unit
        self.cash[seller, CA_TOTAL] += notional - fee_each
        self.cash[seller, CA_PROCEEDS] += notional - fee_each
        hb, hs = self.row(buyer, instrument), self.row(seller, instrument)
        self.holdings[hb, HD_TOTAL] += qty
        self.holdings[hb, HD_BUY_OPEN] -= qty
        if self.risk[RK_T1]:
            self.holdings[hb, HD_PENDING] += qty
        self.holdings[hs, HD_TOTAL] -= qty
        self.holdings[hs, HD_RESERVED] -= qty
        self.risk[RK_FEES] += 2 * fee_each

    def new_day(self) -> None:
        """A trading day opens: yesterday's purchases become sellable, proceeds withdrawable."""
        self.holdings[:, HD_PENDING] = 0
        self.cash[:, CA_PROCEEDS] = 0


def check_reservations(accounts: Accounts, resting_orders) -> None:
    """Raise ``AccountError`` unless the reservations are exactly what the open orders need
    and no balance is negative or past its bound.

    ``resting_orders`` yields (instrument, segment, side, price, order, account, open, seq)
    rows, as ``Book.resting_orders()`` does.
    """
    n = accounts.n_instruments
    cash_need = np.zeros(accounts.cash.shape[0], dtype=np.int64)
    sell_need = np.zeros(accounts.holdings.shape[0], dtype=np.int64)
    buy_open = np.zeros(accounts.holdings.shape[0], dtype=np.int64)
    for instrument, segment, side, price, _order, account, open_qty, _seq in resting_orders:
        if side == Side.BUY:
            cash_need[account] += open_qty * accounts.unit(side, price, segment)
            buy_open[account * n + instrument] += open_qty
        else:
            sell_need[account * n + instrument] += open_qty
    cash, hold = accounts.cash, accounts.holdings
    problems = []
    for what, got, want in (("cash reserved", cash[:, CA_RESERVED], cash_need),
                            ("allowances reserved", hold[:, HD_RESERVED], sell_need),
                            ("open buy quantity", hold[:, HD_BUY_OPEN], buy_open)):
        bad = np.flatnonzero(got != want)
        if len(bad):
            problems.append(f"{what} row {int(bad[0])}: {int(got[bad[0]])} != open orders' "
                            f"{int(want[bad[0]])}")
    if (cash[:, CA_TOTAL] - cash[:, CA_RESERVED] < 0).any():
        problems.append("an available cash balance is negative")
    if (hold[:, HD_TOTAL] - hold[:, HD_RESERVED] - hold[:, HD_PENDING] < 0).any():
        problems.append("a sellable allowance balance is negative")
    if (cash[:, CA_PROCEEDS] < 0).any() or (hold[:, HD_PENDING] < 0).any():
        problems.append("a T+1 amount is negative")
    if (cash[:, CA_TOTAL] > MAX_SYSTEM_TOTAL).any() or (hold[:, HD_TOTAL] > MAX_SYSTEM_TOTAL).any():
        problems.append("a balance passed its bound")
    if problems:
        raise AccountError(None, "; ".join(problems))
