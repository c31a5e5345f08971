"""Which camera stream a viewer gets, whether it may have it, and the one reader per stream.

:class:`Streams` decides, for a request naming a camera and a profile:

- which stream: ``main`` or ``sub`` as asked, or for ``auto`` the camera's
  ``uplink_profile`` when the link to the centre is constrained
  (:meth:`~edge.uplink.state.UplinkState.constrained`: the link carrying the
  tunnel, when the links service says which) and ``main`` otherwise. Main
  never crosses an active link that does not allow it: a request that asks
  for it by name gets sub and is told why (the centre asked for video; a
  refusal would leave its screen black over the satellite, which is when it
  needs the picture most). A camera without a sub stream sends main; an
  H.265 camera always sends its smaller stream transcoded
  (:mod:`edge.uplink.transcode`);
- whether it can (admission): camera known (404), live with its stream
  announced (409 with ``Retry-After``), sessions and transcoders free (503).
  When the bus cannot vouch for the camera (no fresh status: the camera
  service or the bus may be stalled while video flows), the media plane
  decides: the request waits briefly for a live unit. A camera in ``standby``
  (let go while nobody watched) is admitted at once: the request's own
  subscription brings it back;
- the stream's profile-level-id: the one the camera service announced
  (read from the camera's SPS by the ingest), or for a transcoded stream the
  one our encoder wrote. A session on a camera with both streams in H.264
  is answered with a bound that covers both (the profile that decodes the
  other's, at the higher level), so that it may move from one to the other
  in-band when the link changes (:mod:`edge.uplink.session`).

It owns the registry of stream readers: one :class:`~edge.uplink.fanout.Fanout`
per stream (with its :class:`~edge.uplink.transcode.Transcoder` for H.265),
shared by that stream's viewers and stopped when the last one leaves.

A refusal is a :class:`Refusal`: a status (HTTP's numbers, which WHEP and WHIP
both speak), one sentence an operator can act on, and headers such as
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import zmq

from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStream
from edge.config import UplinkConfig
from edge.media.subscriber import MediaSubscriber
from edge.uplink.fanout import Fanout, FrameSource
from edge.uplink.sdp import _DECODES, DEFAULT_PLID, profile_of
from edge.uplink.state import CameraState, UplinkState
from edge.uplink.transcode import Transcoder

PROFILES = ("main", "sub", "auto")
STALL_S = 2.0  # no unit from the camera for this long: its viewers are waiting
# Camera states that only say the bus has not told us lately (the bus may be
# stalled while the camera's media plane flows): the media plane decides.
MEDIA_DECIDES = ("silent", "unknown")
# Camera states a subscription ends: a GB/T 28181 stream let go while nobody watched is
# invited again when its media plane is subscribed to, which this request's fanout does.
WAKES_ON_SUBSCRIBE = ("standby",)
# How long a request waits for a live unit when the bus cannot vouch for the camera.
MEDIA_PROBE_S = 1.5
TRANSCODE_START_S = 4.0
RETRY_AFTER_S = 2
# A round trip this long is a geostationary hop (~600 ms), never 4G (~50-100 ms)
# or a LEO constellation (~50 ms): `auto` sends such a viewer the sub stream.
SATELLITE_RTT_MS = 300.0


class Refusal(Exception):
    """A request refused: a status, a reason an operator can act on, extra headers."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


def _retry(seconds: int = RETRY_AFTER_S) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


@dataclass(frozen=True, slots=True)
class StreamKey:
    camera_id: str
    profile: str  # the camera stream read: main | sub
    transcoded: bool

    @property
    def name(self) -> str:
        return f"{self.camera_id}/{self.profile}{'@h264' if self.transcoded else ''}"


@dataclass(frozen=True, slots=True)
class Choice:
    """What a request gets: the camera, which of its streams, that stream's announcement,
    and why it is that stream when it is not the one asked for ("" when it is)."""

    camera: CameraState
    key: StreamKey
    stream: CameraStream
    reason: str = ""


def covers(bound: str, plid: str) -> bool:
    """Whether a decoder for profile-level-id `bound` takes a stream of `plid`: its profile
    decodes the other's, at a level no lower."""
    return _decodes(bound, plid) and _level(bound) >= _level(plid)


