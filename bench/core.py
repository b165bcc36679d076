"""Matching-core benchmark: the reference book against the Numba book on one seeded stream.

Scenario (size: ``orders`` commands, default 1,000,000, of ``bench.streams.generate_stream``:
one instrument, one morning, 58 % NEW LIMIT DAY / 29 % CANCEL / 10 % IOC, FOK and MARKET /
3 % AMEND, a few thousand resting orders). Four runs over the same commands, each on a fresh
book:

(a) reference: ``ReferenceBook.submit_batch`` over the stream, or over its first
    ``reference_orders`` commands (then its ns/command is of that prefix, and says so);
(b) numba batch: ``FastBook.submit_batch(cmds, copy=False)``, the whole stream in one call,
    ``BATCH_ROUNDS`` rounds (median reported; min and max in the JSON), plus as many rounds
    with ``copy=True`` (the event rows copied out, as the default call does) and, for
    information, ``DEFAULT_ROUNDS`` rounds on a book left at its default capacities, whose
    arrays grow inside the call;
(c) numba single: one ``submit_batch`` call per command (``cmds[i:i+1]``), each call's latency
    recorded in an HdrHistogram, in ns;
(d) numba batch64: one call per 64 commands, ``BATCH64_ROUNDS`` rounds (median reported).

What is timed: the ``submit_batch`` call alone, with ``time.perf_counter_ns`` (slicing the
commands, copying events out and recording latencies are outside; the garbage collector is
off during the per-call loops, whose kept events are the harness's garbage, and on for the
reference, whose allocations are its own cost). In (b)-(d) the fast book is sized from the
stream (slots and order handles: the number of NEW rows; event rows: what the stream
produces plus room for every order to rest), so nothing grows inside a timed call (checked,
and reported). Before any timing a tiny stream runs through throwaway books: the first Numba
call of the process loads the kernels from Numba's on-disk cache or compiles them, and that
call's time is ``jit_compile_s``, with whether the cache was warm (if the kernels were already
loaded in this process, a fresh subprocess measures it). The four runs must agree: event rows
equal (per-call events concatenated, their CMD column renumbered to the stream index; the
reference on a prefix against the same prefix of the batch's events) and equal
``state_hash``. Targets (printed, never asserted): Numba batch <= 100 ns a command, and >= 10x
the reference.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from engine import batch as B
from engine.book import state_hash
from engine.codes import Action, EventKind, Reason
from engine.tradingdays import TradingCalendar

from .streams import MIX, PRIOR_CLOSE, TRADING_DATE, generate_stream, stream_stats

TARGET_NS = 100  # Numba batch, ns per command
TARGET_SPEEDUP = 10  # Numba batch vs the reference
BATCH_ROUNDS = 5
BATCH64_ROUNDS = 3
DEFAULT_ROUNDS = 3
BUSY_CPUS = 0.3  # CPUs kept busy by others before the run above which the figures are suspect
MICRO_BATCH = 64
WARMUP_COMMANDS = 512
HIST_LOW_NS, HIST_HIGH_NS, HIST_DIGITS = 1, 60_000_000_000, 3

_ROOT = Path(__file__).resolve().parents[1]

# run in a fresh interpreter when this process has already loaded the kernels
_JIT_PROBE = """
import json, time
t0 = time.perf_counter()
from engine.fast import kernels as K
from engine.fast.book import FastBook
from engine.tradingdays import TradingCalendar
from bench.streams import PRIOR_CLOSE, TRADING_DATE, generate_stream
import_s = time.perf_counter() - t0
cmds = generate_stream(%d, seed=1)
book = FastBook([PRIOR_CLOSE], TradingCalendar.from_dates([TRADING_DATE]))
t0 = time.perf_counter_ns()
book.submit_batch(cmds)
compile_ns = time.perf_counter_ns() - t0
st = K.run_batch.stats
print(json.dumps(dict(compile_ns=compile_ns, import_s=import_s, cache_path=st.cache_path,
                      hits=sum(st.cache_hits.values()), misses=sum(st.cache_misses.values()))))
