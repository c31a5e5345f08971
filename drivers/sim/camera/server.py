"""The simulated 5G dome camera: an RTSP/1.0 server over asyncio.

Serves ``rtsp://HOST:PORT/NAME/main`` and ``rtsp://HOST:PORT/NAME/sub``.
It listens at once and prepares its streams' loops in the background (from
the disk cache, or encoded); until a stream is ready it answers DESCRIBE and
SETUP with ``503 Service Unavailable`` and ``Retry-After``, as a camera that
is still booting does, so clients retry instead of waiting on a silent port.
Sessions over RTP/AVP/TCP (interleaved) and RTP/AVP (UDP unicast) are
supported; TCP sessions live as long as their connection, UDP sessions also
expire after `session_timeout` seconds without a request or RTCP from the
viewer (FFmpeg sends GET_PARAMETER keep-alives at half the timeout).

A keyframe on request: ``SET_PARAMETER`` on a stream's URL with the
``text/parameters`` body ``Renew-Stream: yes`` (as Axis cameras take it)
makes every session of that stream get a keyframe next: the live encoder
encodes one, a replayed loop skips ahead to its next one. Any other
parameter is ``451 Parameter Not Understood``; an empty body is a keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from drivers.rtsp.annexb import Codec
from drivers.sim.camera.auth import Authenticator, AuthScheme
from drivers.sim.camera.encoder import EncoderSettings, Profile
from drivers.sim.camera.rtp import DEFAULT_MTU
from drivers.sim.camera.rtsp_message import (
    Request,
    Response,
    RtspProtocolError,
    parse_port_pair,
    parse_transport,
    read_request,
)
from drivers.sim.camera.sdp import TRACK_CONTROL, session_description
from drivers.sim.camera.session import (
    TCP_SNDBUF,
    TCP_WRITE_HIGH_WATER,
    Session,
    SessionInfo,
    Sink,
    TcpInterleavedSink,
    UdpSink,
)
from drivers.sim.camera.source import LiveSource, LoopSource, SteerableSource, StreamSource
from drivers.sim.camera.viewport import View, ViewportScene

log = logging.getLogger(__name__)

PUBLIC_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
# Seconds a client is asked to wait while a stream's loop is still being prepared.
RETRY_AFTER_S = 1


@dataclass(frozen=True, slots=True)
class StreamSpec:
    width: int
    height: int
    bitrate: int


class _Connection:
    """One RTSP control connection and the sessions it created."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.sessions: dict[str, Session] = {}
        peer = writer.get_extra_info("peername")
        self.peer_host: str = peer[0] if peer else "127.0.0.1"
        sock = writer.get_extra_info("sockname")
        self.local_host: str = sock[0] if sock else "127.0.0.1"

    def abort(self) -> None:
        self.writer.transport.abort()


