// metrics-agg local dashboard: reads AggregatedMetrics through /graphql the way the Plexus
// dashboard does (dashboard/hooks/useUnifiedMetrics.ts in AnthusAI/Plexus) and draws them
// with chart.js. Plain JS + SVG, no dependencies. The API key lives in this tab's memory
// only and goes out only as the x-api-key header.
"use strict";

// The Plexus dashboard's query, field for field, plus `$nextToken` (upstream reads one page
// and warns when more exist; a chart here follows nextToken so a page cap never truncates
// it) and `scorecardId`/`scoreId`, which tell the scoped feedback series apart.
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
      scorecardId
      scoreId
    }
    nextToken
  }
}`;

const REFRESH_MS = 2000;
const SIZES = [1, 5, 15, 60];
const PRESETS = [15, 60, 180, 360, 1440]; // range choices, minutes
const FIT_SHARE = 0.95; // "fit the data": the shortest range holding this share of records
const MAX_SLOTS = 1440;
const state = {
  key: null, account: null, size: "auto", range: "fit", scorecard: null, score: null,
  timer: null, busy: false, generation: 0, lastOk: null,
};

class AuthError extends Error {}

/** The controls changed: results of refreshes started before are dropped. */
function bump() {
  state.generation += 1;
  document.body.dataset.generation = String(state.generation);
}

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
async function queryRecordType(accountId, recordType, startMs, endMs) {
  const items = [];
  let nextToken = null;
  do {
    const data = await postGraphQL(QUERY, {
      accountId, recordType,
      startTime: new Date(startMs).toISOString(), endTime: new Date(endMs).toISOString(),
      nextToken,
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

const alignDown = (ms, minutes) => Math.floor(ms / (minutes * MINUTE)) * minutes * MINUTE;

/** The smallest bucket size that draws `spanMin` in at most 96 bars. */
const autoSize = (spanMin) => SIZES.find((s) => spanMin / s <= 96) ?? 60;

/**
 * The chart's slots: `spanMin` minutes of `size`-minute slots ending with the one holding
 * `endMs`, or starting at `fromMs` when given (since first record). At most MAX_SLOTS
 * slots, the latest kept.
 */
function chartWindow(endAtMs, size, spanMin, fromMs) {
  const width = size * MINUTE;
  const endMs = alignDown(endAtMs - 1, size) + width;
  let startMs = fromMs === undefined
    ? endMs - Math.max(1, Math.ceil(spanMin / size)) * width
    : Math.min(alignDown(fromMs, size), endMs - width);
  const clipped = (endMs - startMs) / width > MAX_SLOTS;
  if (clipped) startMs = endMs - MAX_SLOTS * width;
  const slots = [];
  for (let s = startMs; s < endMs; s += width) slots.push([s, s + width]);
  return { startMs, endMs, size, slots, clipped };
}

/**
 * "Fit the data": the shortest preset range that holds FIT_SHARE of the records of the
 * last 24 h, counted from the 1-minute buckets (each record is in exactly one). A lone late
 * record hours back does not stretch the axis; "since first record" shows it. null when
 * the last 24 h hold no record.
 */
function fitRange(all, types, nowMs) {
  const perMinute = [];
  types.forEach((t, i) => {
    if (t.scope) return;
    for (const r of all[i]) if (r.numberOfMinutes === 1) perMinute.push([r.startMs, r.count]);
  });
  const total = perMinute.reduce((n, [, c]) => n + c, 0);
  if (total === 0) return null; // nothing in the last 24 h: since the first record, if any
  for (const preset of PRESETS) {
    const from = alignDown(nowMs, 1) + MINUTE - preset * MINUTE;
    const held = perMinute.reduce((n, [s, c]) => n + (s >= from ? c : 0), 0);
    if (held >= FIT_SHARE * total) return preset;
  }
  return PRESETS[PRESETS.length - 1];
}

const spanText = (min) => (min < 60 ? `${min} min` : min <= 2880 ? `${min / 60} h`
  : `${Math.round(min / 1440)} days`);

/**
 * What the charts show now: window, effective bucket size and the words for it. `fitted`:
 * the fitted span in minutes, null (fit found nothing in the last 24 h) or undefined
 * (since first record).
 */
function planView(status, nowMs, fitted) {
  const extent = status.extent ? status.extent[state.account] : undefined;
  const sizeFor = (spanMin) => (state.size === "auto" ? autoSize(spanMin) : state.size);
  if (state.range === "fit" && fitted === null) {
    if (!extent) return planView(status, nowMs, PRESETS[0]);
    // Nothing in the last day: the axis runs from the first bucket to the last one.
    const firstMs = Date.parse(extent.first);
    const lastMs = Date.parse(extent.last);
    const win = chartWindow(lastMs, sizeFor(Math.max(1, (lastMs - firstMs) / MINUTE)), 0, firstMs);
    const text = `from ${dayHhmm(win.startMs)} to ${dayHhmm(win.endMs)} UTC ` +
      "(fit to the data; nothing in the last 24 h)";
    return { win, text, rangeLabel: "data" };
  }
  if (fitted === undefined) {
    const firstMs = extent ? Date.parse(extent.first) : nowMs;
    const spanMin = Math.max(1, (nowMs - firstMs) / MINUTE);
    const win = chartWindow(nowMs + 1, sizeFor(spanMin), spanMin, firstMs);
    const text = win.clipped
      ? `in the last ${spanText((win.endMs - win.startMs) / MINUTE)} (larger buckets show ` +
        "all since the first record)"
      : `since the first record (${dayHhmm(win.startMs)} UTC)`;
    return { win, text, rangeLabel: "first" };
  }
  const spanMin = state.range === "fit" ? fitted : state.range;
  const win = chartWindow(nowMs + 1, sizeFor(spanMin), spanMin);
  const fitNote = state.range === "fit" ? " (fit to the data)" : "";
  return { win, text: `in the last ${spanText(spanMin)}${fitNote}`, rangeLabel: String(spanMin) };
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return "now";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The mapping's words: "current" only when this server delivers and nothing waits. */
function freshnessText(status, pending, oldest) {
  const waiting = `${fmt(pending)} stream record${pending === 1 ? "" : "s"} waiting ` +
    `(oldest written ${ago(status.now - oldest)} ago)`;
  if (status.streamMapping) {
    return pending === 0 ? "Every stream record is delivered: buckets are current." : `${waiting}.`;
  }
  const off = "This server does not deliver stream records (started with --no-mapping). ";
  return pending === 0
    ? off + "None wait in the database now; new writes reach the charts only if another " +
      "process on this database (such as demo --keep) delivers them. The activity below is " +
      "what the database records, whoever delivered."
    : off + `${waiting}: the charts miss them until another process on this database ` +
      "delivers them.";
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
  const state_ = document.createElement("span");
  state_.className = status.streamMapping ? "badge on" : "badge off";
  state_.textContent = status.streamMapping ? "delivering" : "off in this server";
  h2.append(state_);
  const summary = document.createElement("p");
  summary.id = "freshness";
  summary.dataset.mapping = status.streamMapping ? "on" : "off";
  summary.dataset.pending = String(pending);
  summary.dataset.invocations = String(calls);
  summary.dataset.failed = String(failed);
  summary.dataset.parked = String(parked);
  summary.textContent = `${freshnessText(status, pending, oldest)} ${fmt(calls)} invocations, ` +
    `${fmt(failed)} failed, ${fmt(parked)} parked.`;
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
      r.last_at === null ? "—" : `${ago(status.now - r.last_at)} ago`,
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
  const wrap = document.createElement("div");
  wrap.className = "table-wrap";
  wrap.append(table);
  aside.replaceChildren(h2, summary, wrap, note);
}

/** Replace a select's options only when they changed (an open dropdown stays open). */
function fillSelect(select, values, wanted) {
  const same = select.options.length === values.length &&
    values.every((v, i) => select.options[i].value === v);
  if (!same) select.replaceChildren(...values.map((v) => new Option(v, v)));
  const current = wanted && values.includes(wanted) ? wanted : values[0] ?? null;
  if (current) select.value = current;
  select.disabled = values.length === 0;
  return current;
}

/** Scorecards and scores present in the fetched scoped buckets; keeps the user's choice. */
function fillScopes(types, all) {
  const scorecards = new Set();
  const scores = new Set();
  types.forEach((t, i) => {
    for (const r of t.scope ? all[i] : []) if (r.scorecardId) scorecards.add(r.scorecardId);
  });
  const sorted = [...scorecards].sort();
  state.scorecard = fillSelect($("scorecard"), sorted, state.scorecard);
  types.forEach((t, i) => {
    if (t.scope !== "score") return;
    for (const r of all[i]) if (r.scorecardId === state.scorecard && r.scoreId) scores.add(r.scoreId);
  });
  state.score = fillSelect($("score"), [...scores].sort(), state.score);
  $("scopes").hidden = !types.some((t) => t.scope);
}

function drawCharts(types, all, view, generation) {
  const plain = [];
  const scoped = [];
  types.forEach((t, i) => {
    let records = all[i];
    let scopeId = null;
    if (t.scope === "scorecard") {
      scopeId = state.scorecard;
      records = records.filter((r) => r.scorecardId === scopeId);
    } else if (t.scope === "score") {
      scopeId = state.score;
      records = records.filter((r) => r.scoreId === scopeId);
    }
    const points = view.win.slots.map(([s, e]) => ({ s, e, ...selectBuckets(records, s, e) }));
    const total = selectBuckets(records, view.win.startMs, view.win.endMs);
    const tracksErrors = all[i].some((r) => r.errorCount !== null && r.errorCount !== undefined);
    const section = chartSection(t.recordType, t.model, points, total, view.win, scopeId,
      tracksErrors);
    (t.scope ? scoped : plain).push(section);
  });
  $("charts").replaceChildren(...plain);
  $("scoped").replaceChildren(...scoped);
  for (const section of [...plain, ...scoped]) renderChart(section);
  const charts = $("charts");
  charts.dataset.size = String(view.win.size);
  charts.dataset.range = view.rangeLabel;
  charts.dataset.start = iso(view.win.startMs);
  charts.dataset.end = iso(view.win.endMs);
  charts.dataset.account = state.account;
  $("shown").textContent = `${view.text[0].toUpperCase()}${view.text.slice(1)}, ` +
    `${view.win.size}-minute buckets.`;
  charts.dataset.scorecard = state.scorecard ?? "";
  charts.dataset.score = state.score ?? "";
  charts.dataset.generation = String(generation); // tests wait for the controls' generation
  // A tooltip open over a redrawn chart shows the new values of the same slot.
  const tip = $("tooltip");
  if (!tip.hidden) {
    const section = document.querySelector(
      `section.chart[data-record-type="${tip.dataset.recordType}"]`);
    const i = section ? section.points.findIndex((p) => iso(p.s) === tip.dataset.start) : -1;
    if (i >= 0) showTooltip(section, i, Number(tip.dataset.x), Number(tip.dataset.y));
    else hideTooltip();
  }
}

async function refresh() {
  if (state.busy || !state.key) return;
  state.busy = true;
  const generation = state.generation;
  try {
    const status = await fetchStatus();
    state.account = fillSelect($("account"), status.accounts, state.account);
    drawActivity(status);
    $("controls").hidden = false;
    $("connect").hidden = true;
    $("legend").hidden = !state.account;
    if (!state.account) {
      setMessage("No AggregatedMetrics yet. Write records (metrics-agg demo --keep DIR, or " +
        "metrics-agg seed) and they appear here as the mapping delivers them.");
      $("charts").replaceChildren();
      $("scoped").replaceChildren();
      $("scopes").hidden = true;
    } else {
      const nowMs = Date.now();
      const types = status.recordTypes;
      const fetchAll = (fromMs, toMs) => Promise.all(types.map((t) =>
        queryRecordType(state.account, t.recordType, fromMs, toMs)));
      // Fitting reads the last 24 h (from the first bucket on); the fitted window lies
      // inside it, unless the last 24 h are empty and the fit falls back to the first record.
      let view = state.range === "fit" ? null
        : planView(status, nowMs, state.range === "first" ? undefined : state.range);
      let fromMs;
      let toMs;
      if (view === null) {
        const extent = status.extent[state.account];
        const first = extent ? Date.parse(extent.first) : nowMs;
        fromMs = alignDown(Math.max(first, nowMs - 1440 * MINUTE), 60);
        toMs = alignDown(nowMs, 60) + 60 * MINUTE;
      } else {
        fromMs = view.win.startMs;
        toMs = view.win.endMs;
      }
      let all = await fetchAll(fromMs, toMs);
      if (generation !== state.generation) return; // the controls changed meanwhile
      if (view === null) {
        view = planView(status, nowMs, fitRange(all, types, nowMs));
        if (view.win.startMs < fromMs || view.win.endMs > toMs) {
          all = await fetchAll(view.win.startMs, view.win.endMs);
          if (generation !== state.generation) return;
        }
      }
      fillScopes(types, all);
      drawCharts(types, all, view, generation);
      setMessage("");
    }
    state.lastOk = Date.now();
    const live = $("live");
    live.className = "";
    const size = $("charts").dataset.size;
    live.textContent = `live · updated ${new Date().toISOString().slice(11, 19)} UTC · ` +
      `every ${REFRESH_MS / 1000} s` + (state.account && size ? ` · ${size}-minute buckets` : "");
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
  bump();
  $("controls").hidden = true;
  $("connect").hidden = false;
  $("legend").hidden = true;
  $("scopes").hidden = true;
  $("charts").replaceChildren();
  $("scoped").replaceChildren();
  $("activity").replaceChildren();
  $("live").textContent = "";
  hideTooltip();
  setMessage(message, true);
}

/** A control changed: drop any refresh in flight and draw with the new choice. */
function changed(apply) {
  return (e) => {
    apply(e.target.value);
    bump();
    refresh();
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("api-key");
    state.key = input.value;
    input.value = "";
    bump();
    setMessage("Connecting…");
    schedule();
  });
  $("account").addEventListener("change", changed((v) => { state.account = v; }));
  $("range").addEventListener("change", changed((v) => {
    state.range = v === "fit" || v === "first" ? v : Number(v);
  }));
  $("scorecard").addEventListener("change", changed((v) => { state.scorecard = v; }));
  $("score").addEventListener("change", changed((v) => { state.score = v; }));
  for (const radio of document.querySelectorAll("input[name=size]")) {
    radio.addEventListener("change", changed((v) => {
      state.size = v === "auto" ? "auto" : Number(v);
    }));
  }
  $("disconnect").addEventListener("click", () => forget("Key forgotten."));
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const section of document.querySelectorAll("section.chart")) renderChart(section);
    }, 100);
  });
});
