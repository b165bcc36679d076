"""The pipeline's stages in process, without sockets.

- Differential: random turns of frames (valid, malformed, duplicate ids, other accounts' ids,
  cancels, amends, MassCancels) through admission, sequencer, apply and reports give, per
  account, exactly the reports a plain-Python reference derives from the engine's own
  embedding API (``engine.Engine``) fed the same commands; the books and balances end equal.
- The journal the turns wrote rebuilds the same state (``Exchange.apply``).
- Gateway answers (THROTTLED, INSTRUMENT_HALTED) come in sequence, do not use up an id, and
  are not journaled; a MassCancel's AdminAck follows its cancels; the order table's handles,
  growth and pickling.
"""

from __future__ import annotations

import pickle
import random
from collections import defaultdict

import numpy as np
import pytest

from engine import AmendOrder, CancelOrder, Engine, NewOrder, RiskConfig
from engine.book import state_hash
from engine.codes import NO_REF, OrderType, Reason, Side, TimeInForce
from engine.tradingdays import TradingCalendar, parse_time
from gateway import protocol as P
from gateway.admission import Admission
from gateway.exchange import SYSTEM, AdminOp, Exchange, Genesis
from gateway.reports import Output, rebuild_reports
from gateway.sequencer import Sequencer

INSTRUMENTS = [("CEA", 6000), ("CEB", 5000)]
ACCOUNTS = [("A001", 10**12, 10**7), ("A002", 10**12, 10**7), ("A003", 2_000_000, 300)]
T0 = parse_time("2024-03-04T10:00:00")
BIG = 1 << 40


class Pipeline:
    """An exchange with its stages, fed frames the way the server feeds them."""

    def __init__(self):
        self.ex = Exchange(Genesis(INSTRUMENTS, operator="OPS"))
        self.adm = Admission(self.ex, capacity=4)  # tiny: the arrays must grow
        self.out = Output(capacity=64)
        self.seq = Sequencer(self.ex, self.adm, self.out)
        self.records: list = []
        ops = []
        for name, cash, tonnes in ACCOUNTS:
            ops += [AdminOp(0, "OPEN_ACCOUNT", account=name, value=1),
                    AdminOp(0, "DEPOSIT", account=name, value=cash)]
            ops += [AdminOp(0, "ALLOWANCE_IN", account=name, instrument=i, value=tonnes)
                    for i, _ in INSTRUMENTS]
        self.turn([], ts=0, system=[(SYSTEM, op) for op in ops])
        self.handles = {name: self.ex.account_handle(name) for name, _, _ in ACCOUNTS}
        self.stream: dict = defaultdict(list)  # per account handle: its sequenced frames

    def turn(self, sends, ts, system=(), budget=BIG, share=4096, max_open=0):
        """``sends``: (account name, frame bytes) in arrival order. Returns each account's
        messages."""
        self.adm.begin(ts)
        for name, data in sends:
            account = self.handles[name]
            inbuf = bytearray(data)
            while inbuf:
                consumed, used, _, error, more = self.adm.take(
                    inbuf, account, share, budget, BIG,
                    lambda frame, a=account: self._packed(a, frame), 32, max_open)
                assert error is None
                del inbuf[:consumed]
                budget -= used
                if not more:
                    break
        turn = self.seq.run(list(system))
        self.records += turn.records
        g = self.out.grouped(len(self.ex.engine.accounts), self.ex.seq)
        got = {}
        for a, start, size, first, count in zip(g.accounts.tolist(), g.starts.tolist(),
                                                g.sizes.tolist(), g.firsts.tolist(),
                                                g.counts.tolist()):
            msgs = P.FrameReader(P.SERVER).feed(g.buffer[start:start + size].tobytes())
            # every report of an order event is the account's next in its stream; the
            # gateway's own answers are not in it
            numbered = [m.report_seq for m in msgs if getattr(m, "report_seq", 0)]
            assert numbered == list(range(first, first + count))
            assert numbered[:1] in ([], [len(self.stream[a]) + 1])
            self.stream[a] += [P.encode(m) for m in msgs if getattr(m, "report_seq", 0)]
            got[self.ex.account_name(a)] = [
                m.__class__(**{**_fields(m), "report_seq": 0}) if isinstance(
                    m, P.ExecutionReport) else m for m in msgs]
        return got, turn

    def _packed(self, account, frame):
        msg = P.FrameReader(P.CLIENT).feed(frame)[0]
        self.adm.special(account, msg)
        return False