class _RtcpReceiver(asyncio.DatagramProtocol):
    def __init__(self, camera: SimCamera) -> None:
        self.camera = camera

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.camera._touch_udp(addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a vanished viewer: its session times out.
        log.debug("rtcp socket: %s", exc)


class _RtpSender(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket: %s", exc)


class SimCamera:
    """A simulated dome camera.  `await start()`, then point RTSP clients at `url()`.

    `port=0` picks a free port at the first start; later starts reuse it, so a
    test can stop the camera and start it again at the same address.
    `start(wait=False)` returns as soon as it listens; `wait_ready()` then
    waits for every stream (and raises if preparing one failed).
    `view`, if given, makes it a PTZ camera: every stream shows the `viewport`
    world through `view()` (see `SteerableSource`; the ONVIF device steers it).
    """

    def __init__(
        self,
        name: str = "cam1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        main: tuple[int, int] = (1280, 720),
        sub: tuple[int, int] | None = (640, 360),
        main_bitrate: int = 2_000_000,
        sub_bitrate: int = 512_000,
        fps: int = 30,
        gop: int = 30,
        codec: Codec = "h264",
        profile: Profile = "baseline",
        live: bool = False,
        # Two GOPs: half the start-up encode of the former 4 s, and the loop
        # seam (the scene jumping back) is no more visible at 2 s than at 4 s.
        loop_seconds: float = 2.0,
        user: str | None = None,
        password: str | None = None,
        auth: AuthScheme = "digest",
        garbage: bool = False,
        close_after_s: float | None = None,
        stall_after_s: float | None = None,
        repeat_parameter_sets: bool = True,
        session_timeout: float = 60.0,
        mtu: int = DEFAULT_MTU,
        view: Callable[[], View] | None = None,
    ) -> None:
        if "/" in name or not name:
            raise ValueError(f"camera name {name!r} must be a non-empty path segment")
        self.name = name
        self.host = host
        self.port = port
        self.specs: dict[str, StreamSpec] = {"main": StreamSpec(*main, main_bitrate)}
        if sub is not None:
            self.specs["sub"] = StreamSpec(*sub, sub_bitrate)
        self.fps = fps
        self.gop = gop
        self.codec: Codec = codec
        self.profile: Profile = profile
        self.live = live
        self.loop_seconds = loop_seconds
        self.garbage = garbage
        self.close_after_s = close_after_s
        self.stall_after_s = stall_after_s
        self.repeat_parameter_sets = repeat_parameter_sets
        self.session_timeout = session_timeout
        self.mtu = mtu
        self.view = view
        self._auth = Authenticator(user, password or "", auth) if user is not None else None
        self._sources: dict[str, StreamSource] = {}
        # Keyframe requests honoured (SET_PARAMETER Renew-Stream), per stream.
        self.keyframes_requested: dict[str, int] = {}
        self._preparing: asyncio.Task[None] | None = None
        self._cancel_encode = threading.Event()
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._udp_ports: tuple[int, int] = (0, 0)
        self._janitor: asyncio.Task[None] | None = None
        self._sdp_session_id = random.getrandbits(32)

    # -- lifecycle ---------------------------------------------------------

    def url(self, stream: str = "main", *, with_credentials: bool = False) -> str:
        userinfo = ""
        if with_credentials and self._auth is not None:
            userinfo = f"{self._auth.user}:{self._auth.password}@"
        return f"rtsp://{userinfo}{self.host}:{self.port}/{self.name}/{stream}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def ready(self) -> bool:
        """Every stream can be played (until then DESCRIBE answers 503)."""
        return len(self._sources) == len(self.specs)

    async def start(self, *, wait: bool = True) -> None:
        """Listen, and prepare the streams in the background.  Idempotent.

        With `wait` (the default) return only once every stream is ready.
        """
        if self._server is None:
            await self._listen()
        if not self.ready and self._preparing is None:
            self._preparing = asyncio.create_task(
                self._create_sources(), name=f"sim-prepare-{self.name}"
            )
        if wait:
            try:
                await self.wait_ready()
            except BaseException:
                # The caller gets no camera to close (`async with` skips
                # __aexit__ when __aenter__ raises): do not leave it listening.
                await self.close()
                raise

    async def wait_ready(self) -> None:
        """Wait until every stream is ready; raises what preparing them raised."""
        if self._preparing is not None:
            await asyncio.shield(self._preparing)

    async def _listen(self) -> None:
        await self._open_udp()
        try:
            self._server = await asyncio.start_server(
                self._on_connection, self.host, self.port, reuse_address=True
            )
        except OSError:
            self._close_udp()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._janitor = asyncio.create_task(
            self._expire_sessions(), name=f"sim-janitor-{self.name}"
        )
        urls = ", ".join(self.url(s) for s in self.specs)
        log.info("sim camera %s listening on %s", self.name, urls)

    async def stop(self) -> None:
        """Close the listener, every connection and session.  `start()` may follow."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        # Aborting the transports ends each handler through its normal path;
        # cancelling them instead makes Python 3.11's start_server log an
        # "unhandled exception" for every cancelled handler.
        for conn in self._connections.values():
            conn.abort()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if server is not None:
            await server.wait_closed()
        self._close_udp()

    async def close(self) -> None:
        """Stop and also release the encoders (no restart after this)."""
        self._cancel_encode.set()
        preparing, self._preparing = self._preparing, None
        if preparing is not None:
            preparing.cancel()
            # Waited for, not awaited: how it failed is wait_ready()'s to report.
            await asyncio.wait([preparing])
            if not preparing.cancelled():
                preparing.exception()  # retrieved, so asyncio does not log it again
        await self.stop()
        for source in self._sources.values():
            await source.close()
        self._sources.clear()

    async def __aenter__(self) -> SimCamera:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def sessions(self) -> list[SessionInfo]:
        return [s.info() for conn in self._connections.values() for s in conn.sessions.values()]

    async def _create_sources(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # In order: main first, it is what a camera's status and the centre use.
        for stream, spec in self.specs.items():
            if stream in self._sources:
                continue
            settings = EncoderSettings(
                name=self.name,
                width=spec.width,
                height=spec.height,
                fps=self.fps,
                bitrate=spec.bitrate,
                gop=self.gop,
                codec=self.codec,
                profile=self.profile,
                preset="ultrafast" if self.live else "veryfast",
                repeat_parameter_sets=self.repeat_parameter_sets,
                viewport=self.view is not None,
            )
            if self.live:
                self._sources[stream] = await LiveSource.create(
                    settings, self.mtu, self._viewport_scene(settings))
            elif self.view is not None:
                self._sources[stream] = await SteerableSource.create(
                    settings, self.loop_seconds, self.mtu, self.view, self._cancel_encode)
            else:
                self._sources[stream] = await LoopSource.create(
                    settings, self.loop_seconds, self.mtu, self._cancel_encode
                )
            log.info(
                "sim camera %s: %s ready after %.1f s", self.name, stream, loop.time() - started
            )

    def _viewport_scene(self, settings: EncoderSettings) -> Callable[[], ViewportScene] | None:
        view = self.view
        if view is None:
            return None
        return lambda: ViewportScene(settings.name, settings.width, settings.height,
                                     settings.fps, view)

    async def _open_udp(self) -> None:
        loop = asyncio.get_running_loop()
        # RTP wants an even port with RTCP on the next one; retry until a free pair.
        for _ in range(50):
            rtp_port = random.randrange(20000, 60000, 2)
            try:
                rtp, _p = await loop.create_datagram_endpoint(
                    _RtpSender, local_addr=(self.host, rtp_port)
                )
            except OSError:
                continue
            try:
                rtcp, _q = await loop.create_datagram_endpoint(
                    lambda: _RtcpReceiver(self), local_addr=(self.host, rtp_port + 1)
                )
            except OSError:
                rtp.close()
                continue
            self._rtp, self._rtcp = rtp, rtcp
            self._udp_ports = (rtp_port, rtp_port + 1)
            return
        raise OSError("no free UDP port pair for RTP/RTCP")

    def _close_udp(self) -> None:
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None

    async def _expire_sessions(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.session_timeout / 4))
            now = loop.time()
            for conn in list(self._connections.values()):
                for sid, session in list(conn.sessions.items()):
                    udp = isinstance(session.sink, UdpSink)
                    if (
                        udp or not session.playing
                    ) and now - session.last_activity > self.session_timeout:
                        log.info("sim camera %s: session %s timed out", self.name, sid)
                        conn.sessions.pop(sid, None)
                        await session.close()

    def _touch_udp(self, addr: tuple[str, int]) -> None:
        for conn in self._connections.values():
            for session in conn.sessions.values():
                sink = session.sink
                if isinstance(sink, UdpSink) and sink.rtcp_addr == addr:
                    session.touch()

    # -- connection --------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Connection(writer)
        self._connections[task] = conn
        writer.transport.set_write_buffer_limits(high=TCP_WRITE_HIGH_WATER)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SNDBUF)
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":
                    # Interleaved RTCP receiver reports from the viewer: a sign of life.
                    header = await reader.readexactly(3)
                    _channel, length = struct.unpack("!BH", header)
                    await reader.readexactly(length)
                    for session in conn.sessions.values():
                        session.touch()
                    continue
                request = await read_request(reader, first)
                response = await self._dispatch(conn, request)
                writer.write(response.encode(request.cseq))
        except (asyncio.IncompleteReadError, ConnectionError, RtspProtocolError) as exc:
            log.debug("sim camera %s: connection from %s ends: %s", self.name, conn.peer_host, exc)
        except asyncio.CancelledError:
            # Only stop() cancels a handler, as a last resort; ending quietly
            # avoids the 3.11 start_server callback reporting it as an error.
            pass
        finally:
            for session in conn.sessions.values():
                await session.close()
            conn.sessions.clear()
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _stream_for(self, url: str) -> tuple[str, str] | None:
        """(stream name, control URL) for a request URL, or None if not ours."""
        parts = [p for p in urlsplit(url).path.split("/") if p]
        if len(parts) == 3 and parts[2] == TRACK_CONTROL:
            parts = parts[:2]
        if len(parts) != 2 or parts[0] != self.name or parts[1] not in self.specs:
            return None
        return parts[1], url

    def _unauthorized(self, request: Request) -> Response | None:
        if self._auth is None or self._auth.check(request.method, request.header("authorization")):
            return None
        return Response(401, {"WWW-Authenticate": self._auth.challenge()})

    async def _dispatch(self, conn: _Connection, request: Request) -> Response:
        method = request.method
        if method == "OPTIONS":
            return Response(200, {"Public": PUBLIC_METHODS})
        if method in ("GET_PARAMETER", "SET_PARAMETER"):
            session = conn.sessions.get(request.header("session").split(";")[0])
            if session is not None:
                session.touch()
            if method == "SET_PARAMETER" and request.body.strip():
                return self._set_parameter(request, session)
            return Response(200, self._session_header(session))
        if method == "DESCRIBE":
            return self._describe(conn, request)
        if method == "SETUP":
            return self._setup(conn, request)
        if method == "PLAY":
            return self._play(conn, request)
        if method == "TEARDOWN":
            session = conn.sessions.pop(request.header("session").split(";")[0], None)
            if session is None:
                return Response(454)
            await session.close()
            return Response(200)
        return Response(501)

    def _set_parameter(self, request: Request, session: Session | None) -> Response:
        """Axis's ``Renew-Stream: yes``: a keyframe now, on every session of the stream."""
        names = {line.partition(":")[0].strip().lower(): line.partition(":")[2].strip().lower()
                 for line in request.body.decode(errors="replace").splitlines() if line.strip()}
        if set(names) != {"renew-stream"} or names["renew-stream"] != "yes":
            return Response(451, self._session_header(session))
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._stream_for(request.url)
        source = self._sources.get(found[0]) if found else None
        if found is None or source is None:
            return Response(404 if found is None else 503, self._session_header(session))
        source.request_keyframe()
        self.keyframes_requested[found[0]] = self.keyframes_requested.get(found[0], 0) + 1
        return Response(200, self._session_header(session))

    def _session_header(self, session: Session | None) -> dict[str, str]:
        if session is None:
            return {}
        return {"Session": f"{session.session_id};timeout={int(self.session_timeout)}"}

    def _describe(self, conn: _Connection, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._stream_for(request.url)
        if found is None:
            return Response(404)
        stream, _ = found
        if stream not in self._sources:
            return self._starting()
        spec = self.specs[stream]
        sdp = session_description(
            session_id=self._sdp_session_id,
            server_ip=conn.local_host,
            title=f"{self.name} {stream}",
            params=self._sources[stream].params,
            width=spec.width,
            height=spec.height,
            fps=self.fps,
            bitrate=spec.bitrate,
        )
        base = request.url.rstrip("/") + "/"
        return Response(
            200, {"Content-Type": "application/sdp", "Content-Base": base}, sdp.encode()
        )

    def _setup(self, conn: _Connection, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        found = self._stream_for(request.url)
        if found is None:
            return Response(404)
        stream, _ = found
        if stream not in self._sources:
            return self._starting()
        if request.header("session"):
            # One track per stream, so a second SETUP in a session is an aggregate.
            return Response(459)
        chosen = self._choose_transport(conn, parse_transport(request.header("transport")))
        if chosen is None:
            return Response(461)
        sink, transport_reply = chosen
        session = Session(
            stream=stream,
            control_url=request.url,
            source=self._sources[stream],
            sink=sink,
            cname=f"{self.name}@edge-sim",
            garbage=self.garbage,
            close_after_s=self.close_after_s,
            stall_after_s=self.stall_after_s,
            on_fault_close=conn.abort,
        )
        conn.sessions[session.session_id] = session
        headers = {"Transport": f"{transport_reply};ssrc={session.ssrc:08X}"}
        headers.update(self._session_header(session))
        return Response(200, headers)

    def _starting(self) -> Response:
        return Response(503, {"Retry-After": str(RETRY_AFTER_S)})

    def _choose_transport(
        self, conn: _Connection, options: Iterable[dict[str, str]]
    ) -> tuple[Sink, str] | None:
        for opt in options:
            spec = opt["spec"]
            if "multicast" in opt:
                continue
            if spec == "RTP/AVP/TCP":
                pair = parse_port_pair(opt.get("interleaved", "0-1"))
                if pair is None or pair[0] > 255 or pair[1] > 255:
                    continue
                sink: Sink = TcpInterleavedSink(conn.writer, *pair)
                return sink, f"RTP/AVP/TCP;unicast;interleaved={pair[0]}-{pair[1]}"
            if spec in ("RTP/AVP", "RTP/AVP/UDP"):
                pair = parse_port_pair(opt.get("client_port", ""))
                if pair is None or self._rtp is None or self._rtcp is None:
                    continue
                sink = UdpSink(
                    self._rtp, self._rtcp, (conn.peer_host, pair[0]), (conn.peer_host, pair[1])
                )
                server = f"{self._udp_ports[0]}-{self._udp_ports[1]}"
                return sink, f"RTP/AVP;unicast;client_port={pair[0]}-{pair[1]};server_port={server}"
        return None

    def _play(self, conn: _Connection, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        session = conn.sessions.get(request.header("session").split(";")[0])
        if session is None:
            return Response(454)
        session.touch()
        seq, rtptime = session.play()
        headers = {
            "Range": "npt=0.000-",
            "RTP-Info": f"url={session.control_url};seq={seq};rtptime={rtptime}",
        }
        headers.update(self._session_header(session))
        return Response(200, headers)


async def run_sim_camera(name: str, port: int, host: str = "127.0.0.1", **options: Any) -> None:
    """Serve one simulated camera until cancelled (the `edge sim camera` entry point).

    `options` are the keyword arguments of `SimCamera`.  Returns only by
    cancellation (or raises OSError if the port is taken); the camera is
    closed on the way out.
    """
    camera = SimCamera(name, host=host, port=port, **options)
    try:
        # Listen at once: clients get 503 + Retry-After until the loops are ready.
        await camera.start(wait=False)
        await camera.wait_ready()
        log.info("sim camera %s ready", name)
        await asyncio.Event().wait()
    finally:
        await camera.close()
