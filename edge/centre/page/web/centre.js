// The centre page: every vehicle live, one timeline, roll-call of any camera over WHEP.
// Plain JS served by the centre itself: nothing is fetched from the internet.
// Everything but this page needs the bearer token, entered once per tab.
// Ages are computed here, every second, by the centre's clock (each event carries it):
// a vehicle out of contact shows how old what we know of it is, not a frozen "live".
"use strict";

const TOKEN_KEY = "edge-centre-token";
const THUMB_EVERY_MS = 10000;  // a live camera's picture, at most this often (thin links)

const app = {
  offset: 0,              // the centre's clock minus ours (ms)
  rules: { stale_s: 3, silent_s: 5, old_s: 10, contact_s: 12 },
  vehicles: new Map(),    // id -> vehicle JSON
  timeline: [],           // entries, newest first
  thumbs: new Map(),      // "vehicle/camera" -> {at, url, captured}
  playing: null,          // {vehicle, camera, profile, pc, location, ...}
  stats: null,
  lastBytes: null,
  events: null,           // AbortController of the SSE reader
};

const now = () => Date.now() + app.offset;

// -- token --------------------------------------------------------------------------
const auth = tokenKeeper(TOKEN_KEY, () => startEvents());

function askToken(message) { auth.ask(message); }

function authHeaders(extra) { return auth.headers(extra); }

// -- state over server-sent events --------------------------------------------------
async function startEvents() {
  if (app.events) app.events.abort();
  const ctl = new AbortController();
  app.events = ctl;
  await followEvents("/api/events", authHeaders, ctl, {
    status: setConn, event: onEvent, unreachable: "centre unreachable, retrying",
    refused: () => askToken("The centre refused this token."),
  });
}

function onEvent(kind, value) {
  if (value.now_ms) app.offset = value.now_ms - Date.now();
  if (kind === "state") {
    app.rules = value.rules;
    app.vehicles = new Map(value.vehicles.map((v) => [v.id, v]));
    app.timeline = value.timeline.slice().sort(newestFirst);
    renderVehicles();
    renderTimeline();
  } else if (kind === "vehicle") {
    app.vehicles.set(value.id, value);
    renderVehicle(value);
  } else if (kind === "timeline") {
    const seen = new Set(app.timeline.map((e) => e.id));
    for (const e of value.entries) if (!seen.has(e.id)) app.timeline.push(e);
    app.timeline.sort(newestFirst);
    renderTimeline();
  }
  renderSummary();
  if (app.playing) renderPlaying();
}

function setConn(text, cls) {
  $("conn").textContent = text;
  $("conn").className = "badge " + cls;
}

// -- ages ---------------------------------------------------------------------------
function ageS(ms) { return ms == null ? null : Math.max(0, (now() - ms) / 1000); }

