"""The simulator's participants: who they are, what they hold, and the orders they decide on.

Every agent type decides in vectorised numpy over all agents of that type at once, drawing
from one seeded ``numpy.random.Generator``, so a simulation is reproducible and 2,000+ agents
cost a few numpy calls per decision step. The types (``AgentKind``):

- **covered entities** (重点排放单位) trade towards their compliance position: short ones
  buy, long ones sell part of their surplus; they act more often and cross the spread more
  as the surrender deadline comes closer (the urgency), and the large ones also trade in the
  block segment in the afternoon window;
- **market makers** quote both sides around the last price inside the band, skew their quotes
  against their inventory and stop quoting a side past their inventory limit;
- **noise traders** send random limit and IOC orders around the last price;
- **institutions** trade towards a slowly drifting fundamental value (value traders);
- **individuals** send small orders, do not check their balances first and now and then
  mistype a price outside the band (so rejects with reasons appear as they would);
- **block traders** negotiate 100,000 t+ lots in the afternoon block window.

Institutions and individuals exist only where the configuration admits them (docs/rules.md §10:
not admitted through 2024; opening the market to them is discussed, so it is a what-if).

The agents see what a participant of the real market sees: the last price, the best bid and
offer, the day's bands, their own balances (available cash, sellable allowances) and their
own working orders.

**Targeted takes** (listed agreement trading): with ``take_share`` on (covered entities,
noise traders, individuals, institutions; off by default), that share of an agent's listed
decisions to trade now (a limit priced through the best opposite price) becomes a take
intent (``Orders.take``): ``sim.simulate.resolve_takes`` picks the order it takes from in
the displayed best five levels, and the TAKE goes to the engine with the step's orders.

**Negotiated block agreements**: with ``covered_entity.negotiate_share`` on (off by
default), that share of the covered entities' afternoon block decisions becomes a
negotiation intent (``Orders.negotiate``): ``sim.negotiate.Negotiator`` quotes a
counterparty with the opposite need (or the board) and answers the live quotes step by step;
an entity negotiating decides nothing else meanwhile (``Market.busy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from engine.codes import AccountType, Side, TimeInForce
from engine.rules import BLOCK_MIN_QTY, LISTED_MAX_QTY


class AgentKind(IntEnum):
    COVERED_ENTITY = 0
    MARKET_MAKER = 1
    NOISE_TRADER = 2
    INSTITUTION = 3
    INDIVIDUAL = 4
    BLOCK_TRADER = 5
    USER = 6  # a user's own agent class (``sim.agent.Agent``), trading through the same engine


#: account type each agent kind trades under (docs/rules.md §10)
ACCOUNT_TYPE = {
    AgentKind.COVERED_ENTITY: AccountType.COVERED_ENTITY,
    AgentKind.MARKET_MAKER: AccountType.COVERED_ENTITY,  # a trading arm of a large group
    AgentKind.NOISE_TRADER: AccountType.COVERED_ENTITY,
    AgentKind.INSTITUTION: AccountType.INSTITUTION,
    AgentKind.INDIVIDUAL: AccountType.INDIVIDUAL,
    AgentKind.BLOCK_TRADER: AccountType.COVERED_ENTITY,
}
PREFIX = {AgentKind.COVERED_ENTITY: "CE", AgentKind.MARKET_MAKER: "MM",
          AgentKind.NOISE_TRADER: "NT", AgentKind.INSTITUTION: "IN",
          AgentKind.INDIVIDUAL: "ID", AgentKind.BLOCK_TRADER: "BT"}


@dataclass
class Orders:
    """One decision step's commands: cancels first, then new orders (handles come later)."""

    cancel_agent: list[np.ndarray] = field(default_factory=list)
    cancel_order: list[np.ndarray] = field(default_factory=list)
    agent: list[np.ndarray] = field(default_factory=list)
    side: list[np.ndarray] = field(default_factory=list)
    tif: list[np.ndarray] = field(default_factory=list)
    price: list[np.ndarray] = field(default_factory=list)
    qty: list[np.ndarray] = field(default_factory=list)
    #: take intents (``take``): resolved against the book into TAKE rows, or limit orders
    #: where no order can be taken, by ``sim.simulate.step_commands``
    takes: list[tuple] = field(default_factory=list)
    #: negotiation intents (``negotiate``): block quotes to a counterparty or the board,
    #: made by ``sim.negotiate.Negotiator``
    negotiations: list[tuple] = field(default_factory=list)

    def new(self, agent, side, tif, price, qty) -> None:
        """New DAY/IOC limit orders of ``agent`` (arrays; side and tif may be scalars);
        zero quantities are dropped."""
        keep = qty > 0
        if keep.any():
            self.agent.append(np.asarray(agent)[keep])
            self.side.append(np.broadcast_to(np.asarray(side, dtype=np.int64), keep.shape)[keep])
            self.tif.append(np.broadcast_to(np.asarray(tif, dtype=np.int64), keep.shape)[keep])
            self.price.append(np.asarray(price, dtype=np.int64)[keep])
            self.qty.append(np.asarray(qty, dtype=np.int64)[keep])

    def take(self, agent, side, tif, limit, qty, pick, keep: bool) -> None:
        """Take intents of ``agent`` (arrays; side a scalar): each wants ``qty`` now, at
        ``limit`` or better, from one resting LISTED order of the other side in the best
        five levels (listed agreement trading, a targeted take). ``pick`` (uniform in
        [0, 1)) chooses the order within the best price level the agent may take from (no
        time priority there); ``tif`` and ``keep`` (it becomes the agent's working order)
        are for the limit order sent instead when there is no order to take."""
        if len(agent):
            n = len(agent)
            self.takes.append((np.asarray(agent, dtype=np.int64),
                               np.full(n, int(side), dtype=np.int64),
                               np.broadcast_to(np.asarray(tif, dtype=np.int64), (n,)).copy(),
                               np.asarray(limit, dtype=np.int64),
                               np.asarray(qty, dtype=np.int64),
                               np.asarray(pick, dtype=np.float64),
                               np.full(n, bool(keep))))

    def negotiate(self, agent, side, price, qty, pick) -> None:
        """Negotiation intents of ``agent`` (arrays; side a scalar): each proposes a block
        agreement of ``qty`` t at ``price`` (a BLOCK_QUOTE) to a counterparty with the
        opposite need, chosen by ``pick`` (uniform in [0, 1)), or to the board if none."""
        if len(agent):
            n = len(agent)
            self.negotiations.append((np.asarray(agent, dtype=np.int64),
                                      np.full(n, int(side), dtype=np.int64),
                                      np.asarray(price, dtype=np.int64),
                                      np.asarray(qty, dtype=np.int64),
                                      np.asarray(pick, dtype=np.float64)))

    def cancel(self, agent, order) -> None:
        if len(agent):
            self.cancel_agent.append(np.asarray(agent, dtype=np.int64))
            self.cancel_order.append(np.asarray(order, dtype=np.int64))

    @staticmethod
    def cat(parts) -> np.ndarray:
        """One array of what ``new``/``cancel`` collected in ``parts``."""
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class Market:
    """What agents see at a decision step (prices in fen)."""

    afternoon: bool  # the block segment is open
    last: int  # last listed trade price, or the prior close before the first
    bid: int | None
    ask: int | None
    band: tuple[int, int]
    block_band: tuple[int, int]
    days_left: int  # calendar days to the surrender deadline
    fundamental: int
    cash: np.ndarray  # available cash per agent (fen)
    sellable: np.ndarray  # sellable allowances per agent (t)
    holdings: np.ndarray  # allowances held per agent (t), sellable or not
    activity: float = 1.0  # the day's activity: a factor on every act probability
    #: per agent: a party to a live negotiated block quote (it is negotiating, and decides
    #: nothing else meanwhile); None when covered entities do not negotiate
    busy: np.ndarray | None = None


