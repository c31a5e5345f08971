// A centre media server in miniature that is not ours: werift's WebRTC stack, independent
// of aiortc. It receives pushed feeds (WHIP, RFC 9725) and fans each out to any number of
// viewers (WHEP), so the satellite carries a feed once however many watch it. The uplink's
// WHIP push tests and the centre page's roll-call tests start it and read GET /stats.
//
//   node server.js [--port N] [--token T]
//
// Prints one JSON line {"port": N} on stdout once it listens. POST /whip/<name> with
// application/sdp and Authorization: Bearer T -> 201, the answer, Location
// /whip/<name>/<id>; DELETE that -> 200. POST /whep/<name> (a viewer's offer; the token
// only if sent: viewers come through the centre page, which holds the operators' token)
// -> 201 with a sendonly H.264 track carrying the RTP of the newest connected WHIP session
// under <name>, Location /whep/<name>/<id>; 404 when nothing is published under <name>;
// DELETE that -> 200. GET /stats: per WHIP session its RTP packets, frames (RTP marker
// bits), keyframes (IDR NAL units) and bytes; per WHEP viewer the WHIP session feeding it
// and the packets forwarded to it.
"use strict";

const http = require("http");
const crypto = require("crypto");
const { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters } = require("werift");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("port", "0"));
const token = arg("token", "");
const sessions = new Map(); // WHIP: id -> { name, pc, stats, track, receiver, viewers }
const viewers = new Map(); // WHEP: id -> { name, pc, stats, track, publisher }

function h264Keyframe(payload) {
  if (payload.length < 2) return false;
  const type = payload[0] & 0x1f;
  if (type === 5) return true;
  if (type === 28) return (payload[1] & 0x80) !== 0 && (payload[1] & 0x1f) === 5; // FU-A start
  if (type === 24) { // STAP-A: length-prefixed NAL units
    for (let i = 1; i + 2 < payload.length;) {
      const size = payload.readUInt16BE(i);
      if ((payload[i + 2] & 0x1f) === 5) return true;
      i += 2 + size;
    }
  }
  return false;
}

let forwarded = 0; // RTP packets sent to WHEP viewers, all viewers together

function newPeer() {
  return new RTCPeerConnection({
    codecs: {
      // No profile-level-id: werift then takes whichever H.264 profile the offer carries.
      video: [new RTCRtpCodecParameters({
        mimeType: "video/H264", clockRate: 90000,
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }],
        parameters: "packetization-mode=1",
      })],
    },
  });
}

function authorised(req) {
  return !token || req.headers.authorization === `Bearer ${token}`;
}

// The newest WHIP session under `name` that is connected and has its track.
function publisherOf(name) {
  let best = null;
  for (const [id, s] of sessions) {
    if (s.name !== name || s.stats.deleted || s.stats.state !== "connected" || !s.track) continue;
    if (!best || s.stats.created_ms >= best[1].stats.created_ms) best = [id, s];
  }
  return best;
}

async function answer(pc, body) {
  await pc.setRemoteDescription({ type: "offer", sdp: body });
  await pc.setLocalDescription(await pc.createAnswer());
  if (pc.iceGatheringState !== "complete") {
    await pc.iceGatheringStateChange.watch((s) => s === "complete", 5000);
  }
}

function firstLine(e) {
  return String(e && e.message || e).split("\n")[0];
}

async function view(req, res, name, body) {
  // A viewer's token is optional (the brief of a fan-out behind the centre page), but a
  // wrong one is refused: it is a mistake worth telling.
  if (req.headers.authorization && !authorised(req)) {
    return text(res, 401, "wrong bearer token", { "WWW-Authenticate": "Bearer" });
  }
  if ((req.headers["content-type"] || "").split(";")[0].trim() !== "application/sdp") {
    return text(res, 415, "send the offer as application/sdp");
  }
  const found = publisherOf(name);
  if (!found) return text(res, 404, `nothing is published under ${name}`);
  const [publisherId, publisher] = found;
  const pc = newPeer();
  const track = new MediaStreamTrack({ kind: "video" });
  pc.addTransceiver(track, { direction: "sendonly" });
  const id = crypto.randomBytes(8).toString("hex");
  const stats = { name, publisher: publisherId, state: "new", packets: 0,
                  created_ms: Date.now(), deleted: false };
  const viewer = { name, pc, stats, track, publisher };
  viewers.set(id, viewer);
  const detach = () => publisher.viewers.delete(viewer);
  pc.connectionStateChange.subscribe((state) => {
    stats.state = state;
    if (state === "connected") {
      publisher.viewers.add(viewer);
      // A keyframe now, so that the viewer starts at once rather than at the next GOP.
      if (publisher.receiver && publisher.track.ssrc !== undefined) {
        publisher.receiver.sendRtcpPLI(publisher.track.ssrc).catch(() => {});
      }
    }
    if (state === "failed" || state === "closed") detach();
  });
  try {
    await answer(pc, body);
  } catch (e) {
    viewers.delete(id);
    await pc.close().catch(() => {});
    return text(res, 400, `cannot answer: ${firstLine(e)}`);
  }
  res.writeHead(201, { "Content-Type": "application/sdp", Location: `/whep/${name}/${id}`,
                       ETag: `"${id}"` });
  res.end(pc.localDescription.sdp);
}