class Reference:
    """The same commands through ``engine.Engine``; the reports derived in plain Python."""

    def __init__(self):
        self.eng = Engine(dict(INSTRUMENTS), calendar=TradingCalendar.xshg(weekdays_beyond=True),
                          risk=RiskConfig())
        self.eng.accounts.handle("OPS")  # the operator is account 0 in the exchange too
        for name, cash, tonnes in ACCOUNTS:
            self.eng.open_account(name)
            self.eng.deposit(name, cash)
            for i, _ in INSTRUMENTS:
                self.eng.allowance_in(name, tonnes, i)
        self.filled: dict[str, int] = defaultdict(int)
        self.resting: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)  # acceptance order
        self.index = {name: i for i, (name, _) in enumerate(INSTRUMENTS)}

    def run(self, account: str, cmd, clid: str, kind: str, out: dict) -> None:
        """One command; appends the expected reports to ``out[account]``."""
        for e in self.eng.submit(cmd):
            name = type(e).__name__
            if name == "OrderRejected":
                x = {"NEW": P.ExecKind.REJECTED, "CANCEL": P.ExecKind.CANCEL_REJECTED,
                     "AMEND": P.ExecKind.AMEND_REJECTED}[kind]
                out[account].append(P.ExecutionReport(x, clid, e.ts_us, reason=int(e.reason)))
                continue
            if name == "TradeExecuted":
                for acct, order, side, left in ((e.buy_account, e.buy_order_id, 1, e.buy_open),
                                                (e.sell_account, e.sell_order_id, 2,
                                                 e.sell_open)):
                    self.filled[order] += e.qty
                    if left == 0:
                        self.resting[acct].pop(order, None)
                    out[acct].append(P.ExecutionReport(
                        P.ExecKind.FILL if left == 0 else P.ExecKind.PARTIAL_FILL,
                        order.split("/", 1)[1], e.ts_us, self.index[e.instrument], e.segment,
                        side, e.price, e.qty, self.filled[order], left, 0, e.trade_id))
                continue
            acct, order = e.account, e.order_id
            common = (order.split("/", 1)[1], e.ts_us, self.index[e.instrument], e.segment,
                      int(e.side))
            if name == "OrderAccepted":
                self.resting[acct][order] = (self.index[e.instrument], int(e.side))
                out[acct].append(P.ExecutionReport(P.ExecKind.ACCEPTED, *common, e.price,
                                                   e.qty, 0, e.qty))
            elif name == "OrderCancelled":
                self.resting[acct].pop(order, None)
                out[acct].append(P.ExecutionReport(P.ExecKind.CANCELLED, *common, e.price,
                                                   e.qty, e.filled, 0, int(e.reason)))
            elif name == "OrderAmended":
                out[acct].append(P.ExecutionReport(P.ExecKind.AMENDED, *common, e.price,
                                                   e.qty, self.filled[order], e.qty))
            else:
                raise AssertionError(f"unexpected event {e}")

    def mass_cancel(self, account, ts, instrument: str, side: int, out) -> None:
        i = self.index.get(instrument, -1) if instrument else -1
        if instrument and i < 0:
            out[account].append(P.AdminAck("MassCancel", False,
                                           P.GatewayReason.UNKNOWN_INSTRUMENT,
                                           f"no instrument {instrument!r}"))
            return
        orders = [o for o, (oi, os) in self.resting[account].items()
                  if (i < 0 or oi == i) and (side == 0 or os == side)]
        for o in orders:
            self.run(account, CancelOrder(ts, account, o), o.split("/", 1)[1], "CANCEL", out)
        out[account].append(P.AdminAck("MassCancel", True, 0, f"{len(orders)} orders cancelled"))


