// metrics-agg local dashboard: one bar chart per recordType, drawn as SVG at the chart's own
// pixel width (so 12 px labels stay 12 px), with round y ticks, gridlines, time ticks on
// round UTC minutes, and a tooltip with the slot's time, count and errors.
// Loaded before dashboard.js; plain JS, no dependencies.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MINUTE = 60 * 1000;
const CHART_H = 190;
const PAD = { left: 46, right: 10, top: 12, bottom: 24 };
// Time-axis label spacing, in minutes: the smallest that leaves room for a label.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080];

const fmt = (n) => n.toLocaleString("en-US");
const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");
const dayHhmm = (ms) => new Date(ms).toISOString().slice(5, 16).replace("T", " ");

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Round y ticks: the smallest 1/2/5 x 10^k step that spans max in at most five
 * intervals, and always at least two intervals (an empty chart still has a scale). */
function yTicks(max) {
  let step = 1;
  for (let k = 0; Math.ceil(max / step) > 5; k += 1) step = [1, 2, 5][k % 3] * 10 ** Math.floor(k / 3);
  const top = Math.max(2 * step, Math.ceil(max / step) * step);
  const ticks = [];
  for (let v = 0; v <= top; v += step) ticks.push(v);
  return { top, ticks };
}

/** Time ticks on round UTC minutes (multiples of the step), at least `gapPx` apart. */
function timeTicks(startMs, endMs, size, plotW, gapPx) {
  const spanMin = (endMs - startMs) / MINUTE;
  const step = TIME_STEPS.find((s) => s % size === 0 && (s / spanMin) * plotW >= gapPx) ??
    Math.ceil(spanMin / 1440) * 1440;
  const out = [];
  const first = Math.ceil(startMs / (step * MINUTE)) * step * MINUTE;
  for (let t = first; t <= endMs; t += step * MINUTE) out.push(t);
  return out;
}

const tooltip = () => document.getElementById("tooltip");

function showTooltip(section, i, clientX, clientY) {
  const p = section.points[i];
  if (!p) return;
  const tip = tooltip();
  const errors = p.errorCount === null ? "" : String(p.errorCount);
  tip.dataset.recordType = section.dataset.recordType;
  tip.dataset.start = iso(p.s);
  tip.dataset.count = String(p.count);
  tip.dataset.errors = errors;
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `${section.wide ? dayHhmm(p.s) : hhmm(p.s)}–${hhmm(p.e)} UTC`;
  const count = document.createElement("div");
  count.className = "count";
  count.textContent = `count ${fmt(p.count)}`;
  const err = document.createElement("div");
  err.className = p.errorCount ? "errors" : "errors none";
  // An empty slot of a model whose buckets carry errorCount has none; "not defined" is for
  // a model without error rules.
  err.textContent = p.errorCount === null && !section.tracksErrors ? "errors not defined"
    : `errors ${fmt(p.errorCount ?? 0)}`;
  tip.replaceChildren(when, count, err);
  tip.hidden = false;
  // Placed in page coordinates (not fixed), so a full-page screenshot shows it in place.
  const box = tip.getBoundingClientRect();
  const x = Math.min(clientX + 14, document.documentElement.clientWidth - box.width - 6);
  const y = clientY - box.height - 12 < 0 ? clientY + 16 : clientY - box.height - 12;
  tip.style.left = `${Math.max(4, x) + window.scrollX}px`;
  tip.style.top = `${y + window.scrollY}px`;
  tip.dataset.x = String(clientX);
  tip.dataset.y = String(clientY);
}

function hideTooltip() {
  tooltip().hidden = true;
}

/**
 * Draw `section.points` (one per slot: s, e, count, errorCount) into the section's SVG at
 * its current width. Called again on resize; the data stays on the section.
 */
