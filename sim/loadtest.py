"""``cea loadtest``: open-loop load against ``cea serve`` on loopback, latency in HdrHistograms.

Open loop: every order has a scheduled send time (``rate`` per second, spread over the
sessions) and is sent then, whatever the replies; its latency is measured from that
scheduled time, so a server that falls behind shows it in full (no coordinated omission).

Sessions come in pairs: a buyer resting DAY buys at 60.00 and a seller sending IOC sells at
60.00, so about every sell trades on arrival. Measured per order: scheduled send to its first
report (ACCEPTED or REJECTED, ``ack``), and for the IOC sells, scheduled send to their fill
report (``fill``). Several processes (``processes``) share the load when one cannot offer it.
Everything is bounded: loopback only, at most ``MAX_SECONDS`` per run.

Each session is one thread-free ``select`` loop with µs timeouts (asyncio's timers are whole
milliseconds).
"""

from __future__ import annotations

import json
import multiprocessing
import re
import select
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from gateway import protocol as P

MAX_SECONDS = 60.0
MAX_RATE = 1_000_000
HOST = "127.0.0.1"  # loopback only, by design
PRICE = 6000


def _histogram():
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, 60_000_000, 3)


def run_worker(port: int, rate: float, seconds: float, pairs: list[tuple[tuple[str, str],
               tuple[str, str]]], tag: str) -> dict:
    """One process: ``pairs`` of ((buyer, token), (seller, token)) sessions sharing ``rate``."""
    sessions = []
    for (buyer, btok), (seller, stok) in pairs:
        for account, token, side in ((buyer, btok, 1), (seller, stok, 2)):
            sock = socket.create_connection((HOST, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = P.FrameReader(P.SERVER_MESSAGES, max_frame=1 << 20)
            sock.sendall(P.encode(P.Logon(account, token, True, 60_000)))
            got = []
            while not got:
                got = [m for m in reader.feed(sock.recv(65536))
                       if isinstance(m, (P.LogonAck, P.LogonReject))]
            if isinstance(got[0], P.LogonReject):
                raise RuntimeError(f"{account}: logon refused: {got[0].text}")
            sock.setblocking(False)
            sessions.append((sock, reader, side))
    n = int(rate * seconds)
    interval = 1.0 / rate
    ack, fill = _histogram(), _histogram()
    counts = {"sent": 0, "acked": 0, "filled": 0, "rejected": 0}
    by_fd = {s.fileno(): (s, r) for s, r, _ in sessions}
    start = time.perf_counter() + 0.05
    deadline = start + seconds + 10
    sent = 0
    while (sent < n or counts["acked"] < n) and time.perf_counter() < deadline:
        now = time.perf_counter()
        due = min(n, int((now - start) / interval) + 1) if now >= start else 0
        while sent < due:  # order i goes on session i mod sessions
            sock, _, side = sessions[sent % len(sessions)]
            tif = 1 if side == 1 else 2
            sock.sendall(P.encode(P.NewOrder(f"{tag}{sent}", "CEA", side, 1, PRICE, 1, tif)))
            sent += 1
        counts["sent"] = sent
        wait = max(0.0, start + sent * interval - time.perf_counter()) if sent < n else 0.05
        readable, _, _ = select.select(list(by_fd), [], [], wait)
        t = time.perf_counter()
        for fd in readable:
            sock, reader = by_fd[fd]
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("the server closed a session")
            for m in reader.feed(data):
                if type(m) is not P.ExecutionReport or not m.cl_ord_id.startswith(tag):
                    continue
                i = int(m.cl_ord_id[len(tag):])
                us = max(1, int((t - (start + i * interval)) * 1e6))
                if m.exec <= 2:
                    ack.record_value(us)
                    counts["acked"] += 1
                    counts["rejected"] += m.exec == 2
                elif m.exec in (3, 4) and m.side == 2:  # the IOC sell traded on arrival
                    fill.record_value(us)
                    counts["filled"] += 1
    elapsed = time.perf_counter() - start
    for sock, _, _ in sessions:
        sock.close()
    return {"counts": counts, "elapsed": elapsed,
            "ack": ack.encode().decode(), "fill": fill.encode().decode()}


def _worker_entry(args):
    return run_worker(*args)


def percentiles(hist) -> dict:
    if hist.get_total_count() == 0:
        return {}
    return {"p50_us": hist.get_value_at_percentile(50),
            "p90_us": hist.get_value_at_percentile(90),
            "p99_us": hist.get_value_at_percentile(99),
            "p999_us": hist.get_value_at_percentile(99.9),
            "max_us": hist.get_max_value(), "count": hist.get_total_count()}


def load(port: int, rate: int, seconds: float, pairs: list, processes: int = 1) -> dict:
    """One open-loop run; ``pairs`` of sessions are split over ``processes``."""
    from hdrh.histogram import HdrHistogram

    if not 0 < rate <= MAX_RATE or not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"rate must be 1..{MAX_RATE}/s and duration 0..{MAX_SECONDS} s")
    processes = max(1, min(processes, len(pairs)))
    shares = [pairs[i::processes] for i in range(processes)]
    tag = f"L{time.monotonic_ns() % 10**9}-"
    jobs = [(port, rate * len(share) / len(pairs), seconds, share, f"{tag}{k}-")
            for k, share in enumerate(shares)]
    if processes == 1:
        results = [run_worker(*jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_worker_entry, jobs)
    ack, fill = _histogram(), _histogram()
    counts = {"sent": 0, "acked": 0, "filled": 0, "rejected": 0}
    for r in results:
        ack.add(HdrHistogram.decode(r["ack"].encode()))
        fill.add(HdrHistogram.decode(r["fill"].encode()))
        for k in counts:
            counts[k] += r["counts"][k]
    elapsed = max(r["elapsed"] for r in results)
    return {"offered_per_s": rate, "seconds": seconds, "sessions": 2 * len(pairs),
            "processes": processes, **counts,
            "achieved_per_s": round(counts["acked"] / elapsed),
            "ack": percentiles(ack), "fill": percentiles(fill),
            "_ack_hist": ack}


def write_report(runs: list[dict], out: Path, p99_bound_us: int | None = None) -> dict:
    """``loadtest.json`` and plots: the percentile curve of each run's acknowledgement
    latency, and with several rates, latency against offered rate."""
    out.mkdir(parents=True, exist_ok=True)
    from .plots import _pyplot, save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        hist = run["_ack_hist"]
        pts = [(p, hist.get_value_at_percentile(p)) for p in
               (0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100) if hist.get_total_count()]
        if pts:
            xs = [1 / (1 - p / 100) if p < 100 else 1e5 for p, _ in pts]
            ax.plot(xs, [v for _, v in pts], marker="o", ms=3,
                    label=f"{run['offered_per_s']:,}/s offered")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1, 2, 10, 100, 1000, 1e4, 1e5])
    ax.set_xticklabels(["0", "50", "90", "99", "99.9", "99.99", "max"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("send → acknowledgement, µs")
    save(plt, fig, ax, out / "latency.png", "cea loadtest: latency by percentile (open loop)")
    report = {"runs": [{k: v for k, v in run.items() if not k.startswith("_")} for run in runs]}
    if len(runs) > 1:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        rates = [r["offered_per_s"] for r in runs]
        for key, label in (("p50_us", "p50"), ("p99_us", "p99")):
            ax.plot(rates, [r["ack"].get(key) for r in runs], marker="o", label=label)
        if p99_bound_us:
            ax.axhline(p99_bound_us, color="red", ls=":", label=f"p99 bound {p99_bound_us} µs")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered orders/s")
        ax.set_ylabel("send → acknowledgement, µs")
        save(plt, fig, ax, out / "sweep.png", "cea loadtest: latency against offered rate")
    if p99_bound_us:
        held = [r["offered_per_s"] for r in runs
                if r["ack"] and r["ack"]["p99_us"] <= p99_bound_us
                and r["acked"] >= 0.99 * r["offered_per_s"] * r["seconds"]]
        report["p99_bound_us"] = p99_bound_us
        report["highest_rate_held"] = max(held, default=None)
    (out / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def accounts_for(pairs: int) -> tuple[str, str, list]:
    """Accounts and tokens CSV texts for ``pairs`` buyer/seller pairs, and the pairs."""
    accounts = ["account,type,cash,CEA"]
    tokens = ["account,token"]
    out = []
    for i in range(pairs):
        buyer, seller = f"LB{i:03d}", f"LS{i:03d}"
        accounts += [f"{buyer},INSTITUTION,1000000000.00,0", f"{seller},INSTITUTION,0.00,100000000"]
        tokens += [f"{buyer},t-{buyer}", f"{seller},t-{seller}"]
        out.append(((buyer, f"t-{buyer}"), (seller, f"t-{seller}")))
    return "\n".join(accounts) + "\n", "\n".join(tokens) + "\nOPS,t-ops\n", out


@contextmanager
def local_server(data_root: Path, accounts_csv: str, tokens_csv: str, fsync: bool = True,
                 start: str = "2024-03-04T09:30:00", extra: tuple[str, ...] = (),
                 workdir: Path | None = None):
    """``cea serve`` in a subprocess on a free loopback port, for the given accounts and
    tokens, rate limit off; yields the port; stopped (SIGTERM) on exit. Its files go in
    ``workdir`` (data in ``workdir/data``), or a fresh directory under ``data_root``;
    ``extra`` are more ``cea serve`` options."""
    import signal
    import subprocess
    import sys
    import tempfile

    d = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(dir=data_root))
    d.mkdir(parents=True, exist_ok=True)
    (d / "tokens.csv").write_text(tokens_csv)
    (d / "accounts.csv").write_text(accounts_csv)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cea", "serve", "--data-dir", str(d / "data"), "--port", "0",
         "--tokens", str(d / "tokens.csv"), "--accounts", str(d / "accounts.csv"),
         "--start", start, "--rate-limit", "0", "--fsync", "on" if fsync else "off", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stdout:
        m = re.search(r"listening on [\d.]+:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        _, err = proc.communicate()
        raise RuntimeError(f"cea serve did not start: {err}")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
