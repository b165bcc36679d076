"""The FIX acceptor against QuickFIX, the reference open-source FIX engine, as the initiator,
validating every message it gets against its FIX 4.4 data dictionary.

QuickFIX comes from PyPI (``quickfix``, built from source, a few minutes) and its dictionary
``FIX44.xml`` from the same source package; ``tests/setup_quickfix.sh`` installs both into
the virtualenv (``.ci/run`` runs it). Without them these tests skip, saying why; in CI
(``CI=true``) they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
from pathlib import Path

import pytest

from engine.codes import Side
from gateway.client import Client

from .support import TOKENS, config, run_with_server

DICTIONARY = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"


def _need_quickfix():
    why = None
    try:
        import quickfix  # noqa: F401
    except ImportError:
        why = "QuickFIX (the quickfix package) is not installed: run tests/setup_quickfix.sh"
    if why is None and not DICTIONARY.is_file():
        why = f"QuickFIX's FIX44.xml is not at {DICTIONARY}: run tests/setup_quickfix.sh"
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture
def qf():
    _need_quickfix()
    import quickfix

    return quickfix


def make_app(qf, token: str):
    class App(qf.Application):
        """Records what the initiator sees; adds the Password to its Logon."""

        def __init__(self):
            super().__init__()
            self.events: queue.Queue = queue.Queue()
            self.session = None

        def onCreate(self, session):
            self.session = session

        def onLogon(self, session):
            self.events.put(("logon", None))

        def onLogout(self, session):
            self.events.put(("logout", None))

        def toAdmin(self, message, session):
            if message.getHeader().getField(35) == "A":
                message.setField(qf.Password(token))
                message.setField(qf.StringField(8013, "N"))  # keep orders while away

        def fromAdmin(self, message, session):
            self.events.put(("admin", message.toString().replace("\x01", "|")))

        def toApp(self, message, session):
            pass

        def fromApp(self, message, session):
            self.events.put(("app", message.toString().replace("\x01", "|")))

    return App()


def settings(qf, tmp: Path, port: int, reset: bool = False) -> "qf.SessionSettings":
    text = f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={tmp}/store
FileLogPath={tmp}/log
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={DICTIONARY}
ValidateUserDefinedFields=N
HeartBtInt=30
ResetOnLogon={'Y' if reset else 'N'}
[SESSION]
BeginString=FIX.4.4
SenderCompID=A001
TargetCompID=CEA
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
"""
    path = tmp / "initiator.cfg"
    path.write_text(text)
    return qf.SessionSettings(str(path))


def fields(text: str) -> dict[int, str]:
    return {int(k): v for k, v in (p.split("=", 1) for p in text.strip("|").split("|"))}


