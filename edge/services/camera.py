"""`camera@ID`: one camera, from its sources onto the media plane, never decoded on the way.

Each configured stream (`main`, and `sub` when the camera has one) has a
source (:class:`drivers.source.Source`, built by kind in
:mod:`edge.services.camera_sources`) that hands access units to this service
in its own thread; the service publishes them on that stream's media-plane
socket (:class:`~edge.media.publisher.MediaPublisher`, which keeps the current
GOP for late joiners). On the control bus it publishes:

- ``cam/<id>/status`` at 1 Hz: state (live | connecting | standby | down with reason),
  codec, resolution, fps, kbit/s, GOP, last-frame age, reconnects (the main
  stream's; it is what the centre and the recorder see);
- ``cam/<id>/<profile>/stream`` whenever a stream (re)connects: its media
  endpoint and codec parameters, for the uplink's SDP answers;
- ``cam/<id>/thumbnail`` at most every 2 s: a 160x90 JPEG of the latest
  keyframe, from the sub stream when there is one (it is cheaper to decode);
- an alert when the camera goes down and when it comes back.

A stream whose source is on demand (:class:`drivers.source.OnDemandSource`: a
GB/T 28181 channel, whose video costs the device's SIM data) is told how many
consume it: the subscribers of its media-plane socket (the uplink's viewers and
pushes, the recorder, anyone else). Unwatched for ``[gb28181] linger_s`` it is
let go and the camera is ``standby``, which is neither down nor an alert; the
next subscriber brings it back. RTSP streams are pulled always.

It answers ``camera.keyframe`` requests addressed to ``camera@<id>`` (the
uplink's, when a viewer lost a picture that NACK could not repair) by asking
the stream's source for a keyframe, at most once a second per stream; a
source that cannot (the camera said so) is rejected with its reason.

It answers ``camera.ptz`` requests (:class:`PtzCommand`: steering, from the
dashboard or the centre) through its :class:`~edge.services.camera_ptz.PtzController`,
which publishes who steers the camera on ``cam/<id>/control``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

from drivers.source import AccessUnit, OnDemandSource, SourceState
from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraStream,
    CameraThumbnail,
    KeyframeRequest,
    Message,
    PtzCommand,
    Reply,
)
from edge.config import CameraConfig, SourceSpec
from edge.media.publisher import MediaPublisher
from edge.runtime.service import Service, ServiceContext
from edge.services.camera_ptz import PtzController, steering_for
from edge.services.camera_sources import SourceSetup, build_source

STATUS_EVERY_S = 1.0
THUMBNAIL_EVERY_S = 2.0
# A live stream is announced again this often, unchanged. Late subscribers have the
# broker's cache, but a replay from deep inside a long recording reads only the last
# minutes of the bus log for state (edge.replay.service.STATE_LOOKBACK_NS, 10 min).
ANNOUNCE_EVERY_S = 60.0
# At most one keyframe request per stream per interval reaches the camera.
KEYFRAME_EVERY_S = 1.0
# A stopped source is "down" to the camera's viewers.
_STATE_WORDS: dict[SourceState, Literal["live", "connecting", "standby"]] = {
    SourceState.LIVE: "live", SourceState.CONNECTING: "connecting",
    SourceState.STANDBY: "standby"}


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
    """One of the camera's streams: its source and its media publisher.

    The publisher lives as long as the service: when a source moves to
    another address (a drone announcing a new URL), its consumers stay
    connected and see a new keyframe, not a new socket.
    """

    def __init__(self, service: CameraService, profile: str, spec: SourceSpec,
                 credentials: str | None) -> None:
        self.service = service
        self.profile = profile
        ctx = service.ctx
        cam = service.camera
        self.source = build_source(spec, SourceSetup(
            name=f"{cam.id}/{profile}", camera=cam, credentials=credentials, bus=ctx.bus,
            log=ctx.log, sink=self.on_access_unit, on_state=self.on_state))
        # Consumers are media-plane subscribers only. The recorder subscribes to every
        # stream it records, so with it on a GB/T 28181 stream is never let go: right,
        # recording is consumption. The thumbnails are not a consumer (they decode the
        # keyframes handed to on_keyframe): if they were, every stream would stay invited
        # for a picture nobody may be looking at.
        self.on_demand = self.source if isinstance(self.source, OnDemandSource) else None
        if self.on_demand is not None:
            self.on_demand.linger_s = ctx.config.gb28181.linger_s
        self.publisher = MediaPublisher(ctx.bus.sync_ctx, ctx.endpoints.media(cam.id, profile),
                                        on_consumers=self.on_consumers)
        self.latest_keyframe: AccessUnit | None = None
        self.announced = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None

    def on_access_unit(self, au: AccessUnit) -> None:
        """In the source's own thread: straight onto the media plane, no loop hop.

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
        if not self.announced:
            self.announce()

    def on_consumers(self) -> None:
        """In whichever thread served the (un)subscription: the count goes to the loop."""
        if self.on_demand is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
                self._loop.call_soon_threadsafe(self._tell_consumers)

    def _tell_consumers(self) -> None:
        if self.on_demand is not None:
            self.on_demand.consumers_changed(self.publisher.consumers)

    def on_state(self, state: SourceState, reason: str) -> None:
        if state is not SourceState.LIVE:
            # After a reconnect the old GOP belongs to another session of the camera;
            # after a release (standby), to a time before the next consumer came.
            self.publisher.reset()
            self.announced = False
        if self.profile == "main":
            self.service.main_state_changed(state, reason)

    def announce(self) -> None:
        info = self.source.stream_info
        if info is None:
            return
        self.announced = True
        cam = self.service.camera
        self.service.ctx.bus.publish(topics.cam_stream(cam.id, self.profile), CameraStream(
            camera_id=cam.id, profile=self.profile, endpoint=self.publisher.endpoint,
            codec=info.codec, profile_level_id=info.profile_level_id or "",
            width=info.width, height=info.height, fps=info.fps or 0.0,
            parameter_sets=info.parameter_sets_annexb))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.on_demand is not None:
            # A released stream publishes nothing: its subscriptions are served here.
            self._watch = asyncio.create_task(self.publisher.watch(),
                                              name=f"consumers {self.profile}")
        await self.source.start()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.source.stop()
        self.publisher.close()


