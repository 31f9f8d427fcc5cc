// QwenNats web console: chat over the WebSocket, sentiment over HTTP, the rollout picture pushed by
// the ingress as server-sent events (/api/console/stream), and releases (/api/console/releases). No
// framework and no build step; everything user- or model-supplied is written with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};
const COLOURS = { blue: "#2563eb", green: "#059669" };
const colourOf = (c) => COLOURS[c] || "#6b7280";

function setBadge(node, colour, text) {
  node.className = "badge" + (colour ? " colour-" + colour : "");
  node.dataset.colour = colour || "";
  node.textContent = text || colour || "–";
}

function newSessionId() {
  if (crypto.randomUUID) return "console-" + crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "console-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- chat over /ws/chat
function apiKey() {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem("qwen.apikey", key);
  return key;
}

const chat = { ws: null, session: sessionStorage.getItem("qwen.session") || newSessionId(), current: null, queue: [] };

function connectChat() {
  sessionStorage.setItem("qwen.session", chat.session);
  $("session-id").textContent = chat.session;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const key = apiKey();
  // The API key travels as a WebSocket subprotocol (browsers cannot set headers), never in the URL.
  const ws = new WebSocket(`${scheme}//${location.host}/ws/chat?session=${encodeURIComponent(chat.session)}`, key ? ["qwen", "qwen.key." + key] : undefined);
  chat.ws = ws;
  ws.onopen = () => { for (const m of chat.queue.splice(0)) ws.send(m); };
  ws.onmessage = (ev) => onChatFrame(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    if (chat.ws !== ws) return;
    if (!chat.current && ev.code !== 1000) $("chat-error").textContent = "chat connection closed" + (apiKey() ? "" : " (does this ingress need an API key?)");
    chat.ws = null;
    if (chat.current) failTurn("connection closed");
  };
}

function onChatFrame(f) {
  switch (f.type) {
    case "ready":
      setBadge($("session-colour"), f.colour);
      break;
    case "accepted":
      if (chat.current) chat.current.meta.textContent = `${f.colour} · profile ${f.profile} · ${f.worker}`;
      setBadge($("session-colour"), f.colour);
      break;
    case "token":
      if (chat.current) chat.current.text.textContent += f.text;
      scrollMessages();
      break;
    case "done": {
      const t = chat.current;
      if (!t) break;
      t.node.classList.remove("streaming");
      t.text.textContent = f.text;
      t.node.dataset.colour = f.colour;
      t.node.dataset.profile = f.profile || "";
      t.node.dataset.state = "done";
      t.meta.textContent = "";
      const badge = el("span");
      setBadge(badge, f.colour, `${f.colour} · ${f.profile}`);
      t.meta.append(badge, ` ${f.model} · ${f.worker} · ${f.usage ? f.usage.completion_tokens : "?"} tokens · ${f.finish_reason}`);
      setBadge($("session-colour"), f.colour);
      endTurn();
      break;
    }
    case "error":
      if (chat.current) failTurn(`${f.code}: ${f.message}`);
      else $("chat-error").textContent = `${f.code}: ${f.message}`;
      break;
    case "reset":
      break;
  }
}

function failTurn(why) {
  const t = chat.current;
  t.node.classList.remove("streaming");
  t.node.classList.add("failed");
  t.node.dataset.state = "failed";
  t.meta.textContent = why;
  $("chat-error").textContent = why;
  endTurn();
}

function endTurn() {
  chat.current = null;
  $("chat-send").disabled = false;
  scrollMessages();
}

function scrollMessages() { const m = $("messages"); m.scrollTop = m.scrollHeight; }

function sendChat(text) {
  $("chat-error").textContent = "";
  const list = $("messages");
  list.append(el("li", "msg user", text));
  const node = el("li", "msg assistant streaming");
  node.dataset.state = "streaming";
  const body = el("span", "text");
  const meta = el("span", "meta", "waiting for a worker…");
  node.append(body, meta);
  list.append(node);
  chat.current = { node, text: body, meta };
  $("chat-send").disabled = true;
  const frame = JSON.stringify({ type: "message", content: text });
  if (!chat.ws || chat.ws.readyState > 1) connectChat();
  if (chat.ws.readyState === 1) chat.ws.send(frame); else chat.queue.push(frame);
  scrollMessages();
}

// ---------------------------------------------------------------- sentiment over /v1/sentiment
async function classify(text) {
  $("sentiment-error").textContent = "";
  $("sentiment-send").disabled = true;
  try {
    const r = await fetch("/v1/sentiment", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, apiKey() ? { Authorization: "Bearer " + apiKey() } : {}),
      body: JSON.stringify({ input: text, user: chat.session }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${r.status}`);
    $("sentiment-label").textContent = body.label;
    $("sentiment-confidence").textContent = (body.confidence * 100).toFixed(1) + "%";
    setBadge($("sentiment-colour"), body.colour, `${body.colour} · ${body.profile}`);
    $("sentiment-latency").textContent = `${Math.round(body.latency_ms)} ms`;
    $("sentiment-result").hidden = false;
    $("sentiment-result").dataset.label = body.label;
  } catch (e) {
    $("sentiment-error").textContent = e.message;
  } finally {
    $("sentiment-send").disabled = false;
  }
}

// ---------------------------------------------------------------- rollout feed over SSE
const latency = { points: [], max: 120 };

function onState(s) {
  const phase = $("phase");
  phase.textContent = s.phase;
  phase.className = "pill phase-" + s.phase;
  setBadge($("live"), s.live);
  setBadge($("candidate"), s.candidate || "", s.candidate || "–");
  $("weight").textContent = s.weight;
  $("step").textContent = s.step;
  $("rollout-id").textContent = s.rollout_id || "–";
  $("version").textContent = s.version;
  $("state-reason").textContent = `${s.reason || "–"}${s.actor ? " (" + s.actor + ")" : ""}`;
  document.body.dataset.phase = s.phase;
  if (releases.live !== s.live) {
    releases.live = s.live;
    drawReleases();
  }
  refreshReleases();
}

function onVerdict(v) {
  const o = $("verdict-outcome");
  o.textContent = v.outcome;
  o.className = "pill outcome-" + v.outcome;
  $("verdict-meta").textContent = `${v.rollout_id} · ${v.phase} step ${v.step} · ${v.samples} samples · ${new Date(v.at).toLocaleTimeString()}`;
  $("verdict-reason").textContent = v.reason;
  const body = $("checks").tBodies[0];
  body.replaceChildren(...(v.checks || []).map((c) => {
    const tr = el("tr", c.passed ? "" : "failed");
    tr.append(el("td", "", c.name), el("td", "", c.value === null || c.value === undefined ? "–" : Number(c.value).toFixed(3)),
      el("td", "", c.threshold), el("td", "", c.samples), el("td", "", c.passed ? "✓" : "✗"));
    tr.title = c.detail;
    return tr;
  }));
}

function onEvent(e) {
  const li = el("li");
  li.dataset.trigger = e.trigger;
  li.append(el("strong", "", e.trigger), ` ${e.from} → ${e.to} `,
    el("span", "muted", `${new Date(e.at).toLocaleTimeString()} by ${e.actor || "?"} (${e.cause})`),
    document.createElement("br"), el("span", "reason", e.reason));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

function onTick(t) {
  $("pools").textContent = (t.pools || []).map((p) => `${p.colour}: ${p.workers} × ${p.id} (${p.profile})`).join(" · ") || "no workers";
  $("mirrors").textContent = `sent ${t.shadow.sent} · compared ${t.shadow.compared} · dropped ${t.shadow.dropped}`;
  latency.points.push(t.latency);
  if (latency.points.length > latency.max) latency.points.shift();
  drawLatency();
  const legend = $("latency-legend");
  legend.replaceChildren(...t.latency.map((l) => {
    const li = el("li");
    li.dataset.colour = l.colour;
    const swatch = el("span", "badge colour-" + l.colour, l.colour);
    li.append(swatch, ` p50 ${l.p50_ms} ms · p95 ${l.p95_ms} ms · ${l.requests} req${l.errors ? " · " + l.errors + " errors" : ""}`);
    return li;
  }));
}

function drawLatency() {
  const canvas = $("latency-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const series = new Map();
  latency.points.forEach((tick, i) => tick.forEach((l) => {
    if (!series.has(l.colour)) series.set(l.colour, []);
    series.get(l.colour).push([i, l.p50_ms]);
  }));
  let top = 1;
  for (const pts of series.values()) for (const [, y] of pts) top = Math.max(top, y);
  ctx.fillStyle = "#64748b";
  ctx.font = "11px sans-serif";
  ctx.fillText(`${Math.round(top)} ms`, 2, 11);
  ctx.fillText("0", 2, h - 4);
  const x = (i) => pad + (i / Math.max(1, latency.max - 1)) * (w - pad - 4);
  const y = (v) => h - 6 - (v / top) * (h - 18);
  for (const [colour, pts] of series) {
    ctx.strokeStyle = colourOf(colour);
    ctx.lineWidth = 2;
    ctx.beginPath();
    pts.forEach(([i, v], k) => (k ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
  }
}

function followFeed() {
  const feed = new EventSource("/api/console/stream");
  const status = $("feed-status");
  feed.onopen = () => { status.textContent = "live"; status.className = "pill pill-ok"; };
  feed.onerror = () => { status.textContent = "reconnecting"; status.className = "pill pill-bad"; };
  feed.addEventListener("state", (m) => onState(JSON.parse(m.data)));
  feed.addEventListener("verdict", (m) => onVerdict(JSON.parse(m.data)));
  feed.addEventListener("event", (m) => onEvent(JSON.parse(m.data)));
  feed.addEventListener("tick", (m) => onTick(JSON.parse(m.data)));
}

// ---------------------------------------------------------------- operator actions
// Every action goes to POST /api/console/actions/{verb} with the operator token (the one token field) and a
// reason; the ingress checks both and passes the action to the promoter.
async function postAction(verb, body) {
  const token = $("op-token").value.trim();
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(`/api/console/actions/${verb}`, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await r.json();
  if (r.ok && token) sessionStorage.setItem("qwen.operator", token);
  return { ok: r.ok, http: r.status, answer };
}

function showRefused(node, answer, http) {
  node.className = "refused";
  node.dataset.code = answer && answer.error ? answer.error.code : String(http);
  node.textContent = `refused: ${answer && answer.error ? answer.error.code + " — " + answer.error.message : "HTTP " + http}`;
}

function showDone(node, text) {
  node.className = "done";
  node.dataset.code = "ok";
  node.textContent = text;
}

function showNetworkError(node, e) {
  node.className = "refused";
  node.dataset.code = "network";
  node.textContent = `refused: ${e.message}`;
}

async function act(verb) {
  const status = $("op-status");
  status.className = "";
  status.textContent = `${verb}…`;
  const body = { reason: $("op-reason").value.trim() };
  if (verb === "start") body.candidate = $("op-candidate").value;
  // A tester's switch: this console's chat session to the selected colour, and back to the rollout.
  if (verb === "pin" || verb === "unpin") body.session = chat.session;
  if (verb === "pin") body.colour = $("op-candidate").value;
  try {
    const { ok, http, answer } = await postAction(verb, body);
    if (!ok) {
      showRefused(status, answer, http);
      return;
    }
    if (verb === "pin" || verb === "unpin") {
      showDone(status, verb === "pin" ? `pinned session ${chat.session} to ${answer.pin.colour}` : `unpinned session ${chat.session}`);
      return;
    }
    showDone(status, `${verb}: ${answer.state.phase} (live ${answer.state.live}${answer.state.candidate ? ", candidate " + answer.state.candidate : ""})`);
    refreshReleases();
  } catch (e) {
    showNetworkError(status, e);
  }
}

// ---------------------------------------------------------------- releases over /api/console/releases
// The promoter's releases and each colour's pool, fetched on load, every few seconds, on every rollout
// state change and after each action. A release can be deployed to an idle colour: one that is not live.
const releases = { data: null, live: null, colours: [], canAct: false, busy: false, drawn: "" };

async function refreshReleases() {
  if (releases.busy) return;
  releases.busy = true;
  const error = $("releases-error");
  try {
    const r = await fetch("/api/console/releases");
    const body = await r.json();
    if (!r.ok) {
      error.dataset.code = body.error ? body.error.code : String(r.status);
      error.textContent = `releases: ${body.error ? body.error.code + " — " + body.error.message : "HTTP " + r.status}`;
      return;
    }
    releases.data = body;
    error.textContent = "";
    delete error.dataset.code;
    $("releases-updated").textContent = `(as of ${new Date().toLocaleTimeString()})`;
    drawReleases();
  } catch (e) {
    error.dataset.code = "network";
    error.textContent = `releases: ${e.message}`;
  } finally {
    releases.busy = false;
  }
}

const idleColours = () => (releases.live ? releases.colours.filter((c) => c !== releases.live) : []);

function workerState(w) {
  let s = `${w.worker_id}: ${w.serving ? "serves " + (w.release || "the model on its command line") : "not serving"}`;
  if (w.loading) s += `, loading ${w.loading}`;
  if (w.failed_release) s += `, could not load ${w.failed_release} (${w.failure || "no reason given"})`;
  return s;
}

function poolLine(p) {
  const li = el("li");
  li.dataset.pool = p.colour;
  li.dataset.ready = p.ready ? "true" : "false";
  li.dataset.failed = p.failed ? "true" : "false";
  li.dataset.release = p.assigned_release || "";
  const badge = el("span");
  setBadge(badge, p.colour);
  li.append(badge, " ", p.assigned_release ? el("strong", "", p.assigned_release) : el("span", "muted", "no release assigned"),
    " · ", el("span", "ready", p.ready ? "ready" : "not ready"));
  if (!p.ready && p.why) li.append(el("span", "muted why", ` — ${p.why}`));
  const workers = (p.workers || []).map(workerState);
  li.append(el("div", "muted workers", workers.length ? workers.join(" · ") : "no workers"));
  return li;
}

function releaseRow(rel, idle) {
  const tr = el("tr", rel.drill ? "drill" : "");
  tr.dataset.release = rel.id;
  const model = el("td");
  const digest = el("code", "", rel.model_sha256.slice(0, 12));
  digest.title = `${rel.model_name || "model"} · SHA-256 ${rel.model_sha256} · ${rel.model_size_bytes} bytes`;
  model.append(digest);
  const deployed = el("td", "deployed");
  for (const c of rel.deployed_to || []) {
    const b = el("span");
    setBadge(b, c);
    deployed.append(b, " ");
  }
  if (!(rel.deployed_to || []).length) deployed.textContent = "–";
  const actions = el("td");
  for (const colour of idle) {
    const b = el("button", "secondary", `Deploy to ${colour}`);
    b.type = "button";
    b.dataset.deploy = rel.id;
    b.dataset.colour = colour;
    b.disabled = !releases.canAct;
    b.addEventListener("click", () => deploy(rel.id, colour));
    actions.append(b);
  }
  tr.append(el("td", "", rel.id), model, el("td", "", rel.profile), el("td", "", rel.notes || ""),
    el("td", "muted", `${new Date(rel.created_at).toLocaleString()}${rel.created_by ? " by " + rel.created_by : ""}`), deployed, actions);
  return tr;
}

function drawReleases() {
  const data = releases.data;
  if (!data) return;
  const idle = idleColours();
  // Redraw only when something changed, so a button is never replaced under the operator's pointer.
  const key = JSON.stringify([data, idle, releases.canAct]);
  if (key === releases.drawn) return;
  releases.drawn = key;
  $("release-pools").replaceChildren(...(data.pools || []).map(poolLine));
  $("releases").tBodies[0].replaceChildren(...(data.releases || []).map((rel) => releaseRow(rel, idle)));
  $("releases-empty").hidden = (data.releases || []).length > 0;
}

async function deploy(release, colour) {
  const status = $("deploy-status");
  status.className = "";
  delete status.dataset.code;
  status.textContent = `deploying ${release} to ${colour}…`;
  try {
    const { ok, http, answer } = await postAction("deploy", { reason: $("deploy-reason").value.trim(), colour, release });
    if (!ok) {
      showRefused(status, answer, http);
      return;
    }
    const id = answer.assignment ? ` (${answer.assignment.deploy_id})` : "";
    showDone(status, `deploy: ${release} assigned to ${colour}${id}; its workers load it now`);
  } catch (e) {
    showNetworkError(status, e);
  }
  refreshReleases();
}

async function start() {
  const config = await (await fetch("/api/console/config")).json();
  $("ingress-id").textContent = config.ingress;
  $("api-key").value = sessionStorage.getItem("qwen.apikey") || "";
  $("api-key").addEventListener("change", () => { if (chat.ws) { const old = chat.ws; chat.ws = null; old.close(); } connectChat(); });
  const select = $("op-candidate");
  select.replaceChildren(...config.colours.map((c) => { const o = el("option", "", c); o.value = c; return o; }));
  if (config.colours.includes("green")) select.value = "green";
  const buttons = document.querySelectorAll("#operator-form button[data-action]");
  if (config.operator_actions) {
    $("operator-mode").textContent = "Actions need the operator token and a reason; both are checked by the ingress and the reason is written to the audit log.";
    $("op-token").value = sessionStorage.getItem("qwen.operator") || "";
  } else {
    $("operator-mode").textContent = "Read-only: this ingress has no operator token configured.";
    document.body.dataset.readOnly = "true";
    buttons.forEach((b) => { b.disabled = true; });
    $("op-token").disabled = true;
    $("op-reason").disabled = true;
    $("deploy-reason").disabled = true;
  }
  releases.colours = config.colours;
  releases.canAct = !!config.operator_actions;
  buttons.forEach((b) => b.addEventListener("click", () => act(b.dataset.action)));

  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || chat.current) return;
    $("chat-input").value = "";
    sendChat(text);
  });
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("chat-form").requestSubmit(); }
  });
  $("new-session").addEventListener("click", () => {
    chat.session = newSessionId();
    $("messages").replaceChildren();
    if (chat.ws) { const old = chat.ws; chat.ws = null; old.close(); }
    connectChat();
  });
  $("sentiment-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("sentiment-input").value.trim();
    if (text) classify(text);
  });
  connectChat();
  followFeed();
  refreshReleases();
  setInterval(() => { if (!document.hidden) refreshReleases(); }, 5000);
  document.body.dataset.ready = "true";
}

start().catch((e) => { $("chat-error").textContent = "console failed to start: " + e.message; });
