"""Every message type on the bus, in one module.

A message is a dataclass registered under a dotted type name; its body on the
wire is a msgpack map of its fields. Readers tolerate what a newer writer may
add: unknown fields are ignored and missing fields take their defaults. A field
of the wrong type makes the whole message malformed (:class:`SchemaError`), so
a subscriber never sees a half-valid object.

To add a type: write a dataclass here, decorate it with ``@message("family.name")``,
and give every field a default so that older writers stay readable.

A field that is one of a few words (a state, a severity, a reply's status) is a
``Literal``: the words are what writers here may send, and mypy holds them to
it. On the wire it is a string like any other, checked as one: an older or
newer writer may send a word this reader does not list, and the message is
still good, so readers map a word they do not know themselves
(:func:`edge.bus.mirror.known`) rather than trusting the type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, get_args

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """A body that does not fit its declared type."""


Check = Callable[[Any], Any]


@dataclass(slots=True, kw_only=True)
class Message:
    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = SCHEMA_VERSION
    _FIELDS: ClassVar[tuple[tuple[str, Check], ...]] = ()

    def to_body(self) -> dict[str, Any]:
        return {name: _dump(getattr(self, name)) for name, _ in self._FIELDS}

    @classmethod
    def from_body(cls: type[M], body: Any) -> M:
        if not isinstance(body, dict):
            raise SchemaError(f"{cls.TYPE}: body is {type(body).__name__}, expected a map")
        kwargs = {}
        for name, check in cls._FIELDS:
            if name in body:
                try:
                    kwargs[name] = check(body[name])
                except (TypeError, ValueError) as e:
                    raise SchemaError(f"{cls.TYPE}.{name}: {e}") from None
        return cls(**kwargs)


M = TypeVar("M", bound=Message)

MESSAGE_TYPES: dict[str, type[Message]] = {}


def _dump(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_body()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


def _scalar(kind: type) -> Check:
    def check(v: Any) -> Any:
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if kind is int and isinstance(v, bool):
            raise TypeError("expected int, got bool")
        if not isinstance(v, kind):
            raise TypeError(f"expected {kind.__name__}, got {type(v).__name__}")
        return v

    return check


def _checker(hint: Any) -> Check:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _checker(args[0]) if len(args) == 1 else (lambda v: v)
        return lambda v: None if v is None else inner(v)
    if origin is Literal:
        if not all(isinstance(word, str) for word in typing.get_args(hint)):
            raise TypeError(f"unsupported field type {hint!r}: only words (str) can be listed")
        return _scalar(str)  # a word this reader does not list is still a string (see above)
    if origin is list:
        (arg,) = typing.get_args(hint) or (Any,)
        item = _checker(arg)

        def check_list(v: Any) -> Any:
            if not isinstance(v, list):
                raise TypeError(f"expected list, got {type(v).__name__}")
            return [item(x) for x in v]

        return check_list
    if origin is dict:
        return _scalar(dict)
    if hint is Any:
        return lambda v: v
    if isinstance(hint, type) and issubclass(hint, Message):
        return hint.from_body
    if hint is bytes:
        return _scalar(bytes)
    if hint in (str, int, float, bool):
        return _scalar(hint)
    raise TypeError(f"unsupported field type {hint!r}")


def message(type_name: str, version: int = SCHEMA_VERSION) -> Callable[[type[M]], type[M]]:
    """Register a message dataclass under its wire type name."""

    def register(cls: type[M]) -> type[M]:
        if type_name in MESSAGE_TYPES:
            raise ValueError(f"message type {type_name!r} registered twice")
        hints = typing.get_type_hints(cls)
        cls.TYPE = type_name
        cls.VERSION = version
        cls._FIELDS = tuple((f.name, _checker(hints[f.name])) for f in dataclasses.fields(cls))
        MESSAGE_TYPES[type_name] = cls
        return cls

    return register


def nested(cls: type[M]) -> type[M]:
    """A dataclass used only inside other messages (no type name of its own)."""
    hints = typing.get_type_hints(cls)
    cls._FIELDS = tuple((f.name, _checker(hints[f.name])) for f in dataclasses.fields(cls))
    return cls


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------
@message("svc.health")
@dataclass(slots=True, kw_only=True)
class ServiceHealth(Message):
    service: str = ""
    pid: int = 0
    # starting | running | degraded | stopping. A str, not a Literal, while every
    # Service.health() returns a plain str (edge/runtime/service.py and each service).
    state: str = "running"
    detail: str = ""
    uptime_s: float = 0.0
    published: int = 0
    received: int = 0
    malformed: int = 0
    loop_lag_ms: float = 0.0


# ---------------------------------------------------------------------------
# Alerts and the commander's marks
# ---------------------------------------------------------------------------
# syslog's severities, least severe first.
Severity = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)


@message("alert")
@dataclass(slots=True, kw_only=True)
class Alert(Message):
    severity: Severity = "info"
    source: str = ""  # the device or service it concerns, e.g. "cam/north-gate"
    text: str = ""


@message("event.mark")
@dataclass(slots=True, kw_only=True)
class EventMark(Message):
    note: str = ""
    author: str = ""


# ---------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------
# standby: an on-demand stream (GB/T 28181) let go while nobody watches; fine, not down.
CameraStateName = Literal["live", "connecting", "standby", "down"]
CAMERA_STATES: tuple[CameraStateName, ...] = get_args(CameraStateName)


@message("cam.status")
@dataclass(slots=True, kw_only=True)
class CameraStatus(Message):
    camera_id: str = ""
    name: str = ""
    state: CameraStateName = "connecting"
    reason: str = ""
    codec: str = ""
    profile: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    kbps: float = 0.0
    gop: int = 0
    last_frame_age_s: float | None = None
    reconnects: int = 0
    frames: int = 0
    dropped: int = 0
    lat: float | None = None
    lon: float | None = None


@message("cam.thumbnail")
@dataclass(slots=True, kw_only=True)
class CameraThumbnail(Message):
    """A small JPEG; the image itself travels in the first raw frame."""

    camera_id: str = ""
    width: int = 0
    height: int = 0
    format: str = "jpeg"
    captured_ns: int = 0


@message("cam.stream")
@dataclass(slots=True, kw_only=True)
class CameraStream(Message):
    """Where a camera's media plane is, and what it carries."""

    camera_id: str = ""
    profile: str = "main"  # main | sub
    endpoint: str = ""
    codec: str = ""
    profile_level_id: str = ""  # H.264 only: from the SPS, for SDP answers
    width: int = 0
    height: int = 0
    fps: float = 0.0
    parameter_sets: bytes = b""