class CameraService(Service):
    camera: CameraConfig

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.streams: dict[str, _Stream] = {}
        self._alerted_down = False
        # When each stream last asked its camera for a keyframe (monotonic s).
        self._keyframe_asked: dict[str, float] = {}
        self.keyframes_asked = 0
        self.ptz: PtzController | None = None

    async def run(self) -> None:
        assert self.ctx.instance is not None
        self.camera = self.ctx.config.camera(self.ctx.instance)
        creds = None
        if self.camera.credentials:
            # Read in a thread: a credentials file may sit on slow storage.
            creds = await asyncio.to_thread(
                self.camera.credentials.read_text, self.ctx.config_dir)
        tasks: list[asyncio.Task[None]] = []
        try:
            for profile, spec in self.camera.streams.items():
                self.streams[profile] = _Stream(self, profile, spec, creds)
            self.ptz = PtzController(
                self.camera, steering_for(self.camera, creds, self.ctx.bus, self.ctx.config),
                self.ctx.bus, self.ctx.log, self.ctx.name)
            self.ptz.start()
            self.ctx.bus.serve(topics.camera_service(self.camera.id), self._handle)
            tasks = [asyncio.create_task(self._status_loop(), name="status"),
                     asyncio.create_task(self._thumbnail_loop(), name="thumbnails")]
            for stream in self.streams.values():
                await stream.start()
            self.ctx.ready(f"ingesting {len(self.streams)} stream(s)")
            await asyncio.Event().wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if self.ptz is not None:  # a moving camera is told to stop before we go
                await self.ptz.close()
            for stream in self.streams.values():
                await stream.stop()

    # -- requests --------------------------------------------------------------
    async def _handle(self, env: Envelope) -> Message:
        req = env.message
        if isinstance(req, PtzCommand) and self.ptz is not None:
            return await self.ptz.handle(req, env.header.source)
        if not isinstance(req, KeyframeRequest):
            return Reply(status="error", detail=f"expected a camera.keyframe or camera.ptz "
                                                f"request, got {env.header.type}")
        stream = self.streams.get(req.profile)
        if stream is None:
            return Reply(status="rejected", detail=f"camera {self.camera.id} has no "
                                                   f"{req.profile!r} stream")
        # Every viewer of a stream that lost a picture asks within the same round
        # trip, and a keyframe costs the camera's bit budget: once per interval.
        now = time.monotonic()
        last = self._keyframe_asked.get(req.profile)
        if last is not None and now - last < KEYFRAME_EVERY_S:
            return Reply(status="busy", detail=f"asked {now - last:.1f} s ago")
        self._keyframe_asked[req.profile] = now
        why_not = await stream.source.request_keyframe()
        if why_not is not None:
            return Reply(status="rejected", detail=why_not)
        self.keyframes_asked += 1
        self.ctx.log.info("%s/%s: keyframe asked of the camera (%s)", self.camera.id,
                          req.profile, req.reason or env.header.source)
        return Reply(status="accepted")

    # -- state and alerts ------------------------------------------------------
    def main_state_changed(self, state: SourceState, reason: str) -> None:
        cam = self.camera
        source = topics.cam(cam.id).rstrip("/")
        if state is SourceState.LIVE:
            if self._alerted_down:
                self.ctx.bus.publish(topics.alert(source), Alert(
                    severity="notice", source=source, text=f"{cam.name} is live again"))
            self._alerted_down = False
        elif state is SourceState.DOWN and not self._alerted_down:
            self._alerted_down = True
            self.ctx.bus.publish(topics.alert(source), Alert(
                severity="warning", source=source, text=f"{cam.name} is down: {reason}"))
        self.publish_status()

    def status(self) -> CameraStatus:
        cam = self.camera
        main = self.streams["main"]
        msg = CameraStatus(camera_id=cam.id, name=cam.name,
                           lat=cam.position.lat if cam.position else None,
                           lon=cam.position.lon if cam.position else None)
        st = main.source.stats
        info = main.source.stream_info
        msg.state = _STATE_WORDS.get(st.state, "down")
        msg.reason = "" if st.state is SourceState.LIVE else st.reason
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
        announced = time.monotonic()
        while True:
            self.publish_status()
            if time.monotonic() - announced >= ANNOUNCE_EVERY_S:
                announced = time.monotonic()
                for stream in self.streams.values():
                    if stream.announced:
                        stream.announce()
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
        st = self.streams["main"].source.stats
        if st.state is SourceState.LIVE:
            return ("running", f"live {st.fps:.0f} fps {st.kbps:.0f} kbit/s")
        if st.state is SourceState.STANDBY:
            return ("running", f"standby: {st.reason}")
        return ("degraded", f"{st.state.value}: {st.reason}")