def next_value(value: int, anchor: int, p: dict, rng: np.random.Generator,
               scale: float = 1.0) -> int:
    """The value of an allowance the next day (fen): a lognormal step (``daily_vol_bps``
    times ``scale``, the day's turbulence; ``drift_bps``), pulled ``mean_reversion_pct`` of
    the way back to ``anchor``."""
    step = rng.normal(p["drift_bps"], p["daily_vol_bps"] * scale) / 10_000
    value = value * (1 + step)
    value += (anchor - value) * p.get("mean_reversion_pct", 0) / 100
    return max(1, int(round(value)))


@dataclass
class DayConditions:
    """One trading day's conditions (see :func:`day_conditions`)."""

    activity: float  # a factor on every agent's act probability
    fundamental: int  # the value of an allowance (fen), which persists
    value: int  # the value agents price from today: the fundamental and the day's mood
    turbulence: float  # log of the persistent turbulence, carried to the next day
    scale: float  # exp(turbulence), mean 1: a factor on the day's moves


def day_conditions(p: dict, rng: np.random.Generator, fundamental: int,
                   turbulence: float = 0.0) -> DayConditions:
    """One day's conditions (``p``: the ``[day]`` table). Draws from ``rng`` only what is
    switched on, in this order (so a table without the later ones draws as before):

    - quiet and busy days: a lognormal activity factor (``activity_sigma``), and now and then
      a quiet day (``quiet_probability``, activity times ``quiet_activity``);
    - news days on which the value jumps ``jump_pct`` % up or down, for good;
    - turbulence: a persistent log-factor, AR(1) with ``turbulence_persistence`` and
      stationary sigma ``turbulence_sigma``, scaling the jumps, the mood and the value's
      step: calm and turbulent spells (volatility clustering);
    - the day's mood: today's prices are made ``mood_pct`` % (a normal draw, scaled) above
      or below the value, and tomorrow's mood is drawn afresh: a day's overreaction is
      undone the next (negative autocorrelation of daily returns).

    >>> c = day_conditions({"activity_sigma": 0.0, "quiet_probability": 0.0,
    ...                     "quiet_activity": 0.05, "jump_probability": 0.0, "jump_pct": 0.0},
    ...                    None, 6000)
    >>> (c.activity, c.fundamental, c.value, c.scale)
    (1.0, 6000, 6000, 1.0)
    """
    activity = 1.0
    if p["activity_sigma"] > 0:
        sigma = p["activity_sigma"]
        activity = float(rng.lognormal(-sigma * sigma / 2, sigma))  # mean 1
    if p["quiet_probability"] > 0 and rng.random() < p["quiet_probability"]:
        activity *= p["quiet_activity"]
    jump = p["jump_probability"] > 0 and rng.random() < p["jump_probability"]
    sign = (1 if rng.random() < 0.5 else -1) if jump else 0
    scale = 1.0
    sigma, phi = p.get("turbulence_sigma", 0.0), p.get("turbulence_persistence", 0.0)
    if sigma > 0:
        turbulence = phi * turbulence + (1 - phi * phi) ** 0.5 * sigma * float(rng.normal())
        scale = float(np.exp(turbulence - sigma * sigma / 2))  # mean 1
    if jump:
        fundamental = max(1, int(round(fundamental * (1 + sign * p["jump_pct"] * scale
                                                      / 100))))
    value = fundamental
    if p.get("mood_pct", 0.0) > 0:
        mood = float(rng.normal()) * p["mood_pct"] * scale / 100
        value = max(1, int(round(fundamental * (1 + mood))))
    return DayConditions(activity, fundamental, value, turbulence, scale)


