"""``cea serve --web-port``: the live screen in headless Chromium, against a real server.

One ``cea serve --web-port 0 --fsync off`` subprocess for the module, its sim clock at
13:05 on a Monday (the listed and block segments both open), four instruments so that each
test has a book of its own, and clients that stay logged on (their own event loop in a
thread) to place orders and halt instruments while the page is open. The page must show:

- the resting orders on the listed and block ladders, aggregated per price (quantity and
  number of orders), asks above bids, as they change while it is open;
- a trade on the tape within a second of being made, with last, open, high, low, volume
  and the close in the making updated; block trades marked B;
- an instrument the operator halts (through the gateway, or the page's own operator panel)
  as HALTED on both segments, and OPEN again on resume;
- the operator panel only for the operator's token: a wrong one is refused and the panel
  stays hidden (``GET /api/operator`` without the cookie is 401); the right one shows the
  sessions logged on, acknowledgement latency and commands per second;
- no script error on the page, anywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from engine.codes import Side
from engine.rules import closing_price
from gateway import protocol as P
from gateway.client import Client

from .. import procs
from ..gateway.support import server_process
from ..test_cli import ROOT

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

START = "2026-12-07T13:05:00"  # a Monday, 13:05: both segments trade
PRIOR = {"CEA": 6000, "CEB": 5000, "CEC": 4000, "CED": 3000}  # fen
ACCOUNTS = [f"L{k}" for k in range(1, 11)]  # L9, L10: the load test's
WAIT_MS = 5_000  # what the page may take to show a state it was sent (bounded waits)
TRADE_MS = 1_000  # a trade on the tape within a second


class Desk:
    """Clients of the server on an event loop of their own (a thread): they stay logged on
    between the test's calls, so resting orders rest (cancel-on-disconnect) and the operator
    panel lists them."""

    def __init__(self, port: int, tokens: dict[str, str]):
        self.port, self.tokens = port, tokens
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.clients: dict[str, Client] = {}

    def run(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def client(self, account: str) -> Client:
        if account not in self.clients:
            async def connect():
                c = Client("127.0.0.1", self.port, account, self.tokens[account])
                await c.connect()
                return c

            self.clients[account] = self.run(connect())
        return self.clients[account]

    def place(self, account: str, clid: str, instrument: str, side: int, qty: int,
              price: int) -> P.ExecutionReport:
        r = self.run(self.client(account).place(clid, instrument, side, qty, price))
        assert r.exec == P.ExecKind.ACCEPTED, (clid, r, P.reason_name(r.reason))
        return r

    def fills(self, account: str, clid: str) -> list[P.ExecutionReport]:
        return [r for r in self.client(account).reports if r.cl_ord_id == clid
                and r.exec in (P.ExecKind.FILL, P.ExecKind.PARTIAL_FILL)]

    def close(self) -> None:
        async def close_all():
            for c in self.clients.values():
                await c.close()

        try:
            self.run(close_all(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Live:
    def __init__(self, url: str, desk: Desk, tokens: dict[str, str]):
        self.url, self.desk, self.tokens = url, desk, tokens


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    files = tmp_path_factory.mktemp("live")
    tokens = {a: f"{a}-live-token-{k:05d}" for k, a in enumerate(ACCOUNTS + ["OPS"])}
    (files / "tokens.csv").write_text(
        "account,token\n" + "".join(f"{a},{t}\n" for a, t in tokens.items()))
    (files / "accounts.csv").write_text(
        "account,type,cash," + ",".join(PRIOR) + "\n" + "".join(
            f"{a},COVERED_ENTITY,1000000000.00," + ",".join("1000000" for _ in PRIOR) + "\n"
            for a in ACCOUNTS))
    closes = [arg for name, fen in PRIOR.items()
              for arg in ("--prior-close", f"{name}={fen // 100}.{fen % 100:02d}")]
    with server_process(files / "data", "--web-port", "0", "--fsync", "off", "--ledger",
                        "off", "--start", START, "--tokens", str(files / "tokens.csv"),
                        "--accounts", str(files / "accounts.csv"), *closes) as (proc, port,
                                                                                 out):
        m = re.search(r"^cea serve: web view on (http://127\.0\.0\.1:\d+/) \(operator panel: "
                      r"the OPS account's token\)$", out, re.M)
        assert m, out
        assert out.index("web view on") < out.index("listening on")
        desk = Desk(port, tokens)
        try:
            yield Live(m.group(1), desk, tokens)
        finally:
            desk.close()
            assert proc.poll() is None, "the server stopped during the tests"


def open_page(page, live: Live, instrument: str):
    """The live screen, its WebSocket up, showing ``instrument``. Console errors are kept in
    ``page.console_errors`` (a Content-Security-Policy violation is one, not a script error);
    the operator API's expected refusals (401) are not counted."""
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and "status of 401" not in m.text
            and page.console_errors.append(m.text))
    page.goto(live.url)
    expect(page.locator("#conn-status")).to_have_text("LIVE", timeout=WAIT_MS)
    page.select_option("#instrument", label=instrument)
    expect(page.locator("#title")).to_have_text(instrument)
    return page


