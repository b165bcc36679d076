"""``cea agent``: run a user's agent (``sim.agent.Agent``) against a live ``cea serve``.

The agent logs on as its account through ``gateway.client.Client``, subscribes to its
instrument's LISTED market data and gets, unchanged from the simulator, ``on_start``, then
``on_step(book)`` every ``step`` seconds (with its balances asked from the exchange just
before), ``on_book(book)`` on every market-data update, and ``on_execution``/``on_order``
for the reports about its orders. Its orders go out as the wire's NewOrder, Cancel, Amend and
MassCancel. When ``duration`` ends (or on Ctrl-C) it asks for its balances a last time and
returns its figures: orders, trades, tonnes bought and sold, and the P&L marked to the last
price. The session logs on with cancel-on-disconnect, so the exchange cancels the agent's
open orders when it leaves.
"""

from __future__ import annotations

import asyncio
import signal

from engine.codes import OrderType, Segment, Side

from .agent import Agent, AgentError, Book, DayClose, Fill, OrderUpdate, Sender, call, \
    notify_fill, notify_order
from .loadtest import run_tag


class LiveSender(Sender):
    """Sends an agent's commands over its session. Order ids are ``TAG`` + a counter, the
    tag fresh per run (base 36 of the time in ms) so ids never repeat on the account."""

    def __init__(self, client, instrument: str, tag: str):
        self.client, self.instrument, self.tag = client, instrument, tag

    def new(self, agent, side, qty, price, tif) -> str:
        order_id = f"{self.tag}{agent.orders_sent + 1}"
        self.client.new_order(order_id, self.instrument, side, qty, price,
                              type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                              tif=tif)
        return order_id

    def cancel(self, agent, order_id) -> None:
        self.client.cancel(order_id)

    def amend(self, agent, order_id, price, qty) -> None:
        self.client.amend(order_id, price, qty)

    def cancel_all(self, agent, side) -> None:
        from gateway import protocol as P

        self.client.send(P.MassCancel(self.instrument, int(side or 0)))


#: the report kinds (``gateway.protocol.ExecKind``) that are order updates, by status name
EXEC_UPDATES = {1: "ACCEPTED", 2: "REJECTED", 5: "CANCELLED", 6: "EXPIRED",
                7: "AMENDED", 8: "CANCEL_REJECTED", 9: "AMEND_REJECTED"}


def tell(agent: Agent, r, guard) -> None:
    """Give ``agent`` what the ExecutionReport ``r`` says about one of its orders: a fill
    (``on_execution``) or an order update (``on_order``); the callback runs through
    ``guard(fn, *args)``, which decides what an agent's failure does to the run."""
    from gateway.protocol import ExecKind, reason_name

    if r.exec in (ExecKind.PARTIAL_FILL, ExecKind.FILL):
        guard(notify_fill, agent, Fill(r.cl_ord_id, Side(r.side), r.price, r.qty, r.trade_id,
                                       r.ts_us, Segment(r.segment), r.open))
    elif r.exec in EXEC_UPDATES:
        guard(notify_order, agent, OrderUpdate(r.cl_ord_id, EXEC_UPDATES[r.exec],
                                               reason_name(r.reason) if r.reason else "",
                                               r.open, r.ts_us))