def _random_command(rng: random.Random, account: str, used: dict):
    """(frame bytes, engine command or ('MASS', instrument, side), clid, kind)."""
    r = rng.random()
    mine = used[account]
    if r < 0.06:
        instrument = rng.choice(["", "", "CEA", "CEB", "NOPE"])
        side = rng.choice([0, 0, 1, 2])
        return P.encode(P.MassCancel(instrument, side)), ("MASS", instrument, side), "", "MASS"
    if r < 0.12 and (mine or used):
        kind = rng.choice(["CANCEL", "AMEND"])
    elif r < 0.3 and mine:
        kind = rng.choice(["CANCEL", "CANCEL", "AMEND"])
    else:
        kind = "NEW"
    # the id: fresh, reused, another account's, or malformed
    q = rng.random()
    if kind != "NEW" or q < 0.08:
        pool = mine or ["zz"]
        if q < 0.1:
            other = rng.choice([a for a in used if a != account])
            pool = used[other] or pool
        clid = rng.choice(pool)
    else:
        clid = f"c{len(mine)}-{rng.randrange(10**6)}"
    raw = P.encode_clid(clid)
    if rng.random() < 0.04:
        raw, clid = rng.choice([b"", b"a b", b"\x01x", b"x\x00y"]), None
    order_id = f"{account}/{clid}" if clid is not None else ""
    echo = P.decode_clid(bytes(raw).ljust(20, b"\0"))
    if kind == "NEW":
        instrument = rng.choice([0, 0, 0, 1, 1]) if rng.random() > 0.03 else 7
        base = INSTRUMENTS[instrument][1] if instrument < 2 else 6000
        side = rng.choice([1, 2]) if rng.random() > 0.03 else rng.choice([0, 3])
        type_ = OrderType.MARKET if rng.random() < 0.08 else OrderType.LIMIT
        tif = rng.choice([TimeInForce.DAY] * 6 + [TimeInForce.IOC, TimeInForce.FOK])
        if type_ == OrderType.MARKET and rng.random() < 0.8:
            tif = TimeInForce.IOC
        stp = rng.choice([1, 1, 1, 2, 3]) if rng.random() > 0.02 else 9
        qty = rng.choice([rng.randint(1, 300)] * 20 + [0, 150_000, 200_000_000])
        price = None if type_ == OrderType.MARKET else base + rng.randint(-30, 30)
        if rng.random() < 0.04:
            price = rng.choice([None, 0, -5, 9 * 10**18, base])
        frame = P.encode_raw_clid(P.MsgType.NEW_ORDER, raw, instrument, side, type_, tif, stp,
                                  qty, price)
        cmd = NewOrder(0, account, order_id, side, qty, price, type_, tif, stp,
                       INSTRUMENTS[instrument][0] if instrument < 2 else "NOPE")
        if clid is not None and clid not in mine:
            mine.append(clid)
        return frame, cmd, echo, kind
    if kind == "CANCEL":
        return (P.encode_raw_clid(P.MsgType.CANCEL, raw), CancelOrder(0, account, order_id),
                echo, kind)
    price = rng.choice([6000 + rng.randint(-40, 40)] * 10 + [None, 0])
    qty = rng.choice([rng.randint(1, 300)] * 10 + [0, 120_000])
    return (P.encode_raw_clid(P.MsgType.AMEND, raw, qty, price),
            AmendOrder(0, account, order_id, price, qty), echo, kind)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_turns_report_exactly_what_the_engine_api_does(seed):
    rng = random.Random(seed)
    pipe, ref = Pipeline(), Reference()
    used: dict = {name: [] for name, _, _ in ACCOUNTS}
    ts = T0
    for _ in range(150):
        ts += rng.randint(1, 1000)
        sends, expected = [], defaultdict(list)
        for _ in range(rng.randint(1, 12)):
            account = rng.choice(list(used))
            frame, cmd, echo, kind = _random_command(rng, account, used)
            if sends and sends[-1][0] == account and rng.random() < 0.7:
                sends[-1] = (account, sends[-1][1] + frame)  # one read, several frames
            else:
                sends.append((account, frame))
            if kind == "MASS":
                ref.mass_cancel(account, ts, cmd[1], cmd[2], expected)
            else:
                ref.run(account, cmd.__class__(**{**_fields(cmd), "ts_us": ts}), echo, kind,
                        expected)
        got, _ = pipe.turn(sends, ts)
        assert {a: m for a, m in got.items() if m} == {a: m for a, m in expected.items() if m}
    ex, eng = pipe.ex, ref.eng
    assert len(ex.orders) == len(eng.orders)
    assert state_hash(ex.engine.book, len(ex.orders)) == state_hash(eng.book, len(eng.orders))
    for array in ("cash", "holdings", "risk"):
        assert np.array_equal(getattr(ex.engine.balances, array), getattr(eng.balances, array))
    ex.engine.check_invariants()
    # the journal those turns wrote rebuilds the same exchange
    replayed = Exchange(Genesis(INSTRUMENTS, operator="OPS"))
    for seq, record in pipe.records:
        replayed.apply(seq, pickle.loads(pickle.dumps(record)))
    assert replayed.state_hash() == ex.state_hash()
    # ... and the same report stream of every account, numbers and all
    rebuilt, rseq, out = defaultdict(list), np.zeros(64, np.int64), Output(64)
    replayed = Exchange(Genesis(INSTRUMENTS, operator="OPS"))
    for seq, record in pipe.records:
        g = rebuild_reports(replayed, replayed.apply(seq, record), rseq, out, seq)
        if g is not None:
            for a, start, size in zip(g.accounts.tolist(), g.starts.tolist(), g.sizes.tolist()):
                rebuilt[a] += [P.encode(m) for m in P.FrameReader(P.SERVER).feed(
                    g.buffer[start:start + size].tobytes())]
    assert dict(rebuilt) == {a: s for a, s in pipe.stream.items() if s}
    again = pickle.loads(pickle.dumps(ex))  # a snapshot
    assert again.state_hash() == ex.state_hash()
    assert again.orders.find(pipe.handles["A001"], used["A001"][0]) == \
        ex.orders.find(pipe.handles["A001"], used["A001"][0])