function text(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "text/plain", ...headers });
  res.end(body + "\n");
}

async function offer(req, res, name, body) {
  if (!authorised(req)) {
    return text(res, 401, "wrong or missing bearer token", { "WWW-Authenticate": "Bearer" });
  }
  if ((req.headers["content-type"] || "").split(";")[0].trim() !== "application/sdp") {
    return text(res, 415, "send the offer as application/sdp");
  }
  const pc = newPeer();
  const id = crypto.randomBytes(8).toString("hex");
  const stats = { name, state: "new", packets: 0, frames: 0, keyframes: 0, bytes: 0,
                  created_ms: Date.now(), deleted: false };
  const session = { name, pc, stats, track: null, receiver: null, viewers: new Set() };
  sessions.set(id, session);
  pc.connectionStateChange.subscribe((state) => { stats.state = state; });
  pc.onTrack.subscribe((track) => {
    const t = pc.getTransceivers().find((x) => x.receiver.tracks.includes(track));
    session.track = track;
    session.receiver = t ? t.receiver : null;
    let inKeyframe = false;
    track.onReceiveRtp.subscribe((rtp) => {
      if (session.viewers.size) {
        // Each viewer's sender rewrites SSRC, payload type and sequence numbers in the
        // packet it is given: every viewer gets a copy of its own.
        const wire = rtp.serialize();
        for (const v of session.viewers) {
          v.track.writeRtp(Buffer.from(wire));
          v.stats.packets += 1;
          forwarded += 1;
        }
      }
      stats.packets += 1;
      stats.bytes += rtp.payload.length;
      inKeyframe = inKeyframe || h264Keyframe(rtp.payload);
      if (rtp.header.marker) {
        stats.frames += 1;
        if (inKeyframe) stats.keyframes += 1;
        inKeyframe = false;
      }
    });
  });
  try {
    await answer(pc, body);
  } catch (e) {
    sessions.delete(id);
    await pc.close().catch(() => {});
    return text(res, 400, `cannot answer: ${firstLine(e)}`);
  }
  res.writeHead(201, { "Content-Type": "application/sdp", Location: `/whip/${name}/${id}`,
                       ETag: `"${id}"` });
  res.end(pc.localDescription.sdp);
}

function whep(req, res, parts, body) {
  if (req.method === "POST" && parts.length === 2) {
    return view(req, res, parts[1], body).catch((e) => text(res, 500, firstLine(e)));
  }
  if (req.method === "DELETE" && parts.length === 3) {
    if (req.headers.authorization && !authorised(req)) {
      return text(res, 401, "wrong bearer token");
    }
    const v = viewers.get(parts[2]);
    if (!v || v.stats.name !== parts[1] || v.stats.deleted) {
      return text(res, 404, "no such session");
    }
    v.stats.deleted = true;
    v.publisher.viewers.delete(v);
    v.pc.close().catch(() => {});
    return text(res, 200, "session ended");
  }
  if (req.method === "PATCH") return text(res, 405, "no trickle ICE here");
  return text(res, 405, "method not allowed");
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const parts = req.url.split("?")[0].split("/").filter(Boolean);
    if (req.method === "GET" && parts.length === 1 && parts[0] === "stats") {
      const out = {};
      for (const [id, s] of sessions) out[id] = s.stats;
      const watching = {};
      for (const [id, v] of viewers) watching[id] = v.stats;
      res.writeHead(200, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ sessions: out, viewers: watching, forwarded }));
    }
    if (parts[0] === "whep") return whep(req, res, parts, body);
    if (parts[0] !== "whip") return text(res, 404, "no such resource");
    if (req.method === "POST" && parts.length === 2) {
      return offer(req, res, parts[1], body).catch((e) => text(res, 500, String(e)));
    }
    if (req.method === "DELETE" && parts.length === 3) {
      if (!authorised(req)) return text(res, 401, "wrong or missing bearer token");
      const s = sessions.get(parts[2]);
      if (!s || s.stats.deleted) return text(res, 404, "no such session");
      s.stats.deleted = true;
      s.pc.close().catch(() => {});
      return text(res, 200, "session ended");
    }
    if (req.method === "PATCH") return text(res, 405, "no trickle ICE here");
    return text(res, 405, "method not allowed");
  });
});

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});

function stop() {
  for (const s of [...sessions.values(), ...viewers.values()]) s.pc.close().catch(() => {});
  server.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
