// jitsu status page: polls api/status every second, renders the unikernels
// and keeps a timeline of the recent boots seen (newest first).
"use strict";

const MAX_BOOTS = 20;
const boots = new Map(); // key name|start → {name, trigger, query, start, ready, replay}

const ms = (t) => (t ? Date.parse(t) : NaN);

function ago(t) {
  const d = Date.now() - ms(t);
  if (!isFinite(d)) return "–";
  return human(Math.max(d, 0)) + " ago";
}

function human(d) {
  if (d < 1000) return Math.round(d) + " ms";
  const s = d / 1000;
  if (s < 60) return s.toFixed(1) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + Math.floor(s % 60) + "s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + "h " + (m % 60) + "m";
  return Math.floor(h / 24) + "d " + (h % 24) + "h";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function up(state) {
  return !["stopped", "failed", "saved", "suspended", "warm", ""].includes(state);
}

function renderTable(list) {
  const body = document.querySelector("#unikernels tbody");
  body.replaceChildren();
  if (list.length === 0) {
    const tr = el("tr", "empty");
    const td = el("td", "", "no unikernels configured");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const u of list) {
    const tr = el("tr");
    tr.dataset.name = u.name;
    const st = el("span", "state " + (u.state || "").toLowerCase(), u.state || "?");
    const stateTd = el("td");
    stateTd.append(st);
    tr.append(
      el("td", "", u.name),
      stateTd,
      el("td", "", (u.addrs || []).join(", ") || "–"),
      el("td", "", up((u.state || "").toLowerCase()) && u.since ? human(Date.now() - ms(u.since)) : "–"),
      el("td", "", u.last_activity ? ago(u.last_activity) : "–"),
      el("td", "num", String(u.boots || 0)),
      el("td", "num", u.last_boot_duration_ns ? human(u.last_boot_duration_ns / 1e6) : "–"),
    );
    body.append(tr);
    if (u.last_error) {
      const er = el("tr", "errrow");
      const td = el("td", "err", "last error: " + u.last_error);
      td.colSpan = 7;
      er.append(td);
      body.append(er);
    }
  }
}

function collectBoots(list) {
  for (const u of list) {
    const b = u.last_boot;
    if (!b) continue;
    const origin = b.query || b.queued || b.start;
    if (!origin) continue;
    const key = u.name + "|" + origin;
    boots.set(key, {
      name: u.name, trigger: b.trigger || "", query: ms(b.query), queued: ms(b.queued), start: ms(b.start),
      ready: ms(b.ready), replay: ms(b.first_replay), mode: b.mode || "boot",
    });
  }
  const keys = [...boots.keys()];
  keys.sort((a, b) => t0(boots.get(b)) - t0(boots.get(a)));
  for (const k of keys.slice(MAX_BOOTS)) boots.delete(k);
}

const t0 = (b) => [b.query, b.queued, b.start].find(isFinite);
const tEnd = (b) => [b.replay, b.ready, b.start, b.queued, b.query].find(isFinite);

// niceStep picks a tick spacing of 1, 2 or 5 × 10^n ms for about 5 ticks.
function niceStep(span) {
  const raw = span / 5;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

function renderTimeline() {
  const box = document.getElementById("timeline");
  box.replaceChildren();
  const list = [...boots.values()].sort((a, b) => t0(b) - t0(a));
  if (list.length === 0) {
    box.append(el("p", "empty", "no boots yet"));
    return;
  }
  const span = Math.max(10, ...list.map((b) => tEnd(b) - t0(b)));
  const step = niceStep(span);
  const scaleMax = Math.ceil(span / step) * step;
  const pct = (v) => (100 * v) / scaleMax + "%";

  const scale = el("div", "scale");
  for (let v = 0; v <= scaleMax + 1e-9; v += step) {
    const s = el("span", "", v >= 1000 ? v / 1000 + " s" : v + " ms");
    s.style.left = pct(v);
    scale.append(s);
  }
  box.append(scale);

  for (const b of list) {
    const row = el("div", "boot");
    row.dataset.unikernel = b.name;
    const label = el("div", "label", b.name);
    const when = el("time", "", new Date(t0(b)).toLocaleTimeString());
    label.append(when);
    if (b.trigger) label.append(el("span", "trigger", b.trigger));
    label.append(el("span", "mode " + modeClass(b.mode), b.mode));
    const track = el("div", "track");
    const o = t0(b);
    const seg = (cls, from, to, what) => {
      if (!isFinite(from) || !isFinite(to) || to < from) return;
      const bar = el("div", "bar " + cls);
      bar.style.left = pct(from - o);
      bar.style.width = pct(to - from);
      bar.title = what + ": " + human(to - from);
      track.append(bar);
    };
    const q = isFinite(b.queued) ? b.queued : b.start;
    seg("dns", b.query, q, (b.trigger || "query") + " → start");
    if (q < b.start) seg("queued", q, b.start, "queued (max_starting)");
    const cls = modeClass(b.mode);
    seg(cls, b.start, b.ready, cls === "boot" ? "start → ready" : "start (" + b.mode + ") → ready");
    seg("hold", b.ready, b.replay, "ready → first replayed SYN");
    row.append(label, track, el("div", "total", human(tEnd(b) - o)));
    box.append(row);
  }
}

// modeClass is the colour class of a start mode: a resume from the warm
// pool (warm, or warm-snapshot: a snapshot restored paused) is warm, a
// restore of a snapshot is snapshot, anything else a boot.
function modeClass(mode) {
  if (mode === "warm" || mode === "warm-snapshot") return "warm";
  if (mode === "snapshot") return "snapshot";
  return "boot";
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const r = await fetch("api/status", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    const list = await r.json();
    renderTable(list);
    collectBoots(list);
    renderTimeline();
    conn.textContent = "live · " + new Date().toLocaleTimeString();
    conn.classList.remove("down");
  } catch (e) {
    conn.textContent = "disconnected: " + e.message;
    conn.classList.add("down");
  }
}

poll();
setInterval(poll, 1000);
