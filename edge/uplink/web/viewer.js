// The centre's viewer: every camera of the vehicle, one played over WHEP, live stats.
// Plain JS served by the vehicle itself: nothing is fetched from the internet.
// Everything but this page needs the bearer token, entered once per tab.
"use strict";

const TOKEN_KEY = "edge-uplink-token";

const app = {
  state: null,            // the last /api/state snapshot, kept current by SSE
  cameras: new Map(),     // id -> camera JSON
  drones: new Map(),      // id -> drone JSON
  thumbs: new Map(),      // id -> {ns, url}
  playing: null,          // {camera, profile, pc, location, stream, retry}
  stats: null,            // the latest stats shown, for tests and the curious
  lastBytes: null,
  events: null,           // AbortController of the SSE reader
  replay: null,           // on a replay's uplink: its last status
  replaySeen: 0,          // when it came (ns on this computer's clock)
};

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
    status: setLink, event: onEvent, unreachable: "vehicle unreachable, retrying",
    refused: () => askToken("The vehicle refused this token."),
  });
}

function onEvent(kind, value) {
  if (kind === "state") {
    app.state = value;
    $("vehicle").textContent = value.vehicle;
    app.cameras = new Map(value.cameras.map((c) => [c.id, c]));
    app.drones = new Map(value.drones.map((d) => [d.id, d]));
    renderLinks(value.links, value.constrained);
    renderCameras();
    renderSessions(value.sessions);
    renderReplay(value.replay);
  } else if (kind === "camera") {
    app.cameras.set(value.id, value);
    renderCamera(value);
  } else if (kind === "drone") {
    app.drones.set(value.id, value);
  } else if (kind === "link" && app.state) {
    const links = app.state.links.filter((l) => l.id !== value.id).concat([value]);
    app.state.links = links;
    renderLinks(links, app.state.constrained);
  } else if (kind === "sessions") {
    renderSessions(value);
  } else if (kind === "replay") {
    renderReplay(value);
  }
  if (app.playing) renderPlaying();
}

function setLink(text, cls) {
  $("link").textContent = text;
  $("link").className = "badge " + cls;
}

// -- cameras ------------------------------------------------------------------------
function renderCameras() {
  const box = $("cameras");
  for (const el of [...box.children]) {
    if (!app.cameras.has(el.dataset.camera)) el.remove();
  }
  for (const cam of app.cameras.values()) renderCamera(cam);
}

function renderCamera(cam) {
  let el = document.querySelector(`.camera[data-camera="${CSS.escape(cam.id)}"]`);
  if (!el) {
    el = document.createElement("button");
    el.type = "button";
    el.className = "camera";
    el.dataset.camera = cam.id;
    el.innerHTML = '<div class="nothumb">no picture yet</div>' +
      '<div class="title"><span class="name"></span><span class="badge"></span></div>' +
      '<div class="meta"></div>';
    el.addEventListener("click", () => play(cam.id, $("profile").value));
    $("cameras").appendChild(el);
  }
  el.querySelector(".name").textContent = cam.name + (cam.drone ? " ✈" : "");
  const badge = el.querySelector(".badge");
  badge.textContent = cam.state;
  badge.className = "badge " + cam.state;
  el.title = cam.reason || "";
  const meta = cam.codec
    ? `${cam.codec.toUpperCase()} ${cam.width}×${cam.height} ${Math.round(cam.fps)} fps ` +
      `${Math.round(cam.kbps)} kbit/s`
    : (cam.reason || "");
  el.querySelector(".meta").textContent = meta;
  el.classList.toggle("selected", !!(app.playing && app.playing.camera === cam.id));
  if (cam.thumbnail_ns && (app.thumbs.get(cam.id) || {}).ns !== cam.thumbnail_ns) {
    loadThumbnail(cam.id, cam.thumbnail_ns, el);
  }
}

