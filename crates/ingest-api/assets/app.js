// logcanary dashboard: reads the JSON APIs and polls them; no dependencies.
// Every call sends the operator token saved in the page (LOGCANARY_DASHBOARD_TOKEN, or the
// read token for a read-only page) as a bearer token, never an HMAC key. In production
// every read needs it.
"use strict";

const POLL_MS = 5000;
const TOKEN_KEY = "logcanary.dashboardToken";
// The review queue's window in hours (GET /api/review/?hours=), kept in the browser.
const REVIEW_HOURS_KEY = "logcanary.reviewHours";
const REVIEW_HOURS = ["24", "168", "720"];
const SEVERITIES = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const SEV_COLOURS = { DEBUG: "#9aa3b5", INFO: "#3b6fd8", WARNING: "#e0a22b", ERROR: "#d6453d", CRITICAL: "#8e1b16" };
const SVG_NS = "http://www.w3.org/2000/svg";

let templatesById = new Map();
let selectedEntry = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function authHeaders() {
  const token = localStorage.getItem(TOKEN_KEY) || "";
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJson(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() } });
  if (resp.status === 401 || resp.status === 403) {
    // Shown in the refresh status line: reads need a (valid) token here.
    throw new Error(`${path}: HTTP ${resp.status}, reads need the dashboard token`);
  }
  if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
  return resp.json();
}

function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").slice(0, 19);
}

function score(x) {
  return x === null || x === undefined ? "" : Number(x).toFixed(2);
}

function fillTable(id, rows, render, emptyText) {
  const body = $(id).tBodies[0];
  const cols = $(id).tHead.rows[0].cells.length;
  body.replaceChildren(...(rows.length ? rows.map(render)
    : [el("tr", {}, el("td", { colspan: cols, class: "empty" }, emptyText))]));
}

// --- charts (hand-drawn SVG) ---

function drawTimeline(entries, now) {
  const hours = 24, w = 720, h = 180, left = 28, bottom = 22, top = 8;
  const buckets = new Array(hours).fill(0);
  // Whole hours, the last bar being the current one.
  const start = (Math.floor(now / 3600e3) + 1 - hours) * 3600e3;
  for (const e of entries) {
    const i = Math.floor((Date.parse(e.timestamp) - start) / 3600e3);
    if (i >= 0 && i < hours) buckets[i]++;
  }
  const max = Math.max(1, ...buckets);
  const plotW = w - left - 4, plotH = h - bottom - top, bw = plotW / hours;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "anomalies per hour" });
  root.append(svg("line", { x1: left, x2: w - 4, y1: top + plotH, y2: top + plotH, class: "axis" }));
  root.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, String(max)));
  root.append(svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  buckets.forEach((n, i) => {
    const bh = (n / max) * plotH;
    const bar = svg("rect", { x: left + i * bw + 1, y: top + plotH - bh, width: Math.max(1, bw - 2), height: bh, class: "bar" });
    const hourStart = new Date(start + i * 3600e3);
    bar.append(svg("title", {}, `${n} anomalies from ${time(hourStart.toISOString())}`));
    root.append(bar);
    if (i % 4 === 0 || i === hours - 1) {
      root.append(svg("text", { x: left + i * bw + bw / 2, y: h - 6, "text-anchor": "middle" },
        hourStart.toISOString().slice(11, 16)));
    }
  });
  root.dataset.total = String(entries.length);
  $("timeline").replaceChildren(root);
}