@message("camera.keyframe")
@dataclass(slots=True, kw_only=True)
class KeyframeRequest(Message):
    """A request to a camera's service: a keyframe on one stream now (a viewer lost one)."""

    profile: str = "main"  # main | sub
    reason: str = ""  # who asks and why, for the log


PTZ_ACTIONS = ("move", "stop", "zoom", "preset", "set_preset", "home", "release")
# Who steers: the on-scene commander's dashboard always may and comes first; the city
# centre's viewer page only where the camera's config allows.
PTZ_CONTROLLERS = ("commander", "centre")


@message("camera.ptz")
@dataclass(slots=True, kw_only=True)
class PtzCommand(Message):
    """A request to a camera's service: steer it, an ONVIF or a GB/T 28181 camera alike.

    `move`: `pan` (-1 left .. +1 right) and `tilt` (-1 down .. +1 up), the sign the
    direction and the size the speed, until `stop`, or until `move` has not been sent
    again for a second (a lost stop must not leave a camera turning). `zoom`: one
    relative step, in (+) or out (-), its size in -1..1. `preset` goes to and
    `set_preset` stores preset number `preset` (1..255); `home`; `release` gives
    control back. Answered with a `Reply`: rejected with the reason when the camera
    cannot be steered, another controller holds it, or the device said no."""

    action: str = ""  # one of PTZ_ACTIONS
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0
    preset: int = 0
    controller: str = "commander"  # one of PTZ_CONTROLLERS
    who: str = ""  # shown to the other side: "dashboard", "centre page 10.8.0.2"