function ago(ms) {
  const s = ageS(ms);
  if (s == null) return "never";
  if (s < 2) return "just now";
  if (s < 120) return `${Math.floor(s)} s ago`;
  if (s < 7200) return `${Math.floor(s / 60)} min ago`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

function contactOf(v) {
  if (v.last_contact_ms == null) return "never";
  return ageS(v.last_contact_ms) <= app.rules.contact_s ? "in" : "out";
}

const CONTACT_TEXT = { in: "in contact", out: "out of contact", never: "never heard" };

// A device's word is believed while its status is fresh (the mirror's rule).
function conditionOf(word, ...stamps) {
  const ages = stamps.map(ageS).filter((a) => a != null);
  if (!ages.length) return "unknown";
  if (Math.min(...ages) > app.rules.silent_s) return "silent";
  return word || "unknown";
}

// -- vehicles -----------------------------------------------------------------------
function renderVehicles() {
  const box = $("vehicles");
  for (const el of [...box.children]) {
    if (!app.vehicles.has(el.dataset.vehicle)) el.remove();
  }
  for (const v of app.vehicles.values()) renderVehicle(v);
}

function vehicleEl(v) {
  let el = document.querySelector(`.vehicle[data-vehicle="${CSS.escape(v.id)}"]`);
  if (el) return el;
  el = document.createElement("article");
  el.className = "vehicle";
  el.dataset.vehicle = v.id;
  el.innerHTML = '<header><h2></h2><span class="contact badge"></span>' +
    '<span class="heard"></span></header><div class="problem" hidden></div>' +
    '<div class="links"></div><div class="cameras"></div>' +
    '<table class="drones"><tbody></tbody></table><div class="services"></div>';
  el.querySelector("h2").textContent = v.id;
  $("vehicles").appendChild(el);
  return el;
}

function renderVehicle(v) {
  const el = vehicleEl(v);
  renderContact(v, el);
  const problem = el.querySelector(".problem");
  problem.hidden = !v.problem;
  problem.textContent = v.problem || "";
  renderLinks(v, el.querySelector(".links"));
  renderCameras(v, el.querySelector(".cameras"));
  renderDrones(v, el.querySelector(".drones tbody"));
  renderServices(v, el.querySelector(".services"));
}

function renderContact(v, el) {
  const c = contactOf(v);
  const badge = el.querySelector(".contact");
  badge.className = "contact badge " + c;
  badge.textContent = CONTACT_TEXT[c];
  el.classList.toggle("out", c === "out");
  el.querySelector(".heard").textContent = "last heard " + ago(v.last_contact_ms);
}

function renderLinks(v, box) {
  box.textContent = "";
  for (const l of v.links) {
    const b = document.createElement("span");
    const cond = conditionOf(l.state, l.ts_ms);
    b.className = "badge " + cond + (l.active ? " active" : "");
    const parts = [`${l.active ? "● " : ""}${l.name}: ${cond}`];
    if (cond !== "silent" && l.rtt_ms != null) parts.push(`${Math.round(l.rtt_ms)} ms`);
    if (cond === "silent") parts.push(ago(l.ts_ms));
    b.textContent = parts.join(" ");
    box.appendChild(b);
  }
}

function renderCameras(v, box) {
  const ids = new Set(v.cameras.map((c) => c.id));
  for (const el of [...box.children]) if (!ids.has(el.dataset.camera)) el.remove();
  for (const cam of v.cameras) {
    let el = box.querySelector(`.camera[data-camera="${CSS.escape(cam.id)}"]`);
    if (!el) {
      el = document.createElement("button");
      el.type = "button";
      el.className = "camera";
      el.dataset.camera = cam.id;
      el.innerHTML = '<div class="nothumb"></div><div class="title"><span class="name">' +
        '</span><span class="badge"></span></div><div class="meta"></div>' +
        '<div class="meta push" hidden></div><div class="meta shot" hidden></div>';
      el.addEventListener("click", () => rollCall(v.id, cam.id, $("profile").value));
      box.appendChild(el);
    }
    const cond = conditionOf(cam.state, cam.status_ms);
    el.disabled = !v.uplink;
    el.title = v.uplink ? "roll-call: play this camera" : "no uplink configured for roll-call";
    el.querySelector(".name").textContent = cam.name;
    const badge = el.querySelector(".badge");
    badge.className = "badge " + cond;
    badge.textContent = cond;
    el.querySelector(".meta").textContent = cond === "silent"
      ? `was ${cam.state} ${ago(cam.status_ms)}`
      : (cam.codec ? `${cam.codec.toUpperCase()} ${cam.width}×${cam.height} ` +
                     `${Math.round(cam.fps)} fps` : (cam.reason || ""));
    // Pushed up to the centre's media server (WHIP): its state, as the vehicle says it.
    const push = el.querySelector(".push");
    push.hidden = !cam.push;
    push.textContent = !cam.push ? "" : "↑ pushed: " + (
      cam.push.state === "live" ? `live (${cam.push.profile})`
      : cam.push.state === "retrying" ? `retry ${cam.push.retries}: ${cam.push.last_error}`
      : cam.push.state === "failed" ? `failed: ${cam.push.last_error}`
      : cam.push.state);
    el.classList.toggle("selected", !!(app.playing && app.playing.vehicle === v.id &&
                                       app.playing.camera === cam.id));
    const thumb = app.thumbs.get(`${v.id}/${cam.id}`);
    // A picture kept from before an outage says how old it is.
    const shot = el.querySelector(".shot");
    const oldShot = thumb && thumb.captured && ageS(thumb.captured) > THUMB_EVERY_MS / 500;
    shot.hidden = !oldShot;
    shot.textContent = oldShot ? `picture taken ${ago(thumb.captured)}` : "";
    const nothumb = el.querySelector(".nothumb");
    if (nothumb) nothumb.textContent = v.uplink ? "no picture yet" : "live/down only";
    if (v.uplink && cond === "live" && contactOf(v) === "in" &&
        (!thumb || Date.now() - thumb.at > THUMB_EVERY_MS)) {
      loadThumbnail(v.id, cam.id, el);
    }
  }
}

async function loadThumbnail(vehicle, camera, el) {
  const key = `${vehicle}/${camera}`;
  const held = app.thumbs.get(key) || {};
  app.thumbs.set(key, Object.assign({}, held, { at: Date.now() }));
  try {
    const resp = await fetch(`/api/vehicles/${encodeURIComponent(vehicle)}/cameras/` +
                             `${encodeURIComponent(camera)}/thumbnail`, { headers: authHeaders() });
    if (!resp.ok) return;
    const url = URL.createObjectURL(await resp.blob());
    const captured = Number(resp.headers.get("X-Captured-Ns")) / 1e6 || null;
    if (held.url) URL.revokeObjectURL(held.url);
    app.thumbs.set(key, { at: Date.now(), url, captured });
    let img = el.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.alt = camera;
      el.querySelector(".nothumb").replaceWith(img);
    }
    img.src = url;
  } catch (e) { /* the next round will try again */ }
}

