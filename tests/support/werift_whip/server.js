// A WHIP server (RFC 9725) that is not ours: werift's WebRTC stack, independent of aiortc.
// The uplink's WHIP push tests start it and read what it received on GET /stats.
//
//   node server.js [--port N] [--token T]
//
// Prints one JSON line {"port": N} on stdout once it listens. POST /whip/<name> with
// application/sdp and Authorization: Bearer T -> 201, the answer, Location
// /whip/<name>/<id>; DELETE that -> 200. GET /stats: per session its RTP packets,
// frames (RTP marker bits), keyframes (IDR NAL units) and bytes.
"use strict";

const http = require("http");
const crypto = require("crypto");
const { RTCPeerConnection, RTCRtpCodecParameters } = require("werift");

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const port = Number(arg("port", "0"));
const token = arg("token", "");
const sessions = new Map(); // id -> { name, pc, stats }

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

function text(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "text/plain", ...headers });
  res.end(body + "\n");
}

async function offer(req, res, name, body) {
  if (token && req.headers.authorization !== `Bearer ${token}`) {
    return text(res, 401, "wrong or missing bearer token", { "WWW-Authenticate": "Bearer" });
  }
  if ((req.headers["content-type"] || "").split(";")[0].trim() !== "application/sdp") {
    return text(res, 415, "send the offer as application/sdp");
  }
  const pc = new RTCPeerConnection({
    codecs: {
      // No profile-level-id: werift then takes whichever H.264 profile the offer carries.
      video: [new RTCRtpCodecParameters({
        mimeType: "video/H264", clockRate: 90000,
        rtcpFeedback: [{ type: "nack" }, { type: "nack", parameter: "pli" }],
        parameters: "packetization-mode=1",
      })],
    },
  });
  const id = crypto.randomBytes(8).toString("hex");
  const stats = { name, state: "new", packets: 0, frames: 0, keyframes: 0, bytes: 0,
                  created_ms: Date.now(), deleted: false };
  sessions.set(id, { name, pc, stats });
  pc.connectionStateChange.subscribe((state) => { stats.state = state; });
  pc.onTrack.subscribe((track) => {
    let inKeyframe = false;
    track.onReceiveRtp.subscribe((rtp) => {
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
    await pc.setRemoteDescription({ type: "offer", sdp: body });
    await pc.setLocalDescription(await pc.createAnswer());
    if (pc.iceGatheringState !== "complete") {
      await pc.iceGatheringStateChange.watch((s) => s === "complete", 5000);
    }
  } catch (e) {
    sessions.delete(id);
    await pc.close().catch(() => {});
    return text(res, 400, `cannot answer: ${String(e && e.message || e).split("\n")[0]}`);
  }
  res.writeHead(201, { "Content-Type": "application/sdp", Location: `/whip/${name}/${id}`,
                       ETag: `"${id}"` });
  res.end(pc.localDescription.sdp);
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
      res.writeHead(200, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ sessions: out }));
    }
    if (parts[0] !== "whip") return text(res, 404, "no such resource");
    if (req.method === "POST" && parts.length === 2) {
      return offer(req, res, parts[1], body).catch((e) => text(res, 500, String(e)));
    }
    if (req.method === "DELETE" && parts.length === 3) {
      if (token && req.headers.authorization !== `Bearer ${token}`) {
        return text(res, 401, "wrong or missing bearer token");
      }
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
  for (const s of sessions.values()) s.pc.close().catch(() => {});
  server.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