def _fields(cmd) -> dict:
    return {f: getattr(cmd, f) for f in cmd.__struct_fields__}


def test_gateway_answers_come_in_sequence_and_leave_no_trace():
    pipe = Pipeline()
    a = P.encode
    frames = (a(P.NewOrder("b1", 0, 1, 10, 5990)) + a(P.NewOrder("b2", 0, 1, 10, 5991))
              + a(P.NewOrder("b3", 0, 1, 10, 5992)) + a(P.Cancel("b1")))
    got, turn = pipe.turn([("A001", frames)], T0, budget=2)  # the third and fourth throttled
    reports = got["A001"]
    assert [(r.exec, r.cl_ord_id, r.reason) for r in reports] == [
        (P.ExecKind.ACCEPTED, "b1", 0), (P.ExecKind.ACCEPTED, "b2", 0),
        (P.ExecKind.REJECTED, "b3", P.GatewayReason.THROTTLED),
        (P.ExecKind.CANCEL_REJECTED, "b1", P.GatewayReason.THROTTLED)]
    assert pipe.ex.order_handle("A001", "b3") == NO_REF  # the id is still free
    journaled = sum(len(r.cmds) // 48 for _, r in turn.records if hasattr(r, "cmds"))
    assert journaled == 2
    # halted: NEW and AMEND refused by the gateway, CANCEL goes through
    pipe.turn([], T0 + 1, system=[(SYSTEM, AdminOp(T0 + 1, "HALT", instrument="CEA"))])
    got, _ = pipe.turn([("A001", a(P.NewOrder("h1", 0, 1, 5, 5990)) + a(P.Amend("b2", 5995, 5))
                         + a(P.NewOrder("h2", 1, 1, 5, 5000)) + a(P.Cancel("b2")))], T0 + 2)
    assert [(r.exec, r.cl_ord_id, r.reason) for r in got["A001"]] == [
        (P.ExecKind.REJECTED, "h1", P.GatewayReason.INSTRUMENT_HALTED),
        (P.ExecKind.AMEND_REJECTED, "b2", P.GatewayReason.INSTRUMENT_HALTED),
        (P.ExecKind.ACCEPTED, "h2", 0),  # another instrument
        (P.ExecKind.CANCELLED, "b2", Reason.USER)]
    assert pipe.ex.order_handle("A001", "h1") == NO_REF
    # a MassCancel's acknowledgement follows its cancels; what follows it comes after
    got, _ = pipe.turn([("A002", a(P.NewOrder("s1", 1, 2, 5, 5100))
                         + a(P.MassCancel("", 0)) + a(P.NewOrder("s2", 1, 2, 5, 5100)))], T0 + 3)
    assert [type(m).__name__ + ":" + getattr(m, "cl_ord_id", "") for m in got["A002"]] == [
        "ExecutionReport:s1", "ExecutionReport:s1", "AdminAck:", "ExecutionReport:s2"]
    assert got["A002"][2].text == "1 orders cancelled"


def test_order_table_grows_and_finds_every_id():
    pipe = Pipeline()
    n = 20_000
    f = P.order_frames(n)
    f["cl_ord_id"] = np.char.add(b"g", np.arange(n).astype("S12"))
    f["side"], f["qty"], f["price"] = 1, 1, 5400 + np.arange(n) % 100
    pipe.turn([("A001", f.tobytes())], T0, share=n)
    table = pipe.ex.orders
    assert len(table) == n and table.table.shape[0] >= 2 * n
    acct = pipe.handles["A001"]
    for i in (0, 1, 4095, 4096, 12345, n - 1):
        assert table.name(table.find(acct, f"g{i}")) == f"g{i}"
        assert table.find(pipe.handles["A002"], f"g{i}") == NO_REF
    again = pickle.loads(pickle.dumps(table))
    assert again.state_bytes() == table.state_bytes() and again.find(acct, "g777") == 777
    # a second NewOrder with a known id: the same handle, rejected DUPLICATE_ORDER_ID
    got, _ = pipe.turn([("A001", P.encode(P.NewOrder("g5", 0, 1, 1, 5500)))], T0 + 1)
    assert (got["A001"][0].exec, got["A001"][0].reason) == (P.ExecKind.REJECTED,
                                                            Reason.DUPLICATE_ORDER_ID)
    assert len(table) == n


def test_budget_counts_every_message_and_heartbeats_cost_nothing_when_throttled():
    pipe = Pipeline()
    adm = pipe.adm
    adm.begin(T0)
    data = bytearray(P.encode(P.Heartbeat()) * 3 + P.encode(P.BalanceRequest())
                     + P.encode(P.NewOrder("q1", 0, Side.BUY, 1, 5990)))
    handled = []
    consumed, used, queries, error, more = adm.take(
        data, pipe.handles["A001"], 4096, 10, 1, lambda frame: handled.append(frame) or False, 32)
    # one query allowed: the first heartbeat; two heartbeats dropped, the BalanceRequest
    # answered THROTTLED, the order admitted
    assert (consumed, used, queries, error, more) == (len(data), 5, 1, None, False)
    assert len(handled) == 1 and adm.rows == 1 and adm.answers == 1
    ack = P.FrameReader(P.SERVER).feed(adm.gw_buf[:int(adm.meta[2])].tobytes())
    assert ack == [P.AdminAck("BalanceRequest", False, P.GatewayReason.THROTTLED)]


def test_open_order_limit_bounds_what_one_account_rests():
    pipe = Pipeline()
    a = P.encode
    frames = b"".join(a(P.NewOrder(f"r{i}", 0, 1, 1, 5900 + i)) for i in range(5))
    got, _ = pipe.turn([("A001", frames)], T0, max_open=3)
    assert [(r.cl_ord_id, r.exec, r.reason) for r in got["A001"]] == [
        ("r0", P.ExecKind.ACCEPTED, 0), ("r1", P.ExecKind.ACCEPTED, 0),
        ("r2", P.ExecKind.ACCEPTED, 0),
        ("r3", P.ExecKind.REJECTED, P.GatewayReason.OPEN_ORDER_LIMIT),
        ("r4", P.ExecKind.REJECTED, P.GatewayReason.OPEN_ORDER_LIMIT)]
    account = pipe.handles["A001"]
    assert pipe.ex.orders.n_open[account] == 3 and pipe.ex.order_handle("A001", "r3") == NO_REF
    # a fill or a cancel makes room again
    got, _ = pipe.turn([("A002", a(P.NewOrder("s", 0, 2, 1, 5902)))], T0 + 1, max_open=3)
    got, _ = pipe.turn([("A001", a(P.Cancel("r0")) + a(P.NewOrder("r3", 0, 1, 1, 5800)))],
                       T0 + 2, max_open=3)
    assert [r.exec for r in got["A001"]] == [P.ExecKind.CANCELLED, P.ExecKind.ACCEPTED]
    assert pipe.ex.orders.n_open[account] == 2
    again = pickle.loads(pickle.dumps(pipe.ex))
    assert again.orders.n_open[account] == 2


def test_a_journal_of_the_msgpack_protocol_still_replays():
    """Records written before the binary protocol (``OrderBatchV1``: ids as text) are
    converted as they are read; an id that cannot be a 20-byte id is refused, clearly."""
    from engine import batch as B
    from engine.codes import Action

    from gateway.exchange import OrderBatch, OrderBatchV1

    def exchange():
        ex = Exchange(Genesis(INSTRUMENTS, operator="OPS"))
        ex.apply(1, AdminOp(0, "OPEN_ACCOUNT", account="A001", value=1))
        ex.apply(2, AdminOp(0, "DEPOSIT", account="A001", value=10**9))
        return ex

    cmds = B.empty_commands(2)
    cmds["ts"], cmds["order"], cmds["account"], cmds["action"] = T0, [0, 1], 1, Action.NEW
    cmds["side"], cmds["type"], cmds["tif"], cmds["stp"] = 1, 1, 1, 1
    cmds["qty"], cmds["price"], cmds["instrument"] = 10, [5990, 4990], [0, 1]
    old, new = exchange(), exchange()
    old.apply(3, OrderBatchV1(cmds.tobytes(), [(1, "o1"), (1, "o2")]))
    rows = np.zeros(2, dtype=[("account", "<i4"), ("instrument", "<i2"), ("cl_ord_id", "S20")])
    rows["account"], rows["instrument"], rows["cl_ord_id"] = 1, [0, 1], [b"o1", b"o2"]
    new.apply(3, OrderBatch(cmds.tobytes(), 0, rows.tobytes()))
    assert old.state_hash() == new.state_hash()
    assert old.order_handle("A001", "o2") == 1 and old.orders.instr[1] == 1
    with pytest.raises(ValueError, match="does not fit"):
        exchange().apply(3, OrderBatchV1(cmds.tobytes(), [(1, "x" * 30), (1, "o2")]))