@message("cam.control")
@dataclass(slots=True, kw_only=True)
class PtzStatus(Message):
    """`cam/<id>/control` (state): whether the camera can be steered, and who holds it."""

    camera_id: str = ""
    kind: str = ""  # how it is steered: "onvif" | "gb28181" | "" (it cannot be)
    reason: str = ""  # why it cannot be, or the device's last refusal
    centre_allowed: bool = False
    holder: str = ""  # "" (nobody) or one of PTZ_CONTROLLERS
    holder_who: str = ""
    held_until_ns: int = 0  # wall clock: when the holder's hold lapses without a command
    moving: bool = False
    last_action: str = ""


# ---------------------------------------------------------------------------
# Drones
# ---------------------------------------------------------------------------
@message("drone.telemetry")
@dataclass(slots=True, kw_only=True)
class DroneTelemetry(Message):
    drone_id: str = ""
    sysid: int = 0
    lat: float | None = None
    lon: float | None = None
    alt_msl_m: float | None = None
    alt_rel_m: float | None = None
    heading_deg: float | None = None
    groundspeed_mps: float | None = None
    climb_mps: float | None = None
    roll_deg: float | None = None
    pitch_deg: float | None = None
    yaw_deg: float | None = None
    battery_pct: float | None = None
    battery_v: float | None = None
    gps_fix: str = ""
    satellites: int | None = None


DroneStateName = Literal["live", "connecting", "lost"]
DRONE_STATES: tuple[DroneStateName, ...] = get_args(DroneStateName)


@message("drone.status")
@dataclass(slots=True, kw_only=True)
class DroneStatus(Message):
    drone_id: str = ""
    sysid: int = 0
    link: str = ""
    state: DroneStateName = "connecting"
    autopilot: str = ""
    vehicle_type: str = ""
    mode: str = ""
    armed: bool = False
    system_status: str = ""
    link_quality_pct: float | None = None
    msgs_per_s: float = 0.0
    last_message_age_s: float | None = None
    home_lat: float | None = None
    home_lon: float | None = None
    home_alt_m: float | None = None


@message("drone.video")
@dataclass(slots=True, kw_only=True)
class DroneVideo(Message):
    drone_id: str = ""
    sysid: int = 0
    compid: int = 0
    stream_id: int = 0
    name: str = ""
    uri: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0


DRONE_ACTIONS = ("rtl", "hold", "land", "goto", "set_mode", "gimbal")


@message("drone.command")
@dataclass(slots=True, kw_only=True)
class DroneCommand(Message):
    """A request to the service owning the drone's link. Arming and takeoff do not exist."""

    sysid: int = 0
    action: str = ""  # one of DRONE_ACTIONS
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    mode: str = ""
    pitch_deg: float | None = None
    yaw_deg: float | None = None


# ---------------------------------------------------------------------------
# Requests and replies
# ---------------------------------------------------------------------------
ReplyStatus = Literal["accepted", "rejected", "timeout", "busy", "error"]
REPLY_STATUSES: tuple[ReplyStatus, ...] = get_args(ReplyStatus)


@message("reply")
@dataclass(slots=True, kw_only=True)
class Reply(Message):
    status: ReplyStatus = "accepted"
    detail: str = ""
    elapsed_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@message("event.command")
@dataclass(slots=True, kw_only=True)
class CommandEvent(Message):
    """A command a service carried out for someone, and its outcome, told to everyone.

    Requests and replies go through the broker's router, point to point: without this,
    a second console, the recorder and a replay would never learn of a command."""

    service: str = ""  # who carried it out: `drone@alpha`
    subject: str = ""  # what it was about: the drone `alpha-1`
    action: str = ""
    by: str = ""  # the requester's bus source
    status: ReplyStatus = "accepted"
    detail: str = ""
    elapsed_ms: float = 0.0


@message("ping")
@dataclass(slots=True, kw_only=True)
class Ping(Message):
    """Asks a service to answer: a liveness check, and what the bus tests send."""

    payload: str = ""


# ---------------------------------------------------------------------------
# WAN links
# ---------------------------------------------------------------------------
LinkStateName = Literal["up", "down", "degraded", "unknown"]
LINK_STATES: tuple[LinkStateName, ...] = get_args(LinkStateName)