def rows(page, selector: str) -> list[tuple]:
    """The ladder rows ``selector`` matches: (data-price, price, qty, orders) each."""
    return [tuple(r) for r in page.eval_on_selector_all(selector, """rs => rs.map(r => [
        Number(r.dataset.price), r.querySelector('td.price').textContent,
        r.querySelector('td.qty').textContent, r.querySelector('td.orders').textContent])""")]


def tape(page) -> list[tuple]:
    return [tuple(r) for r in page.eval_on_selector_all("#tape tbody tr", """rs => rs.map(r => [
        r.querySelector('td.time').textContent, r.querySelector('td.seg').textContent,
        r.querySelector('td.price').textContent, r.querySelector('td.qty').textContent])""")]


def clock(ts_us: int) -> str:
    """Exchange µs -> the page's HH:MM:SS."""
    s = ts_us // 1_000_000 % 86_400
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def fen(x: int) -> str:
    return f"{x // 100:,}.{x % 100:02d}"


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------ the books

def test_ladders_show_the_resting_orders(live, page):
    desk = live.desk
    desk.place("L1", "a-b1", "CEA", Side.BUY, 500, 5990)
    desk.place("L1", "a-b2", "CEA", Side.BUY, 700, 5980)
    desk.place("L2", "a-b3", "CEA", Side.BUY, 300, 5990)  # the same level: 800 t, 2 orders
    desk.place("L2", "a-s1", "CEA", Side.SELL, 400, 6020)
    desk.place("L1", "a-s2", "CEA", Side.SELL, 1500, 6030)
    desk.place("L3", "a-k1", "CEA", Side.BUY, 150_000, 5900)  # block: 100,000 t and over
    desk.place("L3", "a-k2", "CEA", Side.SELL, 120_000, 6200)
    open_page(page, live, "CEA")

    expect(page.locator("#clock")).to_have_text(re.compile(r"^2026-12-07 13:\d\d:\d\d$"))
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("OPEN")
    # asks from the highest down to the best, then the spread, then bids from the best down
    assert rows(page, "#ladder-LISTED tr.ask") == [(6030, "60.30", "1,500", "1"),
                                                   (6020, "60.20", "400", "1")]
    assert rows(page, "#ladder-LISTED tr.bid") == [(5990, "59.90", "800", "2"),
                                                   (5980, "59.80", "700", "1")]
    assert page.inner_text("#ladder-LISTED tr.spread") == "spread 0.30"
    assert page.eval_on_selector_all("#ladder-LISTED tr", "rs => rs.map(r => r.className)") \
        == ["", "ask", "ask", "spread", "bid", "bid"]
    assert rows(page, "#ladder-BLOCK tr.bid") == [(5900, "59.00", "150,000", "1")]
    assert rows(page, "#ladder-BLOCK tr.ask") == [(6200, "62.00", "120,000", "1")]
    for stat, text in (("#stat-band-listed", "54.00 – 66.00"),
                       ("#stat-band-block", "42.00 – 78.00"), ("#stat-prior", "60.00"),
                       ("#stat-last", "—"), ("#stat-volume", "0 t")):
        assert page.inner_text(stat) == text, stat
    assert page.locator("#chart canvas").count() >= 1  # uPlot drew
    assert page.is_visible("#tape-empty")

    # while the page is open: a level grows, a new one comes, one goes
    desk.place("L4", "a-b4", "CEA", Side.BUY, 100, 5990)
    desk.place("L4", "a-b5", "CEA", Side.BUY, 50, 6000)
    desk.run(desk.client("L2").cancel_wait("a-s1"))
    expect(page.locator("#ladder-LISTED tr.bid[data-price='5990'] td.qty")).to_have_text(
        "900", timeout=WAIT_MS)
    assert rows(page, "#ladder-LISTED tr.bid") == [(6000, "60.00", "50", "1"),
                                                   (5990, "59.90", "900", "3"),
                                                   (5980, "59.80", "700", "1")]
    assert rows(page, "#ladder-LISTED tr.ask") == [(6030, "60.30", "1,500", "1")]
    desk.place("L4", "a-k3", "CEA", Side.BUY, 100_000, 5900)
    expect(page.locator("#ladder-BLOCK tr.bid[data-price='5900'] td.qty")).to_have_text(
        "250,000", timeout=WAIT_MS)
    assert rows(page, "#ladder-BLOCK tr.bid") == [(5900, "59.00", "250,000", "2")]
    assert page.errors == [] and page.console_errors == []