async function loadThumbnail(id, ns, el) {
  app.thumbs.set(id, { ns, url: (app.thumbs.get(id) || {}).url });
  try {
    const resp = await fetch(`/api/cameras/${encodeURIComponent(id)}/thumbnail`,
                             { headers: authHeaders() });
    if (!resp.ok) return;
    const url = URL.createObjectURL(await resp.blob());
    const old = app.thumbs.get(id).url;
    app.thumbs.set(id, { ns, url });
    let img = el.querySelector("img");
    if (!img) {
      img = document.createElement("img");
      img.alt = id;
      el.querySelector(".nothumb").replaceWith(img);
    }
    img.src = url;
    if (old) URL.revokeObjectURL(old);
  } catch (e) { /* the next thumbnail will try again */ }
}

function kbit(v) {
  if (v == null) return "–";
  return v >= 1000 ? `${(v / 1000).toFixed(1)} Mbit/s` : `${Math.round(v)} kbit/s`;
}

function linkText(l) {
  // ● marks the link that carries the tunnel to the centre (F● when forced).
  const mark = l.active ? (l.forced ? "F● " : "● ") : "";
  const parts = [`${mark}${l.name || l.id}: ${l.state}`];
  if (l.rtt_ms != null) parts.push(`${Math.round(l.rtt_ms)} ms`);
  if (l.loss_pct != null) parts.push(`loss ${l.loss_pct.toFixed(1)}%`);
  if (l.tx_kbps != null || l.rx_kbps != null) parts.push(`↑${kbit(l.tx_kbps)} ↓${kbit(l.rx_kbps)}`);
  for (const [used, budget] of [[l.used_today_mb, l.budget_today_mb],
                                [l.used_incident_mb, l.budget_incident_mb]]) {
    if (used != null && budget) parts.push(`data ${Math.round(used / budget * 100)}%`);
  }
  return parts.join(" ");
}

function renderLinks(links, constrained) {
  const box = $("links");
  box.textContent = "";
  for (const l of links) {
    const b = document.createElement("span");
    b.className = "badge " + l.state + (l.active ? " active" : "");
    b.textContent = linkText(l);
    if (l.detail) b.title = l.detail;
    box.appendChild(b);
  }
  if (constrained) {
    const b = document.createElement("span");
    b.className = "badge waiting";
    b.textContent = "constrained uplink: auto sends sub streams";
    box.appendChild(b);
  }
}

