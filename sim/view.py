"""``cea view DIR``: a finished ``cea simulate`` or ``cea replay`` output directory as one JSON
document, and the small web server that shows it (``gateway/web/static/view.html``).

``load_run`` reads the directory's files (``days.csv``, ``summary.json``, ``agents.csv`` when
there) into a dict the page draws: the daily closes with their ±10 % listed and ±30 % block
bands (``engine.rules.band_limits``), the listed and block volume, the surrender deadlines,
the real SEEE close where the run overlaps it, each agent's P&L and the run's summary; the
same content as the PNG plots (``sim.plots``), for a browser. As everywhere at the exchange's
edges, prices and money are integer fen, quantities integer tonnes, dates ``YYYY-MM-DD``: the
page formats them.

``serve`` answers ``GET /`` (the page), ``GET /api/run`` (the dict) and ``/static/...``
(loopback by default) until Ctrl-C or SIGTERM; the directory is read once, before it listens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Callable

from engine.codes import Segment
from engine.csvfile import read_csv
from engine.rules import band_limits
from engine.units import parse_fen

from . import replay, simout
from .plots import DEADLINES, deadlines_in_range, real_closes, rolled_deadlines

SIMULATE, REPLAY = "simulate", "replay"
#: A CNY amount as ``summary.json`` writes it: two decimals, always.
_CNY_TEXT = re.compile(r"-?[0-9]+\.[0-9]{2}")


class ViewError(ValueError):
    """The directory cannot be shown, or the server cannot listen: one line saying why."""


# ---------------------------------------------------------------------- reading

def run_kind(out: Path) -> str:
    """``simulate`` or ``replay``, told by the columns of ``out/days.csv`` (a simulation's
    are ``cea match``'s, a replay's its own) and the presence of ``summary.json``."""
    out = Path(out)
    if not out.exists():
        raise ViewError(f"{out}: no such directory")
    if not out.is_dir():
        raise ViewError(f"{out} is a file, not an output directory")
    missing = [n for n in ("days.csv", "summary.json") if not (out / n).is_file()]
    if missing:
        raise ViewError(f"{out}: not a cea simulate or cea replay output directory (no "
                        f"{' or '.join(missing)})")
    header, _ = read_csv(out / "days.csv", "a days.csv file", ViewError, same_width=False)
    for kind, columns in ((SIMULATE, simout.DAY_COLUMNS), (REPLAY, replay.DAY_COLUMNS)):
        if tuple(header) == tuple(columns):
            return kind
    raise ViewError(f"{out / 'days.csv'}: its columns are neither cea simulate's nor cea "
                    "replay's")


def read_table(path: Path, columns, money, text=()) -> list[dict]:
    """The rows of the CSV table ``path`` (its header exactly ``columns``) as dicts: the
    ``money`` columns in fen, ``text`` ones as written, the others integers; empty is None."""
    header, rows = read_csv(path, f"a {path.name} file", ViewError)
    if tuple(header) != tuple(columns):
        raise ViewError(f"{path}: expected the columns {','.join(columns)}")
    out = []
    for line, row in rows:
        record = {}
        for name, cell in zip(columns, row):
            cell = cell.strip()
            if name in text:
                value = cell
            elif not cell:
                value = None
            elif name in money:
                value = parse_fen(cell, negative=True)
            else:
                value = int(cell) if cell.lstrip("-").isdigit() else None
            if value is None and cell and name not in text:
                what = "CNY with 2 decimals" if name in money else "an integer"
                raise ViewError(f"{path}:{line}: {name} {cell!r} is not {what}")
            record[name] = value
        out.append(record)
    return out


def read_summary(path: Path) -> dict:
    """``summary.json`` with its CNY amounts in fen: a ``..._cny`` key loses the suffix,
    and every CNY string (``"81.35"``) becomes an integer (``8135``), nested ones too."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ViewError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ViewError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ViewError(f"{path}: not a summary (a JSON object)")

    def fen(value):
        if isinstance(value, dict):
            return {k.removesuffix("_cny"): fen(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fen(v) for v in value]
        if isinstance(value, str) and _CNY_TEXT.fullmatch(value):
            return parse_fen(value, negative=True)
        return value

    return fen(data)


def _bands(prior_close: int) -> dict:
    """The day's accepted price range in each segment (``engine.rules.band_limits``)."""
    (llo, lhi), (blo, bhi) = (band_limits(prior_close, s) for s in (Segment.LISTED,
                                                                      Segment.BLOCK))
    return {"listed_low": llo, "listed_high": lhi, "block_low": blo, "block_high": bhi}


def _simulate_days(out: Path) -> list[dict]:
    rows = read_table(out / "days.csv", simout.DAY_COLUMNS, simout.DAY_MONEY, ("date",))
    return [{**r, **_bands(r["prior_close"]),
             "turnover": r["listed_turnover"] + r["block_turnover"]} for r in rows]


def _replay_days(out: Path) -> list[dict]:
    """The replayed figures under the names a simulation's have (``close``,
    ``listed_volume``, ...), the published ones as ``hist_...``, the replay's own columns."""
    text = tuple(f.name for f in dataclasses.fields(replay.ReplayedDay) if f.type == "str")
    money = tuple(c for c in replay.DAY_COLUMNS if replay.price_column(c))
    days = []
    for r in read_table(out / "days.csv", replay.DAY_COLUMNS, money, text):
        days.append({
            "date": r["date"], "prior_close": r["prior_close"], "close": r["replayed_close"],
            **_bands(r["prior_close"]), "listed_volume": r["replayed_listed_volume"] or 0,
            "block_volume": r["replayed_block_volume"] or 0, "listed_turnover": None,
            "block_turnover": None, "turnover": None, "basis": r["basis"],
            "gap_before": bool(r["gap_before"]), "feasible": bool(r["feasible"]),
            "reason": r["reason"], "hist_close": r["hist_close"],
            "target_close": r["target_close"], "close_error_ticks": r["close_error_ticks"],
            "hist_listed_volume": r["hist_listed_volume"],
            "hist_block_volume": r["hist_block_volume"]})
    return days


def _simulate_deadlines(summary: dict, first: dt.date, last: dt.date) -> list[dt.date]:
    """The run's surrender deadlines: the first one it passed (``compliance``), or the end
    of the generated population's compliance period, rolled a year on after each."""
    from ledger.compliance import PERIODS

    passed = [row.get("deadline") for row in summary.get("compliance") or []]
    period = (summary.get("population") or {}).get("compliance_period")
    known = [d for d in passed if d] + [p.deadline.isoformat() for p in PERIODS
                                        if p.name == period]
    return rolled_deadlines(min(known), first, last) if known else []


def load_run(out: str | os.PathLike) -> dict:
    """Everything the page shows of the output directory ``out``, JSON-able: ``kind``,
    ``directory``, ``first_day``, ``last_day``, ``seed``, ``days`` (per day: close, prior
    close, band limits, volumes, turnover; a replay's flags), ``deadlines``, ``real`` (the
    real close per date where the run overlaps the SEEE series), ``agents`` (``agents.csv``
    or None), ``totals`` and ``summary`` (``summary.json``, money in fen). ``ViewError`` if
    it is neither a simulation's nor a replay's output or a file does not read."""
    out = Path(out)
    kind = run_kind(out)
    summary = read_summary(out / "summary.json")
    days = _simulate_days(out) if kind == SIMULATE else _replay_days(out)
    if not days:
        raise ViewError(f"{out / 'days.csv'}: no days")
    first, last = (dt.date.fromisoformat(days[i]["date"]) for i in (0, -1))
    if kind == SIMULATE:
        deadlines = _simulate_deadlines(summary, first, last)
        real = [{"date": h.date, "close": h.close, "gap_before": h.gap_before}
                for h in real_closes(first, last)]
    else:
        deadlines = deadlines_in_range(DEADLINES, first, last)
        real = [{"date": d["date"], "close": d["hist_close"], "gap_before": d["gap_before"]}
                for d in days]
    agents = None
    if (out / "agents.csv").is_file():
        agents = read_table(out / "agents.csv", simout.AGENT_COLUMNS, simout.AGENT_MONEY,
                            simout.AGENT_TEXT)
    closes = [d["close"] for d in days]
    return {
        "kind": kind, "directory": out.resolve().name, "path": str(out.resolve()),
        "first_day": days[0]["date"], "last_day": days[-1]["date"],
        "seed": summary.get("seed") if kind == SIMULATE else None,
        "days": days, "deadlines": [d.isoformat() for d in deadlines], "real": real,
        "agents": agents,
        "totals": {
            "days": len(days), "listed_volume": sum(d["listed_volume"] for d in days),
            "block_volume": sum(d["block_volume"] for d in days),
            "turnover": sum(d["turnover"] for d in days) if kind == SIMULATE else None,
            "first_close": closes[0], "last_close": closes[-1], "min_close": min(closes),
            "max_close": max(closes)},
        "summary": summary,
    }


# ---------------------------------------------------------------------- serving

_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                   "style-src 'self' 'unsafe-inline'"}


