// metrics-agg local dashboard: reads AggregatedMetrics through /graphql the way the Plexus
// dashboard does (dashboard/hooks/useUnifiedMetrics.ts in AnthusAI/Plexus) and draws them.
// Plain JS + SVG, no dependencies. The API key lives in this tab's memory only and goes out
// only as the x-api-key header.
"use strict";

// The Plexus dashboard's query, field for field, plus `$nextToken`: upstream reads one page
// and warns when more exist; a chart here follows nextToken so a page cap never truncates it.
const QUERY = `query ListAggregatedMetricsByAccountRecordType(
  $accountId: String!
  $recordType: String!
  $startTime: String!
  $endTime: String!
  $nextToken: String
) {
  listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart(
    accountId: $accountId
    recordTypeTimeRangeStart: {
      between: [
        { recordType: $recordType, timeRangeStart: $startTime }
        { recordType: $recordType, timeRangeStart: $endTime }
      ]
    }
    sortDirection: DESC
    limit: 50000
    nextToken: $nextToken
  ) {
    items {
      accountId
      compositeKey
      recordType
      timeRangeStart
      timeRangeEnd
      numberOfMinutes
      count
      cost
      errorCount
      complete
      createdAt
      updatedAt
    }
    nextToken
  }
}`;

const REFRESH_MS = 2000;
const MINUTE = 60 * 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const state = {
  key: null, account: null, size: 5, hours: 3, status: null,
  timer: null, busy: false, generation: 0, lastOk: null,
};

class AuthError extends Error {}

const $ = (id) => document.getElementById(id);

function setMessage(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = isError ? "error" : "";
  m.hidden = !text;
}

async function postGraphQL(query, variables) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": state.key },
    body: JSON.stringify({ query, variables }),
    cache: "no-store",
  });
  if (response.status === 401) throw new AuthError("the server refused the API key");
  const body = await response.json();
  if (body.errors && body.errors.length) {
    throw new Error(body.errors.map((e) => e.message).join("; "));
  }
  return body.data;
}

async function fetchStatus() {
  const response = await fetch("/local/status", {
    headers: { "x-api-key": state.key },
    cache: "no-store",
  });
  if (response.status === 401) throw new AuthError("the server refused the API key");
  if (!response.ok) throw new Error(`/local/status answered ${response.status}`);
  return response.json();
}

/** Every bucket of one recordType whose start is in [start, end], all pages. */
async function queryRecordType(accountId, recordType, start, end) {
  const items = [];
  let nextToken = null;
  do {
    const data = await postGraphQL(QUERY, {
      accountId, recordType,
      startTime: start.toISOString(), endTime: end.toISOString(), nextToken,
    });
    const page = data.listAggregatedMetricsByAccountIdAndRecordTypeAndTimeRangeStart;
    items.push(...page.items);
    nextToken = page.nextToken;
  } while (nextToken);
  return items.map((r) => ({
    ...r,
    startMs: Date.parse(r.timeRangeStart),
    endMs: Date.parse(r.timeRangeEnd),
  }));
}

/**
 * Hierarchical bucket selection, as the Plexus dashboard's calculateMetricsFromRecords:
 * largest buckets first (then by start), a bucket is taken only when none of its time is
 * covered yet, so smaller buckets fill the gaps and nothing is counted twice. One
 * deliberate difference: only buckets lying inside [startMs, endMs) are candidates.
 * Upstream clamps a larger overlapping bucket to the range and then adds its whole count,
 * which puts an hour's records into a 5-minute slot.
 * errorCount is null when no selected bucket carries one (a model without errors).
 */
function selectBuckets(records, startMs, endMs) {
  const inside = records.filter((r) => r.startMs >= startMs && r.endMs <= endMs);
  inside.sort((a, b) => b.numberOfMinutes - a.numberOfMinutes || a.startMs - b.startMs);
  const covered = [];
  let count = 0;
  let errorCount = null;
  for (const r of inside) {
    if (covered.some(([s, e]) => r.startMs < e && r.endMs > s)) continue;
    covered.push([r.startMs, r.endMs]);
    count += r.count || 0;
    if (r.errorCount !== null && r.errorCount !== undefined) {
      errorCount = (errorCount || 0) + r.errorCount;
    }
  }
  return { count, errorCount };
}