function renderDrones(v, body) {
  body.textContent = "";
  for (const d of v.drones) {
    const cond = conditionOf(d.state, d.status_ms, d.telemetry_ms);
    const tr = document.createElement("tr");
    tr.dataset.drone = d.id;
    const cells = [d.id, null, d.mode ? d.mode + (d.armed ? " (armed)" : "") : "–",
                   fmt(d.battery_pct, 0, " %"),
                   d.lat != null ? `${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}` : "–",
                   fmt(d.alt_rel_m, 0, " m"), ago(Math.max(d.status_ms || 0, d.telemetry_ms || 0) || null)];
    for (const text of cells) {
      const td = document.createElement("td");
      if (text === null) {
        const b = document.createElement("span");
        b.className = "badge " + cond;
        b.textContent = cond;
        td.appendChild(b);
      } else td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

function renderServices(v, box) {
  const bad = v.services.filter((s) => s.state !== "running");
  const skipped = Object.values(v.skipped || {}).reduce((a, b) => a + b, 0);
  let text = `${v.services.length} services` +
    (bad.length ? `; ${bad.map((s) => `${s.name} ${s.state}`).join(", ")}` : ", all running");
  if (v.viewers) text += `; ${v.viewers} watching`;
  if (skipped) text += `; ${skipped} unreadable messages skipped`;
  box.textContent = text;
}

function renderSummary() {
  const vs = [...app.vehicles.values()];
  const out = vs.filter((v) => contactOf(v) !== "in").length;
  $("summary").textContent = `${vs.length} vehicles` + (out ? `, ${out} not in contact` : "");
}

// -- timeline -----------------------------------------------------------------------
function newestFirst(a, b) {
  return b.ts_ms - a.ts_ms || (a.vehicle < b.vehicle ? -1 : a.vehicle > b.vehicle ? 1 : 0) ||
    (b.id < a.id ? -1 : 1);
}

function renderTimeline() {
  const list = $("timeline");
  list.textContent = "";
  for (const e of app.timeline) {
    const li = document.createElement("li");
    li.className = `entry ${e.kind} sev-${e.severity}`;
    li.dataset.id = e.id;
    li.dataset.vehicle = e.vehicle;
    const t = document.createElement("time");
    t.dateTime = new Date(e.ts_ms).toISOString();
    t.textContent = new Date(e.ts_ms).toLocaleTimeString([], { hour12: false });
    t.title = new Date(e.ts_ms).toLocaleString();
    const veh = document.createElement("span");
    veh.className = "veh";
    veh.textContent = e.vehicle;
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = e.kind === "alert" ? e.severity : e.kind;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = (e.source ? e.source + ": " : "") + e.text;
    li.append(t, veh, kind, text);
    list.appendChild(li);
  }
}

// -- roll-call over WHEP (through the centre, which holds each vehicle's token) ------------
async function rollCall(vehicle, camera, profile) {
  await stop();
  const session = { vehicle, camera, profile: profile || "auto", pc: null, location: null,
                    stream: "", retry: null, state: "starting", error: "", via: "",
                    viaNote: "" };
  app.playing = session;
  app.lastBytes = null;
  $("player").hidden = false;
  $("player-title").textContent = `${vehicle} / ${camera}`;
  renderVehicles();
  renderPlaying();
  const endpoint = `/whep/${encodeURIComponent(vehicle)}/${encodeURIComponent(camera)}` +
    `?profile=${encodeURIComponent(session.profile)}`;
  const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint, authHeaders) });
  session.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (ev) => { $("video").srcObject = ev.streams[0] || new MediaStream([ev.track]); };
  pc.onconnectionstatechange = () => {
    if (app.playing !== session) return;
    session.state = pc.connectionState;
    if (pc.connectionState === "failed") retryLater(session, 2, "connection failed");
    renderPlaying();
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (app.playing !== session) return;
    const resp = await fetch(endpoint, {
      method: "POST", body: pc.localDescription.sdp,
      headers: authHeaders({ "Content-Type": "application/sdp" }),
    });
    const text = await resp.text();
    if (app.playing !== session) return;
    if (resp.status === 401) { askToken("The centre refused this token."); throw new Error(text); }
    if (resp.status === 409 || resp.status === 503) {
      retryLater(session, Number(resp.headers.get("Retry-After")) || 3, text);
      return;
    }
    if (resp.status !== 201) throw new Error(`${resp.status}: ${text}`);
    session.location = resp.headers.get("Location");
    session.stream = resp.headers.get("X-Edge-Stream") || "";
    session.via = resp.headers.get("X-Edge-Via") || "tunnel";
    session.viaNote = resp.headers.get("X-Edge-Via-Note") || "";
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    session.state = "connecting";
  } catch (e) {
    session.state = "error";
    session.error = String(e.message || e);
  }
  renderPlaying();
}