@dataclass
class Agents:
    """Every agent, as parallel arrays indexed by agent number (= engine account handle)."""

    kind: np.ndarray
    names: list[str]
    cash: np.ndarray  # opening cash (fen)
    allowances: np.ndarray  # opening allowances (t)
    need: np.ndarray  # covered entities: tonnes still to buy (+) or sell (-) this year
    year_need: np.ndarray  # each compliance year's need, restored after a deadline
    working: np.ndarray  # (n, 2): handle of the working order per side, -1 none
    params: dict
    #: account type per agent where it is not its kind's (user agents choose theirs)
    types: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.kind)

    def account_type(self, i: int) -> AccountType:
        """The account type agent ``i`` trades under."""
        return self.types.get(i) or ACCOUNT_TYPE[AgentKind(int(self.kind[i]))]

    def add_users(self, names: list[str], types: list[AccountType], cash: list[int],
                  allowances: list[int]) -> list[int]:
        """Append user agents (kind USER; cash in fen, allowances in t); their numbers."""
        first = len(self.kind)
        n = len(names)
        grow = lambda a, v: np.concatenate([a, np.asarray(v, dtype=np.int64)])  # noqa: E731
        self.kind = grow(self.kind, [int(AgentKind.USER)] * n)
        self.names = self.names + list(names)
        self.cash = grow(self.cash, cash)
        self.allowances = grow(self.allowances, allowances)
        self.need = grow(self.need, [0] * n)
        self.year_need = grow(self.year_need, [0] * n)
        self.working = np.concatenate([self.working, np.full((n, 2), -1, dtype=np.int64)])
        for k, t in enumerate(types):
            self.types[first + k] = t
        return list(range(first, first + n))

    def of(self, kind: AgentKind) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)

    def counts(self) -> dict[str, int]:
        return {k.name: int((self.kind == k).sum()) for k in AgentKind
                if k != AgentKind.USER or (self.kind == k).any()}


