"""The live web view's HTTP and WebSocket interface (``gateway.web.app``), on an in-process
server (``run_with_server``) with aiohttp's client; and ``cea serve --web-port`` on a busy
port.

- the operator's logon: a wrong token is 401 and repeated failures back off (429, as gateway
  logons do: ``LogonGuard``); the right one buys an HttpOnly, SameSite=Strict cookie that
  works until logout; ``Authorization: Bearer TOKEN`` works without it;
- halt and resume: unknown instruments, bodies that are not a JSON object (400), bodies over
  4 KiB (413), a foreign ``Origin`` (403) and no credentials (401) change nothing; a halt
  made through the web is journaled: after a restart the instrument is still halted;
- the WebSocket: a hello with every channel, then updates after a trade, and at least one a
  second for the clock; at most ``MAX_VIEWERS`` of them (503 beyond);
- ``/static/`` serves its folder and nothing outside it; pages carry the security headers;
- the operator's figures: sessions, commands/s, acknowledgement latency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import sys
import time

import aiohttp
import pytest

from engine.codes import Side
from gateway import protocol as P
from gateway.client import Client
from gateway.web import app as web_app

from ..gateway.support import TOKENS, config, run_with_server, until
from ..procs import run as run_proc
from ..test_cli import ROOT

OPS = TOKENS["OPS"]
BEARER = {"Authorization": f"Bearer {OPS}"}


def serve(cfg, body):
    """``run_with_server(cfg, body)`` in a thread of its own: its ``asyncio.run`` needs a
    thread without a running event loop, and Playwright's sync API (a module's browser,
    once a page test has run) keeps one running in the main thread."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(run_with_server, cfg, body).result(timeout=120)
    finally:
        pool.shutdown(wait=False)  # a body that hung is not waited for twice


def base(server) -> str:
    host, port = server.web_address
    return f"http://{host}:{port}"