function renderChart(section) {
  const host = section.querySelector(".plot");
  const W = Math.max(240, Math.floor(host.clientWidth));
  const H = CHART_H;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const points = section.points;
  const { startMs, endMs, size } = section.win;
  const max = Math.max(0, ...points.map((p) => p.count));
  const { top, ticks } = yTicks(max);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-label": `${section.dataset.recordType}: ${section.dataset.count} records`,
  });
  const grid = svg("g", { class: "grid" });
  for (const v of ticks) {
    grid.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
    chart.append(svg("text", { class: "ytick", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" },
      fmt(v)));
  }
  chart.prepend(grid);
  const step = plotW / points.length;
  const gap = step > 5 ? Math.min(2, step * 0.15) : 0;
  const bars = svg("g", {});
  const hits = svg("g", { class: "hits" });
  points.forEach((p, i) => {
    const x = PAD.left + i * step;
    const w = Math.max(0.5, step - gap).toFixed(2);
    const bar = svg("rect", {
      class: "bar", x: x.toFixed(2), y: y(p.count).toFixed(2), width: w,
      height: (PAD.top + plotH - y(p.count)).toFixed(2),
      "data-start": iso(p.s), "data-count": p.count,
      "data-errors": p.errorCount === null ? "" : p.errorCount,
    });
    bars.append(bar);
    if (p.errorCount) {
      bars.append(svg("rect", {
        class: "err", x: x.toFixed(2), y: y(p.errorCount).toFixed(2), width: w,
        height: (PAD.top + plotH - y(p.errorCount)).toFixed(2), "data-start": iso(p.s),
      }));
    }
    // A transparent full-height target per slot: empty slots show their zero on hover too.
    hits.append(svg("rect", {
      class: "hit", x: x.toFixed(2), y: PAD.top, width: step.toFixed(2), height: plotH,
      "data-i": i, "data-start": iso(p.s),
    }));
  });
  chart.append(bars);
  chart.append(svg("line", { class: "axis", x1: PAD.left, x2: W - PAD.right,
    y1: PAD.top + plotH, y2: PAD.top + plotH }));
  const wide = endMs - startMs > 24 * 60 * MINUTE;
  section.wide = wide;
  for (const t of timeTicks(startMs, endMs, size, plotW, wide ? 110 : 64)) {
    const x = PAD.left + ((t - startMs) / (endMs - startMs)) * plotW;
    const anchor = x < PAD.left + 20 ? "start" : x > W - PAD.right - 20 ? "end" : "middle";
    chart.append(svg("line", { class: "tick", x1: x, x2: x, y1: PAD.top + plotH,
      y2: PAD.top + plotH + 4 }));
    chart.append(svg("text", { class: "xtick", x: x.toFixed(2), y: H - 6, "text-anchor": anchor },
      wide && t % (1440 * MINUTE) === 0 ? dayHhmm(t) : hhmm(t)));
  }
  chart.append(hits);
  const show = (e) => {
    const i = Number(e.target.dataset.i);
    if (!Number.isNaN(i)) showTooltip(section, i, e.clientX, e.clientY);
  };
  hits.addEventListener("mousemove", show);
  hits.addEventListener("mouseover", show); // a redraw under a resting pointer
  hits.addEventListener("mouseleave", (e) => {
    if (!(e.relatedTarget && e.relatedTarget.classList && e.relatedTarget.classList.contains("hit"))) {
      hideTooltip();
    }
  });
  host.replaceChildren(chart);
}

/** A chart card: title, totals, and a `.plot` to draw into once it has a width. */
function chartSection(recordType, model, points, total, win, scopeId, tracksErrors) {
  const section = document.createElement("section");
  section.className = "chart";
  section.dataset.recordType = recordType;
  section.dataset.count = String(total.count);
  section.dataset.errors = total.errorCount === null ? "" : String(total.errorCount);
  if (scopeId) section.dataset.scope = scopeId;
  section.points = points;
  section.win = win;
  section.tracksErrors = tracksErrors;

  const h2 = document.createElement("h2");
  h2.textContent = recordType;
  const m = document.createElement("span");
  m.className = "model";
  m.textContent = scopeId ?? model; // the scoped charts name their scorecard or score
  h2.append(m);

  const totals = document.createElement("div");
  totals.className = "totals";
  const t = document.createElement("span");
  t.className = "total";
  t.textContent = fmt(total.count);
  const errors = document.createElement("span");
  if (total.errorCount === null) {
    errors.className = "unset";
    errors.textContent = "errors not defined";
  } else {
    errors.className = total.errorCount > 0 ? "errors" : "errors none";
    errors.textContent = `${fmt(total.errorCount)} error${total.errorCount === 1 ? "" : "s"}`;
  }
  totals.append(t, " records · ", errors);
  const plot = document.createElement("div");
  plot.className = "plot";
  section.append(h2, totals, plot);
  return section;
}
