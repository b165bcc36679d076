// The web view's shared helpers: number formats (prices and money arrive as integer fen,
// quantities as integer tonnes), a small DOM builder and a themed uPlot chart.
"use strict";
const CEA = (() => {
  const group = (s) => s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  // fen -> "60.00" (integers only: no float rounding on the way)
  function price(fen) {
    if (fen === null || fen === undefined) return "—";
    const neg = fen < 0, a = Math.abs(fen);
    return (neg ? "-" : "") + group(String(Math.floor(a / 100))) + "." + String(a % 100).padStart(2, "0");
  }
  const qty = (t) => (t === null || t === undefined) ? "—" : (t < 0 ? "-" : "") + group(String(Math.abs(t)));
  // fen -> "7.66 bn" / "12.3 m" CNY, for large totals
  function money(fen) {
    if (fen === null || fen === undefined) return "—";
    const cny = fen / 100, a = Math.abs(cny);
    if (a >= 1e9) return (cny / 1e9).toFixed(2) + " bn";
    if (a >= 1e6) return (cny / 1e6).toFixed(2) + " m";
    return price(fen);
  }
  const tonnes = (t) => {
    if (t === null || t === undefined) return "—";
    const a = Math.abs(t);
    if (a >= 1e6) return (t / 1e6).toFixed(2) + " Mt";
    if (a >= 1e4) return (t / 1e3).toFixed(1) + " kt";
    return qty(t) + " t";
  };
  // exchange time (µs since 1970-01-01 in Shanghai local time) -> "HH:MM:SS"
  function time(us) {
    const s = Math.floor(us / 1e6) % 86400;
    const p = (n) => String(n).padStart(2, "0");
    return p(Math.floor(s / 3600)) + ":" + p(Math.floor(s / 60) % 60) + ":" + p(s % 60);
  }
  function date(us) { return new Date(Math.floor(us / 1e3)).toISOString().slice(0, 10); }
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  // a uPlot chart that fills its container's width and follows it on resize
  function chart(container, opts, data) {
    const width = () => Math.max(300, container.clientWidth - 4);
    const u = new uPlot(Object.assign({
      width: width(), height: 260,
      axes: [{ stroke: css("--dim"), grid: { stroke: css("--line") } },
             { stroke: css("--dim"), grid: { stroke: css("--line") } }],
    }, opts), data, container);
    new ResizeObserver(() => u.setSize({ width: width(), height: u.height })).observe(container);
    return u;
  }
  return { price, qty, money, tonnes, time, date, el, css, chart };
})();
