// llmux dashboard: reads /ui/api/* (read-only) and draws hosts, groups, the live request list and the last
// hour's rates. The master key, when llmux has one, lives in sessionStorage only and travels as a Bearer
// header, never in a URL (which is why the live feed is read with fetch() rather than EventSource).
"use strict";

const KEY = "llmux-key";
const MAX_REQUESTS = 300;
const FLEET_EVERY_MS = 2000;
const RATES_EVERY_MS = 10000;

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text: nothing from the server is parsed as HTML). */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (name === "style") Object.assign(node.style, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// ---- formatting

function gb(bytes) {
  if (bytes == null) return "?";
  return bytes >= 1e9 ? (bytes / 1e9).toFixed(1) + " GB" : Math.round(bytes / 1e6) + " MB";
}

function ago(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return Math.round(seconds) + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  if (seconds < 86400 * 2) return (seconds / 3600).toFixed(1) + " h";
  return Math.round(seconds / 86400) + " days";
}

function ms(value) {
  if (value == null) return "–";
  return value < 1000 ? value + " ms" : (value / 1000).toFixed(value < 10000 ? 2 : 1) + " s";
}

/** When a model unloads, from the engine's expiry time: "in 4 min", or "never" (Ollama writes a far future). */
function until(expiresAt) {
  if (!expiresAt) return "";
  const t = Date.parse(expiresAt);
  if (Number.isNaN(t)) return expiresAt;
  const left = (t - Date.now()) / 1000;
  if (left > 86400 * 365) return "stays loaded";
  if (left <= 0) return "unloading";
  return "unloads in " + ago(left);
}

function hostName(origin) {
  return (origin || "").replace(/^[a-z]+:\/\//, "");
}

function sameModel(a, b) {
  const strip = (m) => (m || "").replace(/:latest$/, "");
  return strip(a) === strip(b);
}

function clock(unixMs) {
  return new Date(unixMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

// ---- API

let key = sessionStorage.getItem(KEY) || "";

class Unauthorized extends Error {}

async function api(path, init) {
  const headers = key ? { Authorization: "Bearer " + key } : {};
  const response = await fetch(path, { ...init, headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response;
}

// ---- sign-in

function showLogin(message) {
  stopAll();
  $("board").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  $("key").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  key = $("key").value.trim();
  try {
    await api("/ui/api/fleet");
  } catch (e) {
    key = "";
    showLogin(e instanceof Unauthorized ? "Wrong key: llmux refused it." : "llmux does not answer: " + e.message);
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("key").value = "";
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  key = "";
  showLogin("");
});

// ---- hosts

const PALETTE = ["#3b82f6", "#a855f7", "#14b8a6", "#f59e0b", "#ec4899", "#84cc16", "#6366f1", "#ef4444"];

function memoryBar(host) {
  const resident = host.resident_models || [];
  const placement = host.placement || {};
  const budget = placement.memory_budget;
  const used = resident.reduce((sum, m) => sum + (m.size || 0), 0);
  const scale = budget || used || 1;
  const bar = el("div", { class: "bar", role: "img", "aria-label": "memory: " + gb(used) + (budget ? " of " + gb(budget) : "") });
  resident.forEach((m, i) => {
    const width = Math.max(1, (100 * (m.size || 0)) / scale);
    bar.append(el("span", { style: { width: Math.min(width, 100) + "%", background: PALETTE[i % PALETTE.length] }, title: m.model + " " + gb(m.size) }));
  });
  const label = budget ? `${gb(used)} of ${gb(budget)}` : used ? `${gb(used)} loaded (no memory_budget set)` : "nothing loaded";
  return el("div", { class: "memory" }, bar, el("div", { class: "muted small" }, label));
}

function hostCard(host) {
  const pinned = (host.placement && host.placement.pinned) || [];
  const status = host.status || "unknown";
  const silent = ["down", "asleep", "waking"].includes(status);
  const since = host.since_seconds_ago != null ? " for " + ago(host.since_seconds_ago) : "";
  const models = (host.resident_models || []).map((m, i) =>
    el("li", { class: "model" },
      el("span", { class: "swatch", style: { background: PALETTE[i % PALETTE.length] } }),
      el("span", { class: "name" }, m.model),
      pinned.some((p) => sameModel(p, m.model)) ? el("span", { class: "tag" }, "pinned") : null,
      el("span", { class: "muted" }, [gb(m.size), m.context_length ? m.context_length.toLocaleString() + " ctx" : null, until(m.expires_at)].filter(Boolean).join(" · ")),
    ));
  const loads = (host.deployments || []).filter((d) => d.load_seconds != null);
  const facts = [
    host.engine,
    host.probe_latency_ms != null ? "probe " + ms(host.probe_latency_ms) : null,
    host.last_probe_seconds_ago != null ? "checked " + ago(host.last_probe_seconds_ago) + " ago" : null,
    host.slots ? `slots ${host.slots.busy}/${host.slots.total} busy` : null,
  ].filter(Boolean);
  return el("article", { class: "card host " + status, "data-host": host.host },
    el("div", { class: "card-head" },
      el("h3", {}, hostName(host.host)),
      el("span", { class: "badge " + status }, status + since)),
    host.reason && status !== "up" ? el("p", { class: "reason" }, host.reason) : null,
    el("p", { class: "muted small" }, facts.join(" · ")),
    memoryBar(host),
    // A host that does not answer may have lost them: what its last answer listed is shown as such.
    models.length && silent ? el("p", { class: "muted small" }, "loaded when it last answered:") : null,
    models.length ? el("ul", { class: "models" + (silent ? " stale" : "") }, models) : el("p", { class: "muted" }, "No model loaded."),
    loads.length ? el("p", { class: "muted small" }, "learned load time: " + loads.map((d) => `${d.model_name} ${d.load_seconds} s`).join(", ")) : null,
  );
}

// ---- groups

function groupCard(group) {
  const rows = group.deployments.map((d) =>
    el("tr", { class: "health-" + d.health.replace(" ", "-") },
      el("td", { class: "num" }, d.order ?? "–"),
      el("td", {}, el("div", { class: "model-name" }, d.model), el("div", { class: "muted small" }, d.deployment + (d.host ? " @ " + hostName(d.host) : ""))),
      el("td", {}, el("span", { class: "badge " + d.health.replace(" ", "-") }, d.health),
        d.warm ? el("span", { class: "tag warm" }, "loaded") : null,
        d.cooldown_seconds != null ? el("div", { class: "small" }, d.cooldown_seconds + " s left") : null,
        d.reason ? el("div", { class: "small muted" }, d.reason) : null),
      el("td", { class: "num" }, d.in_flight + (d.max_parallel ? "/" + d.max_parallel : "")),
    ));
  return el("article", { class: "card group" },
    el("div", { class: "card-head" },
      el("h3", {}, group.name),
      group.queued ? el("span", { class: "badge cooldown" }, group.queued + " queued") : null),
    group.aliases.length ? el("p", { class: "muted small" }, "aliases: " + group.aliases.join(", ")) : null,
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Order"), el("th", {}, "Deployment"), el("th", {}, "Health"), el("th", { class: "num" }, "In flight"))),
      el("tbody", {}, rows))));
}

function drawFleet(fleet) {
  $("version").textContent = fleet.version ? "v" + fleet.version : "";
  $("hosts").replaceChildren(...fleet.hosts.map(hostCard));
  $("groups").replaceChildren(...fleet.groups.map(groupCard));
}

// ---- requests

const requests = [];

/** Output tokens per second: of the generation for a stream (after its first token), of the whole answer otherwise. */
function tokensPerSecond(r) {
  const seconds = (r.stream ? r.duration_ms - (r.ttfb_ms || 0) : r.duration_ms) / 1000;
  if (!r.tokens_out || seconds <= 0) return null;
  return r.tokens_out / seconds;
}

function answered(r) {
  const last = r.attempts && r.attempts[r.attempts.length - 1];
  return last && !last.error ? last.label : r.host ? hostName(r.host) : "";
}

function routeLine(r) {
  const parts = [r.requested];
  if (r.group && r.group !== r.requested) parts.push(r.group);
  const target = answered(r);
  if (target) parts.push(target);
  return parts.join(" → ");
}

function requestRow(r) {
  const tps = tokensPerSecond(r);
  const failed = (r.attempts || []).filter((a) => a.error).length;
  return el("tr", { class: "request" + (r.status >= 400 ? " failed" : ""), tabindex: "0", onclick: () => showDetail(r), onkeydown: (e) => { if (e.key === "Enter") showDetail(r); } },
    el("td", { class: "small" }, clock(r.started_unix_ms)),
    el("td", { class: "route" }, routeLine(r), failed ? el("span", { class: "tag retry" }, failed + " failed " + (failed === 1 ? "attempt" : "attempts")) : null, r.stream ? el("span", { class: "tag" }, "stream") : null),
    el("td", {}, el("span", { class: "status s" + String(r.status)[0] }, r.status)),
    el("td", { class: "num" }, ms(r.ttfb_ms)),
    el("td", { class: "num" }, tps == null ? "–" : tps.toFixed(tps < 10 ? 1 : 0)),
    el("td", { class: "num" }, ms(r.duration_ms)),
  );
}

function drawRequests() {
  $("requests").tBodies[0].replaceChildren(...requests.map(requestRow));
  $("no-requests").hidden = requests.length > 0;
  $("requests-count").textContent = requests.length ? `(last ${requests.length})` : "";
}

function addRequests(list) {
  for (const r of list.slice().reverse()) {
    if (requests.some((q) => q.id === r.id && q.started_unix_ms === r.started_unix_ms)) continue;
    requests.unshift(r);
  }
  requests.sort((a, b) => b.started_unix_ms - a.started_unix_ms);
  requests.length = Math.min(requests.length, MAX_REQUESTS);
  drawRequests();
}

function showDetail(r) {
  const facts = [
    ["Request id", r.id],
    ["Protocol", `${r.protocol} ${r.operation}${r.stream ? " (stream)" : ""}`],
    ["Model asked", r.requested],
    ["Group", r.group],
    ["Host", r.host],
    ["Status", r.status],
    ["Error", r.error],
    ["First token", ms(r.ttfb_ms)],
    ["Total", ms(r.duration_ms)],
    ["Queued", ms(r.queue_wait_ms)],
    ["Tokens in / out", `${r.tokens_in} / ${r.tokens_out}${r.tokens_estimated ? " (estimated)" : ""}`],
    ["Retries / fallbacks", `${r.retries} / ${r.fallbacks}`],
    r.cost_usd ? ["Cost", "$" + r.cost_usd.toFixed(6)] : null,
    r.caller && r.caller.key_alias ? ["Key", r.caller.key_alias] : null,
  ].filter((f) => f && f[1] != null && f[1] !== "");
  const attempts = (r.attempts || []).map((a, i) =>
    el("tr", { class: a.error ? "failed" : "" },
      el("td", { class: "num" }, i + 1),
      el("td", {}, el("div", {}, a.label), el("div", { class: "muted small" }, a.group)),
      el("td", {}, a.error ? a.error : "answered"),
      el("td", { class: "num" }, a.status ?? "–"),
      el("td", { class: "num" }, ms(a.duration_ms))));
  $("detail-body").replaceChildren(
    el("h2", {}, routeLine(r)),
    el("dl", {}, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
    el("h3", {}, "Attempts"),
    attempts.length
      ? el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", {}, "Deployment"), el("th", {}, "Outcome"), el("th", { class: "num" }, "Status"), el("th", { class: "num" }, "Time"))), el("tbody", {}, attempts)))
      : el("p", { class: "muted" }, "No engine was called."),
    r.route ? el("h3", {}, "Route") : null,
    r.route ? el("pre", {}, r.route) : null,
  );
  $("detail").showModal();
}

$("detail-close").addEventListener("click", () => $("detail").close());

// ---- rates

const SVG = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

/** Requests per minute over the hour, one bar a minute. */
function sparkline(host, first, last) {
  const n = last - first + 1;
  const peak = Math.max(1, ...host.minutes.map((m) => m.requests));
  const svg = svgNode("svg", { viewBox: `0 0 ${n * 4} 30`, preserveAspectRatio: "none", class: "spark", role: "img", "aria-label": "requests per minute, at most " + peak });
  for (const m of host.minutes) {
    const h = Math.max(1, (28 * m.requests) / peak);
    svg.append(svgNode("rect", { x: (m.minute - first) * 4, y: 30 - h, width: 3, height: h }));
  }
  return svg;
}

function drawRates(report) {
  const cards = report.hosts.map((h) =>
    el("article", { class: "card rate" },
      el("div", { class: "card-head" }, el("h3", {}, hostName(h.host)), el("span", { class: "muted small" }, `${h.requests} ${h.requests === 1 ? "request" : "requests"}` + (h.errors ? `, ${h.errors} failed` : ""))),
      sparkline(h, report.first_minute, report.last_minute),
      el("p", { class: "small" }, `first token p50 ${ms(h.ttft_p50_ms)} · p95 ${ms(h.ttft_p95_ms)} · p99 ${ms(h.ttft_p99_ms)}`)));
  $("rates").replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "No requests in the last hour.")]));
}

// ---- refresh loops and the live feed

let timers = [];
let feedAbort = null;

function stopAll() {
  timers.forEach(clearInterval);
  timers = [];
  if (feedAbort) feedAbort.abort();
  feedAbort = null;
}

function problem(message) {
  $("problem").textContent = message || "";
  $("problem").hidden = !message;
}

async function refresh(path, draw) {
  try {
    draw(await (await api(path)).json());
    problem("");
  } catch (e) {
    if (e instanceof Unauthorized) showLogin(key ? "The key was refused: sign in again." : "");
    else problem("llmux does not answer (" + e.message + "); retrying.");
  }
}

function feedState(text, ok) {
  const node = $("feed-state");
  node.textContent = text;
  node.classList.toggle("ok", !!ok);
}

/** Reads the server-sent events of /ui/api/live with fetch() (the key in a header), reconnecting on loss. */
async function follow(signal) {
  while (!signal.aborted) {
    try {
      const response = await api("/ui/api/live", { signal });
      feedState("live", true);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof Unauthorized) return showLogin("The key was refused: sign in again.");
    }
    feedState("reconnecting…", false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

let ratesTimer = null;

/** Redraws the rates a moment after new requests (once for a burst). */
function ratesSoon() {
  if (ratesTimer) return;
  ratesTimer = setTimeout(() => {
    ratesTimer = null;
    refresh("/ui/api/rates", drawRates);
  }, 1000);
}

function handleEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  if (name === "snapshot") addRequests(payload);
  else if (name === "request") {
    addRequests([payload]);
    ratesSoon();
  }
}

// ---- keys (virtual keys through LiteLLM's /key/* API; the section shows only where llmux keeps keys)

const KEYS_EVERY_MS = 10000;

function usd(value) {
  return "$" + (value || 0).toFixed(value && value < 0.01 ? 4 : 2);
}

function keyState(k) {
  if (k.blocked) return "blocked";
  if (k.expires && Date.parse(k.expires) <= Date.now()) return "expired";
  if (k.max_budget != null && k.spend >= k.max_budget) return "over budget";
  return "active";
}

function keyRow(k) {
  const state = keyState(k);
  const limits = [
    k.rpm_limit != null ? k.rpm_limit + " rpm" : null,
    k.tpm_limit != null ? k.tpm_limit + " tpm" : null,
    k.max_parallel_requests != null ? k.max_parallel_requests + " parallel" : null,
    k.expires ? "until " + new Date(k.expires).toLocaleDateString() : null,
  ].filter(Boolean);
  const toggle = k.blocked ? "unblock" : "block";
  return el("tr", { "data-token": k.token, class: "key " + state.replace(" ", "-") },
    el("td", {}, k.key_alias || el("span", { class: "muted" }, "(no alias)")),
    el("td", {}, el("code", {}, k.key_name)),
    el("td", {}, (k.models || []).length ? k.models.join(", ") : el("span", { class: "muted" }, "all")),
    el("td", { class: "num" }, usd(k.spend), k.max_budget != null ? el("div", { class: "muted small" }, "of " + usd(k.max_budget) + (k.budget_duration ? " / " + k.budget_duration : "")) : null),
    el("td", { class: "small" }, limits.join(" · ") || el("span", { class: "muted" }, "none")),
    el("td", {}, el("span", { class: "badge " + (state === "active" ? "up" : "down") }, state)),
    el("td", {}, el("button", { type: "button", class: "key-toggle", onclick: () => setBlocked(k.token, !k.blocked) }, toggle)));
}

function day(offset) {
  return new Date(Date.now() - offset * 86400000).toISOString().slice(0, 10);
}

async function drawKeys() {
  const fleet = await (await api("/ui/api/fleet")).json();
  $("keys-section").hidden = !fleet.keys;
  if (!fleet.keys) return; // no key store here
  const list = await (await api("/key/list?return_full_object=true&size=100")).json();
  const keys = list.keys || [];
  $("keys").tBodies[0].replaceChildren(...keys.map(keyRow));
  $("keys").hidden = !keys.length;
  $("no-keys").hidden = !!keys.length;
  const report = await (await api(`/global/spend/report?start_date=${day(6)}&end_date=${day(0)}`)).json();
  const rows = [];
  for (const d of report.slice().reverse()) {
    for (const k of d.api_keys || []) {
      if (!k.api_key) continue; // the master key's requests
      rows.push(el("tr", {},
        el("td", {}, d.group_by_day),
        el("td", {}, k.key_alias || (k.api_key || "").slice(0, 10) + "…"),
        el("td", { class: "num" }, k.requests),
        el("td", { class: "num" }, (k.total_tokens || 0).toLocaleString()),
        el("td", { class: "num" }, usd(k.total_spend))));
    }
  }
  $("spend").tBodies[0].replaceChildren(...rows);
  $("spend").hidden = !rows.length;
  $("no-spend").hidden = !!rows.length;
}

async function keysAction(action) {
  const error = $("key-error");
  try {
    await action();
    error.hidden = true;
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("The key was refused: sign in again.");
    error.textContent = e.message;
    error.hidden = false;
  }
  await refreshKeys();
}

async function refreshKeys() {
  try {
    await drawKeys();
  } catch (e) {
    if (e instanceof Unauthorized) showLogin(key ? "The key was refused: sign in again." : "");
    else problem("llmux does not answer (" + e.message + "); retrying.");
  }
}

/** POSTs `body` to the key API; an error answer's message (LiteLLM's shape) becomes the thrown error's. */
async function keyApi(path, body) {
  const response = await fetch(path, {
    method: "POST",
    cache: "no-store",
    headers: { "Content-Type": "application/json", ...(key ? { Authorization: "Bearer " + key } : {}) },
    body: JSON.stringify(body),
  });
  if (response.status === 401) throw new Unauthorized();
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((answer.error && answer.error.message) || path + ": HTTP " + response.status);
  return answer;
}

function setBlocked(token, blocked) {
  return keysAction(() => keyApi(blocked ? "/key/block" : "/key/unblock", { key: token }));
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const text = (name) => String(form.get(name) || "").trim();
  const body = { key_alias: text("key_alias") };
  const models = text("models").split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  if (text("max_budget")) body.max_budget = Number(text("max_budget"));
  if (text("budget_duration")) body.budget_duration = text("budget_duration");
  if (text("rpm_limit")) body.rpm_limit = Number(text("rpm_limit"));
  if (text("duration")) body.duration = text("duration");
  keysAction(async () => {
    const created = await keyApi("/key/generate", body);
    $("new-key-alias").textContent = created.key_alias || "";
    $("new-key-value").textContent = created.key;
    $("new-key").hidden = false;
    event.target.reset();
  });
});

$("new-key-done").addEventListener("click", () => {
  $("new-key-value").textContent = "";
  $("new-key").hidden = true;
});

function start() {
  stopAll();
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = !key;
  refresh("/ui/api/fleet", drawFleet);
  refresh("/ui/api/rates", drawRates);
  timers.push(setInterval(() => refresh("/ui/api/fleet", drawFleet), FLEET_EVERY_MS));
  timers.push(setInterval(() => refresh("/ui/api/rates", drawRates), RATES_EVERY_MS));
  refreshKeys();
  timers.push(setInterval(refreshKeys, KEYS_EVERY_MS));
  feedAbort = new AbortController();
  follow(feedAbort.signal);
}

// First look: llmux without a master key answers at once; with one, the sign-in form shows.
api("/ui/api/fleet").then(start, (e) => (e instanceof Unauthorized ? showLogin(key ? "The key was refused: sign in again." : "") : start()));
