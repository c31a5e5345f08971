"""`camera@ID`: one camera, from RTSP onto the media plane, never decoded on the way.

For each configured stream (`main`, and `sub` when the camera has one) an
:class:`~drivers.rtsp.ingest.RtspIngest` demuxes access units in its own
thread and this service publishes them on that stream's media-plane socket
(:class:`~edge.media.publisher.MediaPublisher`, which keeps the current GOP for
late joiners). On the control bus it publishes:

- ``cam/<id>/status`` at 1 Hz: state (live | connecting | down with reason),
  codec, resolution, fps, kbit/s, GOP, last-frame age, reconnects (the main
  stream's; it is what the centre and the recorder see);
- ``cam/<id>/<profile>/stream`` whenever a stream (re)connects: its media
  endpoint and codec parameters, for the uplink's SDP answers;
- ``cam/<id>/thumbnail`` at most every 2 s: a 160x90 JPEG of the latest
  keyframe, from the sub stream when there is one (it is cheaper to decode);
- an alert when the camera goes down and when it comes back.

A drone's gimbal camera is configured with ``drone = "<drone id>"`` instead of
a URL: the service waits for the drone service to announce the stream's RTSP
URL on ``drone/<id>/stream`` and follows it when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import quote, urlsplit, urlunsplit

from drivers.rtsp.demux import redact_url
from drivers.rtsp.ingest import RtspIngest
from drivers.rtsp.model import AccessUnit, IngestState
from edge.bus import topics
from edge.bus.messages import Alert, CameraStatus, CameraStream, CameraThumbnail, DroneVideo
from edge.config import CameraConfig
from edge.media.publisher import MediaPublisher
from edge.runtime.service import Service, ServiceContext

STATUS_EVERY_S = 1.0
THUMBNAIL_EVERY_S = 2.0


def with_credentials(url: str, userpass: str | None) -> str:
    """Put `user:password` (from a secret file) into an RTSP URL, percent-encoded."""
    if not userpass:
        return url
    user, _, password = userpass.partition(":")
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _thumbnail(data: bytes, codec: str) -> bytes | str:
    """A JPEG of the keyframe, or why there is none.  In a worker thread.

    OpenCV is imported here, on first use, rather than at start-up: a demo
    starts every camera process at once, and a camera should be live before
    its first thumbnail is due.
    """
    from edge.media.thumbnail import ThumbnailError, make_thumbnail

    try:
        return make_thumbnail(data, codec)
    except ThumbnailError as e:
        return str(e)


class _Stream:
    """One of the camera's streams: its ingest and its media publisher.

    The publisher outlives a change of source URL (a drone announcing a new
    one): its consumers stay connected and see a new keyframe, not a new socket.
    """

    def __init__(self, service: CameraService, profile: str, url: str,
                 publisher: MediaPublisher | None = None) -> None:
        self.service = service
        self.profile = profile
        ctx = service.ctx
        self.publisher = publisher or MediaPublisher(ctx.bus.sync_ctx, ctx.endpoints.media(
            service.camera.id, profile))
        self.publisher.reset()
        self.ingest = RtspIngest(
            url, transport=service.camera.transport, name=f"{service.camera.id}/{profile}",
            sink=self.on_access_unit, on_state=self.on_state)
        self.latest_keyframe: AccessUnit | None = None
        self._announced = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_access_unit(self, au: AccessUnit) -> None:
        """In the ingest's reader thread: straight onto the media plane, no loop hop.

        Only keyframes (one a GOP) go on to the event loop, for the
        announcement and the thumbnails.
        """
        self.publisher.publish(au.data, keyframe=au.keyframe, pts=au.pts, dts=au.dts,
                               time_base=au.time_base, codec=au.codec,
                               received_ns=au.received_ns)
        if au.keyframe and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
                self._loop.call_soon_threadsafe(self.on_keyframe, au)

    def on_keyframe(self, au: AccessUnit) -> None:
        self.latest_keyframe = au
        if not self._announced:
            self.announce()

    def on_state(self, state: IngestState, reason: str) -> None:
        if state is not IngestState.LIVE:
            # After a reconnect the old GOP belongs to another session of the camera.
            self.publisher.reset()
            self._announced = False
        if self.profile == "main":
            self.service.main_state_changed(state, reason)

    def announce(self) -> None:
        info = self.ingest.stream_info
        if info is None:
            return
        self._announced = True
        cam = self.service.camera
        self.service.ctx.bus.publish(topics.cam_stream(cam.id, self.profile), CameraStream(
            camera_id=cam.id, profile=self.profile, endpoint=self.publisher.endpoint,
            codec=info.codec, profile_level_id=info.profile_level_id or "",
            width=info.width, height=info.height, fps=info.fps or 0.0,
            parameter_sets=info.parameter_sets_annexb))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.ingest.start()

    async def stop(self, *, close_publisher: bool = True) -> None:
        await self.ingest.stop()
        if close_publisher:
            self.publisher.close()


class CameraService(Service):
    camera: CameraConfig

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.streams: dict[str, _Stream] = {}
        self._alerted_down = False
        self._creds: str | None = None

    async def run(self) -> None:
        assert self.ctx.instance is not None
        self.camera = self.ctx.config.camera(self.ctx.instance)
        if self.camera.credentials:
            # Read in a thread: a credentials file may sit on slow storage.
            self._creds = await asyncio.to_thread(
                self.camera.credentials.read_text, self.ctx.config_dir)
        tasks = [asyncio.create_task(self._status_loop(), name="status"),
                 asyncio.create_task(self._thumbnail_loop(), name="thumbnails")]
        try:
            if self.camera.drone is not None:
                if self.camera.sub:
                    await self._open("sub", self.camera.sub)
                self.ctx.ready(f"waiting for drone {self.camera.drone} to announce its camera")
                await self._follow_drone(self.camera.drone)
            else:
                assert self.camera.main is not None
                await self._open("main", self.camera.main)
                if self.camera.sub:
                    await self._open("sub", self.camera.sub)
                self.ctx.ready(f"ingesting {len(self.streams)} stream(s)")
                await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for stream in self.streams.values():
                await stream.stop()

    async def _open(self, profile: str, url: str) -> None:
        old = self.streams.pop(profile, None)
        if old is not None:
            await old.stop(close_publisher=False)
        stream = _Stream(self, profile, with_credentials(url, self._creds),
                         old.publisher if old is not None else None)
        self.streams[profile] = stream
        await stream.start()

    async def _follow_drone(self, drone_id: str) -> None:
        current = ""
        sub = self.ctx.bus.subscribe(topics.drone_video(drone_id))
        try:
            async for env in sub:
                msg = env.message
                if not isinstance(msg, DroneVideo) or not msg.uri or msg.uri == current:
                    continue
                if not msg.uri.startswith(("rtsp://", "rtsps://")):
                    self.ctx.log.warning("drone %s announced a non-RTSP stream %r; ignored",
                                         drone_id, msg.uri)
                    continue
                current = msg.uri
                self.ctx.log.info("drone %s camera at %s", drone_id, redact_url(msg.uri))
                await self._open("main", msg.uri)
        finally:
            sub.close()

    # -- state and alerts ------------------------------------------------------
    def main_state_changed(self, state: IngestState, reason: str) -> None:
        cam = self.camera
        source = topics.cam(cam.id).rstrip("/")
        if state is IngestState.LIVE:
            if self._alerted_down:
                self.ctx.bus.publish(topics.alert(source), Alert(
                    severity="notice", source=source, text=f"{cam.name} is live again"))
            self._alerted_down = False
        elif state is IngestState.DOWN and not self._alerted_down:
            self._alerted_down = True
            self.ctx.bus.publish(topics.alert(source), Alert(
                severity="warning", source=source, text=f"{cam.name} is down: {reason}"))
        self.publish_status()

    def status(self) -> CameraStatus:
        cam = self.camera
        main = self.streams.get("main")
        msg = CameraStatus(camera_id=cam.id, name=cam.name,
                           lat=cam.position.lat if cam.position else None,
                           lon=cam.position.lon if cam.position else None)
        if main is None:
            msg.state, msg.reason = "connecting", "waiting for the drone to announce its camera"
            return msg
        st = main.ingest.stats
        info = main.ingest.stream_info
        msg.state = {IngestState.LIVE: "live", IngestState.CONNECTING: "connecting"}.get(
            st.state, "down")
        msg.reason = "" if st.state is IngestState.LIVE else st.reason
        if info is not None:
            msg.codec, msg.profile = info.codec, info.profile
            msg.width, msg.height = info.width, info.height
        msg.fps, msg.kbps, msg.gop = round(st.fps, 2), round(st.kbps, 1), st.gop or 0
        if st.last_packet_ns:
            msg.last_frame_age_s = round(max(0.0, (time.time_ns() - st.last_packet_ns) / 1e9), 3)
        msg.reconnects, msg.frames, msg.dropped = st.reconnects, st.packets, st.frames_dropped
        return msg

    def publish_status(self) -> None:
        self.ctx.bus.publish(topics.cam_status(self.camera.id), self.status())

    async def _status_loop(self) -> None:
        while True:
            self.publish_status()
            await asyncio.sleep(STATUS_EVERY_S)

    async def _thumbnail_loop(self) -> None:
        last: AccessUnit | None = None
        while True:
            await asyncio.sleep(THUMBNAIL_EVERY_S)
            stream = self.streams.get("sub") or self.streams.get("main")
            au = stream.latest_keyframe if stream else None
            if au is None or au is last:
                continue
            last = au
            jpeg = await asyncio.to_thread(_thumbnail, au.data, au.codec)
            if isinstance(jpeg, str):
                self.ctx.log.warning("thumbnail: %s", jpeg)
                continue
            self.ctx.bus.publish(topics.cam_thumbnail(self.camera.id), CameraThumbnail(
                camera_id=self.camera.id, width=160, height=90, captured_ns=au.received_ns),
                jpeg)

    def health(self) -> tuple[str, str]:
        if not self.ctx._ready.is_set():
            return ("starting", "")
        main = self.streams.get("main")
        if main is None:
            return ("degraded", "no stream yet")
        st = main.ingest.stats
        if st.state is IngestState.LIVE:
            return ("running", f"live {st.fps:.0f} fps {st.kbps:.0f} kbit/s")
        return ("degraded", f"{st.state.value}: {st.reason}")