# ------------------------------------------------------------------ trades

def test_a_trade_reaches_the_tape_within_a_second(live, page):
    desk = live.desk
    desk.place("L5", "b-s1", "CEB", Side.SELL, 300, 5020)
    desk.place("L5", "b-s2", "CEB", Side.SELL, 200, 5030)
    open_page(page, live, "CEB")
    expect(page.locator("#ladder-LISTED tr.ask")).to_have_count(2)
    assert page.locator("#tape tbody tr").count() == 0

    t0 = time.monotonic()
    desk.place("L6", "b-b1", "CEB", Side.BUY, 200, 5020)  # crosses: 200 t at 50.20
    made = time.monotonic()
    expect(page.locator("#tape tbody tr")).to_have_count(1, timeout=TRADE_MS)
    seen = time.monotonic()
    assert seen - made < TRADE_MS / 1000, f"{seen - made:.3f} s"
    (fill,) = desk.fills("L6", "b-b1")
    assert tape(page) == [(clock(fill.ts_us), "L", "50.20", "200")]
    assert page.locator("#tape tbody tr td:last-child").first.inner_text() == "buyer"
    for stat, text in (("#stat-last", "50.20"), ("#stat-open", "50.20"),
                       ("#stat-high", "50.20"), ("#stat-low", "50.20"),
                       ("#stat-volume", "200 t"), ("#stat-vwap", "50.20"),
                       ("#stat-change", "+0.20 (+0.40 %)")):
        expect(page.locator(stat)).to_have_text(text)
    print(f"trade on the tape {seen - made:.3f} s after it was made "
          f"({seen - t0:.3f} s after the order was sent)")

    # one order sweeping two levels: two trades, newest first on the tape
    desk.place("L6", "b-b2", "CEB", Side.BUY, 250, 5030)
    expect(page.locator("#tape tbody tr")).to_have_count(3, timeout=TRADE_MS)
    t2 = clock(desk.fills("L6", "b-b2")[-1].ts_us)
    assert tape(page)[:2] == [(t2, "L", "50.30", "150"), (t2, "L", "50.20", "100")]
    turnover, volume = 200 * 5020 + 100 * 5020 + 150 * 5030, 450
    for stat, text in (("#stat-last", "50.30"), ("#stat-open", "50.20"),
                       ("#stat-high", "50.30"), ("#stat-low", "50.20"),
                       ("#stat-volume", "450 t"),
                       ("#stat-vwap", fen(closing_price(turnover, volume, 5000)))):
        expect(page.locator(stat)).to_have_text(text)
    expect(page.locator("#ladder-LISTED tr.spread")).to_have_text("one side only")
    assert rows(page, "#ladder-LISTED tr.ask") == [(5030, "50.30", "50", "1")]

    # a block trade (a seller hitting a resting block bid): marked B, block volume
    desk.place("L5", "b-k1", "CEB", Side.BUY, 100_000, 5100)
    desk.place("L6", "b-k2", "CEB", Side.SELL, 100_000, 5100)
    expect(page.locator("#tape tbody tr")).to_have_count(4, timeout=TRADE_MS)
    assert tape(page)[0][1:] == ("B", "51.00", "100,000")
    assert page.locator("#tape tbody tr td:last-child").first.inner_text() == "seller"
    expect(page.locator("#stat-block-volume")).to_have_text("100,000 t")
    expect(page.locator("#stat-volume")).to_have_text("450 t")  # listed only
    assert not page.inner_text("#chart-note").startswith("no trades yet")
    assert page.errors == [] and page.console_errors == []