@message("link.status")
@dataclass(slots=True, kw_only=True)
class LinkStatus(Message):
    """One WAN as its probes and counters see it (`edge run links`), 1 Hz and on change."""

    link_id: str = ""
    name: str = ""
    kind: str = ""
    state: LinkStateName = "unknown"
    # Why it is down or cannot be measured ("unmeasurable: no interface wwan0").
    detail: str = ""
    rtt_ms: float | None = None  # median over the probe window
    rtt_p95_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    tx_kbps: float | None = None  # up, from the interface's counters
    rx_kbps: float | None = None
    # This WAN carries the tunnel to the centre now, and whether the commander forced it.
    active: bool = False
    forced: bool = False
    # A metered link's data used (both ways) against its budgets, MB; None: not metered.
    used_today_mb: float | None = None
    budget_today_mb: float | None = None
    used_incident_mb: float | None = None
    budget_incident_mb: float | None = None


LinkActionName = Literal["force", "release", "new_incident"]
LINK_ACTIONS: tuple[LinkActionName, ...] = get_args(LinkActionName)


@message("link.command")
@dataclass(slots=True, kw_only=True)
class LinkCommand(Message):
    """A request to `links`: `force` the tunnel onto `link_id` whatever the policy says,
    `release` the force, or start counting a `new_incident`'s data on metered links.
    Answered with a `Reply` (rejected with the reason)."""

    action: str = ""  # one of LINK_ACTIONS
    link_id: str = ""


# ---------------------------------------------------------------------------
# Uplink
# ---------------------------------------------------------------------------
@nested
@dataclass(slots=True, kw_only=True)
class ViewerSession(Message):
    session_id: str = ""
    viewer: str = ""  # remote address (and user agent, shortened)
    camera_id: str = ""
    profile: str = ""
    kbps: float = 0.0
    rtt_ms: float | None = None
    started_ns: int = 0
    state: str = ""  # connecting | live | waiting (camera down or silent) | closed
    detail: str = ""  # why it is waiting, in words for the commander
    packets_lost: int | None = None  # as the viewer reports it (RTCP)
    transcoded: bool = False  # an H.265 camera's stream, transcoded to H.264


@message("uplink.sessions")
@dataclass(slots=True, kw_only=True)
class UplinkSessions(Message):
    sessions: list[ViewerSession] = field(default_factory=list)


PushStateName = Literal["idle", "connecting", "live", "retrying", "failed"]
PUSH_STATES: tuple[PushStateName, ...] = get_args(PushStateName)


@nested
@dataclass(slots=True, kw_only=True)
class PushFeed(Message):
    """One camera pushed to the centre's WHIP server, as the uplink sees it."""

    camera_id: str = ""
    # idle: not pushed; connecting: offer sent, not yet connected; live: media flows;
    # retrying: the last attempt failed (`last_error`), the next is due at `retry_in_s`;
    # failed: given up until asked again (the server refused for good: 401, 403, 404)
    state: PushStateName = "idle"
    since_ns: int = 0  # wall-clock ns of the last change of `state`
    retries: int = 0  # attempts that failed since the push was started
    last_error: str = ""  # one line
    profile: str = ""  # the camera stream pushed: main | sub
    profile_reason: str = ""  # why that stream ("sat allows sub only"); "" if as asked
    kbps: float = 0.0
    frames_sent: int = 0
    retry_in_s: float | None = None


@message("uplink.push.status")
@dataclass(slots=True, kw_only=True)
class UplinkPushStatus(Message):
    """Every pushed feed (`uplink/push/status`), on every change and each second while any
    is pushed. `whip_url` is the server (its path, never a token)."""

    whip_url: str = ""
    feeds: list[PushFeed] = field(default_factory=list)


PushActionName = Literal["start", "stop"]
PUSH_ACTIONS: tuple[PushActionName, ...] = get_args(PushActionName)


@message("uplink.push")
@dataclass(slots=True, kw_only=True)
class PushCommand(Message):
    """A request to `uplink`: `start` pushing `camera_id` to the centre's WHIP server, or
    `stop` it. Answered with a `Reply` (rejected with the reason) whose data is the feed's
    `PushFeed` body."""

    action: str = ""  # one of PUSH_ACTIONS
    camera_id: str = ""