def session() -> aiohttp.ClientSession:
    """A client that keeps no cookies: each request sends what the test gives it."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=10))


async def call(http, method: str, url: str, **kw) -> tuple[int, object, aiohttp.ClientResponse]:
    """(status, JSON body or text, response)."""
    async with http.request(method, url, **kw) as r:
        text = await r.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return r.status, body, r


async def raw_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client normalizing it): (status, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                 .encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# ------------------------------------------------------------------ the operator's logon

def test_operator_logon_backoff_cookie_logout_and_bearer(tmp_path):
    async def body(server, host, port):
        url = base(server)
        server.guard.base = 1.0  # the wait after the second failure: ample for the checks
        async with session() as http:
            status, answer, r = await call(http, "GET", url + "/api/operator")
            assert status == 401 and answer["ok"] is False and "operator only" in answer["error"]

            # wrong tokens: the first is free, the second makes the next wait
            for _ in range(2):
                status, answer, r = await call(http, "POST", url + "/api/operator/login",
                                               json={"token": "not-the-token-000000"})
                assert (status, answer) == (401, {"ok": False,
                                                  "error": "not the operator's (OPS) token"})
                assert "Set-Cookie" not in r.headers
            wait = server.guard.check("OPS", "127.0.0.1", time.monotonic())
            assert wait > 0
            t0 = time.monotonic()
            for token in ("not-the-token-000000", OPS):  # refused at once, even the right one
                status, answer, r = await call(http, "POST", url + "/api/operator/login",
                                               json={"token": token})
                assert status == 429 and answer["error"].startswith(
                    "too many failed logons; retry in "), answer
                assert "Set-Cookie" not in r.headers
            assert time.monotonic() - t0 < 1.0  # refused quickly, not held open
            # a wrong bearer token is a failure too, and refused while the guard waits
            status, _, _ = await call(http, "GET", url + "/api/operator",
                                      headers={"Authorization": "Bearer wrong-wrong-wrong"})
            assert status == 401

            await until(lambda: server.guard.check("OPS", "127.0.0.1", time.monotonic()) == 0,
                        timeout=10, what="the backoff to end")
            status, answer, r = await call(http, "POST", url + "/api/operator/login",
                                           json={"token": OPS})
            assert (status, answer) == (200, {"ok": True, "operator": "OPS"})
            morsel = r.cookies[web_app.COOKIE]
            assert morsel["httponly"] and morsel["samesite"] == "Strict"
            assert morsel["path"] == "/" and int(morsel["max-age"]) == 8 * 3600
            cookie = {"Cookie": f"{web_app.COOKIE}={morsel.value}"}
            assert server.guard.check("OPS", "127.0.0.1", time.monotonic()) == 0  # reset

            status, state, _ = await call(http, "GET", url + "/api/operator", headers=cookie)
            assert status == 200 and state["instruments"] == [
                {"instrument": "CEA", "halted": False, "status": "OPEN"}]
            assert {"sessions", "commands_per_s", "ack_latency", "journal",
                    "ledger"} <= set(state)
            for bad in ("nonsense", morsel.value[:-1]):
                status, _, _ = await call(http, "GET", url + "/api/operator",
                                          headers={"Cookie": f"{web_app.COOKIE}={bad}"})
                assert status == 401

            status, answer, r = await call(http, "POST", url + "/api/operator/logout",
                                           headers=cookie)
            assert (status, answer) == (200, {"ok": True})
            assert r.cookies[web_app.COOKIE].value == ""  # the browser forgets it
            status, _, _ = await call(http, "GET", url + "/api/operator", headers=cookie)
            assert status == 401  # the session ended on the server
            status, _, _ = await call(http, "POST", url + "/api/operator/halt",
                                      headers=cookie, json={"instrument": "CEA"})
            assert status == 401 and not server.exchange.halted[0]

            status, state, _ = await call(http, "GET", url + "/api/operator", headers=BEARER)
            assert status == 200 and state["instruments"][0]["instrument"] == "CEA"

    serve(config(tmp_path, web_port=0), body)


# ------------------------------------------------------------------ halt and resume

def test_bad_halt_requests_change_nothing(tmp_path):
    async def body(server, host, port):
        url = base(server)
        halt = url + "/api/operator/halt"
        ex = server.exchange
        async with session() as http:
            seq = ex.seq
            for payload, named in (({"instrument": "NOPE"}, "'NOPE'"), ({}, "None"),
                                   ({"instrument": 5}, "5")):
                status, answer, _ = await call(http, "POST", halt, headers=BEARER,
                                               json=payload)
                assert (status, answer) == (400, {
                    "ok": False, "error": f"no instrument {named} (the exchange lists CEA)"})
            for data in (b"halt CEA", b"[\"CEA\"]", b"{\"instrument\": ", b"\xff\xfe"):
                for path in ("/api/operator/halt", "/api/operator/resume",
                             "/api/operator/login"):
                    status, answer, _ = await call(
                        http, "POST", url + path, data=data,
                        headers={**BEARER, "Content-Type": "application/json"})
                    assert (status, answer) == (400, "the body must be a JSON object")
            big = json.dumps({"instrument": "CEA", "pad": "x" * 5000}).encode()
            for path in ("/api/operator/halt", "/api/operator/login"):
                status, _, _ = await call(http, "POST", url + path, data=big,
                                          headers={**BEARER,
                                                   "Content-Type": "application/json"})
                assert status == 413
            for origin in ("http://evil.example", "null", f"http://{host}:1"):
                status, answer, _ = await call(http, "POST", halt, json={"instrument": "CEA"},
                                               headers={**BEARER, "Origin": origin})
                assert (status, answer) == (403, {"ok": False,
                                                  "error": "cross-origin request refused"})
                status, _, r = await call(http, "POST", url + "/api/operator/login",
                                          json={"token": OPS}, headers={"Origin": origin})
                assert status == 403 and "Set-Cookie" not in r.headers
            status, _, _ = await call(http, "POST", halt, json={"instrument": "CEA"})
            assert status == 401
            status, _, _ = await call(http, "GET", halt, headers=BEARER)
            assert status == 405
            assert ex.seq == seq and not ex.halted[0] and not server.web.cookies
            # from the page's own origin it goes through
            status, answer, _ = await call(
                http, "POST", halt, json={"instrument": "CEA"},
                headers={**BEARER, "Origin": url})
            assert status == 200 and answer["halted"] is True

    serve(config(tmp_path, web_port=0), body)


FIGURES = ("last", "open", "high", "low", "volume", "turnover")


def test_a_halt_through_the_web_is_journaled(tmp_path):
    """A halt made on the web survives a restart (journaled), and so do the day's figures
    the screen shows (the tape does not: frames before a restart are not kept)."""
    day = {}

    async def halt(server, host, port):
        url = base(server)
        ex = server.exchange
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b:
            for k, price in enumerate((6010, 6030, 5990, 6000)):
                await a.place(f"b{k}", "CEA", Side.BUY, 100 + k, price)
                r = await b.place(f"s{k}", "CEA", Side.SELL, 100 + k, price)
                assert r.exec in (P.ExecKind.ACCEPTED, P.ExecKind.FILL)
        seq = ex.seq
        # the tape is read every POLL_S (the figures are the stage's own, at once)
        await until(lambda: len(server.web.view.channels[0].tape) == 4, what="the tape")
        async with session() as http:
            status, market, _ = await call(http, "GET", url + "/api/market")
            listed = market["channels"][0]
            assert len(listed["trades"]) == 4
            day.update({k: listed[k] for k in FIGURES})
            assert day == {"last": 6000, "open": 6010, "high": 6030, "low": 5990,
                           "volume": 406, "turnover": sum((100 + k) * p for k, p in enumerate(
                               (6010, 6030, 5990, 6000)))}
            status, answer, _ = await call(http, "POST", url + "/api/operator/halt",
                                           headers=BEARER, json={"instrument": "CEA"})
            assert (status, answer) == (200, {"ok": True, "instrument": "CEA", "halted": True,
                                              "status": ["HALTED", "HALTED"]})
            assert ex.halted[0] and ex.seq > seq and server.durable >= ex.seq
            async with Client(host, port, "A001", TOKENS["A001"]) as a:
                r = await a.place("h1", "CEA", Side.BUY, 10, 6000)
                assert r.exec == P.ExecKind.REJECTED
                assert P.reason_name(r.reason) == "INSTRUMENT_HALTED"
            status, market, _ = await call(http, "GET", url + "/api/market")
            assert [c["status"] for c in market["channels"]] == ["HALTED", "HALTED"]

    async def still_halted_then_resume(server, host, port):
        url = base(server)
        async with session() as http:
            status, market, _ = await call(http, "GET", url + "/api/market")
            assert [c["status"] for c in market["channels"]] == ["HALTED", "HALTED"]
            listed = market["channels"][0]
            assert {k: listed[k] for k in FIGURES} == day and listed["trades"] == []
            status, state, _ = await call(http, "GET", url + "/api/operator", headers=BEARER)
            assert state["instruments"] == [
                {"instrument": "CEA", "halted": True, "status": "HALTED"}]
            status, answer, _ = await call(http, "POST", url + "/api/operator/resume",
                                           headers=BEARER, json={"instrument": "CEA"})
            # 10:00: the listed segment trades, the block segment's session is the afternoon
            assert (status, answer) == (200, {"ok": True, "instrument": "CEA", "halted": False,
                                              "status": ["OPEN", "BREAK"]})

    async def resumed(server, host, port):
        async with session() as http:
            status, market, _ = await call(http, "GET", base(server) + "/api/market")
            assert [c["status"] for c in market["channels"]] == ["OPEN", "BREAK"]
        assert not server.exchange.halted[0]

    for body in (halt, still_halted_then_resume, resumed):  # a restart each time
        serve(config(tmp_path, web_port=0), body)


# ------------------------------------------------------------------ the WebSocket

def test_websocket_hello_then_updates(tmp_path):
    async def body(server, host, port):
        url = base(server)
        async with session() as http, http.ws_connect(url + "/ws") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["instruments"] == ["CEA"]
            assert hello["operator"] == "OPS" and hello["clock"] > 0
            assert [(c["c"], c["instrument"], c["segment"], c["trades"], c["points"])
                    for c in hello["channels"]] == [(0, "CEA", "LISTED", [], []),
                                                    (1, "CEA", "BLOCK", [], [])]
            status, market, _ = await call(http, "GET", url + "/api/market")
            assert status == 200
            assert {**market, "clock": 0} == {**hello, "clock": 0}

            async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                    Client(host, port, "A002", TOKENS["A002"]) as b:
                await a.place("b1", "CEA", Side.BUY, 500, 6010)
                await b.place("s1", "CEA", Side.SELL, 200, 6000)
                t0 = time.monotonic()
                while True:  # updates come; the trade's within a second
                    msg = await ws.receive_json(timeout=2)
                    assert msg["type"] == "update"
                    listed = [c for c in msg["channels"] if c["c"] == 0]
                    if listed and listed[0]["trades"]:
                        break
                assert time.monotonic() - t0 < 1.0
                (trade,) = listed[0]["trades"]
                assert (trade["price"], trade["qty"], trade["aggressor"]) == (6010, 200, 2)
                assert (listed[0]["last"], listed[0]["volume"], listed[0]["bids"]) == (
                    6010, 200, [[6010, 300, 1]])
                assert listed[0]["points"] == [[trade["ts"] // 1_000_000 * 1_000_000, 6010,
                                                6010, 6010, 200, 6010 * 200]]
            # nothing moves (the sessions' cancels are in): an update a second, for the clock
            clock = msg["clock"]
            while True:
                msg = await ws.receive_json(timeout=2)
                if not msg["channels"]:
                    break
            assert msg["clock"] > clock
            async with http.ws_connect(url + "/ws") as late:  # a browser that comes later
                hello = await late.receive_json(timeout=5)
                assert hello["channels"][0]["trades"] == [trade]
                assert hello["channels"][0]["bids"] == []  # cancelled on disconnect

    serve(config(tmp_path, web_port=0), body)


def test_at_most_max_viewers(tmp_path, monkeypatch):
    monkeypatch.setattr(web_app, "MAX_VIEWERS", 2)

    async def body(server, host, port):
        url = base(server) + "/ws"
        async with session() as http:
            first = await http.ws_connect(url)
            second = await http.ws_connect(url)
            for ws in (first, second):
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url)
            assert refused.value.status == 503
            await first.close()
            await until(lambda: len(server.web.viewers) == 1, what="the viewer to go")
            third = await http.ws_connect(url)
            assert (await third.receive_json(timeout=5))["type"] == "hello"
            await second.close()
            await third.close()

    serve(config(tmp_path, web_port=0), body)


# ------------------------------------------------------------------ pages and files

def test_static_files_stay_in_their_folder(tmp_path):
    async def body(server, host, port):
        whost, wport = server.web_address
        status, page = await raw_get(whost, wport, "/")
        assert status == 200 and b'id="ladder-LISTED"' in page
        status, script = await raw_get(whost, wport, "/static/market.js")
        assert status == 200 and b"WebSocket" in script
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                     "/static/%2e%2e%2fapp.py", "/static/../../server.py",
                     "/static/%2e%2e/%2e%2e/server.py", "/static/..\\app.py",
                     "/static//etc/passwd", "/static/", "/static/%2fetc%2fpasswd",
                     "/../gateway/web/app.py"):
            status, data = await raw_get(whost, wport, path)
            assert status in (400, 403, 404), (path, status)
            assert b"import" not in data and b"root:" not in data, path
        async with session() as http:
            for path in ("/", "/static/market.css", "/api/market"):
                async with http.get(base(server) + path) as r:
                    assert r.status == 200
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                    assert r.headers["X-Frame-Options"] == "DENY"
                    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            async with http.get(base(server) + "/api/market") as r:
                assert r.headers["Cache-Control"] == "no-store"

    serve(config(tmp_path, web_port=0), body)


# ------------------------------------------------------------------ the operator's figures

def test_operator_figures(tmp_path):
    async def body(server, host, port):
        web = server.web
        await until(lambda: web.rates, what="the first sample of the command count")
        async with Client(host, port, "A001", TOKENS["A001"]) as a, \
                Client(host, port, "A002", TOKENS["A002"]) as b:
            for k in range(20):
                await a.place(f"b{k}", "CEA", Side.BUY, 10, 5990 - k)
            await b.place("s1", "CEA", Side.SELL, 15, 5980)
            await until(lambda: web.operator_state()["commands_per_s"]["10s"] > 0,
                        what="a command rate")
            state = web.operator_state()
            assert [(s["account"], s["protocol"]) for s in state["sessions"]] == [
                ("A001", "native"), ("A002", "native")]
            assert all(s["peer"].startswith("127.0.0.1:") for s in state["sessions"])
            assert state["commands"] == 21 and state["connections"] == 2
            lat = state["ack_latency"]
            assert lat["samples"] >= 21 and 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
            assert state["journal"]["lag_records"] >= 0 and state["journal"]["seq"] > 0
            assert state["ledger"]["enabled"] is False  # the test config has none
        await until(lambda: not web.operator_state()["sessions"], what="sessions to end")

    serve(config(tmp_path, web_port=0), body)


# ------------------------------------------------------------------ cea serve

def test_serve_on_a_busy_web_port_creates_nothing(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_proc([sys.executable, "-m", "cea", "serve", "--data-dir", str(data),
                      "--port", "0", "--web-port", str(port)], cwd=ROOT, capture_output=True,
                     text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == f"cea: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    assert r.stdout == "" and not data.exists()