def make_app(run: dict):
    """The aiohttp application showing ``run`` (``load_run``'s dict)."""
    import msgspec
    from aiohttp import web

    from gateway.web import STATIC

    body = msgspec.json.encode(run)

    async def page(request):
        return web.FileResponse(STATIC / "view.html", headers={"Cache-Control": "no-cache",
                                                                **_HEADERS})

    async def api(request):
        return web.Response(body=body, content_type="application/json",
                            headers={"Cache-Control": "no-store", **_HEADERS})

    app = web.Application()
    app.add_routes([web.get("/", page), web.get("/api/run", api),
                    web.static("/static", STATIC, show_index=False, follow_symlinks=False)])
    return app


def url_of(host: str, port: int) -> str:
    """``http://host:port/``, an IPv6 address in brackets.

    >>> url_of("127.0.0.1", 8080), url_of("::1", 8080)
    ('http://127.0.0.1:8080/', 'http://[::1]:8080/')
    """
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def _serve(app, host: str, port: int, ready: Callable[[str], None]) -> None:
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            why = e.strerror if isinstance(e, socket.gaierror) or not e.errno else \
                os.strerror(e.errno)
            raise ViewError(f"cannot listen on {host}:{port}: {why}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready(url_of(*runner.addresses[0][:2]))
        await stop.wait()
    finally:
        await runner.cleanup()


def serve_app(app, host: str = "127.0.0.1", port: int = 0,
              ready: Callable[[str], None] = print) -> None:
    """Listen on ``host``:``port`` (0: any free port), call ``ready(url)``, and serve
    ``app`` until SIGINT or SIGTERM. ``ViewError`` for an address it cannot listen on."""
    asyncio.run(_serve(app, host, port, ready))


def serve(out: str | os.PathLike, host: str = "127.0.0.1", port: int = 0,
          ready: Callable[[str], None] = print) -> None:
    """Show the output directory ``out`` (``load_run``, ``make_app``, ``serve_app``)."""
    serve_app(make_app(load_run(out)), host, port, ready)


__all__ = ["REPLAY", "SIMULATE", "ViewError", "load_run", "make_app", "read_summary",
           "read_table", "run_kind", "serve", "serve_app", "url_of"]