def build(counts: dict[AgentKind, int], needs: np.ndarray, names: list[str] | None,
          prior_close: int, params: dict, rng: np.random.Generator,
          holdings: np.ndarray | None = None) -> Agents:
    """The agents, ``counts`` of each kind; ``needs`` are the covered entities' compliance
    positions (tonnes to buy +, to sell -), ``names`` and opening ``holdings`` (their free
    allocation) theirs if given. Agent numbers follow the order of ``AgentKind``."""
    kinds, all_names, cash, allowances, need = [], [], [], [], []
    for kind in AgentKind:
        n = int(counts.get(kind, 0))
        if n <= 0:
            continue
        kinds.append(np.full(n, int(kind), dtype=np.int64))
        if kind == AgentKind.COVERED_ENTITY:
            all_names += names or [f"CE{i + 1:04d}" for i in range(n)]
            nd = needs.astype(np.int64)
            # short entities hold cash for twice their need at the prior close (prices move);
            # long ones hold their surplus, and a working balance
            cash.append(np.maximum(nd, 0) * prior_close * 2 + 1_000_000_00)
            allowances.append(holdings.astype(np.int64) if holdings is not None
                              else np.maximum(-nd, 0) + 1_000)
            need.append(nd)
            continue
        all_names += [f"{PREFIX[kind]}{i + 1:04d}" for i in range(n)]
        p = params[kind.name.lower()]
        # opening cash in CNY and allowances in tonnes, spread x0.5..x1.5 across agents
        spread = rng.uniform(0.5, 1.5, n)
        cash.append((p["cash"] * 100 * spread).astype(np.int64))
        allowances.append((p["allowances"] * spread).astype(np.int64))
        need.append(np.zeros(n, dtype=np.int64))
    kind = np.concatenate(kinds)
    need_all = np.concatenate(need)
    return Agents(kind, all_names, np.concatenate(cash), np.concatenate(allowances), need_all,
                  need_all.copy(), np.full((len(kind), 2), -1, dtype=np.int64), params)


def _acting(idx: np.ndarray, rng, p: dict, activity: float = 1.0) -> np.ndarray:
    """The agents of ``idx`` that act at this step, each with ``act_probability`` (times the
    day's activity)."""
    return idx[rng.random(len(idx)) < p["act_probability"] * activity]


def _ticks(rng, mean, sigma, n) -> np.ndarray:
    return np.rint(rng.normal(mean, sigma, n)).astype(np.int64)


def _clip(price, band) -> np.ndarray:
    return np.clip(price, band[0], band[1])


