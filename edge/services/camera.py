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

from drivers.rtsp.ingest import RtspIngest
from drivers.rtsp.model import AccessUnit, IngestState
from edge.bus import topics
from edge.bus.messages import Alert, CameraStatus, CameraStream, CameraThumbnail, DroneVideo
from edge.config import CameraConfig
from edge.media.publisher import MediaPublisher
from edge.media.thumbnail import ThumbnailError, make_thumbnail
from edge.runtime.service import Service

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


class _Stream:
    """One of the camera's streams: its ingest and its media publisher."""

    def __init__(self, service: CameraService, profile: str, url: str) -> None:
        self.service = service
        self.profile = profile
        ctx = service.ctx
        self.publisher = MediaPublisher(ctx.bus.sync_ctx, ctx.endpoints.media(
            service.camera.id, profile))
        self.ingest = RtspIngest(
            url, transport=service.camera.transport, name=f"{service.camera.id}/{profile}",
            on_access_unit=self.on_access_unit, on_state=self.on_state)
        self.latest_keyframe: AccessUnit | None = None
        self._announced = False

    def on_access_unit(self, au: AccessUnit) -> None:
        if au.keyframe:
            self.latest_keyframe = au
            if not self._announced:
                self.announce()
        self.publisher.publish(au.data, keyframe=au.keyframe, pts=au.pts, dts=au.dts,
                               time_base=au.time_base, codec=au.codec,
                               received_ns=au.received_ns)

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
        await self.ingest.start()

    async def stop(self) -> None:
        await self.ingest.stop()
        self.publisher.close()


class CameraService(Service):
    camera: CameraConfig

    async def run(self) -> None:
        assert self.ctx.instance is not None
        self.camera = self.ctx.config.camera(self.ctx.instance)
        self.streams: dict[str, _Stream] = {}
        self._was_live = False
        self._alerted_down = False
        creds = (self.camera.credentials.read_text(self.ctx.config_dir)
                 if self.camera.credentials else None)
        self._creds = creds
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
            await old.stop()
        stream = _Stream(self, profile, with_credentials(url, self._creds))
        self.streams[profile] = stream
        await stream.start()

    async def _follow_drone(self, drone_id: str) -> None:
        current = ""
        async for env in self.ctx.bus.subscribe(topics.drone_video(drone_id)):
            msg = env.message
            if isinstance(msg, DroneVideo) and msg.uri and msg.uri != current:
                if not msg.uri.startswith(("rtsp://", "rtsps://")):
                    self.ctx.log.warning("drone %s announced a non-RTSP stream %r; ignored",
                                         drone_id, msg.uri)
                    continue
                current = msg.uri
                self.ctx.log.info("drone %s camera at %s", drone_id, msg.uri)
                await self._open("main", msg.uri)

    # -- state and alerts ------------------------------------------------------
    def main_state_changed(self, state: IngestState, reason: str) -> None:
        cam = self.camera
        source = topics.cam(cam.id).rstrip("/")
        if state is IngestState.LIVE:
            if self._alerted_down:
                self.ctx.bus.publish(topics.alert(source), Alert(
                    severity="notice", source=source, text=f"{cam.name} is live again"))
            self._was_live, self._alerted_down = True, False
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
            try:
                jpeg = await asyncio.to_thread(make_thumbnail, au.data, au.codec)
            except ThumbnailError as e:
                self.ctx.log.warning("thumbnail: %s", e)
                continue
            self.ctx.bus.publish(topics.cam_thumbnail(self.camera.id), CameraThumbnail(
                camera_id=self.camera.id, width=160, height=90, captured_ns=au.received_ns),
                jpeg)

    def health(self) -> tuple[str, str]:
        if not hasattr(self, "streams"):
            return ("starting", "")
        main = self.streams.get("main")
        if main is None:
            return ("degraded", "no stream yet")
        st = main.ingest.stats
        if st.state is IngestState.LIVE:
            return ("running", f"live {st.fps:.0f} fps {st.kbps:.0f} kbit/s")
        return ("degraded", f"{st.state.value}: {st.reason}")
