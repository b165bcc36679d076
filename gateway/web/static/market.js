// The live screen of `cea serve --web-port`: one WebSocket (/ws) brings every channel's state
// (a channel = one instrument's LISTED or BLOCK segment), then what changed, five times a
// second at most. Prices arrive in integer fen, quantities in integer tonnes, times in
// exchange µs (Shanghai local time counted from 1970-01-01).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SEGMENTS = ["LISTED", "BLOCK"];
  const TAPE = 50;
  const state = { scale: "listed", channels: [], instruments: [], selected: 0, clock: 0, chart: null,
                  chartDay: -1, dirty: true, opTimer: null };

  // ------------------------------------------------------------ the feed

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "hello") hello(msg); else if (msg.type === "update") update(msg);
    };
    ws.onopen = () => setConn("LIVE");
    ws.onclose = () => { setConn("DISCONNECTED"); setTimeout(connect, 2000); };
  }

  function setConn(text) {
    const b = $("conn-status");
    b.textContent = text;
    b.className = "badge status-" + text;
  }

  function hello(msg) {
    state.instruments = msg.instruments;
    state.channels = msg.channels.map((c) => Object.assign(c, { tape: c.trades.slice().reverse() }));
    state.clock = msg.clock;
    const sel = $("instrument");
    sel.replaceChildren(...msg.instruments.map((n, i) => CEA.el("option", { value: i, text: n })));
    sel.value = String(Math.min(state.selected, msg.instruments.length - 1));
    state.selected = Number(sel.value);
    state.dirty = true;
    render();
  }

  function update(msg) {
    state.clock = msg.clock;
    for (const u of msg.channels) {
      const ch = state.channels[u.c];
      const tape = ch.tape, points = ch.points;
      const day = (us) => Math.floor(us / 86400e6);
      if (u.trades.length && tape.length && day(u.trades[0].ts) !== day(tape[0].ts)) tape.length = 0;
      for (const t of u.trades) tape.unshift(t);
      tape.length = Math.min(tape.length, TAPE);
      for (const p of u.points) {
        if (points.length && points[points.length - 1][0] === p[0]) points[points.length - 1] = p;
        else if (points.length && Math.floor(p[0] / 86400e6) !== Math.floor(points[0][0] / 86400e6)) points.splice(0, points.length, p);
        else points.push(p);
      }
      delete u.trades; delete u.points;
      Object.assign(ch, u);
      if (Math.floor(u.c / 2) === state.selected) state.dirty = true;
    }
    render();
  }

  // ------------------------------------------------------------ drawing

  function render() {
    $("clock").textContent = state.clock ? CEA.date(state.clock) + " " + CEA.time(state.clock) : "—";
    if (!state.dirty || !state.channels.length) return;
    state.dirty = false;
    const listed = state.channels[2 * state.selected], block = state.channels[2 * state.selected + 1];
    $("title").textContent = listed.instrument;
    for (const ch of [listed, block]) {
      const b = $("status-" + ch.segment);
      b.textContent = ch.status;
      b.className = "badge status-" + ch.status;
      ladder($("ladder-" + ch.segment), ch);
    }
    stats(listed, block);
    tape(listed, block);
    chart(listed, block);
    const missed = listed.missed + block.missed;
    $("missed").textContent = missed ? `(the screen fell behind: ${CEA.qty(missed)} market-data messages not shown on the tape and chart)` : "";
  }

  function stats(listed, block) {
    const set = (id, text) => { $(id).textContent = text; };
    set("stat-last", CEA.price(listed.last));
    const ch = $("stat-change");
    if (listed.last !== null) {
      const d = listed.last - listed.prior_close;
      // basis points, in integers, shown as a percentage with two decimals
      const bp = Math.round(d * 10000 / listed.prior_close);
      ch.textContent = (d >= 0 ? "+" : "") + CEA.price(d) + " (" + (bp >= 0 ? "+" : "-") + Math.floor(Math.abs(bp) / 100) + "." + String(Math.abs(bp) % 100).padStart(2, "0") + " %)";
      ch.className = "v " + (d > 0 ? "bid" : d < 0 ? "ask" : "");
    } else { ch.textContent = "—"; ch.className = "v"; }
    set("stat-open", CEA.price(listed.open));
    set("stat-high", CEA.price(listed.high));
    set("stat-low", CEA.price(listed.low));
    set("stat-vwap", CEA.price(listed.volume ? listed.close_so_far : null));
    set("stat-prior", CEA.price(listed.prior_close));
    set("stat-volume", CEA.qty(listed.volume) + " t");
    set("stat-block-volume", CEA.qty(block.volume) + " t");
    set("stat-turnover", CEA.money(listed.turnover + block.turnover));
    set("stat-band-listed", CEA.price(listed.bands.listed[0]) + " – " + CEA.price(listed.bands.listed[1]));
    set("stat-band-block", CEA.price(listed.bands.block[0]) + " – " + CEA.price(listed.bands.block[1]));
    const s = listed.summary;
    $("day-summary").textContent = s ? `last day closed ${s.date}: close ${CEA.price(s.close)} (prior ${CEA.price(s.prior_close)}), listed volume ${CEA.qty(s.volume)} t` : "";
  }

  function ladder(table, ch) {
    const rows = [CEA.el("tr", {}, CEA.el("th", { class: "l", text: "" }), CEA.el("th", { text: "orders" }),
                                   CEA.el("th", { text: "qty t" }), CEA.el("th", { text: "price" }))];
    const most = Math.max(1, ...ch.bids.map((l) => l[1]), ...ch.asks.map((l) => l[1]));
    const row = (cls, l) => CEA.el("tr", { class: cls, "data-price": l[0] },
      CEA.el("td", { class: "bar" }, CEA.el("div", { style: `width:${Math.max(2, Math.round(100 * l[1] / most))}%` })),
      CEA.el("td", { class: "orders", text: CEA.qty(l[2]) }),
      CEA.el("td", { class: "qty", text: CEA.qty(l[1]) }),
      CEA.el("td", { class: "price", text: CEA.price(l[0]) }));
    for (const l of ch.asks.slice().reverse()) rows.push(row("ask", l));
    const spread = ch.bids.length && ch.asks.length ? "spread " + CEA.price(ch.asks[0][0] - ch.bids[0][0]) : (ch.bids.length || ch.asks.length ? "one side only" : "empty book");
    rows.push(CEA.el("tr", { class: "spread" }, CEA.el("td", { colspan: 4, text: spread })));
    for (const l of ch.bids) rows.push(row("bid", l));
    table.replaceChildren(...rows);
  }

  function tape(listed, block) {
    const all = listed.tape.map((t) => [t, "L"]).concat(block.tape.map((t) => [t, "B"]));
    all.sort((a, b) => b[0].ts - a[0].ts || b[0].id - a[0].id);
    const today = all.length ? Math.floor(all[0][0].ts / 86400e6) : 0;  // the latest day's only
    const rows = all.filter(([t]) => Math.floor(t.ts / 86400e6) === today).slice(0, TAPE).map(([t, seg]) => CEA.el("tr", { "data-trade": t.id },
      CEA.el("td", { class: "l time", text: CEA.time(t.ts) }),
      CEA.el("td", { class: "l seg", text: seg }),
      CEA.el("td", { class: "price " + (t.aggressor === 1 ? "bid" : "ask"), text: CEA.price(t.price) }),
      CEA.el("td", { class: "qty", text: CEA.qty(t.qty) }),
      CEA.el("td", { class: "l " + (t.aggressor === 1 ? "bid" : "ask"), text: t.aggressor === 1 ? "buyer" : "seller" })));
    document.querySelector("#tape tbody").replaceChildren(...rows);
    $("tape-empty").hidden = rows.length > 0;
  }

  // the day's points of both segments on one time axis (seconds), the listed line, its
  // running VWAP (the close in the making) and the block trades as dots
  function chartData(listed, block) {
    const xs = new Map();
    for (const p of listed.points) xs.set(p[0], [p, null]);
    for (const p of block.points) { const e = xs.get(p[0]) || [null, null]; e[1] = p; xs.set(p[0], e); }
    const keys = [...xs.keys()].sort((a, b) => a - b);
    const x = [], last = [], vw = [], blk = [];
    let volume = 0, turnover = 0;
    for (const k of keys) {
      const [l, b] = xs.get(k);
      x.push(k / 1e6);
      if (l) { volume += l[4]; turnover += l[5]; }
      last.push(l ? l[1] / 100 : null);
      vw.push(l && volume ? Math.floor((turnover + Math.floor(volume / 2)) / volume) / 100 : null);
      blk.push(b ? b[1] / 100 : null);
    }
    return [x, last, vw, blk];
  }

  // the price scale: the listed band and the trades, or (fit) the trades and the prior close
  function yRange(mn, mx) {
    const c = state.chartBands;
    if (state.scale === "trades" && mn !== null && mn !== undefined) {
      const lo0 = Math.min(mn, c.prior), hi0 = Math.max(mx, c.prior);
      const pad = Math.max((hi0 - lo0) * 0.08, c.prior * 0.005);  // at least ±0.5 %
      return [lo0 - pad, hi0 + pad];
    }
    const [blo, bhi] = state.scale === "block" ? [c.lo30, c.hi30] : [c.lo10, c.hi10];
    const lo = Math.min(blo, mn ?? blo), hi = Math.max(bhi, mx ?? bhi);
    const pad = (hi - lo) * 0.04;
    return [lo - pad, hi + pad];
  }

  function chart(listed, block) {
    const data = chartData(listed, block);
    const day = Math.floor((state.clock || Date.now() * 1000) / 86400e6) * 86400;
    const lo10 = listed.bands.listed[0] / 100, hi10 = listed.bands.listed[1] / 100;
    const lo30 = listed.bands.block[0] / 100, hi30 = listed.bands.block[1] / 100;
    const prior = listed.prior_close / 100;
    // before the chart is made: its scales' range functions and draw hook read them
    state.chartBands = { lo10, hi10, lo30, hi30, prior };
    state.chartRange = [day + 9.5 * 3600, day + 15 * 3600];
    if (!state.chart) {
      const bandLines = (u) => {
        const ctx = u.ctx, { left, top, width, height } = u.bbox;
        const c = state.chartBands;
        // the midday break (11:30-13:00): no listed trading; a line across it only joins
        const b0 = u.valToPos(state.chartRange[0] + 2 * 3600, "x", true);
        const b1 = u.valToPos(state.chartRange[0] + 3.5 * 3600, "x", true);
        ctx.save(); ctx.fillStyle = "rgba(138,152,168,0.08)"; ctx.fillRect(b0, top, b1 - b0, height);
        ctx.fillStyle = CEA.css("--dim"); ctx.font = `${11 * devicePixelRatio}px sans-serif`;
        ctx.textAlign = "center"; ctx.textBaseline = "bottom";  // below the band lines
        ctx.fillText("midday break", (b0 + b1) / 2, top + height - 4 * devicePixelRatio); ctx.restore();
        const yline = (v, color, dash, label) => {
          const y = u.valToPos(v, "y", true);
          if (y < top || y > top + height) return;
          ctx.save(); ctx.strokeStyle = color; ctx.setLineDash(dash); ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + width, y); ctx.stroke();
          ctx.fillStyle = color; ctx.font = `${11 * devicePixelRatio}px sans-serif`;
          ctx.textAlign = "left"; ctx.textBaseline = "bottom";
          ctx.fillText(label, left + 6 * devicePixelRatio, y - 4 * devicePixelRatio); ctx.restore();
        };
        yline(c.hi10, CEA.css("--warn"), [], "+10 % " + c.hi10.toFixed(2));
        yline(c.lo10, CEA.css("--warn"), [], "−10 % " + c.lo10.toFixed(2));
        yline(c.hi30, CEA.css("--ask"), [6, 4], "+30 % " + c.hi30.toFixed(2));
        yline(c.lo30, CEA.css("--ask"), [6, 4], "−30 % " + c.lo30.toFixed(2));
        yline(c.prior, CEA.css("--dim"), [2, 4], "prior close " + c.prior.toFixed(2));
      };
      state.chart = CEA.chart($("chart"), {
        height: 300,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
        axes: [
          { stroke: CEA.css("--dim"), grid: { stroke: CEA.css("--line") },
            values: (u, splits) => splits.map((s) => CEA.time(s * 1e6).slice(0, 5)) },
          { stroke: CEA.css("--dim"), grid: { stroke: CEA.css("--line") },
            values: (u, splits) => splits.map((s) => s.toFixed(2)) },
        ],
        scales: {
          x: { time: true, range: () => [state.chartRange[0], state.chartRange[1]] },
          y: { range: (u, mn, mx) => yRange(mn, mx) },
        },
        series: [
          { label: "time", value: (u, v) => v === null ? "—" : CEA.time(v * 1e6) },
          { label: "listed last", stroke: CEA.css("--accent"), width: 1.5, spanGaps: true,
            value: (u, v) => v === null ? "—" : v.toFixed(2) },
          { label: "close so far (listed VWAP)", stroke: CEA.css("--bid"), width: 1, dash: [4, 3], spanGaps: true,
            value: (u, v) => v === null ? "—" : v.toFixed(2) },
          { label: "block trades", stroke: CEA.css("--ask"), paths: () => null,
            points: { show: true, size: 7, fill: CEA.css("--ask") },
            value: (u, v) => v === null ? "—" : v.toFixed(2) },
        ],
        hooks: { draw: [bandLines] },
      }, data);
    }
    state.chart.setData(data);
    const prices = data.slice(1).flat().filter((v) => v !== null);
    const [ymin, ymax] = yRange(prices.length ? Math.min(...prices) : null, prices.length ? Math.max(...prices) : null);
    const off = [];
    if (lo10 < ymin || hi10 > ymax) off.push(`±10 % listed band ${lo10.toFixed(2)} – ${hi10.toFixed(2)} lies outside this scale`);
    if (lo30 < ymin || hi30 > ymax) off.push(`±30 % block band ${lo30.toFixed(2)} – ${hi30.toFixed(2)} lies outside this scale`);
    $("chart-note").textContent = (data[0].length ? "" : "no trades yet today; ") + off.join("; ");
  }

  // ------------------------------------------------------------ the operator

  async function api(path, body) {
    const r = await fetch(path, body === undefined ? { credentials: "same-origin" } :
      { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body) });
    let data = {};
    try { data = await r.json(); } catch (e) { data = { ok: false, error: r.statusText }; }
    return [r.status, data];
  }

  async function opRefresh() {
    const [status, d] = await api("/api/operator");
    if (status !== 200) { opShow(false); return; }
    opShow(true);
    $("op-sessions-count").textContent = `${d.sessions.length} · ${d.connections} / ${d.max_connections}`;
    $("op-rate").textContent = CEA.qty(d.commands_per_s["1s"]) + " · " + CEA.qty(d.commands_per_s["10s"]);
    const l = d.ack_latency;
    $("op-latency").textContent = l.samples ? `${CEA.qty(l.p50_us)} · ${CEA.qty(l.p99_us)}` : "no turns yet";
    $("op-latency-tail").textContent = l.samples ? `${CEA.qty(l.p999_us)} · ${CEA.qty(l.max_us)}` : "—";
    $("op-journal").textContent = `${d.journal.lag_records} · ${d.journal.waiting_turns} (fsync ${d.journal.fsync ? "on" : "off"})`;
    const led = d.ledger;
    $("op-ledger").textContent = !led.enabled ? "off" : led.failed ? "FAILED: " + led.failed : (led.alive ? "" : "down · ") + CEA.qty(led.behind);
    $("op-uptime").textContent = Math.floor(d.uptime_s / 60) + " min " + (d.uptime_s % 60) + " s";
    $("op-viewers").textContent = d.viewers;
    document.querySelector("#op-instruments tbody").replaceChildren(...d.instruments.map((i) =>
      CEA.el("tr", { "data-instrument": i.instrument },
        CEA.el("td", { class: "l", text: i.instrument }),
        CEA.el("td", { class: "l" }, CEA.el("span", { class: "badge status-" + i.status, text: i.status })),
        CEA.el("td", { class: "l" },
          i.halted ? CEA.el("button", { type: "button", class: "resume", text: "Resume", onclick: () => opCommand("resume", i.instrument) })
                   : CEA.el("button", { type: "button", class: "halt danger", text: "Halt", onclick: () => opCommand("halt", i.instrument) })))));
    document.querySelector("#op-sessions tbody").replaceChildren(...d.sessions.map((s) =>
      CEA.el("tr", {}, CEA.el("td", { class: "l", text: s.account }), CEA.el("td", { class: "l", text: s.protocol }),
        CEA.el("td", { class: "l", text: s.peer }), CEA.el("td", { text: s.connected_s + " s" }))));
  }

  async function opCommand(what, instrument) {
    $("op-result").textContent = `${what} ${instrument}…`;
    const [, d] = await api("/api/operator/" + what, { instrument });
    $("op-result").textContent = d.ok ? `${instrument}: ${d.halted ? "halted" : "resumed"} (listed ${d.status[0]}, block ${d.status[1]})` : "refused: " + d.error;
    $("op-result").className = d.ok ? "ok" : "error";
    opRefresh();
  }

  function opShow(loggedOn) {
    $("op-login").hidden = loggedOn;
    $("op-panel").hidden = !loggedOn;
    clearInterval(state.opTimer);
    state.opTimer = loggedOn ? setInterval(opRefresh, 1000) : null;
  }

  $("op-toggle").addEventListener("click", () => {
    const panel = $("operator");
    panel.hidden = !panel.hidden;
    if (!panel.hidden) { opRefresh(); panel.scrollIntoView({ behavior: "smooth" }); }
    else opShow(false);
  });
  $("op-login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const [status, d] = await api("/api/operator/login", { token: $("op-token").value });
    $("op-token").value = "";
    if (status === 200 && d.ok) { $("op-error").textContent = ""; opRefresh(); }
    else $("op-error").textContent = "refused: " + (d.error || status);
  });
  $("op-logout").addEventListener("click", async () => { await api("/api/operator/logout", {}); opShow(false); });
  // the price scale: the listed band (±10 %), the block band (±30 %), or the day's trades
  const SCALES = { listed: "scale: ±10 % band", block: "scale: ±30 % band", trades: "scale: the trades" };
  $("chart-fit").addEventListener("click", (e) => {
    state.scale = { listed: "block", block: "trades", trades: "listed" }[state.scale];
    e.target.textContent = SCALES[state.scale];
    state.dirty = true; render();
  });
  $("instrument").addEventListener("change", (e) => {
    state.selected = Number(e.target.value); state.dirty = true; render();
  });
  setInterval(() => { if (state.clock) { state.clock += 1e6; render(); } }, 1000);
  connect();
})();
