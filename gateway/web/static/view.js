// The run view (cea view DIR): a finished cea simulate or cea replay output directory, read
// once from /api/run (prices and money in integer fen, quantities in tonnes, dates
// YYYY-MM-DD) and drawn: the header, the summary figures, the daily close with its bands,
// the deadlines and the real close, the volume, a replay's flagged days, the agents' P&L.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = CEA.el;
  const DAY_S = 86400;
  const ts = (date) => Date.UTC(+date.slice(0, 4), +date.slice(5, 7) - 1, +date.slice(8, 10)) / 1000;
  const iso = (t) => new Date(t * 1000).toISOString().slice(0, 10);
  const cny = (fen) => (fen === null || fen === undefined) ? null : fen / 100;  // for the plot only
  const COLORS = {
    close: "#58a6ff", real: "#e6edf3", listed: "rgba(88,166,255,0.55)",
    listedFill: "rgba(88,166,255,0.10)", block: "#d29922", deadline: "#f0605d",
    infeasible: "#f0605d", volListed: "#58a6ff", volBlock: "#d29922",
  };
  const pxr = () => window.devicePixelRatio || 1;

  // -------------------------------------------------------------- the rows of the charts

  // One row per day of the run, and rows without data: one inside each gap (so lines and
  // bars break there), each deadline outside the run and a day on either side (the x range).
  function chartRows(run) {
    const rows = [];
    run.days.forEach((d, i) => {
      if (i > 0 && d.gap_before) rows.push({ t: ts(run.days[i - 1].date) + DAY_S, day: null });
      rows.push({ t: ts(d.date), day: d });
    });
    const first = rows[0].t, last = rows[rows.length - 1].t;
    const extra = run.deadlines.map(ts).filter((t) => t < first || t > last);
    const lo = Math.min(first, ...extra) - DAY_S, hi = Math.max(last, ...extra) + DAY_S;
    for (const t of [lo, hi, ...extra]) rows.push({ t, day: null });
    rows.sort((a, b) => a.t - b.t);
    return rows;
  }

  function columns(run, rows) {
    const real = new Map(run.real.map((r) => [r.date, r.close]));
    const col = (f) => rows.map((r) => (r.day ? f(r.day) : null));
    const replay = run.kind === "replay";
    return {
      x: rows.map((r) => r.t),
      listedHigh: col((d) => d.listed_high), listedLow: col((d) => d.listed_low),
      blockHigh: col((d) => d.block_high), blockLow: col((d) => d.block_low),
      close: col((d) => d.close),
      real: col((d) => (real.has(d.date) ? real.get(d.date) : null)),
      infeasible: col((d) => (replay && !d.feasible) ? d.hist_close : null),
      listed: col((d) => d.listed_volume), block: col((d) => d.block_volume),
    };
  }

  // -------------------------------------------------------------- drawn on the charts

  function gapSpans(run) {
    const spans = [];
    run.days.forEach((d, i) => {
      if (i > 0 && d.gap_before) spans.push([ts(run.days[i - 1].date) + DAY_S, ts(d.date) - DAY_S]);
    });
    return spans;
  }

  function hatch(ctx) {
    const c = document.createElement("canvas");
    const s = Math.round(8 * pxr());
    c.width = c.height = s;
    const g = c.getContext("2d");
    g.strokeStyle = "rgba(138,152,168,0.45)";
    g.lineWidth = pxr();
    g.beginPath(); g.moveTo(0, s); g.lineTo(s, 0); g.stroke();
    return ctx.createPattern(c, "repeat");
  }

  // a plugin marking, under the series: the spans without data (hatched) and (``withEra``)
  // a replay's composite close era; over them: the surrender deadlines (red dotted, labelled above the plot) and
  // a replay's infeasible days (thin red lines)
  function marks(run, withEra) {
    const spans = gapSpans(run), deadlines = run.deadlines.map(ts);
    const infeasible = run.days.filter((d) => d.feasible === false).map((d) => ts(d.date));
    const composite = withEra ? run.days.filter((d) => d.basis === "composite").map((d) => ts(d.date)) : [];
    const xpos = (u, t) => u.valToPos(t, "x", true);
    const clip = (u, ctx) => {
      const b = u.bbox;
      ctx.save(); ctx.beginPath(); ctx.rect(b.left, b.top, b.width, b.height); ctx.clip();
    };
    const label = (u, ctx, text, x, y, color, align) => {
      ctx.font = `${Math.round(11 * pxr())}px system-ui, sans-serif`;
      ctx.fillStyle = color; ctx.textAlign = align || "center"; ctx.textBaseline = "bottom";
      ctx.fillText(text, x, y);
    };
    return {
      hooks: {
        drawAxes: [(u) => {
          const ctx = u.ctx, b = u.bbox;
          clip(u, ctx);
          if (composite.length) {
            const a = xpos(u, composite[0] - DAY_S / 2), z = xpos(u, composite[composite.length - 1] + DAY_S / 2);
            ctx.fillStyle = "rgba(138,152,168,0.07)";
            ctx.fillRect(a, b.top, z - a, b.height);
            label(u, ctx, "composite close era", Math.max(a, b.left) + 6 * pxr(), b.top + b.height - 4 * pxr(), CEA.css("--dim"), "left");
          }
          if (spans.length) {
            ctx.fillStyle = hatch(ctx);
            for (const [s, e] of spans) {
              const a = xpos(u, s - DAY_S / 2), z = xpos(u, e + DAY_S / 2);
              ctx.fillRect(a, b.top, Math.max(z - a, 2 * pxr()), b.height);
            }
          }
          ctx.restore();
        }],
        draw: [(u) => {
          const ctx = u.ctx, b = u.bbox;
          ctx.save();
          ctx.lineWidth = pxr();
          ctx.strokeStyle = "rgba(240,96,93,0.35)";
          for (const t of infeasible) {
            const x = xpos(u, t);
            if (x < b.left || x > b.left + b.width) continue;
            ctx.beginPath(); ctx.moveTo(x, b.top); ctx.lineTo(x, b.top + b.height); ctx.stroke();
          }
          ctx.strokeStyle = COLORS.deadline;
          ctx.lineWidth = 1.5 * pxr();
          ctx.setLineDash([3 * pxr(), 3 * pxr()]);
          for (const t of deadlines) {
            const x = xpos(u, t);
            if (x < b.left - 1 || x > b.left + b.width + 1) continue;
            ctx.beginPath(); ctx.moveTo(x, b.top); ctx.lineTo(x, b.top + b.height); ctx.stroke();
            const text = "deadline " + iso(t);
            const w = ctx.measureText(text).width;
            // keep the label inside the canvas near the right edge
            const right = b.left + b.width;
            const lx = Math.min(Math.max(x, b.left + w / 2), right - w / 2);
            label(u, ctx, text, lx, b.top - 3 * pxr(), COLORS.deadline);
          }
          ctx.restore();
        }],
      },
    };
  }

  // the x scales of the charts move together (drag to zoom, double-click to reset)
  const charts = [];
  let syncing = false;
  const syncX = (u, key) => {
    if (key !== "x" || syncing) return;
    syncing = true;
    for (const o of charts) if (o !== u) o.setScale("x", { min: u.scales.x.min, max: u.scales.x.max });
    syncing = false;
  };

  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  // ticks as years, months (the year under January and the first tick) or MM-DD days
  const dateTicks = (u, splits, axis, space, incr) => splits.map((t, i) => {
    const d = iso(t), newYear = i === 0 || iso(splits[i - 1]).slice(0, 4) !== d.slice(0, 4);
    const year = newYear ? "\n" + d.slice(0, 4) : "";
    if (incr >= 365 * DAY_S) return d.slice(0, 4);
    return (incr >= 28 * DAY_S ? MONTHS[+d.slice(5, 7) - 1] : d.slice(5)) + year;
  });
  const dateAxis = () => ({
    stroke: CEA.css("--dim"), grid: { stroke: CEA.css("--line") }, ticks: { stroke: CEA.css("--line") },
    values: dateTicks,
  });
  const valueAxis = (values, size) => ({
    stroke: CEA.css("--dim"), grid: { stroke: CEA.css("--line") }, ticks: { stroke: CEA.css("--line") },
    size, values,
  });
  const base = (run, withEra) => ({
    padding: [22, 24, 0, 0],
    tzDate: (t) => uPlot.tzDate(new Date(t * 1e3), "Etc/UTC"),
    cursor: { sync: { key: "cea-run" }, drag: { x: true, y: false } },
    legend: { live: true },
    plugins: [marks(run, withEra)],
    hooks: { setScale: [syncX] },
  });
  const dateSeries = { label: "date", value: (u, v) => (v === null || v === undefined) ? "—" : iso(v) };
  // a legend value from the exact integer column (fen or tonnes), by index
  const exact = (values, fmt) => (u, v, si, idx) =>
    (idx === null || idx === undefined || values[idx] === null) ? "—" : fmt(values[idx]);

  // -------------------------------------------------------------- the close chart

  function closeChart(run, c) {
    const replay = run.kind === "replay";
    // the y range follows the closes, the real close and the listed band in view; the block
    // band's limits are drawn but never set it (they lie far out over a long run)
    // (their scale "yb" copies "y", whose range uPlot takes from the series on it, in view)
    const yRange = (u, lo, hi) => {
      if (lo === null || hi === null) return [0, 1];
      const pad = Math.max((hi - lo) * 0.05, 0.05);
      return [lo - pad, hi + pad];
    };
    const line = (label, values, color, width, extra) => Object.assign({
      label, stroke: color, width, value: exact(values, CEA.price), points: { show: false },
    }, extra || {});
    const series = [
      dateSeries,
      line("listed band high +10 %", c.listedHigh, COLORS.listed, 1),
      line("listed band low −10 %", c.listedLow, COLORS.listed, 1),
      line("block band high +30 %", c.blockHigh, COLORS.block, 1, { dash: [5, 4], scale: "yb" }),
      line("block band low −30 %", c.blockLow, COLORS.block, 1, { dash: [5, 4], scale: "yb" }),
      line(replay ? "published close (SEEE)" : "real SEEE close", c.real, COLORS.real, replay ? 2.5 : 1.3),
      line(replay ? "replayed close (engine)" : "simulated close (listed VWAP)", c.close, COLORS.close,
           replay ? 1.2 : 2, replay ? { dash: [4, 3] } : {}),
    ];
    const data = [c.x, c.listedHigh, c.listedLow, c.blockHigh, c.blockLow, c.real, c.close].map(
      (col, i) => (i === 0 ? col : col.map(cny)));
    if (replay) {
      series.push({ label: "infeasible day (published close)", stroke: COLORS.infeasible, paths: () => null,
                    value: exact(c.infeasible, CEA.price),
                    points: { show: true, size: 8, fill: COLORS.infeasible, stroke: COLORS.infeasible } });
      data.push(c.infeasible.map(cny));
    }
    const opts = Object.assign(base(run, true), {
      height: 340,
      series,
      bands: [{ series: [1, 2], fill: COLORS.listedFill }],
      scales: { x: { time: true }, y: { range: yRange }, yb: { from: "y", range: (u, lo, hi) => [lo, hi] } },
      axes: [dateAxis(), valueAxis((u, splits) => splits.map((v) => v.toFixed(2)), 64)],
    });
    return CEA.chart($("close-chart"), opts, data);
  }

  // -------------------------------------------------------------- the volume chart

  // ticks in Mt or kt, as many decimals as the step between them needs
  const tonnesTicks = (u, splits, axis, space, incr) => {
    const top = Math.max(...splits.map(Math.abs));
    const [unit, name] = top >= 1e6 ? [1e6, " Mt"] : top >= 1e3 ? [1e3, " kt"] : [1, " t"];
    const decimals = Math.max(0, Math.min(3, Math.ceil(-Math.log10(incr / unit) - 1e-9)));
    return splits.map((v) => (v / unit).toFixed(decimals) + name);
  };

  function volumeChart(run, c) {
    // stacked: the block bar is listed + block high, the listed bar drawn over its foot
    const total = c.x.map((_, i) => (c.listed[i] === null ? null : c.listed[i] + c.block[i]));
    const bars = uPlot.paths.bars({ size: [0.8, 40], align: 0 });
    const series = [
      dateSeries,
      { label: "block", fill: COLORS.volBlock, stroke: COLORS.volBlock, width: 0, paths: bars,
        points: { show: false }, value: exact(c.block, CEA.qty) },
      { label: "listed", fill: COLORS.volListed, stroke: COLORS.volListed, width: 0, paths: bars,
        points: { show: false }, value: exact(c.listed, CEA.qty) },
    ];
    const data = [c.x, total, c.listed];
    if (run.kind === "replay") {
      const bad = c.x.map((_, i) => (c.infeasible[i] === null ? null : 0));
      series.push({ label: "infeasible day (not replayed)", stroke: COLORS.infeasible, paths: () => null,
                    value: (u, v) => (v === null || v === undefined) ? "—" : "yes",
                    points: { show: true, size: 8, fill: COLORS.infeasible, stroke: COLORS.infeasible } });
      data.push(bad);
    }
    const yRange = (u, lo, hi) => [0, hi > 0 ? hi * 1.05 : 1];
    const opts = Object.assign(base(run, false), {
      height: 260,
      series,
      scales: { x: { time: true }, y: { range: yRange } },
      axes: [dateAxis(), valueAxis(tonnesTicks, 70)],
    });
    return CEA.chart($("volume-chart"), opts, data);
  }

  // -------------------------------------------------------------- header and summary

  function stat(key, label, value, extra) {
    const v = el("div", { class: "v" + (extra && extra.cls ? " " + extra.cls : ""), id: "stat-" + key, text: value });
    if (extra && extra.title) v.title = extra.title;
    return el("div", { class: "stat" }, el("div", { class: "k", text: label }), v,
              extra && extra.sub ? el("div", { class: "sub", text: extra.sub }) : null);
  }

  function change(first, last) {
    const d = last - first;
    const pct = first ? (d * 100 / first).toFixed(1) : "0.0";
    return { text: (d >= 0 ? "+" : "") + CEA.price(d), sub: (d >= 0 ? "+" : "") + pct + " % over the run",
             cls: d > 0 ? "up" : d < 0 ? "down" : "" };
  }

  function header(run) {
    $("run-kind").textContent = run.kind;
    $("run-dir").textContent = run.directory;
    $("run-dir").title = run.path;
    const n = run.totals.days;
    $("run-period").textContent = `${run.first_day} → ${run.last_day} · ${n} trading day${n === 1 ? "" : "s"}`;
    if (run.seed !== null && run.seed !== undefined) {
      $("run-seed").textContent = String(run.seed);
      $("run-seed-wrap").hidden = false;
    }
    document.title = `CEA · ${run.kind} · ${run.directory}`;
    $("close-title").textContent = run.kind === "replay"
      ? "Daily close: published and replayed, with the price bands"
      : "Daily close, price bands and the real SEEE close";
  }

  function summary(run) {
    const s = run.summary, t = run.totals, box = $("summary");
    const ch = change(t.first_close, t.last_close);
    const items = [];
    if (run.kind === "simulate") {
      const rejects = Object.values(s.rejects || {}).reduce((a, b) => a + b, 0);
      const agents = Object.values(s.agents || {}).reduce((a, b) => a + b, 0);
      items.push(
        stat("days", "trading days", CEA.qty(t.days)),
        stat("trades", "trades", CEA.qty(s.trades)),
        stat("orders", "orders", CEA.qty(s.orders), { sub: CEA.qty(s.cancels) + " cancels" }),
        stat("listed-volume", "listed volume", CEA.tonnes(t.listed_volume), { title: CEA.qty(t.listed_volume) + " t" }),
        stat("block-volume", "block volume", CEA.tonnes(t.block_volume), { title: CEA.qty(t.block_volume) + " t" }),
        stat("turnover", "turnover, CNY", CEA.money(t.turnover), { title: CEA.price(t.turnover) }),
        stat("first-close", "first close", CEA.price(t.first_close)),
        stat("last-close", "last close", CEA.price(t.last_close)),
        stat("change", "change", ch.text, ch),
        stat("range", "low – high close", CEA.price(t.min_close) + " – " + CEA.price(t.max_close)),
        stat("spread", "mean spread, CNY", CEA.price(s.mean_spread)),
        stat("rejects", "rejects", CEA.qty(rejects), {
          title: Object.entries(s.rejects || {}).map(([k, v]) => `${k} ${v}`).join("\n") }),
        stat("agents", "agents", CEA.qty(agents), {
          title: Object.entries(s.agents || {}).map(([k, v]) => `${k} ${v}`).join("\n") }),
      );
      if ("ledger_reconciles" in s) {
        items.push(stat("ledger", "ledger", s.ledger_reconciles ? "reconciles" : "DOES NOT RECONCILE",
                        { cls: s.ledger_reconciles ? "up" : "down" }));
      }
    } else {
      items.push(
        stat("days", "days replayed", CEA.qty(s.days)),
        stat("feasible", "feasible days", CEA.qty(s.feasible_days), { sub: `${s.days - s.feasible_days} infeasible` }),
        stat("within-tick", "close within one tick", CEA.qty(s.within_one_tick)),
        stat("volumes-exact", "volumes exact", CEA.qty(s.volumes_exact)),
        stat("rmse", "close RMSE, CNY", s.rmse_close === null ? "—" : Number(s.rmse_close).toFixed(4)),
        stat("composite", "composite-close days", CEA.qty(s.composite_days)),
        stat("gaps", "days after a gap", CEA.qty(s.days_after_gap), { sub: "the first day included" }),
        stat("listed-volume", "listed volume", CEA.tonnes(t.listed_volume), { title: CEA.qty(t.listed_volume) + " t" }),
        stat("block-volume", "block volume", CEA.tonnes(t.block_volume), { title: CEA.qty(t.block_volume) + " t" }),
        stat("first-close", "first close", CEA.price(t.first_close)),
        stat("last-close", "last close", CEA.price(t.last_close)),
        stat("change", "change", ch.text, ch),
        stat("range", "low – high close", CEA.price(t.min_close) + " – " + CEA.price(t.max_close)),
      );
    }
    box.replaceChildren(...items);
    const rows = s.compliance || [];
    if (rows.length) {
      const box2 = $("compliance");
      box2.replaceChildren(...rows.map(complianceLine));
      box2.hidden = false;
    }
  }

  function complianceLine(r) {
    const b = (text) => el("b", { text });
    const parts = ["Surrender deadline ", b(r.deadline), r.period ? ` (compliance period ${r.period})` : "",
                   ": ", b(CEA.qty(r.short_entities)), " entities short of ", b(CEA.tonnes(r.shortfall_t)),
                   ", of which they bought ", b(CEA.tonnes(r.bought_by_short_t))];
    if ("compliant" in r) {
      parts.push("; after surrender ", b(CEA.qty(r.compliant)), " compliant, ", b(CEA.qty(r.partial)),
                 " partial, ", b(CEA.qty(r.short)), " short; shortfall left ",
                 b(CEA.tonnes(r.shortfall_after_surrender_t)));
    }
    if (r.penalty_min !== undefined) {
      parts.push("; penalties ", b(CEA.money(r.penalty_min)), " – ", b(CEA.money(r.penalty_max)), " CNY");
    }
    return el("div", { class: "compliance-row" }, ...parts);
  }

  // -------------------------------------------------------------- notes under the charts

  function notes(run, c) {
    const range = (col) => {
      const v = col.filter((x) => x !== null);
      return [Math.min(...v), Math.max(...v)];
    };
    const [blo] = range(c.blockLow), [, bhi] = range(c.blockHigh);
    const parts = [`block band ±30 % over the run: ${CEA.price(blo)} – ${CEA.price(bhi)} (off the scale where it lies beyond the closes)`];
    if (run.deadlines.length) parts.push("red dotted: surrender deadline" + (run.deadlines.length > 1 ? "s" : ""));
    if (run.kind === "simulate") {
      parts.push(run.real.length ? `real SEEE close on ${run.real.length} of the run's dates`
                                 : "no real SEEE close over the run's dates");
    } else {
      parts.push("hatched: no data; red: infeasible days (not replayed)");
      parts.push("from 2023-08-28 the published close is a composite across vintages: the replay aims at the listed VWAP");
    }
    parts.push("drag to zoom, double-click to reset");
    $("close-note").textContent = parts.join(" · ");
    $("volume-note").textContent = run.kind === "replay"
      ? `the replayed listed and block volume, stacked (exactly the published volume on ${CEA.qty(run.summary.volumes_exact)} of ${CEA.qty(run.summary.feasible_days)} feasible days) · hatched: no data · red: infeasible days, not traded`
      : "stacked: listed (continuous trading) and block (100,000 t and over, from 13:00)";
  }

  // -------------------------------------------------------------- a replay's flagged days

  function flags(run) {
    const days = run.days;
    const bad = days.filter((d) => !d.feasible);
    const tb = $("infeasible-table").tBodies[0];
    tb.replaceChildren(...bad.map((d) => el("tr", null,
      el("td", { class: "l", text: d.date }), el("td", { text: CEA.price(d.hist_close) }),
      el("td", { text: CEA.price(d.prior_close) }),
      el("td", { text: CEA.price(d.listed_low) + " – " + CEA.price(d.listed_high) }),
      el("td", { class: "why", text: d.reason }))));
    if (!bad.length) tb.append(el("tr", null, el("td", { class: "l empty", colspan: "5", text: "none" })));
    const gaps = [];
    days.forEach((d, i) => {
      if (i > 0 && d.gap_before) gaps.push([days[i - 1], d]);
    });
    const gb = $("gaps-table").tBodies[0];
    gb.replaceChildren(...gaps.map(([a, d]) => el("tr", null,
      el("td", { class: "l", text: iso(ts(a.date) + DAY_S) }), el("td", { class: "l", text: iso(ts(d.date) - DAY_S) }),
      el("td", { class: "l", text: d.date }), el("td", { text: CEA.price(d.prior_close) }))));
    if (!gaps.length) gb.append(el("tr", null, el("td", { class: "l empty", colspan: "4", text: "none" })));
    $("flags-panel").hidden = false;
  }

  // -------------------------------------------------------------- the agents

  const AGENT_COLUMNS = [
    ["agent", "agent", "l", (v) => v], ["kind", "kind", "l", (v) => v],
    ["account_type", "account type", "l", (v) => v],
    ["orders", "orders", "", CEA.qty], ["trades", "trades", "", CEA.qty],
    ["bought_t", "bought t", "", CEA.qty], ["sold_t", "sold t", "", CEA.qty],
    ["opening_cash", "opening cash", "", CEA.price], ["cash", "cash", "", CEA.price],
    ["opening_allowances", "opening t", "", CEA.qty], ["allowances", "allowances t", "", CEA.qty],
    ["fees", "fees", "", CEA.price], ["pnl", "P&L, CNY", "", CEA.price],
  ];
  const SHOWN = 100;

  function agents(run) {
    const rows = run.agents;
    if (!rows) return;
    $("agents-panel").hidden = false;
    const kinds = [...new Set(rows.map((r) => r.kind))];
    // per kind
    const kb = $("agents-by-kind").tBodies[0];
    kb.replaceChildren(...kinds.map((k) => {
      const of = rows.filter((r) => r.kind === k);
      const sum = (f) => of.reduce((a, r) => a + r[f], 0);
      const pnl = sum("pnl");
      const pnls = of.map((r) => r.pnl);
      const sign = (v) => (v > 0 ? "bid" : v < 0 ? "ask" : "");
      return el("tr", null, el("td", { class: "l", text: k }), el("td", { text: CEA.qty(of.length) }),
        el("td", { text: CEA.qty(sum("orders")) }), el("td", { text: CEA.qty(sum("trades")) }),
        el("td", { text: CEA.qty(sum("bought_t")) }), el("td", { text: CEA.qty(sum("sold_t")) }),
        el("td", { class: sign(pnl), text: CEA.money(pnl), title: CEA.price(pnl) }),
        el("td", { class: sign(pnl), text: CEA.money(Math.round(pnl / of.length)) }),
        el("td", { class: sign(Math.max(...pnls)), text: CEA.money(Math.max(...pnls)) }),
        el("td", { class: sign(Math.min(...pnls)), text: CEA.money(Math.min(...pnls)) }));
    }));
    // per agent: sortable, filtered by kind, the first SHOWN rows until "show all"
    const select = $("agents-kind");
    for (const k of kinds) select.append(el("option", { value: k, text: k }));
    const state = { key: "pnl", desc: true, all: false };
    const head = $("agents-table").tHead.rows[0];
    head.replaceChildren(...AGENT_COLUMNS.map(([key, label, cls]) => el("th", {
      class: cls, "data-key": key, title: "sort by " + label,
      onclick: () => {
        state.desc = state.key === key ? !state.desc : cls !== "l";
        state.key = key; draw();
      } }, label)));
    function draw() {
      const kind = select.value;
      const list = rows.filter((r) => !kind || r.kind === kind);
      const k = state.key, dir = state.desc ? -1 : 1;
      list.sort((a, b) => (a[k] < b[k] ? -dir : a[k] > b[k] ? dir : 0));
      const shown = state.all ? list : list.slice(0, SHOWN);
      $("agents-table").tBodies[0].replaceChildren(...shown.map((r) => el("tr", null,
        ...AGENT_COLUMNS.map(([key, , cls, fmt]) => el("td", {
          class: (cls + (key === "pnl" ? (r.pnl > 0 ? " bid" : r.pnl < 0 ? " ask" : "") : "")).trim(),
          text: fmt(r[key]) })))));
      for (const th of head.cells) {
        const on = th.dataset.key === k;
        th.classList.toggle("sorted", on);
        th.textContent = AGENT_COLUMNS.find((c) => c[0] === th.dataset.key)[1] + (on ? (state.desc ? " ▾" : " ▴") : "");
      }
      $("agents-count").textContent = shown.length < list.length
        ? `${shown.length} of ${list.length} agents, by ${AGENT_COLUMNS.find((c) => c[0] === k)[1]}`
        : `${list.length} agents`;
      $("agents-more").hidden = shown.length >= list.length;
    }
    select.addEventListener("change", draw);
    $("agents-more").addEventListener("click", () => { state.all = true; draw(); });
    draw();
  }

  // -------------------------------------------------------------- start

  async function start() {
    let run;
    try {
      const r = await fetch("/api/run", { cache: "no-store" });
      if (!r.ok) throw new Error(`/api/run: HTTP ${r.status}`);
      run = await r.json();
    } catch (e) {
      $("error").textContent = "cannot load the run: " + e.message;
      $("error").hidden = false;
      $("load-status").textContent = "failed";
      return;
    }
    header(run);
    summary(run);
    const c = columns(run, chartRows(run));
    charts.push(closeChart(run, c), volumeChart(run, c));
    notes(run, c);
    if (run.kind === "replay") flags(run);
    agents(run);
    $("load-status").textContent = "";
    document.body.dataset.ready = "1";
  }
  start();
})();
