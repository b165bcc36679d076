"""``cea simulate --via-server``: the same agents as real clients of ``cea serve``.

A fresh server runs in a subprocess on loopback (simulated clock, ledger on, fsync off), with
the agents' opening balances and one token per agent. Every agent logs on with its own
session (``gateway.client.Client``); the operator session steps the exchange clock through
each day with ``SetClock`` and watches the listed book's market data. At each step every
agent asks for its balance (what it may spend and sell), the agents decide exactly as
in-process (``sim.agents.decide``), their cancels and orders go over TCP, and the step ends
when every one is answered. At 15:00 the server closes the day itself. A user's agents
(``sim.agent.Agent``) have their sessions too: after the built-in agents' orders of a step,
each sees its balances and the book and sends its own, and the step waits for their answers.

The results come from the server's own records: after it stops, its journal is replayed
(``gateway.journal.settled_events``) for the trades and the days, and its ledger gives the
statements. Unlike in-process runs this mode is not reproducible to the byte: the server
stamps commands with its clock and interleaves the sessions in arrival order.

Targeted takes (``take_share``) are off in this mode: the wire protocol has no Take message
yet, and a client sees the book's levels, not its orders. A configuration that asks for them
runs without them, saying so on stderr and in ``summary.json`` (``takes``). So are the
covered entities' negotiated block agreements (``negotiate_share``: ``negotiations``).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from pathlib import Path

import msgspec
import numpy as np

from engine import batch as B
from engine.codes import Action, EventKind, Segment
from engine.orderfile import parse_prior_close
from engine.rules import DAY_CLOSE_US, DAY_US, PM_OPEN_US, band_limits
from engine.tradingdays import TradingCalendar, date_of_day, format_time

from . import agents as A
from .simulate import DAY_STREAM, TAKE_SECTIONS, DayRow, SimResult, build_agents, \
    negotiations_configured, parse_date, step_commands, step_times, summarize, \
    takes_configured, trading_days

#: why takes are off over the wire (``summary.json``'s ``takes``, and said on stderr)
TAKES_OFF = ("targeted takes are off with --via-server: the wire protocol has no Take yet "
             "(take_share set to 0; run in process for them)")


#: why negotiated block agreements are off over the wire (``summary.json``'s ``negotiations``)
NEGOTIATIONS_OFF = ("negotiated block agreements are off with --via-server: the simulator's "
                    "clients do not negotiate over the wire yet (negotiate_share set to 0; run "
                    "in process for them)")


def without_negotiations(cfg):
    """``cfg`` with ``covered_entity.negotiate_share`` 0."""
    return msgspec.structs.replace(cfg, covered_entity=msgspec.structs.replace(
        cfg.covered_entity, negotiate_share=0.0))


def without_takes(cfg):
    """``cfg`` with every ``take_share`` 0 (the agents then decide as they would without)."""
    return msgspec.structs.replace(cfg, **{
        section: msgspec.structs.replace(getattr(cfg, section), take_share=0.0)
        for section in TAKE_SECTIONS})

_OPERATOR = "OPS"
_KEY = secrets.token_urlsafe(12)  # the server's tokens, fresh per process: name-KEY


def _token(name: str) -> str:
    return f"{name}-{_KEY}"


_LAG_US = 60_000_000


def _files(agents: A.Agents, instrument: str) -> tuple[str, str]:
    """The server's accounts and tokens files (one token per agent, and the operator's)."""
    from .simout import account_rows

    accounts = "".join(",".join(map(str, row)) + "\n" for row in account_rows(agents, instrument))
    tokens = ["account,token"] + [f"{name},{_token(name)}" for name in agents.names] + \
        [f"{_OPERATOR},{_token(_OPERATOR)}"]
    return accounts, "\n".join(tokens) + "\n"


def run_via_server(cfg, out: Path, progress=None, web_port: int | None = None,
                   on_web=None) -> tuple[SimResult, list[Path]]:
    """Run ``cfg``'s agents against a fresh ``cea serve``; write the results into ``out``.
    ``web_port``: the server also serves its web view there (``on_web(url)`` says where)."""
    from .loadtest import local_server
    from .plots import plot_simulation

    t0 = time.perf_counter()
    takes_off = takes_configured(cfg)
    if takes_off:
        import sys

        print(f"cea simulate: note: {TAKES_OFF}", file=sys.stderr)
        cfg = without_takes(cfg)
    negotiations_off = negotiations_configured(cfg)
    if negotiations_off:
        import sys

        print(f"cea simulate: note: {NEGOTIATIONS_OFF}", file=sys.stderr)
        cfg = without_negotiations(cfg)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    agents, covered = build_agents(cfg, rng)
    calendar = TradingCalendar.xshg(weekdays_beyond=True)
    days = trading_days(cfg, calendar)
    accounts_csv, tokens_csv = _files(agents, cfg.instrument)
    workdir = out / "server"
    shutil.rmtree(workdir, ignore_errors=True)
    start = format_time(days[0] * DAY_US + 9 * 3_600_000_000)  # 09:00, before the open
    extra = ("--prior-close", f"{cfg.instrument}={cfg.prior_close}",
             "--fee-bps-listed", str(cfg.fee_bps_listed),
             "--fee-bps-block", str(cfg.fee_bps_block),
             # a session per agent, the operator's and the users' agents': room for all
             "--max-connections", str(len(agents.names) + sum(a.count for a in cfg.agents) + 64))
    with local_server(out, accounts_csv, tokens_csv, fsync=False, start=start, extra=extra,
                      workdir=workdir, web_port=web_port, on_web=on_web) as port:
        run = _Run(cfg, agents, rng, port, days, progress)
        samples, depth, rejects, sent = asyncio.run(run.main())
    from gateway.journal import settled_events

    ev, exchange = settled_events(workdir / "data")
    trades = ev[ev[:, B.KIND] == EventKind.TRADE]
    rows = _day_rows(ev, trades, samples)
    result = SimResult(cfg, agents, None, rows, sent, trades, rejects,
                       np.zeros((0, B.EVENT_WIDTH), np.int64), samples, depth, [], covered.info,
                       time.perf_counter() - t0)
    result.summary = summarize(result)
    result.summary["mode"] = "via-server"
    if takes_off:
        result.summary["takes"] = {"off": TAKES_OFF}
    if negotiations_off:
        result.summary["negotiations"] = {"off": NEGOTIATIONS_OFF}
    result.summary["user_agents"] = run.user_summary(rows[-1].close if rows else 0)
    paths = _write(result, exchange, out)
    day = cfg.plot_day or rows[len(rows) // 2].date
    paths += plot_simulation(result, out, day)
    return result, paths


class _Run:
    def __init__(self, cfg, agents, rng, port, days, progress):
        self.cfg, self.agents, self.rng, self.port = cfg, agents, rng, port
        self.days, self.progress = days, progress
        self.open_qty: dict[int, int] = {}
        self.last_trade = (0, 0)  # (trade id, price) of the latest listed trade seen
        self.reasons: list[int] = []
        self.users: list = []  # (agent, its number, its client): the user agents
        self.failure: Exception | None = None

    def _guard(self, fn, *args) -> None:
        """A user agent's callback from a client's reader: a failure stops the run."""
        from .agent import AgentError

        if self.failure is None:
            try:
                fn(*args)
            except AgentError as e:
                self.failure = e

    def _user_report(self, agent):
        """The report handler of a user agent's session (``sim.live.tell``, as ``cea agent``
        has it), which also keeps the run's last trade and reject reasons."""
        from gateway.protocol import ExecKind

        from .live import tell

        def on_report(r) -> None:
            tell(agent, r, self._guard)
            if r.exec in (ExecKind.PARTIAL_FILL, ExecKind.FILL) and \
                    r.segment == Segment.LISTED and r.trade_id > self.last_trade[0]:
                self.last_trade = (int(r.trade_id), int(r.price))
            elif r.exec == ExecKind.REJECTED:
                self.reasons.append(int(r.reason))

        return on_report

    async def _start_users(self, clients) -> None:
        from .agent import call
        from .simulate import user_agent_names, user_agents

        instances, numbers = user_agents(self.cfg, self.agents)
        self.user_classes = [ua.agent for _, ua in user_agent_names(self.cfg)]
        for agent, i in zip(instances, numbers):
            client = clients[i]
            client.on_execution = self._user_report(agent)
            agent.bind(_StepSender(client, self.cfg.instrument), self.agents.names[i],
                       self.cfg.instrument, cash=int(self.agents.cash[i]),
                       allowances=int(self.agents.allowances[i]), seed=self.cfg.seed)
            self.users.append((agent, i, client))
            call(agent, "on_start")

    async def _step_users(self, balances, view, ts: int, last: int | None) -> None:
        """Show the user agents the clock and the book; send what they decide; wait for
        every answer."""
        from .agent import Book, call

        if not self.users:
            return
        book = Book(self.cfg.instrument, ts, [tuple(lv) for lv in view.bids[:5]],
                    [tuple(lv) for lv in view.asks[:5]], last, self.day_prior, "OPEN",
                    view.volume)
        for agent, i, _ in self.users:
            b = balances[i]
            agent.now, agent.cash, agent.cash_available = ts, b.cash, b.cash_available
            agent.allowances, agent.sellable = b.holdings[0][1], b.holdings[0][4]
            if last is not None:
                agent.last_price = last
            call(agent, "on_book", book)
            call(agent, "on_step", book)
        waits = [w for agent, _, _ in self.users for w in agent.sender.take()]
        if waits:
            await asyncio.gather(*waits)
        if self.failure is not None:
            raise self.failure

    def user_summary(self, mark: int) -> list[dict]:
        """``summary.json``'s ``user_agents`` from the agents' final balances."""
        from engine.units import format_fen

        return [{"name": a.account, "class": cls, "orders": a.orders_sent,
                 "trades": a.trades, "position_t": a.allowances - a.opening_allowances,
                 "pnl_cny": format_fen(a.pnl(mark))}
                for (a, _, _), cls in zip(self.users, self.user_classes)]

    def _on_execution(self, msg) -> None:
        from gateway.protocol import ExecKind

        if not msg.cl_ord_id.startswith("o"):
            return
        handle = int(msg.cl_ord_id[1:])
        kind = msg.exec
        if kind == ExecKind.REJECTED:
            self.reasons.append(int(msg.reason))
        elif kind in (ExecKind.CANCELLED, ExecKind.EXPIRED):
            self.open_qty[handle] = 0
        else:
            self.open_qty[handle] = int(msg.open)
            if kind in (ExecKind.PARTIAL_FILL, ExecKind.FILL) and \
                    msg.segment == Segment.LISTED and msg.trade_id > self.last_trade[0]:
                self.last_trade = (int(msg.trade_id), int(msg.price))

    def _on_market_data(self, msg) -> None:
        from gateway.protocol import MdDaySummary

        if type(msg) is MdDaySummary and msg.segment == Segment.LISTED:
            self.prior = int(msg.close)  # the next day's band reference
            if self.users:
                from .agent import DayClose, call

                d = str(msg.date)
                day = DayClose(f"{d[:4]}-{d[4:6]}-{d[6:]}", msg.close, msg.volume, 0)
                for agent, _, _ in self.users:
                    agent.last_price = msg.close
                    self._guard(call, agent, "on_day_close", day)

    async def main(self):
        from gateway.client import Client

        cfg, agents = self.cfg, self.agents
        ops = Client("127.0.0.1", self.port, _OPERATOR, _token(_OPERATOR), heartbeat_ms=30_000,
                     on_market_data=self._on_market_data)
        await ops.connect()
        book = await ops.subscribe(cfg.instrument, Segment.LISTED)
        clients = [Client("127.0.0.1", self.port, name, _token(name), heartbeat_ms=30_000,
                          on_execution=self._on_execution) for name in agents.names]
        for c in clients:
            c.keep_reports = False
        for k in range(0, len(clients), 64):
            await asyncio.gather(*(c.connect() for c in clients[k:k + 64]))
        await self._start_users(clients)
        prior = self.prior = parse_prior_close(cfg.prior_close)
        times = step_times(cfg.steps_per_hour)
        deadline = parse_date("deadline", cfg.deadline)
        fundamental = prior
        turbulence = 0.0
        day_rng = np.random.default_rng([cfg.seed, DAY_STREAM])
        day_params = msgspec.structs.asdict(cfg.day)
        samples, sent = [], []
        depth: dict = {}
        next_order = 0
        plot_day = parse_date("plot_day", cfg.plot_day) if cfg.plot_day else \
            date_of_day(self.days[len(self.days) // 2])
        for day in self.days:
            date = date_of_day(day)
            if date > deadline:
                deadline = deadline.replace(year=deadline.year + 1)
                agents.need[:] = agents.year_need
            conditions = A.day_conditions(day_params, day_rng, fundamental, turbulence)
            activity, fundamental = conditions.activity, conditions.fundamental
            turbulence = conditions.turbulence
            band = block_band = None
            self.last_trade = (self.last_trade[0], 0)
            for k, tod in enumerate(times):
                # a minute into each step: after a day ends the server's clock restarts at
                # 09:30 of the next trading day and runs on at wall speed
                ts = day * DAY_US + int(tod) + _LAG_US
                ack = await ops.set_clock(ts)
                if not ack.ok:
                    raise RuntimeError(f"SetClock refused: {ack.text}")
                if band is None:
                    base = self.day_prior = self.prior  # the last close the server published
                    band = band_limits(base, Segment.LISTED)
                    block_band = band_limits(base, Segment.BLOCK)
                balances = await asyncio.gather(*(c.balance() for c in clients))
                cash = np.array([b.cash_available for b in balances], dtype=np.int64)
                sellable = np.array([b.holdings[0][4] for b in balances], dtype=np.int64)
                held = np.array([b.holdings[0][1] for b in balances], dtype=np.int64)
                bb, ba = book.best_bid, book.best_ask
                last = self.last_trade[1] or base
                market = A.Market(tod >= PM_OPEN_US, last, bb, ba, band,
                                  block_band, (deadline - date).days, conditions.value, cash,
                                  sellable, held, activity)
                d = A.decide(agents, market, self.rng, lambda h: self.open_qty.get(h, 0))
                next_order = await self._send(d, clients, ts, next_order, sent)
                await self._step_users(balances, book, ts, self.last_trade[1] or None)
                bb, ba = book.best_bid, book.best_ask
                samples.append((ts, bb[0] if bb else 0, ba[0] if ba else 0,
                                self.last_trade[1]))
                if date == plot_day and k == len(times) * 3 // 4:
                    from engine.messages import BookLevel

                    depth = {"time": ts,
                             "bids": [BookLevel(*lv) for lv in book.bids[:15]],
                             "asks": [BookLevel(*lv) for lv in book.asks[:15]]}
            ack = await ops.set_clock(day * DAY_US + DAY_CLOSE_US)  # the server closes the day
            fundamental = A.next_value(fundamental, prior,
                                       msgspec.structs.asdict(cfg.fundamental), self.rng,
                                       conditions.scale)
            if self.progress is not None:
                self.progress(date)
        for agent, i, client in self.users:  # their last balances, for the P&L
            b = await client.balance()
            agent.cash, agent.allowances = b.cash, b.holdings[0][1]
        if self.failure is not None:
            raise self.failure
        await asyncio.gather(*(c.close() for c in clients))
        await ops.close()
        cmds = np.concatenate(sent) if sent else B.empty_commands(0)
        rejects = np.array([(-1, r) for r in self.reasons], dtype=np.int64).reshape(-1, 2)
        return (np.array(samples, dtype=np.int64).reshape(-1, 4), depth, rejects, cmds)

    async def _send(self, d: A.Orders, clients, ts: int, next_order: int, sent) -> int:
        """The step's commands (as in-process), over each agent's session; wait for every
        answer."""
        cmds, next_order = step_commands(d, self.agents, ts, next_order, self.rng)
        waits = []
        for action, agent, order, side, tif, price, qty in zip(
                cmds["action"].tolist(), cmds["account"].tolist(), cmds["order"].tolist(),
                cmds["side"].tolist(), cmds["tif"].tolist(), cmds["price"].tolist(),
                cmds["qty"].tolist()):
            client = clients[agent]
            if action == Action.CANCEL:
                waits.append(client.cancel_wait(f"o{order}"))
            else:
                waits.append(client.place(f"o{order}", self.cfg.instrument, side, qty, price,
                                          tif=tif))
        if waits:
            await asyncio.gather(*waits)
        sent.append(cmds)
        return next_order


class _StepSender:
    """A user agent's commands over its session, the answers awaited at the step's end.
    Order ids are ``ACCOUNT.N`` as in-process (the server is fresh: they never repeat)."""

    def __init__(self, client, instrument: str):
        self.client, self.instrument = client, instrument
        self.waits: list = []

    def take(self) -> list:
        waits, self.waits = self.waits, []
        return waits

    def new(self, agent, side, qty, price, tif) -> str:
        from engine.codes import OrderType

        order_id = f"{agent.account}.{agent.orders_sent + 1}"
        self.waits.append(self.client.place(
            order_id, self.instrument, side, qty, price, tif=tif,
            type=OrderType.LIMIT if price is not None else OrderType.MARKET))
        return order_id

    def cancel(self, agent, order_id) -> None:
        self.waits.append(self.client.cancel_wait(order_id))

    def amend(self, agent, order_id, price, qty) -> None:
        self.waits.append(self.client.amend_wait(order_id, price, qty))

    def cancel_all(self, agent, side) -> None:
        self.waits.append(self.client.mass_cancel(self.instrument, int(side or 0)))


def _day_rows(ev: np.ndarray, trades: np.ndarray, samples: np.ndarray) -> list[DayRow]:
    rows = []
    for c in ev[ev[:, B.KIND] == EventKind.DAY_CLOSED].tolist():
        day, prior = c[B.DAY_NUMBER], c[B.DAY_PRIOR_CLOSE]
        t = trades[(trades[:, B.TS] // DAY_US == day) & (trades[:, B.SEGMENT] == Segment.LISTED)]
        s = samples[(samples[:, 0] // DAY_US == day) & (samples[:, 1] > 0) & (samples[:, 2] > 0)]
        lo, hi = band_limits(prior, Segment.LISTED)
        blo, bhi = band_limits(prior, Segment.BLOCK)
        rows.append(DayRow(
            date_of_day(day).isoformat(), prior, c[B.DAY_CLOSE], lo, hi, blo, bhi,
            c[B.DAY_LISTED_VOLUME], c[B.DAY_BLOCK_VOLUME], c[B.DAY_LISTED_TURNOVER],
            c[B.DAY_BLOCK_TURNOVER],
            int(t[:, B.PRICE].max()) if len(t) else None,
            int(t[:, B.PRICE].min()) if len(t) else None,
            int(round(float((s[:, 2] - s[:, 1]).mean()))) if len(s) else None))
    return rows


def _write(result: SimResult, exchange, out: Path) -> list[Path]:
    """trades, days and intraday CSV files, the ledger's files, summary.json."""
    from ledger.core import Ledger

    from .simout import write_table as write_csv
    from .simout import day_rows, intraday_rows, trade_rows, write_ledger_files, write_summary

    paths = [write_csv(out / "trades.csv", trade_rows(result.trades, exchange.order_name,
                                                      exchange.account_name)),
             write_csv(out / "days.csv", day_rows(result.days)),
             write_csv(out / "intraday.csv", intraday_rows(result.samples))]
    cfg = result.config
    ledger = Ledger.open(str(out / "server" / "data" / "ledger.sqlite"), [cfg.instrument],
                         cfg.fee_bps_listed, cfg.fee_bps_block)
    try:
        paths += write_ledger_files(result, ledger, exchange.engine, out,
                                    skip=(exchange.genesis.operator,))
    finally:
        ledger.close()
    paths.append(write_summary(result, out))
    return paths