"""


def run_core_benchmark(orders: int = 1_000_000, seed: int = 7, json_path=None,
                       reference_orders: int | None = None,
                       echo: Callable[[str], None] = print) -> dict:
    """Run (a)-(d) over ``orders`` generated commands; print a table, optionally write JSON.

    Returns the figures (the JSON's content). Exits with status 1 (``SystemExit``) after
    printing and writing them if the four runs do not produce identical results.
    """
    n = int(orders)
    busy_before = cpus_busy()
    if busy_before is not None and busy_before > BUSY_CPUS:
        echo(f"warning: other processes kept {busy_before:.1f} CPUs busy just before the run: "
             f"the figures may be inflated")
    source = _engine_source()  # before the kernels load: the code this run times
    calendar = TradingCalendar.from_dates([TRADING_DATE])
    jit = _warm_up(calendar)
    echo(f"kernels ready: first call {jit['jit_compile_s']:.2f} s ({jit['jit_note']})")

    t0 = time.perf_counter()
    cmds = generate_stream(n, seed)
    generate_s = time.perf_counter() - t0
    stats = stream_stats(cmds)
    new = cmds["action"] == Action.NEW
    n_new = int(np.count_nonzero(new))
    echo(f"stream: {n:,} commands (seed {seed}) generated in {generate_s:.2f} s")

    # (b) one batch; the first, untimed pass sizes the event buffer for the timed rounds
    sizing = _fast_book(n_new, event_rows=2 * n + 1024)
    ev_batch = sizing.submit_batch(cmds)
    event_rows = len(ev_batch) + n_new + 1024  # the kernel wants room for every resting order
    del sizing
    echo(f"numba, one batch: {BATCH_ROUNDS} rounds without and with copying the events out")
    batch_ns, copy_ns, grew = [], [], False
    batch_book = None
    for r in range(BATCH_ROUNDS):
        for copy in (False, True):
            book = _fast_book(n_new, event_rows)
            arrays = _array_ids(book)
            t0 = time.perf_counter_ns()
            ev = book.submit_batch(cmds, copy=copy)
            dt = time.perf_counter_ns() - t0
            grew |= _array_ids(book) != arrays
            (copy_ns if copy else batch_ns).append(dt / n)
            if not np.array_equal(ev, ev_batch):
                raise SystemExit("cea: error: the Numba book gave different events on a rerun")
            if copy and r == BATCH_ROUNDS - 1:
                batch_book = book
            del ev
    trades = int(np.count_nonzero(ev_batch[:, B.KIND] == EventKind.TRADE))
    # for information: a book left at its default capacities grows inside the call
    default_ns = []
    for _ in range(DEFAULT_ROUNDS):
        book = _default_book()
        t0 = time.perf_counter_ns()
        ev = book.submit_batch(cmds, copy=False)
        default_ns.append((time.perf_counter_ns() - t0) / n)
        if not np.array_equal(ev, ev_batch):
            raise SystemExit("cea: error: the Numba book gave different events on a rerun")
    del book, ev

    # (c) one call per command
    echo(f"numba, one call per command: {n:,} calls")
    single = _per_call(cmds, n_new, 1)
    # (d) micro-batches
    echo(f"numba, batches of {MICRO_BATCH}: {BATCH64_ROUNDS} rounds")
    micro = [_per_call(cmds, n_new, MICRO_BATCH)]
    micro_rounds_same = True
    for _ in range(BATCH64_ROUNDS - 1):  # keep only the first round's book and events
        m = _per_call(cmds, n_new, MICRO_BATCH)
        micro_rounds_same &= _same(micro[0]["events"], m["events"])
        micro.append({"ns": m["ns"], "grew": m["grew"]})

    # (a) reference, last: the longest run
    n_ref = min(int(reference_orders), n) if reference_orders else n
    echo(f"reference: {n_ref:,} commands" + ("" if n_ref == n else f" (prefix of {n:,})"))
    ref_book, ev_ref, ref_total_ns = _reference_run(calendar, cmds[:n_ref])
    reference_ns = ref_total_ns / n_ref

    # identical results
    echo("checking results (event rows and state hashes)")
    hash_batch = state_hash(batch_book, n_new)
    identical = {
        "single_events": _same(ev_batch, single["events"]),
        "batch64_events": _same(ev_batch, micro[0]["events"]),
        "batch64_rounds_events": micro_rounds_same,
        "single_state_hash": state_hash(single["book"], n_new) == hash_batch,
        "batch64_state_hash": state_hash(micro[0]["book"], n_new) == hash_batch,
    }
    ref_prefix_events = ev_batch if n_ref == n else ev_batch[ev_batch[:, B.CMD] < n_ref]
    identical["reference_events"] = _same(ref_prefix_events, ev_ref)
    n_new_ref = int(np.count_nonzero(new[:n_ref]))
    if n_ref == n:
        identical["reference_state_hash"] = state_hash(ref_book, n_new) == hash_batch
    else:
        prefix_book = _fast_book(n_new_ref, len(ev_ref) + n_new_ref + 1024)
        prefix_book.submit_batch(cmds[:n_ref])
        identical["reference_state_hash"] = (
            state_hash(ref_book, n_new_ref) == state_hash(prefix_book, n_new_ref))
    all_identical = all(identical.values())
    mismatch = None
    if not identical["reference_events"]:
        mismatch = _first_difference(ev_ref, ref_prefix_events, ("reference", "numba_batch"))
    elif not all_identical:
        mismatch = _first_difference(ev_batch, single["events"], ("numba_batch", "single")) or \
            _first_difference(ev_batch, micro[0]["events"], ("numba_batch", "batch64"))

    numba_batch_ns = float(np.median(batch_ns))
    micro_ns = [m["ns"] for m in micro]
    result = {
        "orders": n,
        "seed": seed,
        "trades": trades,
        "events": int(len(ev_batch)),
        "reference_orders": n_ref,
        "reference_ns": round(reference_ns, 1),
        "numba_batch_ns": round(numba_batch_ns, 1),
        "numba_batch_ns_min": round(min(batch_ns), 1),
        "numba_batch_ns_max": round(max(batch_ns), 1),
        "numba_batch_rounds": [round(x, 1) for x in batch_ns],
        "numba_batch_copy_ns": round(float(np.median(copy_ns)), 1),
        "numba_batch_copy_rounds": [round(x, 1) for x in copy_ns],
        "numba_batch_default_capacity_ns": round(float(np.median(default_ns)), 1),
        "numba_single_ns": round(single["ns"], 1),
        "numba_single_wall_ns": round(single["wall_ns"], 1),
        "numba_batch64_ns": round(float(np.median(micro_ns)), 1),
        "numba_batch64_rounds": [round(x, 1) for x in micro_ns],
        "single_p50_ns": single["pct"]["p50"],
        "single_p90_ns": single["pct"]["p90"],
        "single_p99_ns": single["pct"]["p99"],
        "single_p999_ns": single["pct"]["p99.9"],
        "single_p9999_ns": single["pct"]["p99.99"],
        "single_max_ns": single["pct"]["max"],
        "batch64_call_p50_ns": micro[0]["pct"]["p50"],
        "batch64_call_p99_ns": micro[0]["pct"]["p99"],
        "batch64_call_p999_ns": micro[0]["pct"]["p99.9"],
        "timer_overhead_ns": _timer_overhead_ns(),
        "jit_compile_s": round(jit["jit_compile_s"], 3),
        "jit_cache_warm": jit["jit_cache_warm"],
        "jit_measured_in": jit["jit_measured_in"],
        "jit_note": jit["jit_note"],
        "kernel_import_s": jit["kernel_import_s"],
        "speedup_vs_reference": round(reference_ns / numba_batch_ns, 1),
        "commands_per_s": round(1e9 / numba_batch_ns),
        "reference_commands_per_s": round(1e9 / reference_ns),
        "ratio_single_vs_batch": round(single["ns"] / numba_batch_ns, 2),
        "ratio_batch64_vs_batch": round(float(np.median(micro_ns)) / numba_batch_ns, 2),
        "targets": {
            f"numba_batch_le_{TARGET_NS}_ns": numba_batch_ns <= TARGET_NS,
            f"speedup_ge_{TARGET_SPEEDUP}x": reference_ns / numba_batch_ns >= TARGET_SPEEDUP,
        },
        "identical": identical,
        "all_identical": all_identical,
        "mismatch": mismatch,
        "state_hash": hash_batch,
        "arrays_grew_during_timing": bool(grew or single["grew"] or any(m["grew"] for m in micro)),
        "capacity": {"slot": n_new + 1, "order": max(1, n_new), "event_rows_batch": event_rows,
                     "event_rows_per_call": _per_call_event_rows(n_new, MICRO_BATCH)},
        "generate_s": round(generate_s, 3),
        "stream": {"mix_target_pct": {k: round(100 * v, 1) for k, v in MIX.items()}, **stats},
        "outcome": _outcome(cmds, ev_batch, micro[0]["resting"]),
        "machine": {**_machine(), "cpus_busy_before": busy_before,
                    "cpus_busy_after": cpus_busy()},
        "engine_source": source,
        "engine_changed_during_run": _engine_source() != source,
    }
    _print_table(result, echo)
    # the second stream (days, sessions, both segments, band edges), after every figure above
    sessions = result["sessions"] = run_sessions_stream(n, seed, reference_orders, echo)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
        echo(f"wrote {json_path}")
    if not all_identical:
        raise SystemExit(f"cea: error: the runs disagree: {identical}; first difference: "
                         f"{mismatch}")
    if not sessions["all_identical"]:
        raise SystemExit(f"cea: error: the runs of the sessions stream disagree: "
                         f"{sessions['identical']}; first difference: {sessions['mismatch']}")
    return result


# ---------------------------------------------------------------------------- runs

def _default_book():
    from engine.fast.book import FastBook

    return FastBook([PRIOR_CLOSE], TradingCalendar.from_dates([TRADING_DATE]))


def _fast_book(n_new: int, event_rows: int):
    from engine.fast.book import FastBook

    return FastBook([PRIOR_CLOSE], TradingCalendar.from_dates([TRADING_DATE]),
                    slot_capacity=n_new + 1, order_capacity=max(1, n_new),
                    event_capacity=event_rows)


def _array_ids(book) -> tuple:
    return tuple(id(a) for a in (book.slots, book.refs, book.levels, book.events, book._cal))


def _per_call_event_rows(n_new: int, batch: int) -> int:
    # per call the kernel wants room for every resting order plus a few rows per command
    return n_new + 16 * batch + 1024


def _per_call(cmds: np.ndarray, n_new: int, size: int) -> dict:
    """One ``submit_batch`` per ``size`` commands on a fresh book: per-call latencies (ns),
    the events renumbered to stream indexes, and the resting count after each call."""
    from hdrh.histogram import HdrHistogram

    from engine.fast.state import GL_RESTING

    n = len(cmds)
    book = _fast_book(n_new, _per_call_event_rows(n_new, size))
    arrays = _array_ids(book)
    calls = (n + size - 1) // size
    lat = np.empty(calls, dtype=np.int64)
    resting = np.empty(calls, dtype=np.int64)
    parts = []
    submit = book.submit_batch
    clock = time.perf_counter_ns
    glob = book.glob
    gc.collect()
    gc.disable()  # the events kept here are the harness's garbage, not the engine's
    try:
        wall0 = clock()
        for k in range(calls):
            start = k * size
            chunk = cmds[start:start + size]
            t0 = clock()
            ev = submit(chunk, copy=False)
            lat[k] = clock() - t0
            ev = ev.copy()
            ev[:, B.CMD] += start
            parts.append(ev)
            resting[k] = glob[GL_RESTING]
        wall = clock() - wall0
    finally:
        gc.enable()
    grew = _array_ids(book) != arrays
    hist = HdrHistogram(HIST_LOW_NS, HIST_HIGH_NS, HIST_DIGITS)
    values, counts = np.unique(lat, return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist()):
        hist.record_value(max(v, HIST_LOW_NS), c)
    pct = {f"p{p:g}": int(hist.get_value_at_percentile(p)) for p in (50, 90, 99, 99.9, 99.99)}
    pct["min"] = int(hist.get_min_value())
    pct["max"] = int(hist.get_max_value())
    pct["mean"] = round(float(lat.mean()), 1)
    events = np.concatenate(parts) if parts else np.zeros((0, B.EVENT_WIDTH), dtype=np.int64)
    return {"ns": float(lat.sum()) / n, "wall_ns": wall / n, "pct": pct, "events": events,
            "book": book, "grew": grew, "resting": resting}


def _reference_run(calendar, cmds):
    from engine.reference.book import ReferenceBook

    book = ReferenceBook([PRIOR_CLOSE], calendar)
    t0 = time.perf_counter_ns()
    events = book.submit_batch(cmds)
    return book, events, time.perf_counter_ns() - t0


def _warm_up(calendar) -> dict:
    """Load or compile the kernels (timing that first call), then run a tiny stream through
    throwaway books in each way the benchmark calls them."""
    fresh = "engine.fast.kernels" not in sys.modules
    t0 = time.perf_counter()
    from engine.fast import kernels as K
    from engine.fast.book import FastBook
    from engine.reference.book import ReferenceBook

    import_s = round(time.perf_counter() - t0, 3) if fresh else None
    tiny = generate_stream(WARMUP_COMMANDS, seed=1)
    if not K.run_batch.signatures:
        book = FastBook([PRIOR_CLOSE], calendar)
        t0 = time.perf_counter_ns()
        book.submit_batch(tiny)
        compile_ns = time.perf_counter_ns() - t0
        st = K.run_batch.stats
        hits, misses, cache_path = (sum(st.cache_hits.values()), sum(st.cache_misses.values()),
                                    st.cache_path)
        where = "this process"
    else:  # already loaded here: measure a first call where nothing is loaded yet
        probe = subprocess.run([sys.executable, "-c", _JIT_PROBE % WARMUP_COMMANDS],
                               capture_output=True, text=True, cwd=_ROOT, check=True)
        p = json.loads(probe.stdout.strip().splitlines()[-1])
        compile_ns, hits, misses, cache_path = (p["compile_ns"], p["hits"], p["misses"],
                                                p["cache_path"])
        import_s = round(p["import_s"], 3)
        where = "a fresh subprocess"
    warm = hits > 0 and misses == 0
    note = (f"{where}; on-disk cache warm: loaded from {cache_path}" if warm else
            f"{where}; on-disk cache cold: compiled, saved to {cache_path}")
    # the shapes the timed runs use: whole batch, one command, 64 commands; and the reference
    for size in (len(tiny), 1, MICRO_BATCH):
        book = FastBook([PRIOR_CLOSE], calendar)
        for s in range(0, len(tiny), size):
            book.submit_batch(tiny[s:s + size], copy=size == len(tiny))
    ReferenceBook([PRIOR_CLOSE], calendar).submit_batch(tiny)
    return {"jit_compile_s": compile_ns / 1e9, "jit_cache_warm": warm, "jit_measured_in": where,
            "jit_note": note, "kernel_import_s": import_s}


def cpus_busy(seconds: float = 0.5):
    """CPUs kept busy by other processes over ``seconds`` while this one sleeps (from
    /proc/stat), or None where that cannot be read."""
    def sample():
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(x) for x in fields]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    cpus = os.cpu_count() or 1
    if total1 == total0:
        return 0.0
    return round(cpus * (1 - (idle1 - idle0) / (total1 - total0)), 2)


def _timer_overhead_ns() -> int:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(10_000):
        t0 = clock()
        samples.append(clock() - t0)
    return int(np.median(samples))


# ---------------------------------------------------------------------------- checks

def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _first_difference(a: np.ndarray, b: np.ndarray, names=("a", "b")):
    """The first event row where ``a`` and ``b`` differ, as two dicts, or None."""
    if _same(a, b):
        return None
    k = min(len(a), len(b))
    diff = np.flatnonzero(np.any(a[:k] != b[:k], axis=1))
    i = int(diff[0]) if len(diff) else k

    def row(x):
        return dict(zip(B.EVENT_COLUMNS, (int(v) for v in x[i]))) if i < len(x) else None

    return {"event": i, "rows": {names[0]: len(a), names[1]: len(b)}, names[0]: row(a),
            names[1]: row(b)}


def _outcome(cmds: np.ndarray, events: np.ndarray, resting: np.ndarray) -> dict:
    kind, reason = events[:, B.KIND], events[:, B.REASON]
    n_cancel = int(np.count_nonzero(cmds["action"] == Action.CANCEL))
    user = int(np.count_nonzero((kind == EventKind.CANCELLED) & (reason == Reason.USER)))
    n_amend = int(np.count_nonzero(cmds["action"] == Action.AMEND))
    amended = int(np.count_nonzero(kind == EventKind.AMENDED))
    rejected = events[kind == EventKind.REJECTED]
    cancelled = events[kind == EventKind.CANCELLED]
    return {
        "events_by_kind": {k.name: int(np.count_nonzero(kind == k)) for k in EventKind},
        "rejects_by_reason": {Reason(int(r)).name: int(c) for r, c in
                              zip(*np.unique(rejected[:, B.REASON], return_counts=True))},
        "cancelled_by_reason": {Reason(int(r)).name: int(c) for r, c in
                                zip(*np.unique(cancelled[:, B.REASON], return_counts=True))},
        "cancel_hit_rate": round(user / n_cancel, 3) if n_cancel else None,
        "amend_hit_rate": round(amended / n_amend, 3) if n_amend else None,
        "resting_mean": round(float(resting.mean()), 1) if len(resting) else 0,
        "resting_max": int(resting.max()) if len(resting) else 0,
        "resting_end": int(resting[-1]) if len(resting) else 0,
    }


def _machine() -> dict:
    import numba

    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model", "cache size", "flags"):
                info.setdefault(key, value.strip())
    except OSError:
        pass
    model = info.get("model name", "")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": model or platform.processor(),
        "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
        "cpu_cache": info.get("cache size", ""),
        "virtualised": "hypervisor" in info.get("flags", "").split(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
    }


def _engine_source() -> dict:
    """Which engine code was timed: the git commit, whether engine/ differs from it, and a
    digest of the kernels' source."""
    import hashlib

    kernels = _ROOT / "engine" / "fast" / "kernels.py"
    out = {"kernels_sha256": hashlib.sha256(kernels.read_bytes()).hexdigest()[:16]}
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()

        out["git_commit"] = git("rev-parse", "--short", "HEAD")
        out["engine_modified"] = bool(git("status", "--porcelain", "--", "engine"))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


# ---------------------------------------------------------------------------- output

def _print_table(r: dict, echo) -> None:
    m, s, o = r["machine"], r["stream"], r["outcome"]
    n, n_ref = r["orders"], r["reference_orders"]
    echo("")
    echo(f"matching core: {n:,} commands, seed {r['seed']}; {m['cpu_model']}, "
         f"{m['cpus_usable']} cores; Python {m['python']}, Numba {m['numba']}, "
         f"NumPy {m['numpy']}")
    echo("stream: " + ", ".join(f"{k} {v:g} %" for k, v in s["mix_pct"].items()))
    hit = o["cancel_hit_rate"]
    echo(f"        {r['trades']:,} trades, {r['events']:,} events; resting orders mean "
         f"{o['resting_mean']:,.0f}, max {o['resting_max']:,}; "
         + (f"{100 * hit:.0f} % of CANCELs found their order; " if hit is not None else "")
         + f"{o['cancelled_by_reason'].get('SELF_TRADE', 0):,} self-trade cancels")
    echo(f"jit: first call {r['jit_compile_s']:.2f} s ({r['jit_note']})")
    echo("")
    base = r["numba_batch_ns"]
    rows = [
        ("run", "commands", "ns/command", "commands/s", "vs batch"),
        ("reference (Python)", f"{n_ref:,}", f"{r['reference_ns']:,.0f}",
         f"{1e9 / r['reference_ns']:,.0f}", f"{r['speedup_vs_reference']:,.1f}x"),
        ("numba, one batch", f"{n:,}", f"{base:,.1f}", f"{1e9 / base:,.0f}", "1.0x"),
        ("numba, one batch + event copy", f"{n:,}", f"{r['numba_batch_copy_ns']:,.1f}",
         f"{1e9 / r['numba_batch_copy_ns']:,.0f}", f"{r['numba_batch_copy_ns'] / base:,.2f}x"),
        ("numba, one batch, default capacities", f"{n:,}",
         f"{r['numba_batch_default_capacity_ns']:,.1f}",
         f"{1e9 / r['numba_batch_default_capacity_ns']:,.0f}",
         f"{r['numba_batch_default_capacity_ns'] / base:,.2f}x"),
        ("numba, one call per command", f"{n:,}", f"{r['numba_single_ns']:,.0f}",
         f"{1e9 / r['numba_single_ns']:,.0f}", f"{r['ratio_single_vs_batch']:,.1f}x"),
        (f"numba, batches of {MICRO_BATCH}", f"{n:,}", f"{r['numba_batch64_ns']:,.1f}",
         f"{1e9 / r['numba_batch64_ns']:,.0f}", f"{r['ratio_batch64_vs_batch']:,.2f}x"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        echo("  ".join(v.ljust(w) if j == 0 else v.rjust(w)
                       for j, (v, w) in enumerate(zip(row, widths))))
    if n_ref != n:
        echo(f"(the reference ran the first {n_ref:,} commands only; its ns/command is of "
             f"that prefix)")
    echo(f"numba batch: median of {len(r['numba_batch_rounds'])} rounds, min "
         f"{r['numba_batch_ns_min']:.1f}, max {r['numba_batch_ns_max']:.1f} ns/command; "
         f"batches of {MICRO_BATCH}: rounds {r['numba_batch64_rounds']}")
    echo("")
    echo(f"latency of one submit_batch call, ns (HdrHistogram; includes ~"
         f"{r['timer_overhead_ns']} ns of timer):")
    echo(f"  1 command:   p50 {r['single_p50_ns']:,}  p90 {r['single_p90_ns']:,}  "
         f"p99 {r['single_p99_ns']:,}  p99.9 {r['single_p999_ns']:,}  "
         f"p99.99 {r['single_p9999_ns']:,}  max {r['single_max_ns']:,}")
    echo(f"  {MICRO_BATCH} commands: p50 {r['batch64_call_p50_ns']:,}  "
         f"p99 {r['batch64_call_p99_ns']:,}  p99.9 {r['batch64_call_p999_ns']:,}")
    echo("")
    ok = r["targets"]
    t1, t2 = ok[f"numba_batch_le_{TARGET_NS}_ns"], ok[f"speedup_ge_{TARGET_SPEEDUP}x"]
    echo(f"target numba batch <= {TARGET_NS} ns/command: {'met' if t1 else 'NOT met'} "
         f"({base:.1f} ns)")
    echo(f"target >= {TARGET_SPEEDUP}x the reference: {'met' if t2 else 'NOT met'} "
         f"({r['speedup_vs_reference']:,.1f}x)")
    if r["all_identical"]:
        echo(f"identical results: yes (event rows and state hash; reference on {n_ref:,} "
             f"commands, numba batch, one per call, batches of {MICRO_BATCH})")
    else:
        echo(f"identical results: NO {r['identical']}")
        echo(f"  first difference: {r['mismatch']}")
    if r["engine_changed_during_run"]:
        echo("warning: engine/ changed on disk during the run (figures are of the code loaded "
             "at its start)")
    if r["arrays_grew_during_timing"]:
        echo("warning: a fast-book array grew inside a timed call")


# ---------------------------------------------------------------------------- second stream

def run_sessions_stream(n: int, seed: int, reference_orders: int | None = None,
                        echo: Callable[[str], None] = print) -> dict:
    """The second stream, ``bench.streams.generate_session_stream(n, seed)`` (three trading
    days: before the open, morning, lunch break, afternoon, after 15:00; LISTED and BLOCK;
    orders on and beyond the band edges), on the calendar of its days: the Numba book in one
    batch (``BATCH_ROUNDS`` rounds, median) and in batches of ``MICRO_BATCH`` (one round),
    and the reference book (on the first ``reference_orders`` commands if given), each on a
    fresh book; their event rows and state hashes must be identical. Printed through
    ``echo``; returns its figures (``cea bench core``'s JSON, under ``sessions``)."""
    from engine.codes import Segment
    from engine.fast.book import FastBook
    from engine.reference.book import ReferenceBook
    from engine.rules import DAY_US
    from engine.tradingdays import format_time

    from .streams import SESSION_DATES, generate_session_stream, session_stats

    calendar = TradingCalendar.from_dates(SESSION_DATES)
    cmds = generate_session_stream(n, seed)
    stats = session_stats(cmds)
    n_new = int(np.count_nonzero(cmds["action"] == Action.NEW))

    def book(event_rows: int):
        return FastBook([PRIOR_CLOSE], calendar, slot_capacity=n_new + 1,
                        order_capacity=max(1, n_new), event_capacity=event_rows)

    echo(f"second stream (sessions): {n:,} commands over {stats['days']} trading days; numba "
         f"one batch ({BATCH_ROUNDS} rounds), batches of {MICRO_BATCH}, reference")
    ev_batch = book(2 * n + 1024).submit_batch(cmds)
    event_rows = len(ev_batch) + n_new + 1024
    batch_ns, reruns_same, batch_book = [], True, None
    for _ in range(BATCH_ROUNDS):
        batch_book = book(event_rows)
        t0 = time.perf_counter_ns()
        ev = batch_book.submit_batch(cmds, copy=False)
        batch_ns.append((time.perf_counter_ns() - t0) / n)
        reruns_same &= _same(ev, ev_batch)
        del ev
    micro_book, parts, micro_total = book(_per_call_event_rows(n_new, MICRO_BATCH)), [], 0
    for start in range(0, n, MICRO_BATCH):
        t0 = time.perf_counter_ns()
        ev = micro_book.submit_batch(cmds[start:start + MICRO_BATCH])
        micro_total += time.perf_counter_ns() - t0
        ev[:, B.CMD] += start
        parts.append(ev)
    ev_micro = np.concatenate(parts) if parts else np.zeros((0, B.EVENT_WIDTH), np.int64)
    n_ref = min(int(reference_orders), n) if reference_orders else n
    ref_book = ReferenceBook([PRIOR_CLOSE], calendar)
    t0 = time.perf_counter_ns()
    ev_ref = ref_book.submit_batch(cmds[:n_ref])
    reference_ns = (time.perf_counter_ns() - t0) / n_ref

    hash_batch = state_hash(batch_book, n_new)
    ref_prefix = ev_batch if n_ref == n else ev_batch[ev_batch[:, B.CMD] < n_ref]
    identical = {"batch_rounds_events": reruns_same,
                 "batch64_events": _same(ev_batch, ev_micro),
                 "batch64_state_hash": state_hash(micro_book, n_new) == hash_batch,
                 "reference_events": _same(ref_prefix, ev_ref)}
    if n_ref == n:
        identical["reference_state_hash"] = state_hash(ref_book, n_new) == hash_batch
    all_identical = all(identical.values())
    mismatch = (_first_difference(ev_ref, ref_prefix, ("reference", "numba_batch"))
                or _first_difference(ev_batch, ev_micro, ("numba_batch", "batch64")))
    kind = ev_batch[:, B.KIND]
    trades = ev_batch[kind == EventKind.TRADE]
    closed = ev_batch[kind == EventKind.DAY_CLOSED]
    numba_ns = float(np.median(batch_ns))
    out = {
        "orders": n, "seed": seed, "reference_orders": n_ref,
        "numba_batch_ns": round(numba_ns, 1),
        "numba_batch_rounds": [round(x, 1) for x in batch_ns],
        "numba_batch64_ns": round(micro_total / n, 1),
        "reference_ns": round(reference_ns, 1),
        "speedup_vs_reference": round(reference_ns / numba_ns, 1),
        "trades": int(len(trades)),
        "trades_by_segment": {s.name: int(np.count_nonzero(trades[:, B.SEGMENT] == s))
                              for s in Segment},
        "days_closed": [{"date": format_time(int(r[B.ORDER]) * DAY_US)[:10],
                         "prior_close": int(r[B.AUX1]), "close": int(r[B.PRICE])}
                        for r in closed],
        "identical": identical, "all_identical": all_identical,
        "mismatch": None if all_identical else mismatch,
        "state_hash": hash_batch,
        "stream": stats,
        "outcome": {k: v for k, v in _outcome(cmds, ev_batch, np.zeros(0, np.int64)).items()
                    if not k.startswith("resting_")},
    }
    o = out["outcome"]
    echo("")
    echo(f"sessions stream: {n:,} commands, seed {seed}, {', '.join(stats['per_day'])}; "
         + ", ".join(f"{k} {v:,}" for k, v in stats["phases"].items())
         + f"; {stats['block_new']:,} BLOCK NEW, {stats['edge_new']:,} NEW on or just beyond "
         f"a band edge")
    echo(f"  numba, one batch {numba_ns:,.1f} ns/command (median of {BATCH_ROUNDS}); batches "
         f"of {MICRO_BATCH} {out['numba_batch64_ns']:,.1f}; reference {reference_ns:,.0f} on "
         f"{n_ref:,} commands ({out['speedup_vs_reference']:,.1f}x)")
    echo(f"  {len(trades):,} trades (" + ", ".join(
        f"{k} {v:,}" for k, v in out["trades_by_segment"].items()) + f"); "
         f"{o['events_by_kind']['EXPIRED']:,} expired at 15:00; days closed "
         + ", ".join(f"{d['date']} {d['prior_close'] / 100:.2f} -> {d['close'] / 100:.2f}"
                     for d in out["days_closed"]))
    echo("  rejects: " + ", ".join(f"{k} {v:,}" for k, v in o["rejects_by_reason"].items())
         + "; cancels: " + ", ".join(f"{k} {v:,}" for k, v in o["cancelled_by_reason"].items()))
    if all_identical:
        echo(f"identical results (sessions stream): yes (event rows and state hash; numba "
             f"batch, {BATCH_ROUNDS} rounds, batches of {MICRO_BATCH}, reference on {n_ref:,} "
             f"commands)")
    else:
        echo(f"identical results (sessions stream): NO {identical}")
        echo(f"  first difference: {mismatch}")
    return out