# ---------------------------------------------------------------------------
# Recorder
# ---------------------------------------------------------------------------
RecorderStreamState = Literal["recording", "waiting", "error"]
RECORDER_STREAM_STATES: tuple[RecorderStreamState, ...] = get_args(RecorderStreamState)


@nested
@dataclass(slots=True, kw_only=True)
class RecorderStream(Message):
    """One camera stream as the recorder writes it."""

    camera_id: str = ""
    profile: str = ""  # main | sub
    # recording: a segment is open; waiting: none (no video, or waiting for a keyframe);
    # error: the last write failed (see `last_error`)
    state: RecorderStreamState = "waiting"
    units_written: int = 0
    units_dropped: int = 0  # lost by the recorder alone: its queue was full (a slow disk)
    units_skipped: int = 0  # not writable: before the first keyframe, after a gap or error
    segments: int = 0  # closed since the recorder started
    write_errors: int = 0
    last_error: str = ""


@message("recorder.status")
@dataclass(slots=True, kw_only=True)
class RecorderStatus(Message):
    recording: bool = False  # the bus log is being written and no stream is in error
    path: str = ""  # the recordings directory
    bytes_on_disk: int = 0  # in the catalog's files and the open ones
    free_bytes: int = 0  # on the recordings' filesystem
    free_percent: float = 0.0
    streams: list[RecorderStream] = field(default_factory=list)
    bus_messages: int = 0  # recorded since the recorder started
    bus_file: str = ""  # the bus log being written
    errors: int = 0  # write errors since the recorder started, every kind
    last_error: str = ""
    # The named session open now (`edge record start`), if any: retention keeps it whole.
    session_id: int | None = None
    session_name: str = ""
    session_start_ns: int | None = None  # wall-clock ns


@nested
@dataclass(slots=True, kw_only=True)
class RecordedSession(Message):
    """One named session in the recorder's catalog (wall-clock ns)."""

    session_id: int = 0
    name: str = ""
    start_ns: int = 0
    end_ns: int | None = None  # None: still open
    released: bool = False  # given back to retention


@message("recorder.sessions")
@dataclass(slots=True, kw_only=True)
class RecorderSessions(Message):
    """The recorder's session index (`recorder/sessions`): its newest named sessions,
    oldest first, at start and on every start, stop and release. What the vehicle holds
    for a debrief, so that the centre (through sync) knows it without asking."""

    sessions: list[RecordedSession] = field(default_factory=list)
    total: int = 0  # sessions in the catalog (the list holds the newest of them)


RECORD_ACTIONS = ("start", "stop", "release")
SESSION_NAME_MAX = 100  # characters: a name is a label on a table row, not a report


@message("recorder.record")
@dataclass(slots=True, kw_only=True)
class RecordCommand(Message):
    """A request to the recorder (`edge record`): `start` a named session called `name`,
    `stop` the open one, or `release` session `session_id` to retention. Answered with a
    `Reply` whose data holds the session (`session_id`, `name`, `start_ns`, `end_ns`,
    `released`), or rejected with the reason."""

    action: str = ""  # one of RECORD_ACTIONS
    name: str = ""
    session_id: int = 0


# ---------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------
REPLAY_ACTIONS = ("play", "pause", "seek", "next_mark", "prev_mark", "speed", "step")
REPLAY_SPEED_MIN = 0.25
REPLAY_SPEED_MAX = 16.0
REPLAY_EVENTS_MAX = 300  # marks (and alerts) a replay status lists
ReplayStateName = Literal["playing", "paused", "ended"]
REPLAY_STATES: tuple[ReplayStateName, ...] = get_args(ReplayStateName)