function renderSessions(sessions) {
  const body = $("sessions").querySelector("tbody");
  body.textContent = "";
  for (const s of sessions) {
    const tr = document.createElement("tr");
    for (const v of [s.viewer, s.camera_id, s.profile + (s.transcoded ? " (H.264 from H.265)" : ""),
                     s.state + (s.detail ? ": " + s.detail : ""), Math.round(s.kbps),
                     s.rtt_ms != null ? Math.round(s.rtt_ms) + " ms" : "–"]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

// -- playing over WHEP --------------------------------------------------------------
async function play(camera, profile) {
  await stop();
  const cam = app.cameras.get(camera);
  const session = { camera, profile, pc: null, location: null, stream: "", retry: null,
                    state: "starting", error: "", postAt: 0, firstFrameMs: null };
  app.playing = session;
  app.lastBytes = null;
  $("player").hidden = false;
  $("player-title").textContent = cam ? cam.name : camera;
  renderCameras();
  renderPlaying();
  const endpoint = `/whep/${encodeURIComponent(camera)}?profile=${encodeURIComponent(profile)}`;
  const pc = new RTCPeerConnection({ iceServers: await iceServers(endpoint, authHeaders) });
  session.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (ev) => {
    const video = $("video");
    video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    // Time to the first picture on screen, from the POST: what the operator waits.
    if (video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback((now) => {
        if (app.playing === session && session.postAt) session.firstFrameMs = now - session.postAt;
      });
    }
  };
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
    session.postAt = performance.now();
    const resp = await fetch(endpoint, {
      method: "POST", body: pc.localDescription.sdp,
      headers: authHeaders({ "Content-Type": "application/sdp" }),
    });
    const text = await resp.text();
    if (app.playing !== session) return;
    if (resp.status === 401) { askToken("The vehicle refused this token."); throw new Error(text); }
    if (resp.status === 409 || resp.status === 503) {
      retryLater(session, Number(resp.headers.get("Retry-After")) || 3, text);
      return;
    }
    if (resp.status !== 201) throw new Error(`${resp.status}: ${text}`);
    session.location = resp.headers.get("Location");
    session.stream = resp.headers.get("X-Edge-Stream") || "";
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
    if (app.playing === session) play(session.camera, session.profile);
  }, seconds * 1000);
}

async function stop() {
  const session = app.playing;
  ptzRelease();
  app.playing = null;
  if (!session) return;
  hangUp(session, authHeaders);
  $("video").srcObject = null;
  $("player").hidden = true;
  renderCameras();
}

$("stop").addEventListener("click", () => stop());
$("profile").addEventListener("change", () => {
  if (app.playing) play(app.playing.camera, $("profile").value);
});
window.addEventListener("pagehide", () => { stop(); });

function renderPlaying() {
  const s = app.playing;
  if (!s) return;
  const cam = app.cameras.get(s.camera);
  let overlay = "";
  if (cam && cam.state !== "live") overlay = `Camera ${cam.state}: ${cam.reason || ""} — waiting for it`;
  else if (s.state === "waiting") overlay = s.error;
  else if (s.state === "error") overlay = s.error;
  $("overlay").hidden = !overlay;
  $("overlay").textContent = overlay;
  $("s-state").textContent = s.state;
  $("s-stream").textContent = s.stream || "–";
  renderTelemetry(cam);
  renderPtz(cam);
}

function renderTelemetry(cam) {
  const drone = cam && cam.drone ? app.drones.get(cam.drone) : null;
  $("telemetry").hidden = !(cam && cam.drone);
  if (!cam || !cam.drone) return;
  $("t-title").textContent = "drone " + cam.drone;
  const st = (drone && drone.status) || {};
  const t = (drone && drone.telemetry) || {};
  $("t-mode").textContent = st.mode ? `${st.mode}${st.armed ? " (armed)" : ""}` : "–";
  $("t-alt").textContent = fmt(t.alt_rel_m, 1, " m");
  $("t-speed").textContent = fmt(t.groundspeed_mps, 1, " m/s");
  $("t-heading").textContent = fmt(t.heading_deg, 0, "°");
  $("t-battery").textContent = fmt(t.battery_pct, 0, " %");
  $("t-pos").textContent = t.lat != null ? `${t.lat.toFixed(5)}, ${t.lon.toFixed(5)}` : "–";
  $("t-link").textContent = st.state ? `${st.state} ${fmt(st.link_quality_pct, 0, " %")}` : "–";
}

async function pollStats() {
  const s = app.playing;
  if (!s || !s.pc) return;
  const { out, last } = await playerStats(s.pc, app.lastBytes);
  app.lastBytes = last;
  app.stats = out;
  showPlayerStats(out);
}
setInterval(() => { pollStats().catch(() => {}); }, 1000);


// For operators' scripts and the tests: the same actions the mouse has.
window.edgeViewer = {
  play, stop,
  get playing() { return app.playing; },
  get ptz() { return { holding: !!ptz.timer, sent: ptz.sent, error: ptz.error }; },
  get stats() { return app.stats; },
  get cameras() { return [...app.cameras.values()]; },
  setToken(token) { auth.value = token; sessionStorage.setItem(TOKEN_KEY, token); startEvents(); },
};

if (auth.value) startEvents(); else askToken("");

// -- a replay (`edge replay --uplink`): its clock and controls, as the dashboard has ------
// The controls go to the replay vehicle through the uplink (POST /api/replay), so this
// page, the dashboard and a script drive the same replay.
function replayPosition(r) {
  if (r.state !== "playing") return r.position_ns;
  const since = Date.now() * 1e6 - app.replaySeen;
  return Math.min(r.end_ns, r.position_ns + since * r.speed);
}

function clockText(ns) {
  return new Date(ns / 1e6).toLocaleTimeString([], { hour12: false });
}

function renderReplay(r) {
  app.replay = r || null;
  app.replaySeen = Date.now() * 1e6;
  $("replay").hidden = !r;
  if (!r) return;
  const pos = replayPosition(r);
  $("replay-clock").textContent = `REPLAY ${clockText(pos)} ×${r.speed}` +
    (r.state === "playing" ? "" : ` ${r.state}`) + (r.keyframes_only ? " keyframes only" : "");
  $("replay-play").textContent = r.state === "playing" ? "Pause" : "Play";
  if (document.activeElement !== $("replay-speed")) $("replay-speed").value = String(r.speed);
  if (document.activeElement !== $("replay-seek")) {
    const span = Math.max(1, r.end_ns - r.start_ns);
    $("replay-seek").value = String(Math.round((pos - r.start_ns) / span * 1000));
  }
}

async function replayControl(body) {
  $("replay-error").hidden = true;
  try {
    const resp = await fetch("/api/replay", {
      method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body) });
    const answer = await resp.json().catch(() => ({ detail: resp.statusText }));
    if (!resp.ok) throw new Error(answer.detail || resp.status);
    if (answer.replay) renderReplay(answer.replay);
  } catch (e) {
    $("replay-error").textContent = `${body.action}: ${e.message}`;
    $("replay-error").hidden = false;
  }
}