def covering(a: str, b: str) -> str | None:
    """A profile-level-id that :func:`covers` both: the profile that decodes the other's,
    at the higher of their levels; None when neither profile decodes the other."""
    for bound, other in ((a, b), (b, a)):
        if _decodes(bound, other):
            return (bound[:4] + f"{max(_level(a), _level(b)):02x}").lower()
    return None


def _decodes(bound: str, plid: str) -> bool:
    """Whether `bound`'s profile decodes `plid`'s (levels aside)."""
    have, want = profile_of(bound), profile_of(plid)
    if have is None or want is None:
        return bound[:4].lower() == plid[:4].lower()
    return want in _DECODES.get(have, frozenset())


def _level(plid: str) -> int:
    # level_idc as written (1b's odd encodings aside: no camera stream sits that low)
    try:
        return int(plid[4:6], 16)
    except ValueError:
        return 0


class Streams:
    def __init__(self, config: UplinkConfig, state: UplinkState,
                 zmq_ctx: zmq.Context[zmq.Socket[bytes]], endpoints: Endpoints) -> None:
        self.config = config
        self.state = state
        self.zmq_ctx = zmq_ctx
        self.endpoints = endpoints
        self.fanouts: dict[StreamKey, Fanout] = {}
        self.transcoders: dict[StreamKey, Transcoder] = {}

    # -- choosing ---------------------------------------------------------------------
    def camera(self, camera_id: str) -> CameraState:
        cam = self.state.camera(camera_id)
        if cam is None:
            raise Refusal(404, f'no camera "{camera_id}" on this vehicle')
        return cam

    def resolve(self, cam: CameraState, requested: str,
                viewer_rtt_ms: float | None = None) -> StreamKey:
        """The camera stream a request gets (see the module docstring).

        `viewer_rtt_ms`, the round trip last measured to this viewer's address (RTCP),
        makes `auto` take the sub stream on a hop as long as a satellite's, whatever the
        configured links say.
        """
        return self.decide(cam, requested, viewer_rtt_ms)[0]

    def decide(self, cam: CameraState, requested: str,
               viewer_rtt_ms: float | None = None) -> tuple[StreamKey, str]:
        """:meth:`resolve`, and why the stream is not the one asked for ("" when it is,
        or `auto` found nothing to hold it back from main)."""
        if requested not in PROFILES:
            raise Refusal(400, f'profile must be one of {", ".join(PROFILES)}, '
                          f'not "{requested}"')
        profile, why = requested, ""
        if profile == "auto":
            why = self.state.constrained_why()
            if not why and viewer_rtt_ms is not None and viewer_rtt_ms >= SATELLITE_RTT_MS:
                why = f"the viewer's round trip is {viewer_rtt_ms:.0f} ms"
            profile = (cam.config.uplink_profile if cam.config else "sub") if why else "main"
            if profile == "main":
                why = ""
        active = self.state.active_link()
        if profile == "main" and active is not None and not active.allows_main():
            why, profile = active.limits(), "sub"
        has_sub = "sub" in cam.streams or bool(cam.config and cam.config.sub)
        if profile == "sub" and not has_sub:
            profile = "main"  # a camera without a sub stream sends what it has
            why = f"camera {cam.id} has no sub stream" if requested != "auto" or why else ""
        codec = (cam.streams.get(profile) or cam.streams.get("main") or
                 CameraStream()).codec or (cam.status.codec if cam.status else "")
        if codec == "h265":
            # Only H.264 leaves the vehicle: the smaller stream is transcoded.
            return (StreamKey(cam.id, "sub" if has_sub else "main", True),
                    f"camera {cam.id} sends H.265: its smaller stream is transcoded")
        return StreamKey(cam.id, profile, False), why

    def choose(self, cam: CameraState, requested: str,
               viewer_rtt_ms: float | None = None) -> Choice:
        """The stream for this request, if it is announced and (as far as we know) live."""
        key, why = self.decide(cam, requested, viewer_rtt_ms)
        stream = cam.streams.get(key.profile)
        if stream is None or not (cam.live or cam.state in MEDIA_DECIDES + WAKES_ON_SUBSCRIBE):
            why = cam.reason if stream is not None else \
                f"its {key.profile} stream is not announced yet"
            raise Refusal(409, f"camera {cam.id} is not live ({cam.state}): {why}", _retry())
        return Choice(cam, key, stream, why)

    def switchable(self, cam: CameraState) -> bool:
        """Whether sessions on this camera may move between its streams in-band: it has a
        main and a sub stream, both announced in H.264 (an H.265 camera's transcoded
        stream and a single stream stay as they are)."""
        main, sub = cam.streams.get("main"), cam.streams.get("sub")
        return main is not None and sub is not None and main.codec == sub.codec == "h264"

    # -- admitting --------------------------------------------------------------------
    def transcodes_running(self) -> int:
        return sum(1 for k in self.fanouts if k.transcoded)

    def admit(self, choice: Choice, sessions_in_use: int) -> None:
        """Refuse (503) when every session, or every transcoder it would need, is taken."""
        cfg = self.config
        if sessions_in_use >= cfg.max_sessions:
            raise Refusal(503, f"all {cfg.max_sessions} viewer sessions are in use; "
                          "close one or raise uplink.max_sessions", _retry(RETRY_AFTER_S * 5))
        key = choice.key
        if key.transcoded and key not in self.fanouts and \
                self.transcodes_running() >= cfg.max_transcodes:
            raise Refusal(503, f"camera {key.camera_id} is H.265 and needs a transcoder to "
                          f"H.264, but all {cfg.max_transcodes} allowed "
                          "(uplink.max_transcodes) are busy with other cameras",
                          _retry(RETRY_AFTER_S * 5))

    async def confirm_live(self, choice: Choice, fanout: Fanout) -> None:
        """When the bus cannot vouch for the camera, a live unit must come (else 409)."""
        cam = choice.camera
        # Not waited for in standby: the device's answer and its next keyframe may take
        # longer than a probe, and the session shows it is waiting for the picture.
        if cam.live or cam.state in WAKES_ON_SUBSCRIBE or \
                await fanout.wait_live(MEDIA_PROBE_S, STALL_S):
            return
        raise Refusal(409, f"camera {cam.id} is not live ({cam.state}): {cam.reason}, and no "
                      f"video from it within {MEDIA_PROBE_S:g} s", _retry())

    async def profile_level_id(self, choice: Choice) -> str:
        """The stream's H.264 profile-level-id, as carried (or as our encoder wrote it);
        for a camera whose sessions may move between its streams, one that covers both
        (when there is one: else the stream's own, and the session stays on it)."""
        key = choice.key
        if not key.transcoded:
            own = choice.stream.profile_level_id.lower() or DEFAULT_PLID
            cam = choice.camera
            other = cam.streams.get("sub" if key.profile == "main" else "main")
            if other is None or not self.switchable(cam):
                return own
            return covering(own, other.profile_level_id.lower() or DEFAULT_PLID) or own
        # Known only once our encoder has produced its first keyframe.
        transcoder = self.transcoders.get(key)
        if transcoder is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(transcoder.first_keyframe.wait(), TRANSCODE_START_S)
        if transcoder is None or transcoder.profile_level_id is None:
            raise Refusal(409, f"camera {key.camera_id}: its H.265 stream gave no picture "
                          f"to transcode within {TRANSCODE_START_S:.0f} s", _retry())
        return transcoder.profile_level_id

    # -- the readers ------------------------------------------------------------------
    def fanout(self, choice: Choice) -> Fanout:
        """The stream's reader, shared by its viewers; created (not started) if there is none."""
        key, stream = choice.key, choice.stream
        fanout = self.fanouts.get(key)
        if fanout is not None:
            return fanout
        endpoint = stream.endpoint or self.endpoints.media(key.camera_id, key.profile)

        def open_source() -> FrameSource:
            sub = MediaSubscriber(self.zmq_ctx, endpoint)
            if not key.transcoded:
                return sub
            transcoder = Transcoder(sub, name=key.name, fps=stream.fps or 30.0)
            self.transcoders[key] = transcoder
            return transcoder

        fanout = Fanout((key.camera_id, key.name), open_source, on_idle=self.forget)
        self.fanouts[key] = fanout
        return fanout

    def forget(self, fanout: Fanout) -> None:
        """Drop a reader that has stopped (its last viewer left)."""
        for key, f in list(self.fanouts.items()):
            if f is fanout:
                del self.fanouts[key]
                self.transcoders.pop(key, None)

    async def stop(self) -> None:
        for fanout in list(self.fanouts.values()):
            await fanout.stop()
        self.fanouts.clear()
        self.transcoders.clear()