@message("replay.command")
@dataclass(slots=True, kw_only=True)
class ReplayCommand(Message):
    """A request to the replay vehicle (`replay`): `play`, `pause`, `seek` to `time_ns`,
    `next_mark` / `prev_mark` (marks and alerts), `speed` to `speed` (0.25 to 16), `step`
    by `seconds` (default one; negative steps back) and pause there. Answered with a
    `Reply` whose data is the `ReplayStatus` after it, or rejected with the reason."""

    action: str = ""  # one of REPLAY_ACTIONS
    time_ns: int = 0  # seek: recorded wall-clock ns
    speed: float = 1.0
    seconds: float = 1.0  # step


@message("replay.status")
@dataclass(slots=True, kw_only=True)
class ReplayStatus(Message):
    """The replay clock (`replay/status`, 4 Hz and on every change). Times are the
    recorded wall-clock ns; `position_ns` is "now" for everything replayed."""

    session_id: int | None = None
    session_name: str = ""
    start_ns: int = 0
    end_ns: int = 0
    position_ns: int = 0
    speed: float = 1.0
    state: ReplayStateName = "paused"
    keyframes_only: bool = False  # speed above 2x: video sends keyframes only
    cameras: list[str] = field(default_factory=list)  # "camera/stream" replayed
    bus_messages: int = 0  # republished since the start
    video_units: int = 0
    seeks: int = 0
    gaps: list[str] = field(default_factory=list)  # what is missing or damaged, one line each
    # Where the marks and alerts are, for a timeline from the start (at most
    # REPLAY_EVENTS_MAX of each, evenly picked: a bar is a line of a terminal wide).
    marks_ns: list[int] = field(default_factory=list)
    alerts_ns: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------
# GB/T 28181 devices (`edge run gb28181`)
# ---------------------------------------------------------------------------
GbDeviceStateName = Literal["online", "offline", "refused"]
GB_DEVICE_STATES: tuple[GbDeviceStateName, ...] = get_args(GbDeviceStateName)


@nested
@dataclass(slots=True, kw_only=True)
class GbChannel(Message):
    """One channel of a device's Catalog (a camera, usually)."""

    channel_id: str = ""
    name: str = ""
    status: str = ""  # as the device says it: ON | OFF (some write ONLINE/OFFLINE)
    manufacturer: str = ""
    model: str = ""
    ptz_type: int | None = None  # 1 dome, 2 half-dome, 3 fixed, 4 remote-controlled
    lat: float | None = None
    lon: float | None = None


@nested
@dataclass(slots=True, kw_only=True)
class GbSessionEnd(Message):
    """A live-video session the gb28181 service ended, or saw ended, without its requester
    asking: the device's own BYE, or the requester gone (no health) or restarted."""

    session_id: str = ""  # its Call-ID, as `GbInvite`'s reply gave it
    channel_id: str = ""
    requester: str = ""  # the bus client that asked for it (`camera@<id>`)
    reason: str = ""  # one line: "the device ended the stream (BYE)", ...
    ended_ns: int = 0  # wall clock


GB_ENDED_KEPT = 16  # `GbDeviceStatus.ended`: the newest, enough to outlast any reader's wait


@message("gb.status")
@dataclass(slots=True, kw_only=True)
class GbDeviceStatus(Message):
    """A GB/T 28181 device as the platform sees it (`gb/<device>/status`), 1 Hz and at once
    on a change. `refused`: it was answered 403 after wrong passwords (see `reason`)."""

    device_id: str = ""
    name: str = ""  # from the config, else the device's own DeviceName
    state: GbDeviceStateName = "offline"
    reason: str = ""  # why offline or refused, one line
    address: str = ""  # where its SIP comes from (its carrier NAT's address), host:port
    transport: str = ""  # udp | tcp: its SIP signalling
    registered_ns: int = 0  # wall clock of its last registration
    last_keepalive_ns: int = 0
    keepalives: int = 0
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    channels: list[GbChannel] = field(default_factory=list)
    sessions: int = 0  # live-video sessions open with it
    # Sessions ended lately without their requester asking, oldest first (GB_ENDED_KEPT):
    # how a camera process learns at once that the device ended its stream.
    ended: list[GbSessionEnd] = field(default_factory=list)


GbTransportName = Literal["udp", "tcp-passive", "tcp-active"]


