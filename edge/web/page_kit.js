// What the vehicle's viewer page and the centre page share: the bearer token asked once
// per tab, server-sent events read with fetch (EventSource cannot send a token), a WHEP
// offer's ICE servers and candidates, the player's figures and hanging up. Plain JS,
// loaded before each page's own script; nothing is fetched from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const ICE_GATHER_MS = 1000;  // a non-trickle offer waits at most this for candidates

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function fmt(v, digits, unit) {
  return v == null ? "–" : `${Number(v).toFixed(digits)}${unit || ""}`;
}

// -- the token ------------------------------------------------------------------------
// The page's token: kept for the tab (and across visits when "remember" is ticked).
// `onToken` runs once one is entered; `ask(message)` asks (again).
function tokenKeeper(storageKey, onToken) {
  const keeper = {
    value: sessionStorage.getItem(storageKey) || localStorage.getItem(storageKey) || "",
    ask(message) {
      $("token-error").hidden = !message;
      $("token-error").textContent = message || "";
      $("token").value = "";
      if (!$("token-dialog").open) $("token-dialog").showModal();
    },
    headers(extra) {
      return Object.assign({ Authorization: "Bearer " + keeper.value }, extra || {});
    },
  };
  $("token-form").addEventListener("submit", () => {
    keeper.value = $("token").value.trim();
    sessionStorage.setItem(storageKey, keeper.value);
    if ($("remember").checked) localStorage.setItem(storageKey, keeper.value);
    else localStorage.removeItem(storageKey);
    onToken();
  });
  $("change-token").addEventListener("click", () => keeper.ask(""));
  return keeper;
}

// -- server-sent events -----------------------------------------------------------------
// Reads `url`'s events until `ctl` aborts, reconnecting with a backoff (0.5 s to 5 s).
// `on.status(text, cls)` says how the connection is; `on.refused()` is told a 401 (and
// reading stops); `on.event(kind, value)` gets each event's parsed JSON.
async function followEvents(url, headers, ctl, on) {
  let delay = 500;
  while (!ctl.signal.aborted) {
    try {
      const resp = await fetch(url, { headers: headers(), signal: ctl.signal });
      if (resp.status === 401) {
        on.status("token refused", "down");
        on.refused();
        return;
      }
      if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()));
      on.status("connected", "live");
      delay = 500;
      await readEvents(resp.body.getReader(), ctl.signal, on.event);
    } catch (e) {
      if (ctl.signal.aborted) return;
      on.status(on.unreachable || "unreachable, retrying", "down");
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 5000);
  }
}

async function readEvents(reader, signal, onEvent) {
  const decoder = new TextDecoder();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(kind, JSON.parse(data));
    }
  }
}

// -- WHEP -------------------------------------------------------------------------------
async function iceServers(endpoint, headers) {
  // WHEP announces STUN/TURN servers in Link headers; ask before gathering.
  try {
    const resp = await fetch(endpoint, { method: "OPTIONS", headers: headers() });
    const links = (resp.headers.get("Link") || "").split(/,(?=\s*<)/);
    return links.filter((l) => /rel="ice-server"/.test(l))
      .map((l) => ({ urls: l.match(/<([^>]+)>/)[1] }));
  } catch (e) {
    return [];
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_MS);
  });
}

// The playing session's figures from getStats: what the stats panel shows, and what
// `window.edgeViewer.stats` / `edgeCentre.stats` give scripts. `last` is the previous
// byte count ({t, bytes}), for the bit rate; the new one is returned with the figures.
async function playerStats(pc, last) {
  const report = await pc.getStats();
  let inbound = null, pair = null;
  report.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") inbound = r;
    if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r;
  });
  const out = { framesDecoded: 0 };
  if (inbound) {
    out.framesDecoded = inbound.framesDecoded || 0;
    out.width = inbound.frameWidth;
    out.height = inbound.frameHeight;
    out.fps = inbound.framesPerSecond;
    out.packetsLost = inbound.packetsLost;
    const codec = inbound.codecId ? report.get(inbound.codecId) : null;
    out.codec = codec ? codec.mimeType + " " + (codec.sdpFmtpLine || "") : "";
    const t = inbound.timestamp, bytes = inbound.bytesReceived || 0;
    if (last) out.kbps = (bytes - last.bytes) * 8 / (t - last.t);
    last = { t, bytes };
  }
  if (pair && pair.currentRoundTripTime != null) out.rttMs = pair.currentRoundTripTime * 1000;
  return { out, last };
}

function showPlayerStats(out) {
  $("s-res").textContent = out.width ? `${out.width}×${out.height}` : "–";
  $("s-fps").textContent = fmt(out.fps, 0);
  $("s-kbps").textContent = fmt(out.kbps, 0, " kbit/s");
  $("s-rtt").textContent = fmt(out.rttMs, 0, " ms");
  $("s-lost").textContent = out.packetsLost == null ? "–" : String(out.packetsLost);
  $("s-decoded").textContent = String(out.framesDecoded);
}

// Ends a WHEP session: its resource deleted (even as the page goes away), its
// connection closed.
function hangUp(session, headers) {
  clearTimeout(session.retry);
  if (session.location) {
    fetch(session.location, { method: "DELETE", headers: headers(), keepalive: true })
      .catch(() => {});
  }
  if (session.pc) session.pc.close();
}