/** The chart's slots: `hours` of `size`-minute slots, the last one holding now. */
function chartWindow(nowMs, size, hours) {
  const width = size * MINUTE;
  const endMs = Math.floor(nowMs / width) * width + width;
  const startMs = endMs - hours * 60 * MINUTE;
  const slots = [];
  for (let s = startMs; s < endMs; s += width) slots.push([s, s + width]);
  return { startMs, endMs, slots };
}

const fmt = (n) => n.toLocaleString("en-US");
const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
const iso = (ms) => new Date(ms).toISOString().replace(".000Z", "Z");

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(recordType, model, records, win) {
  const points = win.slots.map(([s, e]) => ({ s, e, ...selectBuckets(records, s, e) }));
  const total = selectBuckets(records, win.startMs, win.endMs);
  const section = document.createElement("section");
  section.className = "chart";
  section.dataset.recordType = recordType;
  section.dataset.count = String(total.count);
  section.dataset.errors = total.errorCount === null ? "" : String(total.errorCount);
  section.dataset.buckets = String(records.length);

  const h2 = document.createElement("h2");
  h2.textContent = recordType;
  const m = document.createElement("span");
  m.className = "model";
  m.textContent = model;
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
  totals.append(t, ` records in ${state.hours} h · `, errors);

  const W = 600, H = 150, left = 34, right = 6, top = 8, bottom = 20;
  const plotW = W - left - right, plotH = H - top - bottom;
  const max = Math.max(1, ...points.map((p) => p.count));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${recordType}: ${total.count} records` });
  chart.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }));
  chart.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, fmt(max)));
  chart.append(svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  const step = plotW / points.length;
  const gap = step > 4 ? 1 : 0;
  points.forEach((p, i) => {
    const x = left + i * step;
    const h = (p.count / max) * plotH;
    const bar = svg("rect", {
      class: "bar", x: x.toFixed(2), y: (top + plotH - h).toFixed(2),
      width: Math.max(0.5, step - gap).toFixed(2), height: h.toFixed(2),
      "data-start": iso(p.s), "data-count": p.count,
      "data-errors": p.errorCount === null ? "" : p.errorCount,
    });
    const errText = p.errorCount === null ? "" : `, ${fmt(p.errorCount)} errors`;
    bar.append(svg("title", {}, `${hhmm(p.s)}–${hhmm(p.e)} UTC: ${fmt(p.count)} records${errText}`));
    chart.append(bar);
    if (p.errorCount) {
      const eh = (p.errorCount / max) * plotH;
      chart.append(svg("rect", {
        class: "err", x: x.toFixed(2), y: (top + plotH - eh).toFixed(2),
        width: Math.max(0.5, step - gap).toFixed(2), height: eh.toFixed(2),
      }));
    }
  });
  const ticks = Math.min(6, points.length);
  for (let k = 0; k < ticks; k++) {
    const i = Math.round((k * (points.length - 1)) / Math.max(1, ticks - 1));
    const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
    const x = anchor === "start" ? left + i * step : anchor === "end" ? left + (i + 1) * step
      : left + i * step + step / 2;
    chart.append(svg("text", { x: x.toFixed(2), y: H - 6, "text-anchor": anchor },
      hhmm(points[i].s)));
  }
  section.append(h2, totals, chart);
  return section;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function drawActivity(status) {
  const aside = $("activity");
  const rows = status.tables;
  const pending = rows.reduce((n, r) => n + r.pending, 0);
  const oldest = Math.min(...rows.map((r) => r.oldest_pending ?? Infinity));
  const calls = rows.reduce((n, r) => n + r.invocations, 0);
  const failed = rows.reduce((n, r) => n + r.failed, 0);
  const parked = rows.reduce((n, r) => n + r.parked, 0);
  const h2 = document.createElement("h2");
  h2.textContent = "Event source mapping";
  const summary = document.createElement("p");
  summary.id = "freshness";
  summary.dataset.pending = String(pending);
  summary.dataset.invocations = String(calls);
  summary.dataset.failed = String(failed);
  summary.dataset.parked = String(parked);
  summary.textContent = pending === 0
    ? `Every stream record is delivered: buckets are current. ${fmt(calls)} invocations, ` +
      `${fmt(failed)} failed, ${fmt(parked)} parked.`
    : `${fmt(pending)} stream records waiting (oldest written ${ago(status.now - oldest)} ago). ` +
      `${fmt(calls)} invocations, ${fmt(failed)} failed, ${fmt(parked)} parked.`;
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const label of ["table", "calls", "records", "failed", "last", "lag", "waiting", "parked"]) {
    const th = document.createElement("th");
    th.textContent = label;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.model = r.model;
    const cells = [
      r.model, fmt(r.invocations), fmt(r.records), fmt(r.failed),
      r.last_at === null ? "—" : ago(status.now - r.last_at),
      r.last_lag === null ? "—" : `${r.last_lag.toFixed(1)} s`,
      r.pending ? `${fmt(r.pending)} (${ago(status.now - r.oldest_pending)})` : "0",
      fmt(r.parked),
    ];
    cells.forEach((text, i) => {
      const td = tr.insertCell();
      td.textContent = text;
      if ((i === 3 && r.failed) || (i === 7 && r.parked)) td.className = "bad";
    });
    if (r.last_error) tr.title = `last error: ${r.last_error}`;
  }
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = "last: since the last delivery ended · lag: from the oldest record's write " +
    "to its delivery's end · waiting: not yet checkpointed · parked: on the on-failure list";
  aside.replaceChildren(h2, summary, table, note);
}

function fillAccounts(accounts) {
  const select = $("account");
  const current = state.account && accounts.includes(state.account) ? state.account : accounts[0];
  const same = select.options.length === accounts.length &&
    accounts.every((a, i) => select.options[i].value === a);
  if (!same) {
    select.replaceChildren(...accounts.map((a) => new Option(a, a)));
  }
  state.account = current ?? null;
  if (state.account) select.value = state.account;
}

async function refresh() {
  if (state.busy || !state.key) return;
  state.busy = true;
  const generation = state.generation;
  try {
    const status = await fetchStatus();
    fillAccounts(status.accounts);
    drawActivity(status);
    $("controls").hidden = false;
    $("connect").hidden = true;
    if (!state.account) {
      setMessage("No AggregatedMetrics yet. Write records (metrics-agg demo --keep DIR, or " +
        "metrics-agg seed) and they appear here as the mapping delivers them.");
      $("charts").replaceChildren();
    } else {
      const win = chartWindow(Date.now(), state.size, state.hours);
      const types = status.recordTypes;
      const all = await Promise.all(types.map((t) =>
        queryRecordType(state.account, t.recordType, new Date(win.startMs), new Date(win.endMs))));
      if (generation !== state.generation) return; // the controls changed meanwhile
      const charts = types.map((t, i) => drawChart(t.recordType, t.model, all[i], win));
      $("charts").replaceChildren(...charts);
      $("charts").dataset.size = String(state.size);
      $("charts").dataset.hours = String(state.hours);
      $("charts").dataset.start = iso(win.startMs);
      $("charts").dataset.end = iso(win.endMs);
      $("charts").dataset.account = state.account;
      setMessage("");
    }
    state.lastOk = Date.now();
    const live = $("live");
    live.className = "";
    live.textContent = `live · updated ${new Date().toISOString().slice(11, 19)} UTC · ` +
      `every ${REFRESH_MS / 1000} s · ${state.size}-minute buckets`;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } catch (err) {
    if (err instanceof AuthError) {
      forget(`${err.message}: enter it again.`);
    } else {
      const live = $("live");
      live.className = "stale";
      live.textContent = `refresh failed (${err.message}); retrying`;
    }
  } finally {
    state.busy = false;
    // The controls changed while this refresh ran: its result was dropped, draw again now.
    if (state.key && generation !== state.generation) setTimeout(refresh, 0);
  }
}

function schedule() {
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
  refresh();
}

function forget(message) {
  clearInterval(state.timer);
  state.key = null;
  state.generation += 1;
  $("controls").hidden = true;
  $("connect").hidden = false;
  $("charts").replaceChildren();
  $("activity").replaceChildren();
  $("live").textContent = "";
  setMessage(message, true);
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("api-key");
    state.key = input.value;
    input.value = "";
    state.generation += 1;
    setMessage("Connecting…");
    schedule();
  });
  $("account").addEventListener("change", (e) => {
    state.account = e.target.value;
    state.generation += 1;
    refresh();
  });
  $("hours").addEventListener("change", (e) => {
    state.hours = Number(e.target.value);
    state.generation += 1;
    refresh();
  });
  for (const radio of document.querySelectorAll("input[name=size]")) {
    radio.addEventListener("change", (e) => {
      state.size = Number(e.target.value);
      state.generation += 1;
      refresh();
    });
  }
  $("disconnect").addEventListener("click", () => forget("Key forgotten."));
});