$("replay-play").addEventListener("click", () =>
  replayControl({ action: app.replay && app.replay.state === "playing" ? "pause" : "play" }));
$("replay-prev").addEventListener("click", () => replayControl({ action: "prev_mark" }));
$("replay-next").addEventListener("click", () => replayControl({ action: "next_mark" }));
$("replay-back").addEventListener("click", () => app.replay && replayControl(
  { action: "seek", time_ns: Math.max(app.replay.start_ns, replayPosition(app.replay) - 10e9) }));
$("replay-forward").addEventListener("click", () => app.replay && replayControl(
  { action: "seek", time_ns: Math.min(app.replay.end_ns, replayPosition(app.replay) + 10e9) }));
$("replay-speed").addEventListener("change", () =>
  replayControl({ action: "speed", speed: Number($("replay-speed").value) }));
$("replay-seek").addEventListener("change", () => {
  const r = app.replay;
  if (!r) return;
  const at = r.start_ns + (r.end_ns - r.start_ns) * Number($("replay-seek").value) / 1000;
  replayControl({ action: "seek", time_ns: Math.round(at) });
});
setInterval(() => { if (app.replay) renderReplay(app.replay); }, 500);

// -- steering the camera played, where the vehicle lets the centre (ptz.centre) ---------
// An arrow held with the mouse moves the camera: the move is sent again every 250 ms while
// held (the camera service stops a camera whose move is not renewed within a second) and
// a stop when the button is let go or the pointer leaves it. Requests go one at a time, in
// order: a stop must never overtake the move before it. The commander's dashboard comes
// first; who holds the camera is shown under the buttons.
const PTZ_SPEED = 0.5;
const PTZ_ZOOM_STEP = 0.2;
const PTZ_RESEND_MS = 250;
const ptz = {
  camera: null,   // the camera the buttons steer
  timer: null,    // the held arrow's renewal
  move: null,     // the held arrow's request
  busy: false,    // a request in flight
  queue: [],      // what waits behind it
  sent: 0,        // requests answered (for tests and the curious)
  error: "",      // the last refusal, in words
};

function ptzPanel() {
  let panel = $("ptz");
  if (panel) return panel;
  panel = document.createElement("div");
  panel.id = "ptz";
  panel.hidden = true;
  panel.setAttribute("aria-label", "steering");
  panel.innerHTML =
    '<div class="ptz-pad">' +
    '<button type="button" id="ptz-up" data-pan="0" data-tilt="1" title="tilt up (hold)">▲</button>' +
    '<button type="button" id="ptz-left" data-pan="-1" data-tilt="0" title="pan left (hold)">◀</button>' +
    '<button type="button" id="ptz-home" title="home position">⌂</button>' +
    '<button type="button" id="ptz-right" data-pan="1" data-tilt="0" title="pan right (hold)">▶</button>' +
    '<button type="button" id="ptz-down" data-pan="0" data-tilt="-1" title="tilt down (hold)">▼</button>' +
    "</div>" +
    '<div class="ptz-zoom">' +
    '<button type="button" id="ptz-zoom-in" title="zoom in one step">+</button>' +
    '<button type="button" id="ptz-zoom-out" title="zoom out one step">−</button>' +
    "</div>" +
    '<div class="ptz-info"><div id="ptz-holder"></div>' +
    '<div id="ptz-error" class="error" hidden></div></div>';
  document.querySelector("#player .screen").after(panel);
  for (const b of panel.querySelectorAll("button[data-pan]")) {
    b.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      ptzHold(Number(b.dataset.pan), Number(b.dataset.tilt));
    });
    for (const kind of ["pointerup", "pointerleave", "pointercancel"]) {
      b.addEventListener(kind, () => ptzRelease());
    }
    b.addEventListener("contextmenu", (ev) => ev.preventDefault());
  }
  $("ptz-home").addEventListener("click", () => ptzSend({ action: "home" }));
  $("ptz-zoom-in").addEventListener("click", () => ptzSend({ action: "zoom", zoom: PTZ_ZOOM_STEP }));
  $("ptz-zoom-out").addEventListener("click", () => ptzSend({ action: "zoom", zoom: -PTZ_ZOOM_STEP }));
  return panel;
}