@message("gb.platform")
@dataclass(slots=True, kw_only=True)
class GbPlatformInfo(Message):
    """The gb28181 service's settings a camera process needs to receive a device's media
    (`gb/platform/info`, on start): where to open its RTP socket, and how long to wait."""

    platform_id: str = ""
    sip: str = ""  # host:port it listens on, UDP and TCP
    media_bind: str = "0.0.0.0"
    rtp_port_min: int = 0  # 0: any port
    rtp_port_max: int = 0
    invite_transport: GbTransportName = "udp"
    request_timeout_s: float = 8.0  # a device's INVITE answer may take this long
    no_media_s: float = 10.0  # a stream without a packet this long is lost


@message("gb.invite")
@dataclass(slots=True, kw_only=True)
class GbInvite(Message):
    """A request to `gb28181`: ask `device_id`'s channel for live video sent to `host`:`port`
    (`host` "": the vehicle's address as the device reaches it) over `transport`.
    Answered with a `Reply` whose data has `session_id`, the offer's `host`, `port` and
    `ssrc` (the RTP SSRC as a number), and the device's answer: `device_host`,
    `device_port` (where a tcp-active receiver connects), `transport`."""

    device_id: str = ""
    channel_id: str = ""
    host: str = ""
    port: int = 0
    transport: GbTransportName = "udp"
    # Who asks, beyond the header's source (the session's requester, `camera@<id>`): its
    # bus epoch (`BusClient.epoch`; 0 unknown), so a new one is a restarted process whose
    # old sessions are ended, and which of its streams ("dome/main"), so a stream's new
    # INVITE ends that stream's earlier session should its BYE have been lost.
    epoch: int = 0
    stream: str = ""


@message("gb.bye")
@dataclass(slots=True, kw_only=True)
class GbBye(Message):
    """A request to `gb28181`: end the live-video session `session_id` (its Call-ID)."""

    session_id: str = ""


@message("gb.keyframe")
@dataclass(slots=True, kw_only=True)
class GbKeyframe(Message):
    """A request to `gb28181`: ask `device_id`'s channel for a keyframe now (DeviceControl
    `IFameCmd`, GB/T 28181-2016 A.2.3), answered `accepted` once the device took it (200);
    a device may ignore it (the standard makes it optional), so a caller never relies on it."""

    device_id: str = ""
    channel_id: str = ""


GB_PTZ_ACTIONS = ("move", "stop", "preset_call", "preset_set", "preset_delete")


@message("gb.ptz")
@dataclass(slots=True, kw_only=True)
class GbPtzCommand(Message):
    """A request to `gb28181`: a PTZCmd (GB/T 28181 A.3) for `device_id`'s channel.
    `move`: `pan` -1 left / +1 right, `tilt` -1 down / +1 up, `zoom` -1 out / +1 in, at
    `speed` (1..255; zoom's is scaled to 1..15) until `stop`; presets by `preset` 1..255."""

    device_id: str = ""
    channel_id: str = ""
    action: str = ""  # one of GB_PTZ_ACTIONS
    pan: int = 0
    tilt: int = 0
    zoom: int = 0
    speed: int = 128
    preset: int = 0


@message("gb.adopt")
@dataclass(slots=True, kw_only=True)
class GbAdopt(Message):
    """A request to `gb28181`: make `device_id`'s channel a camera, `camera_id` named
    `name` ("": the channel's own name), by appending its `[[cameras]]` table
    (`main = { gb28181 = "<device>/<channel>" }`) to the service's config file; the rest of
    the file is kept as written. Answered `accepted` (data: `camera_id`, `path`,
    `device_id`, `channel_id`) or `rejected` with the reason: the device or
    channel unknown, the channel a camera already, the id taken, the file not writable or
    not parsing with the camera added. Also told on `event/command` (action `adopt`, the
    camera id as subject), which is how the demo knows to start the new camera."""

    device_id: str = ""
    channel_id: str = ""
    camera_id: str = ""
    name: str = ""


# ---------------------------------------------------------------------------
# Bench
# ---------------------------------------------------------------------------
@message("bench.sample")
@dataclass(slots=True, kw_only=True)
class BenchSample(Message):
    n: int = 0
    sent_ns: int = 0
    pad: bytes = b""