async def next_event(app, kinds=("app",), timeout: float = 10.0):
    """The next event of ``kinds`` (others skipped), waited for off the event loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        assert left > 0, f"no {kinds} event in {timeout} s"
        kind, data = await asyncio.to_thread(app.events.get, True, left)
        if kind in kinds:
            return kind, (fields(data) if data else None)


def new_order(qf, clid: str, side: str, qty: int, price: str | None, ord_type: str = "2",
              tif: str = "0"):
    import quickfix44 as q44

    msg = q44.NewOrderSingle()
    for f in (qf.ClOrdID(clid), qf.Side(side), qf.TransactTime(), qf.OrdType(ord_type)):
        msg.setField(f)
    msg.setField(qf.Symbol("CEA"))
    msg.setField(qf.OrderQty(qty))
    if price is not None:
        msg.setField(qf.StringField(44, price))
    msg.setField(qf.TimeInForce(tif))
    return msg


def test_quickfix_initiator_trades_is_dropped_and_recovers_every_report(tmp_path, qf):
    import quickfix44 as q44

    app = make_app(qf, TOKENS["A001"])
    state = {}

    async def body(server, host, port):
        fhost, fport = server.fix_address
        initiator = qf.SocketInitiator(app, qf.FileStoreFactory(settings(qf, tmp_path, fport)),
                                       settings(qf, tmp_path, fport),
                                       qf.FileLogFactory(settings(qf, tmp_path, fport)))
        initiator.start()
        try:
            await next_event(app, ("logon",))
            sid = app.session
            # a limit order, a market IOC, a FOK that cannot fill, a reject
            qf.Session.sendToTarget(new_order(qf, "q1", "1", 1000, "60.00"), sid)
            _, er = await next_event(app)
            assert (er[35], er[150], er[39], er[11]) == ("8", "0", "0", "q1")
            async with Client(host, port, "A002", TOKENS["A002"]) as native:
                await native.place("n1", "CEA", Side.SELL, 400, 6000)
                _, fill = await next_event(app)
                assert (fill[150], fill[39], fill[32], fill[31], fill[151]) == \
                    ("F", "1", "400", "60.00", "600")
                await native.place("n2", "CEA", Side.BUY, 300, 6050)
                qf.Session.sendToTarget(new_order(qf, "q2", "2", 200, None, "1", "3"), sid)
                seen = [(await next_event(app))[1] for _ in range(2)]  # accepted, filled
                assert [(m[150], m[39], m[11]) for m in seen] == [("0", "0", "q2"),
                                                                   ("F", "2", "q2")]
                assert (seen[1][32], seen[1][31]) == ("200", "60.50")
            qf.Session.sendToTarget(new_order(qf, "q3", "2", 5000, "60.10", "2", "4"), sid)
            seen = [(await next_event(app))[1] for _ in range(2)]
            assert [m[150] for m in seen] == ["0", "4"]  # FOK: accepted, then cancelled
            qf.Session.sendToTarget(new_order(qf, "q4", "1", 100, "99.00"), sid)
            _, rej = await next_event(app)
            assert (rej[150], rej[39], rej[58]) == ("8", "8", "PRICE_OUTSIDE_BAND")
            # cancel/replace, then cancel
            repl = q44.OrderCancelReplaceRequest()
            for f in (qf.OrigClOrdID("q1"), qf.ClOrdID("q1r"), qf.Side("1"),
                      qf.TransactTime(), qf.OrdType("2")):
                repl.setField(f)
            repl.setField(qf.Symbol("CEA"))
            repl.setField(qf.OrderQty(900))
            repl.setField(qf.StringField(44, "59.90"))
            qf.Session.sendToTarget(repl, sid)
            _, rep = await next_event(app)
            assert (rep[150], rep[11], rep[41], rep[151], rep[14]) == \
                ("5", "q1r", "q1", "500", "400")
            # a resting order cancelled, and a cancel of an order that does not exist
            qf.Session.sendToTarget(new_order(qf, "q5", "2", 100, "65.00"), sid)
            assert (await next_event(app))[1][150] == "0"
            for clid, orig in (("q5c", "q5"), ("q6c", "nope")):
                cancel = q44.OrderCancelRequest()
                for f in (qf.OrigClOrdID(orig), qf.ClOrdID(clid), qf.Side("2"),
                          qf.TransactTime(), qf.Symbol("CEA")):
                    cancel.setField(f)
                qf.Session.sendToTarget(cancel, sid)
            _, can = await next_event(app)
            assert (can[35], can[150], can[39], can[11], can[41]) == ("8", "4", "4", "q5c", "q5")
            _, cxl = await next_event(app)
            assert (cxl[35], cxl[434], cxl[102], cxl[11]) == ("9", "1", "1", "q6c")
            # dropped: the connection is cut, no Logout; a fill arrives while it is away,
            # then QuickFIX reconnects by itself (ReconnectInterval) and logs on again
            server.fix_sessions["A001"].transport.abort()
            await next_event(app, ("logout",))
            async with Client(host, port, "A003", TOKENS["A003"]) as native:
                await native.place("n3", "CEA", Side.SELL, 500, 5990)
            await next_event(app, ("logon",))
            _, late = await next_event(app)
            assert (late[150], late[39], late[11], late[32], late[14]) == \
                ("F", "2", "q1r", "500", "900")
            state["ok"] = True
        finally:
            initiator.stop(True)

    run_with_server(config(tmp_path, fix_port=0), body)
    assert state.get("ok")
    # QuickFIX's own event log: nothing it rejected
    events = "".join(p.read_text() for p in (tmp_path / "log").glob("*event*"))
    # (the one socket error is the connection this test cut)
    lines = [line for line in events.splitlines() if "Socket Error" not in line]
    assert len(lines) < len(events.splitlines())
    for complaint in ("reject", "invalid", "error"):
        assert complaint not in "\n".join(lines).lower(), events
    sent = "".join(p.read_text() for p in (tmp_path / "log").glob("*messages*"))
    assert "\x0135=3\x01" not in sent  # QuickFIX sent us no session Reject


def test_quickfix_market_data_snapshot_and_incrementals(tmp_path, qf):
    import quickfix44 as q44

    app = make_app(qf, TOKENS["A001"])

    async def body(server, host, port):
        fhost, fport = server.fix_address
        cfg = settings(qf, tmp_path, fport)
        initiator = qf.SocketInitiator(app, qf.FileStoreFactory(cfg), cfg,
                                       qf.FileLogFactory(cfg))
        initiator.start()
        try:
            await next_event(app, ("logon",))
            async with Client(host, port, "A002", TOKENS["A002"]) as native:
                await native.place("b1", "CEA", Side.BUY, 300, 5990)
                req = q44.MarketDataRequest()
                req.setField(qf.MDReqID("m1"))
                req.setField(qf.SubscriptionRequestType("1"))
                req.setField(qf.MarketDepth(5))
                for t in ("0", "1", "2"):
                    group = q44.MarketDataRequest.NoMDEntryTypes()
                    group.setField(qf.MDEntryType(t))
                    req.addGroup(group)
                sym = q44.MarketDataRequest.NoRelatedSym()
                sym.setField(qf.Symbol("CEA"))
                req.addGroup(sym)
                qf.Session.sendToTarget(req, app.session)
                _, snap = await next_event(app)
                assert (snap[35], snap[262], snap[55], snap[268]) == ("W", "m1", "CEA", "1")
                assert (snap[269], snap[270], snap[271]) == ("0", "59.90", "300")
                async with Client(host, port, "A003", TOKENS["A003"]) as seller:
                    await seller.place("s1", "CEA", Side.SELL, 100, 5990)
                kinds = set()
                for _ in range(2):  # the trade, the level's new size
                    _, inc = await next_event(app)
                    assert inc[35] == "X" and inc[262] == "m1"
                    kinds.add((inc[279], inc[269]))
                assert kinds == {("0", "2"), ("1", "0")}
        finally:
            initiator.stop(True)

    run_with_server(config(tmp_path, fix_port=0), body)
    events = "".join(p.read_text() for p in (tmp_path / "log").glob("*event*"))
    for complaint in ("reject", "invalid", "error"):
        assert complaint not in events.lower(), events
    sent = "".join(p.read_text() for p in (tmp_path / "log").glob("*messages*"))
    assert "\x0135=3\x01" not in sent  # QuickFIX sent us no session Reject