function drawSeverity(dist) {
  const rows = SEVERITIES.filter((s) => dist[s]).map((s) => [s, dist[s]]);
  const total = rows.reduce((a, [, n]) => a + n, 0);
  if (!total) { $("severity").replaceChildren(el("p", { class: "empty" }, "No entries in the last 24 h.")); return; }
  const w = 360, rowH = 26, h = rows.length * rowH + 4, left = 70, right = 70;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "severity mix" });
  rows.forEach(([s, n], i) => {
    const y = i * rowH + 4, bw = ((w - left - right) * n) / total;
    root.append(svg("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, s));
    root.append(svg("rect", { x: left, y, width: Math.max(1, bw), height: rowH - 8, fill: SEV_COLOURS[s] }));
    root.append(svg("text", { x: left + bw + 6, y: y + 14 }, `${n} (${Math.round((100 * n) / total)}%)`));
  });
  $("severity").replaceChildren(root);
}

// --- detail panel: the entry, its template, its neighbours in time ---

async function showEntry(id) {
  selectedEntry = id;
  // Linkable: /#entry=<id> opens this panel.
  if (location.hash !== `#entry=${id}`) history.replaceState(null, "", `#entry=${id}`);
  for (const tr of document.querySelectorAll("#anomalies tr[data-entry-id]")) {
    tr.classList.toggle("selected", tr.dataset.entryId === String(id));
  }
  const panel = $("detail");
  try {
    const e = await getJson(`/api/logs/${id}/`);
    const t = Date.parse(e.timestamp);
    const around = (ms) => new Date(t + ms).toISOString();
    const neighbours = await getJson(`/api/logs/?since=${encodeURIComponent(around(-5 * 60e3))}&until=${encodeURIComponent(around(5 * 60e3))}&limit=15`);
    const tpl = e.template_id !== null ? templatesById.get(e.template_id) : null;
    panel.dataset.entryId = String(e.id);
    const dl = el("dl", {},
      el("dt", {}, "id"), el("dd", {}, String(e.id)),
      el("dt", {}, "time"), el("dd", {}, time(e.timestamp)),
      el("dt", {}, "severity"), el("dd", { class: `sev sev-${e.severity}` }, e.severity),
      el("dt", {}, "source"), el("dd", {}, e.source || "—"),
      el("dt", {}, "score"), el("dd", {}, score(e.anomaly_score)),
      el("dt", {}, "message"), el("dd", {}, e.message),
      el("dt", {}, "summary"), el("dd", {}, e.summary || "—"),
      el("dt", {}, "template"), el("dd", {}, tpl ? `#${tpl.id} ${tpl.template} (${tpl.count} lines, ${labelText(tpl) || "unlabelled"})` : (e.template_id ?? "—")),
      el("dt", {}, "task"), el("dd", {}, e.analysis_task_id || "—"));
    const actions = e.template_id !== null
      ? el("p", {}, labelButton(`/api/ui/feedback/logs/${e.id}/`, "normal"), " ", labelButton(`/api/ui/feedback/logs/${e.id}/`, "anomaly"))
      : el("p", { class: "muted" }, "Not analysed yet.");
    const nb = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "sev"), el("th", {}, "message"))),
      el("tbody", {}, ...neighbours.results.map((n) => el("tr", { class: n.id === e.id ? "here" : "click", onclick: () => showEntry(n.id) },
        el("td", {}, time(n.timestamp).slice(11)), el("td", { class: `sev sev-${n.severity}` }, n.severity), el("td", { class: "msg" }, n.message)))));
    panel.replaceChildren(el("h2", {}, `Entry ${e.id}`), dl, actions, el("h2", {}, "Neighbours (±5 min)"), nb);
  } catch (err) {
    panel.replaceChildren(el("h2", {}, "Entry"), el("p", { class: "empty" }, String(err)));
  }
}

// --- feedback ---

function labelButton(path, label, text) {
  return el("button", { type: "button", "data-label": label, onclick: () => sendLabel(path, label) },
    text || (label === "normal" ? "mark normal" : "mark anomaly"));
}

async function sendLabel(path, label) {
  const token = localStorage.getItem(TOKEN_KEY) || "";
  if (!token) { $("token-state").textContent = "enter the dashboard token first"; $("token").focus(); return; }
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders() },
    body: JSON.stringify({ label }),
  });
  const body = await resp.json().catch(() => ({}));
  const rescored = body.rescored ? `, ${body.rescored} ${body.rescored === 1 ? "entry" : "entries"} re-scored` : "";
  await refresh();
  // After the refresh, whose own messages (a refused token) this answer replaces.
  $("token-state").textContent = resp.ok ? `template #${body.id} marked ${labelText(body)}${rescored}` : (body.detail || `HTTP ${resp.status}`);
}

// A label as the operator should read it: a normal one given on lower levels covers only
// those (a later CRITICAL burst of the pattern is still judged on its own).
function labelText(t) {
  if (!t.label) return null;
  return t.label === "normal" && t.label_max_level ? `normal up to ${t.label_max_level}` : t.label;
}

// --- refresh ---

function reviewHours() {
  const saved = localStorage.getItem(REVIEW_HOURS_KEY);
  return REVIEW_HOURS.includes(saved) ? saved : REVIEW_HOURS[0];
}

