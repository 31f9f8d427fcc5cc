// QwenNats web console: chat over the WebSocket, sentiment over HTTP, and the rollout picture pushed by
// the ingress as server-sent events (/api/console/stream). No framework and no build step; everything
// user- or model-supplied is written with textContent.
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
async function act(verb) {
  const status = $("op-status");
  status.className = "";
  status.textContent = `${verb}…`;
  const token = $("op-token").value.trim();
  const body = { reason: $("op-reason").value.trim() };
  if (verb === "start") body.candidate = $("op-candidate").value;
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  try {
    const r = await fetch(`/api/console/actions/${verb}`, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await r.json();
    if (!r.ok) {
      status.className = "refused";
      status.dataset.code = answer.error ? answer.error.code : String(r.status);
      status.textContent = `refused: ${answer.error ? answer.error.code + " — " + answer.error.message : "HTTP " + r.status}`;
      return;
    }
    if (token) sessionStorage.setItem("qwen.operator", token);
    status.className = "done";
    status.dataset.code = "ok";
    status.textContent = `${verb}: ${answer.state.phase} (live ${answer.state.live}${answer.state.candidate ? ", candidate " + answer.state.candidate : ""})`;
  } catch (e) {
    status.className = "refused";
    status.dataset.code = "network";
    status.textContent = `refused: ${e.message}`;
  }
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
  }
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
  document.body.dataset.ready = "true";
}

start().catch((e) => { $("chat-error").textContent = "console failed to start: " + e.message; });
