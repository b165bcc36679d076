"""``cea serve --web-port``: the live screen's HTTP and WebSocket server, on aiohttp, in the
exchange's own event loop.

It reads the market-data stage between turns (``gateway.web.view.MarketView``, every
``POLL_S``) and pushes what changed to every browser on ``/ws`` as JSON; nothing of it runs
inside a turn or the matching path, and with no browser connected a poll reads only the
channels that moved. Routes:

- ``GET /``: the dashboard (``static/market.html``); ``/static/...``: its files.
- ``GET /api/market``: every channel's state now, with its tape and chart (JSON).
- ``GET /ws``: a WebSocket: ``{"type": "hello", ...}`` with the same, then
  ``{"type": "update", "clock": µs, "channels": [...]}`` whenever something changed (at
  least once a second, for the clock).
- ``POST /api/operator/login`` ``{"token": "..."}``: the operator account's logon token
  (the one it logs on to the gateway with) buys a session cookie (HttpOnly, SameSite=Strict,
  8 hours); wrong tokens back off as gateway logons do (``gateway.auth.LogonGuard``).
  ``POST /api/operator/logout`` ends it.
- ``GET /api/operator``: sessions connected, commands/s, acknowledgement latency
  percentiles, journal and ledger lag, instruments' halts (cookie or
  ``Authorization: Bearer TOKEN``; 401 otherwise).
- ``POST /api/operator/halt`` and ``/resume`` ``{"instrument": "CEA"}``: journaled as the
  operator's Halt and Resume are; answered once durable, with the status it published.

Bounded: at most ``MAX_VIEWERS`` WebSockets (503 beyond), request bodies of 4 KiB, a browser
that does not read its updates (over ``MAX_BEHIND`` bytes unsent) is disconnected. State
changes need a POST from the page's own origin (the cookie is SameSite=Strict and the Origin
header, when sent, must match the host).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import secrets
import time

import msgspec
import numpy as np
from aiohttp import WSMsgType, web

from .. import auth
from ..exchange import AdminOp
from . import STATIC
from .view import POLL_S, MarketView

log = logging.getLogger("cea.serve")

MAX_VIEWERS = 64
MAX_BEHIND = 4 << 20  # bytes a browser may leave unread before it is dropped
MAX_BODY = 4096
COOKIE = "cea_operator"
OPERATOR_HOURS = 8
#: How long a halt or resume may take to be sequenced and made durable before the answer
#: says it is still pending.
OP_TIMEOUT_S = 5.0

_json = msgspec.json.Encoder()
_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self' 'unsafe-inline'; connect-src 'self'"}


def _reply(data, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(data), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


class WebServer:
    """The live screen of one ``ExchangeServer``."""

    def __init__(self, server):
        self.server = server
        self.view = MarketView(server.exchange)
        self.viewers: dict[web.WebSocketResponse, object] = {}  # -> its transport
        self.cookies: dict[str, float] = {}  # operator session -> expiry (monotonic s)
        self.rates: collections.deque = collections.deque(maxlen=64)  # (t, commands)
        self.runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None
        self._last_push = 0.0

    # -------------------------------------------------------------- start and stop

    async def start(self, host: str, port: int) -> tuple[str, int]:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_security])
        app.add_routes([
            web.get("/", self._index),
            web.get("/api/market", self._market),
            web.get("/ws", self._ws),
            web.post("/api/operator/login", self._login),
            web.post("/api/operator/logout", self._logout),
            web.get("/api/operator", self._operator),
            web.post("/api/operator/halt", self._halt),
            web.post("/api/operator/resume", self._resume),
            web.static("/static", STATIC, show_index=False, follow_symlinks=False),
        ])
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, backlog=128)
        try:
            await site.start()
        except BaseException:
            await self.runner.cleanup()
            raise
        self._task = asyncio.get_running_loop().create_task(self._poll_loop())
        return tuple(self.runner.addresses[0][:2])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for ws, transport in list(self.viewers.items()):
            try:  # a browser that does not read must not hold the stop up
                await asyncio.wait_for(ws.close(code=1001, message=b"server stopping"), 0.5)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                if transport is not None:
                    transport.abort()
        if self.runner is not None:
            await self.runner.cleanup()

    # -------------------------------------------------------------- the market

    async def _index(self, request) -> web.FileResponse:
        return web.FileResponse(STATIC / "market.html", headers={"Cache-Control": "no-cache"})

    def _hello(self) -> dict:
        ex = self.server.exchange
        return {"type": "hello", "clock": self.server.clock.now(),
                "instruments": list(ex.instruments), "operator": ex.genesis.operator,
                "channels": [self.view.full(c) for c in range(ex.md.channels)]}

    async def _market(self, request) -> web.Response:
        return _reply(self._hello())

    async def _ws(self, request) -> web.WebSocketResponse:
        if len(self.viewers) >= MAX_VIEWERS:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_VIEWERS} viewers")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_BODY)
        await ws.prepare(request)
        self.viewers[ws] = request.transport
        try:
            await ws.send_str(_json.encode(self._hello()).decode())
            async for msg in ws:  # the page sends nothing; this waits for it to go
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self.viewers.pop(ws, None)
        return ws

    async def _poll_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(POLL_S)
                try:
                    self._poll()
                except Exception:  # a screen's failure never stops the exchange
                    log.exception("web view: reading the market data failed")
        except asyncio.CancelledError:
            pass

    def _poll(self) -> None:
        now = time.monotonic()
        self.rates.append((now, self.server.stats["commands"]))
        updates = self.view.poll()
        if not self.viewers or (not updates and now - self._last_push < 1.0):
            return
        self._last_push = now
        text = _json.encode({"type": "update", "clock": self.server.clock.now(),
                             "channels": updates}).decode()
        for ws, transport in list(self.viewers.items()):
            if transport is None or transport.is_closing():
                self.viewers.pop(ws, None)
            elif transport.get_write_buffer_size() > MAX_BEHIND:
                self.viewers.pop(ws, None)  # it does not read: its updates are not kept
                transport.abort()
            else:
                asyncio.ensure_future(_send(ws, text))

    # -------------------------------------------------------------- the operator

    def _authorized(self, request) -> bool:
        now = time.monotonic()
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            expiry = self.cookies.get(cookie)
            if expiry is not None and expiry > now:
                return True
            self.cookies.pop(cookie, None)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return self._token_ok(request, header[7:].strip())
        return False

    def _token_ok(self, request, token: str) -> bool:
        """The operator's token, with the gateway's backoff on failures (per address)."""
        server = self.server
        operator = server.exchange.genesis.operator
        now = time.monotonic()
        peer = request.remote
        if server.guard.check(operator, peer, now) > 0:
            return False
        stored = server.tokens.get(operator)
        if stored is None or not auth.verify_token(token, stored):
            server.guard.failure(operator, peer, now)
            return False
        server.guard.success(operator, peer)
        return True

    async def _body(self, request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    async def _login(self, request) -> web.Response:
        body = await self._body(request)
        token = body.get("token")
        operator = self.server.exchange.genesis.operator
        wait = self.server.guard.check(operator, request.remote, time.monotonic())
        if wait > 0:
            return _reply({"ok": False, "error": f"too many failed logons; retry in "
                                                 f"{math.ceil(wait)} s"}, 429)
        if not isinstance(token, str) or not self._token_ok(request, token):
            return _reply({"ok": False, "error": f"not the operator's ({operator}) token"}, 401)
        now = time.monotonic()
        for key, expiry in list(self.cookies.items()):  # forget the expired ones
            if expiry <= now:
                del self.cookies[key]
        key = secrets.token_urlsafe(32)
        self.cookies[key] = now + OPERATOR_HOURS * 3600
        response = _reply({"ok": True, "operator": operator})
        response.set_cookie(COOKIE, key, httponly=True, samesite="Strict", path="/",
                            max_age=OPERATOR_HOURS * 3600)
        return response

    async def _logout(self, request) -> web.Response:
        self.cookies.pop(request.cookies.get(COOKIE, ""), None)
        response = _reply({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    def _refused(self) -> web.Response:
        return _reply({"ok": False, "error": "operator only: log on with the operator "
                                             "account's token"}, 401)

    async def _operator(self, request) -> web.Response:
        if not self._authorized(request):
            return self._refused()
        return _reply(self.operator_state())

    def operator_state(self) -> dict:
        """Sessions, throughput, latency, journal and ledger: what the operator panel shows."""
        server = self.server
        ex = server.exchange
        now = time.monotonic()
        sessions = []
        for s in list(server.sessions.values()):
            if s.account < 0 or s.closing:
                continue
            peer = s.transport.get_extra_info("peername") if s.transport else None
            sessions.append({"account": s.account_name,
                             "protocol": "FIX" if s.account_name in server.fix_sessions
                             else "native",
                             "peer": f"{peer[0]}:{peer[1]}" if peer else "",
                             "connected_s": int(now - s.opened)})
        sessions.sort(key=lambda s: s["account"])
        n = min(server.ack_count, server.ack_us.shape[0])
        latency = {"turns": server.ack_count}
        if n:
            p50, p90, p99, p999 = np.percentile(server.ack_us[:n], [50, 90, 99, 99.9]).tolist()
            latency.update(p50_us=int(p50), p90_us=int(p90), p99_us=int(p99),
                           p999_us=int(p999), max_us=int(server.ack_us[:n].max()),
                           samples=n)
        rates = {}
        for label, span in (("1s", 1.0), ("10s", 10.0)):
            rates[label] = _rate(self.rates, now, span)
        journal = {"seq": ex.seq, "durable": server.durable,
                   "lag_records": max(0, ex.seq - server.durable),
                   "waiting_turns": len(server.waiting), "fsync": server.journal.fsync}
        return {
            "clock": server.clock.now(), "uptime_s": int(now - server.started),
            "sessions": sessions, "connections": len(server.sessions),
            "max_connections": server.config.max_connections, "viewers": len(self.viewers),
            "commands_per_s": rates, "commands": server.stats["commands"],
            "turns": server.stats["turns"], "ack_latency": latency, "journal": journal,
            "ledger": server.ledger_state(),
            "instruments": [{"instrument": name, "halted": bool(ex.halted[i]),
                             "status": ex.md.status(2 * i).name}
                            for i, name in enumerate(ex.instruments)],
        }

    async def _halt(self, request) -> web.Response:
        return await self._halt_or_resume(request, "HALT")

    async def _resume(self, request) -> web.Response:
        return await self._halt_or_resume(request, "RESUME")

    async def _halt_or_resume(self, request, op: str) -> web.Response:
        if not self._authorized(request):
            return self._refused()
        body = await self._body(request)
        name = body.get("instrument")
        ex = self.server.exchange
        i = ex.instrument_index.get(name, -1) if isinstance(name, str) else -1
        if i < 0:
            return _reply({"ok": False, "error": f"no instrument {name!r} (the exchange "
                                                 f"lists {', '.join(ex.instruments)})"}, 400)
        server = self.server
        if server.failed is not None:
            return _reply({"ok": False, "error": "the server has stopped"}, 503)
        log.warning("web operator (%s): %s %s", request.remote, op, name)
        server.system_op(AdminOp(max(server.clock.now(), ex.clock), op, instrument=name))
        want = op == "HALT"
        deadline = time.monotonic() + OP_TIMEOUT_S
        while time.monotonic() < deadline:
            if bool(ex.halted[i]) == want and server.durable >= ex.seq and not server.system:
                return _reply({"ok": True, "instrument": name, "halted": want,
                               "status": [ex.md.status(2 * i).name,
                                          ex.md.status(2 * i + 1).name]})
            await asyncio.sleep(0.005)
        return _reply({"ok": False, "error": f"{op} of {name} not yet durable after "
                                             f"{OP_TIMEOUT_S:.0f} s"}, 504)


def _rate(samples, now: float, span: float) -> int:
    """Commands per second over the last ``span`` seconds of (time, total) samples."""
    old = None
    for t, total in samples:
        if now - t <= span + 1e-9:
            old = (t, total)
            break
    if old is None or not samples or samples[-1][0] <= old[0]:
        return 0
    t1, total1 = samples[-1]
    return int((total1 - old[1]) / (t1 - old[0]))


async def _send(ws: web.WebSocketResponse, text: str) -> None:
    try:
        await ws.send_str(text)
    except (ConnectionError, RuntimeError):
        pass  # it went: the WebSocket handler forgets it


@web.middleware
async def _security(request, handler):
    """State changes only from the page's own origin; the pages' security headers."""
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            return _reply({"ok": False, "error": "cross-origin request refused"}, 403)
    response = await handler(request)
    response.headers.update(_HEADERS)
    return response