async function refresh() {
  const now = Date.now();
  const since = new Date(now - 24 * 3600e3).toISOString();
  const results = await Promise.allSettled([
    getJson("/api/dashboard/"),
    getJson(`/api/logs/?is_anomaly=true&since=${encodeURIComponent(since)}&limit=100`),
    getJson("/api/templates/?ordering=-last_seen&limit=50"),
    getJson("/api/patterns/?limit=20"),
    getJson("/api/alerts/?limit=20"),
    getJson("/api/stats/queues/"),
    getJson(`/api/review/?limit=10&hours=${reviewHours()}`),
  ]);
  const [dash, timeline, templates, patterns, alerts, queues, review] = results.map((r) => (r.status === "fulfilled" ? r.value : null));
  const failed = results.filter((r) => r.status === "rejected").map((r) => String(r.reason.message || r.reason));

  if (templates) {
    templatesById = new Map(templates.results.map((t) => [t.id, t]));
    fillTable("templates", templates.results, (t) => el("tr", { "data-template-id": String(t.id) },
      el("td", {}, String(t.id)), el("td", { class: "msg", title: t.template }, t.template), el("td", {}, String(t.count)),
      el("td", {}, time(t.last_seen)), el("td", { class: `lbl-${t.label}` }, labelText(t) || "—"),
      el("td", {}, labelButton(`/api/ui/feedback/templates/${t.id}/`, "normal"), " ",
        labelButton(`/api/ui/feedback/templates/${t.id}/`, "anomaly"))), "No templates mined yet.");
  }
  if (review) {
    // Answering a row labels its template, which leaves the queue on the next refresh.
    fillTable("review", review.results, (r) => el("tr", { "data-template-id": String(r.template_id) },
      el("td", { class: "msg", title: `${r.template} (template #${r.template_id}, ${r.count} lines in all; newest entry ${r.sample_log_entry_id})` }, r.template),
      el("td", { class: "num" }, String(r.recent_lines)), el("td", { class: "num" }, String(r.flagged)),
      el("td", { class: "num" }, score(r.mean_score)), el("td", { class: `sev sev-${r.severity}` }, r.severity),
      el("td", { class: "num" }, score(r.priority)),
      el("td", {}, labelButton(`/api/ui/feedback/templates/${r.template_id}/`, "normal", "normal"), " ",
        labelButton(`/api/ui/feedback/templates/${r.template_id}/`, "anomaly", "anomaly"))), "Nothing to review.");
  }
  if (dash) {
    $("anomalies-24h").textContent = String(dash.anomalies_last_24h);
    $("anomalies-7d").textContent = String(dash.anomalies_last_7d);
    drawSeverity(dash.severity_distribution_24h);
    fillTable("anomalies", dash.recent_anomalies, (a) => el("tr", {
      class: a.id === selectedEntry ? "click selected" : "click", "data-entry-id": String(a.id), onclick: () => showEntry(a.id),
    }, el("td", {}, time(a.timestamp)), el("td", { class: `sev sev-${a.severity}` }, a.severity), el("td", {}, score(a.anomaly_score)),
    el("td", { class: "msg", title: a.message }, a.message), el("td", {}, a.summary || "")), "No anomalies.");
  }
  if (timeline) drawTimeline(timeline.results, now);
  if (patterns) {
    fillTable("patterns", patterns.results, (p) => el("tr", {}, el("td", {}, time(p.detected_at)), el("td", {}, p.kind),
      el("td", { class: `sev sev-${p.severity}` }, p.severity), el("td", {}, p.source || "all"),
      el("td", {}, (p.details && p.details.summary) || "")), "No patterns detected.");
  }
  if (alerts) {
    fillTable("alerts", alerts.results, (a) => el("tr", {}, el("td", {}, time(a.created_at)), el("td", {}, a.kind),
      el("td", {}, a.channel), el("td", { class: `st-${a.status}`, title: a.last_error || "" }, a.status),
      el("td", {}, String(a.attempts)), el("td", {}, a.title || a.summary || "")), "No alerts.");
  }
  if (queues) {
    fillTable("tasks", queues.tasks, (q) => el("tr", {}, el("td", {}, q.queue), el("td", {}, q.task_name.replace(/^logs\.tasks\./, "")),
      el("td", { class: `st-${q.status}` }, q.status), el("td", {}, String(q.count))), "No tasks yet.");
    if (queues.queues) {
      // A queue with messages and no consumer has no worker serving it; dead letters wait
      // for an operator.
      fillTable("broker", queues.queues, (q) => el("tr", { "data-queue": q.queue }, el("td", {}, q.queue),
        el("td", { class: "num" }, String(q.ready)),
        el("td", { class: q.consumers === 0 && q.ready > 0 ? "num bad" : "num", title: "consumers attached" }, String(q.consumers)),
        el("td", { class: q.retrying > 0 ? "num warn" : "num" }, String(q.retrying)),
        el("td", { class: q.dead_lettered > 0 ? "num bad" : "num" }, String(q.dead_lettered))), "No queues.");
    } else {
      fillTable("broker", [], null, `broker unavailable: ${queues.broker_error || "unknown error"}`);
    }
    const sum = (pred) => queues.tasks.filter(pred).reduce((a, q) => a + q.count, 0);
    $("tasks-active").textContent = String(sum((q) => ["PENDING", "STARTED", "RETRY"].includes(q.status)));
    $("tasks-failed").textContent = String(sum((q) => q.status === "FAILURE"));
  }
  $("status").textContent = failed.length ? `refresh failed: ${failed.join("; ")}` : `updated ${time(new Date(now).toISOString())} UTC`;
  document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
}

function init() {
  const saved = localStorage.getItem(TOKEN_KEY);
  $("token-state").textContent = saved ? "token saved" : "read-only: no token";
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    $("token-state").textContent = "token saved";
    refresh();
  });
  $("review-hours").value = reviewHours();
  $("review-hours").addEventListener("change", (ev) => {
    localStorage.setItem(REVIEW_HOURS_KEY, ev.target.value);
    refresh();
  });
  const linked = /^#entry=(\d+)$/.exec(location.hash);
  refresh().then(() => { if (linked) showEntry(Number(linked[1])); });
  setInterval(refresh, POLL_MS);
}

document.addEventListener("DOMContentLoaded", init);