def _affordable(qty, price, cash):
    return np.minimum(qty, cash // np.maximum(price, 1))


def _send(out: Orders, m: Market, rng, who, side: int, tif, price, qty, p: dict, keep: bool,
          eligible=None) -> np.ndarray:
    """Send the orders of ``who`` on ``side``. With ``take_share`` (in ``p``) on, each listed
    order priced through the best opposite price (a decision to trade now) becomes, with that
    probability, a take intent instead (``Orders.take``: at that price or better, from an
    order the agent picks in the best five levels); ``eligible`` limits which may. Returns
    which became take intents. Off, it draws nothing and sends what it always sent."""
    share = p.get("take_share", 0.0)
    if share <= 0:
        out.new(who, side, tif, price, qty)
        return np.zeros(len(who), dtype=bool)
    n = len(who)
    tif = np.broadcast_to(np.asarray(tif, dtype=np.int64), (n,))
    draw, pick = rng.random(n), rng.random(n)
    opposite = m.ask if side == Side.BUY else m.bid
    taking = np.zeros(n, dtype=bool)
    if opposite is not None:
        crosses = price >= opposite[0] if side == Side.BUY else price <= opposite[0]
        taking = crosses & (draw < share) & (qty > 0) & (qty <= LISTED_MAX_QTY)
        if eligible is not None:
            taking &= eligible
    out.take(who[taking], side, tif[taking], price[taking], qty[taking], pick[taking], keep)
    out.new(who[~taking], side, tif[~taking], price[~taking], qty[~taking])
    return taking


class AgentGroup:
    """The built-in agents of one kind, deciding together: the vectorised form of the agent
    API (``sim.agent.Agent`` is the one-account form a user writes). At each decision step
    the simulator calls ``on_step`` with what the group's accounts see (``Market``: the
    clock, the book's best prices, the bands, their balances) and an order sink (``Orders``:
    new orders and cancels, as the wire's NewOrder and Cancel); their fills come back
    through the accounts' balances and, for covered entities, their remaining need."""

    kind: AgentKind
    section: str  # the configuration's table of its parameters

    def on_step(self, agents: Agents, m: Market, rng: np.random.Generator, out: Orders,
                open_of) -> None:
        raise NotImplementedError


class CoveredEntities(AgentGroup):
    kind, section = AgentKind.COVERED_ENTITY, "covered_entity"

    def on_step(self, agents, m, rng, out, open_of):
        _covered(agents, m, rng, out, agents.params[self.section], open_of)


class MarketMakers(AgentGroup):
    kind, section = AgentKind.MARKET_MAKER, "market_maker"

    def on_step(self, agents, m, rng, out, open_of):
        _market_makers(agents, m, rng, out, agents.params[self.section], open_of)


class NoiseTraders(AgentGroup):
    kind, section, careful = AgentKind.NOISE_TRADER, "noise_trader", True

    def on_step(self, agents, m, rng, out, open_of):
        _noise(agents, m, rng, out, agents.params[self.section], self.kind, self.careful)


class Individuals(NoiseTraders):
    """Noise traders that do not check their balances and now and then mistype a price."""

    kind, section, careful = AgentKind.INDIVIDUAL, "individual", False


class Institutions(AgentGroup):
    kind, section = AgentKind.INSTITUTION, "institution"

    def on_step(self, agents, m, rng, out, open_of):
        _institutions(agents, m, rng, out, agents.params[self.section], open_of)


class BlockTraders(AgentGroup):
    kind, section = AgentKind.BLOCK_TRADER, "block_trader"

    def on_step(self, agents, m, rng, out, open_of):
        _block_traders(agents, m, rng, out, agents.params[self.section])


#: the built-in groups in the order they decide (each draws from the one generator in turn)
GROUPS: tuple[AgentGroup, ...] = (CoveredEntities(), MarketMakers(), NoiseTraders(),
                                  Individuals(), Institutions(), BlockTraders())


def decide(agents: Agents, m: Market, rng: np.random.Generator, open_of) -> Orders:
    """The orders every built-in agent sends at this step. ``open_of(handle)`` is an
    order's open quantity (0 once filled, cancelled or expired)."""
    out = Orders()
    for group in GROUPS:
        group.on_step(agents, m, rng, out, open_of)
    return out


def _replace_working(agents: Agents, who: np.ndarray, side: int, out: Orders, open_of) -> None:
    """Cancel the open working orders of ``who`` on ``side`` (they are about to send anew)."""
    handles = agents.working[who, side - 1]
    has = handles >= 0
    live = [i for i, h in zip(who[has].tolist(), handles[has].tolist()) if open_of(h) > 0]
    out.cancel(live, agents.working[live, side - 1])
    agents.working[who, side - 1] = -1


def deadline_ramp(days_left: int, p: dict) -> float:
    """0 until ``urgency_days`` before the deadline, rising to 1 on it (``urgency_power``
    shapes the rise: above 1 it comes late)."""
    ramp = min(max(1 - days_left / p["urgency_days"], 0.0), 1.0)
    return ramp ** p.get("urgency_power", 1.0)


def urgency(days_left: int, p: dict) -> float:
    """1 far from the deadline, rising to ``urgency_max`` on the deadline."""
    return 1.0 + (p["urgency_max"] - 1.0) * deadline_ramp(days_left, p)


def _covered(agents, m, rng, out, p, open_of) -> None:
    idx = agents.of(AgentKind.COVERED_ENTITY)
    if not len(idx):
        return
    u = urgency(m.days_left, p)
    need = agents.need[idx]
    # an entity with a bigger position trades more often: order flow follows the tonnes
    size = np.abs(agents.year_need[idx]).astype(np.float64)
    weight = np.clip(size / max(size.mean(), 1.0), 0.1, 10.0) * m.activity
    e = p.get("price_elasticity", 0.0)
    if e:
        # price-sensitive: surplus sells into a rising price and is banked when it falls;
        # shortfall waits for a lower price, less and less so as the deadline comes
        ratio = max(m.last, 1) / max(m.fundamental, 1)
        ramp = deadline_ramp(m.days_left, p)
        weight = weight * np.where(need < 0, ratio ** e, ratio ** (-e * (1 - ramp)))
    act = (need != 0) & (rng.random(len(idx)) < p["act_probability"] * u * weight)
    if m.busy is not None:
        act &= ~m.busy[idx]  # negotiating a block agreement: nothing else meanwhile
    who, need = idx[act], need[act]
    if not len(who):
        return
    buy = need > 0
    # far from the deadline they bid below the last price; close to it they pay up; their
    # prices start part of the way from the last price to the value (news moves them)
    anchor = m.last + (m.fundamental - m.last) * p.get("value_chase_pct", 0) // 100
    offset = _ticks(rng, p["aggression_ticks"] * (u - 1) - p["patience_ticks"],
                    p["price_sigma_ticks"], len(who))
    block = m.afternoon & (np.abs(need) >= BLOCK_MIN_QTY) & \
        (rng.random(len(who)) < p["block_probability"])
    lot = rng.integers(p["lot_min"], p["lot_max"] + 1, len(who))
    block_lot = rng.integers(BLOCK_MIN_QTY, p["block_lot_max"] + 1, len(who))
    qty = np.where(block, np.minimum(np.abs(need), block_lot),
                   np.minimum(np.minimum(np.abs(need), lot), LISTED_MAX_QTY))
    block &= qty >= BLOCK_MIN_QTY
    share = p.get("negotiate_share", 0.0)
    for side, mask in ((Side.BUY, buy), (Side.SELL, ~buy)):
        w = who[mask]
        if not len(w):
            continue
        _replace_working(agents, w, side, out, open_of)
        sign = 1 if side == Side.BUY else -1
        price = anchor + sign * offset[mask]
        # block agreements are negotiated at a discount to the listed price
        discounted = anchor - anchor * p.get("block_discount_bps", 0) // 10_000 + \
            sign * offset[mask]
        price = np.where(block[mask], _clip(discounted, m.block_band), _clip(price, m.band))
        q = qty[mask]
        q = _affordable(q, price, m.cash[w]) if side == Side.BUY else np.minimum(q, m.sellable[w])
        # a lot that shrank under the block minimum goes to the listed segment instead
        q = np.where(block[mask] & (q < BLOCK_MIN_QTY), np.minimum(q, LISTED_MAX_QTY), q)
        price = np.where(q > LISTED_MAX_QTY, price, _clip(price, m.band))
        if share > 0:
            # negotiated block agreements: this share of the block lots is proposed to a
            # counterparty (or the board) as a quote, at the same discounted price
            draw, pick = rng.random(len(w)), rng.random(len(w))
            talk = (q > LISTED_MAX_QTY) & (draw < share)
            out.negotiate(w[talk], side, price[talk], q[talk], pick[talk])
            w, price, q = w[~talk], price[~talk], q[~talk]
        taking = _send(out, m, rng, w, side, TimeInForce.DAY, price, q, p, keep=True)
        # filled in with the handle once assigned (a take is not a working order)
        agents.working[w[(q > 0) & ~taking], side - 1] = -2


def _market_makers(agents, m, rng, out, p, open_of) -> None:
    idx = agents.of(AgentKind.MARKET_MAKER)
    if not len(idx):
        return
    for side in (Side.BUY, Side.SELL):
        _replace_working(agents, idx, side, out, open_of)
    inventory = m.holdings[idx] - agents.allowances[idx]  # how far from their opening stock
    skew = (inventory * p["skew_ticks_per_10k"]) // 10_000
    half = p["half_spread_ticks"]
    mid = m.last if m.bid is None or m.ask is None else (m.bid[0] + m.ask[0]) // 2
    bid = _clip(mid - half - skew, m.band)
    ask = _clip(mid + half - skew, m.band)
    qty = np.full(len(idx), p["quote_qty"], dtype=np.int64)
    limit = p["inventory_limit"]
    bid_qty = np.where(inventory >= limit, 0, _affordable(qty, bid, m.cash[idx]))
    ask_qty = np.where(inventory <= -limit, 0, np.minimum(qty, m.sellable[idx]))
    out.new(idx, Side.BUY, TimeInForce.DAY, bid, bid_qty)
    out.new(idx, Side.SELL, TimeInForce.DAY, ask, ask_qty)
    agents.working[idx[bid_qty > 0], 0] = -2
    agents.working[idx[ask_qty > 0], 1] = -2


def _noise(agents, m, rng, out, p, kind, careful: bool) -> None:
    idx = agents.of(kind)
    if not len(idx):
        return
    who = _acting(idx, rng, p, m.activity)
    if not len(who):
        return
    n = len(who)
    buy = rng.random(n) < 0.5
    ioc = rng.random(n) < p["ioc_share"]
    offset = _ticks(rng, 0, p["price_sigma_ticks"], n)
    # IOC orders are sent to trade now: priced through the last price on their side
    offset = np.where(ioc, np.abs(offset), offset)
    price = _clip(m.last + np.where(buy, offset, -offset), m.band)
    typo = None
    if p.get("fat_finger", 0):
        typo = rng.random(n) < p["fat_finger"]
        wide = rng.integers(1, 500, n)  # a slipped digit: outside the band, rejected
        price = np.where(typo & buy, m.band[1] + wide, np.where(typo, m.band[0] - wide, price))
        price = np.maximum(price, 1)
    qty = rng.integers(p["qty_min"], p["qty_max"] + 1, n)
    if careful:
        qty = np.where(buy, _affordable(qty, price, m.cash[who]),
                       np.minimum(qty, m.sellable[who]))
    for side, mask in ((Side.BUY, buy), (Side.SELL, ~buy)):
        # a mistyped price is sent as typed: it is no decision to take
        _send(out, m, rng, who[mask], side,
              np.where(ioc[mask], TimeInForce.IOC, TimeInForce.DAY), price[mask], qty[mask], p,
              keep=False, eligible=None if typo is None else ~typo[mask])


def _institutions(agents, m, rng, out, p, open_of) -> None:
    idx = agents.of(AgentKind.INSTITUTION)
    if not len(idx):
        return
    gap = (m.fundamental - m.last) * 10_000 // max(m.last, 1)  # basis points
    if abs(gap) < p["threshold_bps"]:
        return
    who = _acting(idx, rng, p, m.activity)
    if not len(who):
        return
    side = Side.BUY if gap > 0 else Side.SELL
    _replace_working(agents, who, side, out, open_of)
    sign = 1 if side == Side.BUY else -1
    # they pay up (or give way) part of the way to their value, at least a few ticks
    chase = max(p["offset_ticks"], abs(m.fundamental - m.last) * p["chase_pct"] // 100)
    price = _clip(m.last + sign * _ticks(rng, chase, 2, len(who)), m.band)
    qty = rng.integers(p["qty_min"], p["qty_max"] + 1, len(who))
    qty = _affordable(qty, price, m.cash[who]) if side == Side.BUY else \
        np.minimum(qty, m.sellable[who])
    taking = _send(out, m, rng, who, side, TimeInForce.DAY, price, qty, p, keep=True)
    agents.working[who[(qty > 0) & ~taking], side - 1] = -2


def _block_traders(agents, m, rng, out, p) -> None:
    idx = agents.of(AgentKind.BLOCK_TRADER)
    if not len(idx) or not m.afternoon:
        return
    who = _acting(idx, rng, p, m.activity)
    if not len(who):
        return
    n = len(who)
    buy = rng.random(n) < 0.5
    # negotiated lots trade near the listed price less a discount, a few percent either way
    move = (m.last * (rng.integers(-p["spread_bps"], p["spread_bps"] + 1, n)
                      - p.get("discount_bps", 0))) // 10_000
    price = _clip(m.last + move, m.block_band)
    qty = rng.integers(BLOCK_MIN_QTY, p["qty_max"] + 1, n)
    qty = np.where(buy, _affordable(qty, price, m.cash[who]), np.minimum(qty, m.sellable[who]))
    qty = np.where(qty >= BLOCK_MIN_QTY, qty, 0)
    for side, mask in ((Side.BUY, buy), (Side.SELL, ~buy)):
        out.new(who[mask], side, TimeInForce.DAY, price[mask], qty[mask])