function retryLater(session, seconds, why) {
  session.state = "waiting";
  session.error = why.trim();
  renderPlaying();
  clearTimeout(session.retry);
  session.retry = setTimeout(() => {
    if (app.playing === session) rollCall(session.vehicle, session.camera, session.profile);
  }, seconds * 1000);
}

async function stop() {
  const session = app.playing;
  app.playing = null;
  app.stats = null;
  if (!session) return;
  hangUp(session, authHeaders);
  $("video").srcObject = null;
  $("player").hidden = true;
  renderVehicles();
}

$("stop").addEventListener("click", () => stop());
$("profile").addEventListener("change", () => {
  const s = app.playing;
  if (s) rollCall(s.vehicle, s.camera, $("profile").value);
});
window.addEventListener("pagehide", () => { stop(); });

function renderPlaying() {
  const s = app.playing;
  if (!s) return;
  const v = app.vehicles.get(s.vehicle);
  const cam = v ? v.cameras.find((c) => c.id === s.camera) : null;
  let overlay = "";
  if (v && contactOf(v) === "out") overlay = `${s.vehicle} is out of contact (last heard ` +
    `${ago(v.last_contact_ms)})`;
  else if (cam && conditionOf(cam.state, cam.status_ms) !== "live") {
    overlay = `Camera ${conditionOf(cam.state, cam.status_ms)}: ${cam.reason || ""}`;
  } else if (s.state === "waiting" || s.state === "error") overlay = s.error;
  $("overlay").hidden = !overlay;
  $("overlay").textContent = overlay;
  $("s-state").textContent = s.state;
  $("s-stream").textContent = s.stream || "–";
  renderVia(s);
}

// Which way the picture comes: a pushed feed from the centre's media server costs the
// satellite nothing more per operator; through the tunnel, each viewer is one more copy.
function renderVia(s) {
  let el = $("via");
  if (!el) {
    el = document.createElement("p");
    el.id = "via";
    el.className = "meta";
    $("player-title").after(el);
  }
  el.textContent = !s.via ? ""
    : s.via === "media" ? "from the centre's media server"
    : "through the tunnel" + (s.viaNote ? ` (${s.viaNote})` : "");
}

async function pollStats() {
  const s = app.playing;
  if (!s || !s.pc) return;
  const { out, last } = await playerStats(s.pc, app.lastBytes);
  app.lastBytes = last;
  if (app.playing !== s) return;
  app.stats = out;
  showPlayerStats(out);
}

// The clock moves ages, contact and conditions even when nothing arrives.
setInterval(() => {
  for (const v of app.vehicles.values()) renderVehicle(v);
  renderSummary();
  if (app.playing) renderPlaying();
  pollStats().catch(() => {});
}, 1000);


// For operators' scripts and the tests: the same actions the mouse has.
window.edgeCentre = {
  rollCall, stop,
  get playing() { return app.playing; },
  get stats() { return app.stats; },
  get vehicles() { return [...app.vehicles.values()]; },
  get timeline() { return app.timeline.slice(); },
  setToken(token) { auth.value = token; sessionStorage.setItem(TOKEN_KEY, token); startEvents(); },
};

if (auth.value) startEvents(); else askToken("");