function ptzAllowed(cam) {
  return !!(cam && cam.control && cam.control.centre_allowed && !app.replay);
}

function renderPtz(cam) {
  const panel = ptzPanel();
  const allowed = ptzAllowed(cam);
  if (!allowed && ptz.timer) ptzRelease();
  panel.hidden = !allowed;
  ptz.camera = allowed ? cam.id : null;
  if (!allowed) return;
  $("ptz-holder").textContent = holderText(cam.control);
  $("ptz-error").hidden = !ptz.error;
  $("ptz-error").textContent = ptz.error;
}

function holderText(c) {
  const until = c.held_until_ns;
  const now = Date.now() * 1e6;
  let text;
  if (!c.holder || (until && until <= now)) {
    text = "control: free";
  } else {
    const who = c.holder === "commander" ? "the commander" : "the centre";
    text = `control: ${who}` + (c.holder_who ? ` (${c.holder_who})` : "") +
      (until ? ` until ${clockText(until)}` : "");
  }
  return text + (c.moving ? ", moving" : "");
}

function ptzHold(pan, tilt) {
  ptzRelease();
  ptz.move = { action: "move", pan: pan * PTZ_SPEED, tilt: tilt * PTZ_SPEED };
  ptzSend(ptz.move);
  ptz.timer = setInterval(() => { if (ptz.move) ptzSend(ptz.move); }, PTZ_RESEND_MS);
}

function ptzRelease() {
  if (!ptz.timer) return;
  clearInterval(ptz.timer);
  ptz.timer = null;
  ptz.move = null;
  ptzSend({ action: "stop" });
}

function ptzSend(body) {
  const camera = ptz.camera;
  if (!camera) return;
  const item = { camera, body };
  const last = ptz.queue[ptz.queue.length - 1];
  const continuous = (b) => b.action === "move" || b.action === "stop";
  if (last && last.camera === camera && continuous(last.body) && continuous(body)) {
    ptz.queue[ptz.queue.length - 1] = item;  // only the latest direction matters
  } else {
    ptz.queue.push(item);
  }
  if (!ptz.busy) ptzNext();
}

async function ptzNext() {
  const item = ptz.queue.shift();
  if (!item) { ptz.busy = false; return; }
  ptz.busy = true;
  let error = "";
  try {
    const resp = await fetch(`/api/cameras/${encodeURIComponent(item.camera)}/ptz`, {
      method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(item.body) });
    const text = await resp.text();
    let detail = text.trim();
    try { detail = JSON.parse(text).detail || detail; } catch (e) { /* a plain-text refusal */ }
    if (resp.status === 401) askToken("The vehicle refused this token.");
    if (!resp.ok) error = `${item.body.action}: ${detail || resp.status}`;
  } catch (e) {
    error = `${item.body.action}: vehicle unreachable`;
  }
  ptz.sent += 1;
  ptz.error = error;
  const cam = app.cameras.get(item.camera);
  if (app.playing && app.playing.camera === item.camera) renderPtz(cam);
  ptzNext();
}

window.addEventListener("blur", () => ptzRelease());