# ------------------------------------------------------------------ halts

def test_a_halt_shows_on_the_page(live, page):
    desk = live.desk
    open_page(page, live, "CEC")
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("OPEN")
    ops = desk.client("OPS")
    ack = desk.run(ops.halt("CEC"))
    assert ack.ok, ack
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("HALTED", timeout=WAIT_MS)
    r = desk.run(desk.client("L7").place("c-b1", "CEC", Side.BUY, 10, 4000))
    assert P.reason_name(r.reason) == "INSTRUMENT_HALTED"
    # the other instruments trade on
    page.select_option("#instrument", label="CEA")
    expect(page.locator("#status-LISTED")).to_have_text("OPEN")
    page.select_option("#instrument", label="CEC")
    expect(page.locator("#status-LISTED")).to_have_text("HALTED")
    ack = desk.run(ops.resume("CEC"))
    assert ack.ok, ack
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("OPEN", timeout=WAIT_MS)
    assert page.errors == [] and page.console_errors == []


# ------------------------------------------------------------------ the operator panel

def test_the_operator_panel_needs_the_token(live, page):
    desk = live.desk
    api = live.url + "api/operator"
    status, answer = get(api)
    assert status == 401 and answer["ok"] is False
    open_page(page, live, "CED")
    assert page.is_hidden("#operator")
    page.click("#op-toggle")
    expect(page.locator("#operator")).to_be_visible()
    expect(page.locator("#op-login")).to_be_visible()
    assert page.is_hidden("#op-panel")

    page.fill("#op-token", "not-the-operator-token")
    page.click("#op-login-btn")
    expect(page.locator("#op-error")).to_have_text(
        "refused: not the operator's (OPS) token", timeout=WAIT_MS)
    assert page.is_hidden("#op-panel") and page.input_value("#op-token") == ""
    assert page.evaluate("fetch('/api/operator').then(r => r.status)") == 401

    # sessions trading, commands in the last seconds: what the panel should show
    for account in ("L7", "L8"):
        desk.client(account)
    for k in range(30):
        desk.place("L7", f"d-b{k}", "CED", Side.BUY, 10, 2990 - k)
    page.fill("#op-token", live.tokens["OPS"])
    page.click("#op-login-btn")
    expect(page.locator("#op-panel")).to_be_visible(timeout=WAIT_MS)
    assert page.is_hidden("#op-login") and page.inner_text("#op-error") == ""
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it
    sessions = page.locator("#op-sessions tbody tr td:first-child")
    expect(sessions).to_have_text(sorted(desk.clients), timeout=WAIT_MS)
    expect(page.locator("#op-rate")).to_have_text(re.compile(r"^[\d,]+ · [1-9][\d,]*$"),
                                                  timeout=WAIT_MS)
    latency = page.inner_text("#op-latency")
    p50, p99 = (int(x.replace(",", "")) for x in latency.split(" · "))
    assert 0 < p50 <= p99, latency
    assert page.inner_text("#op-journal").endswith("(fsync off)")
    assert page.inner_text("#op-ledger") == "off"
    row = page.locator("#op-instruments tbody tr[data-instrument='CED']")
    expect(page.locator("#op-instruments tbody tr")).to_have_count(len(PRIOR))

    # halt and resume from the panel
    row.locator("button.halt").click()
    expect(page.locator("#op-result")).to_have_text(
        "CED: halted (listed HALTED, block HALTED)", timeout=WAIT_MS)
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("HALTED", timeout=WAIT_MS)
    r = desk.run(desk.client("L8").place("d-s1", "CED", Side.SELL, 10, 3000))
    assert P.reason_name(r.reason) == "INSTRUMENT_HALTED"
    row.locator("button.resume").click(timeout=WAIT_MS)
    expect(page.locator("#op-result")).to_have_text(
        "CED: resumed (listed OPEN, block OPEN)", timeout=WAIT_MS)
    for seg in ("LISTED", "BLOCK"):
        expect(page.locator(f"#status-{seg}")).to_have_text("OPEN", timeout=WAIT_MS)
    expect(row.locator("button.halt")).to_be_visible(timeout=WAIT_MS)

    # log off: the cookie no longer opens it
    page.click("#op-logout")
    expect(page.locator("#op-panel")).to_be_hidden(timeout=WAIT_MS)
    expect(page.locator("#op-login")).to_be_visible()
    assert page.evaluate("fetch('/api/operator').then(r => r.status)") == 401
    assert page.errors == [] and page.console_errors == []