class LiveRun:
    """One agent's session (see the module's documentation)."""

    def __init__(self, agent: Agent, host: str, port: int, account: str, token: str,
                 instrument: str = "CEA", step: float = 1.0, duration: float | None = None,
                 progress=None):
        self.progress = progress  # progress(agent, seconds left or None) after each step
        self.agent, self.host, self.port = agent, host, port
        self.account, self.token, self.instrument = account, token, instrument
        self.step, self.duration = step, duration
        self.failure: Exception | None = None
        self.view = None
        self.now = 0
        self.tag = run_tag() + "-"  # fresh per run: ids never repeat on the account
        self.stop = None

    def _book(self) -> Book:
        v = self.view
        return Book(self.instrument, self.now, [tuple(lv) for lv in v.bids],
                    [tuple(lv) for lv in v.asks], v.last_price,
                    v.prior_close, v.status.name, v.volume)

    def _guard(self, fn, *args) -> None:
        """Run a callback from the client's reader: a failure stops the run, not the reader."""
        if self.failure is not None:
            return
        try:
            fn(*args)
        except AgentError as e:
            self.failure = e
            self.stop.set()

    def _on_report(self, r) -> None:
        if not r.cl_ord_id.startswith(self.tag):
            return  # another session's order of the same account
        self.now = max(self.now, r.ts_us)
        tell(self.agent, r, self._guard)

    def _on_market_data(self, msg) -> None:
        from gateway import protocol as P

        self.now = max(self.now, getattr(msg, "ts_us", 0))
        if self.view is None or not self.view.ready.is_set():
            return
        if type(msg) is P.MdDaySummary:
            self.agent.last_price = msg.close
            d = str(msg.date)
            self._guard(call, self.agent, "on_day_close",
                        DayClose(f"{d[:4]}-{d[4:6]}-{d[6:]}", msg.close, msg.volume, 0))
        elif type(msg) is P.MdTrade:
            self.agent.last_price = msg.price
        self._guard(call, self.agent, "on_book", self._book())

    async def _balance(self) -> None:
        from gateway import protocol as P

        b = await self.client.balance()
        if not isinstance(b, P.Balance):
            raise AgentError(f"account {self.account}: the exchange gives no balances "
                             f"({b.text if hasattr(b, 'text') else b})")
        a = self.agent
        a.cash, a.cash_available = b.cash, b.cash_available
        held = next((h for h in b.holdings if h[0] == self.instrument), None)
        a.allowances, a.sellable = (held[1], held[4]) if held else (0, 0)
        a.now = self.now

    async def main(self) -> dict:
        from gateway.client import Client

        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        self.client = Client(self.host, self.port, self.account, self.token,
                             on_execution=self._on_report,
                             on_market_data=self._on_market_data)
        ack = await self.client.connect()
        self.now = ack.server_time_us
        try:
            if self.instrument not in ack.instruments:
                raise AgentError(f"the exchange lists no instrument {self.instrument} "
                                 f"(it lists {', '.join(ack.instruments)})")
            self.view = await self.client.subscribe(self.instrument, Segment.LISTED)
            a = self.agent
            a.bind(LiveSender(self.client, self.instrument, self.tag), self.account,
                   self.instrument, cash=0, allowances=0)
            await self._balance()
            a.opening_cash, a.opening_allowances = a.cash, a.allowances
            a.last_price = self.view.last_price
            call(a, "on_start")
            end = None if self.duration is None else loop.time() + self.duration
            while not self.stop.is_set():
                wait = self.step if end is None else min(self.step, end - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(self.stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass
                if self.failure is not None or self.stop.is_set():
                    break
                await self._balance()
                call(a, "on_step", self._book())
                if self.progress is not None:
                    self.progress(a, None if end is None else max(end - loop.time(), 0.0))
            if self.failure is not None:
                raise self.failure
            await asyncio.sleep(0.05)  # the reports of the last step's orders
            await self._balance()
        finally:
            await self.client.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        mark = a.last_price or self.view.prior_close
        return {"account": self.account, "class": type(a).__name__, "orders": a.orders_sent,
                "trades": a.trades, "bought_t": a.bought, "sold_t": a.sold,
                "opening_cash": a.opening_cash, "cash": a.cash,
                "opening_allowances": a.opening_allowances, "allowances": a.allowances,
                "mark": mark, "pnl": a.pnl(mark), "open_orders_cancelled": len(a.open_orders)}


def run_live(agent: Agent, host: str, port: int, account: str, token: str, **kw) -> dict:
    """Run ``agent`` against the exchange at ``host:port`` (see ``LiveRun``); its figures."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency
        runner = asyncio.run
    return runner(LiveRun(agent, host, port, account, token, **kw).main())


__all__ = ["LiveRun", "LiveSender", "run_live"]