# ------------------------------------------------------------------ stopping

def test_watching_a_load_test_run_against_the_server(live, page, tmp_path):
    """The issue's scenario: cea serve --web-port runs, the page is open, and cea loadtest
    --server-port loads that server: the page's tape and volume move while it runs."""
    tokens = tmp_path / "load-tokens.csv"
    tokens.write_text("account,token\n" + "".join(f"{a},{live.tokens[a]}\n"
                                                    for a in ("OPS", "L9", "L10")))
    open_page(page, live, "CEA")
    before = int(page.locator("#stat-volume").inner_text().split()[0].replace(",", ""))
    port = live.desk.port
    out = tmp_path / "lt"
    proc = procs.popen([sys.executable, "-m", "cea", "loadtest", "--server-port", str(port),
                        "--token-file", str(tokens), "--rate", "400", "--duration", "2",
                        "--out", str(out), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    try:
        # while it runs: trades of 1 t at 60.00 reach the tape, the volume grows
        expect(page.locator("#tape tbody tr td.price").first).to_have_text("60.00",
                                                                         timeout=WAIT_MS)
        expect(page.locator("#tape tbody tr td.qty").first).to_have_text("1")
        o, e = proc.communicate(timeout=120)
    finally:
        procs.kill_group(proc)
    assert proc.returncode == 0, o + e
    run = json.loads((out / "loadtest.json").read_text())["runs"][0]
    assert run["sent"] == 800 and run["acked"] == 800, run
    assert run["filled"] > 0  # one trade of 1 t per fill the load test counted
    expect(page.locator("#stat-volume")).to_have_text(f"{before + run['filled']:,} t",
                                                      timeout=WAIT_MS)
    assert page.errors == [] and page.console_errors == []


def test_the_server_stops_with_a_browser_watching(tmp_path, page):
    """Ctrl-C with a page open: the server closes the WebSocket and exits 0 promptly; the
    page says it is disconnected."""
    with server_process(tmp_path / "data", "--web-port", "0", "--fsync", "off", "--ledger",
                        "off", "--start", START) as (proc, port, out):
        url = re.search(r"web view on (http://\S+/)", out).group(1)
        open_page(page, Live(url, None, {}), "CEA")
        assert page.console_errors == []
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 10
    expect(page.locator("#conn-status")).to_have_text("DISCONNECTED", timeout=WAIT_MS)
    assert page.errors == []
    # the page tries again every 2 s: those attempts fail, nothing else
    assert all(e.startswith("WebSocket connection to") for e in page.console_errors), \
        page.console_errors
