"""Every topic on the control bus, and which of them are state.

A topic is hierarchical text, `family/device/leaf`. This module is the only
place a topic is spelled: services and the dashboard build topics and
subscription prefixes with these functions.

*State* topics (their leaf is in :data:`STATE_LEAVES`) carry the latest value
of something; the broker keeps the last message of each and replays it to a
subscriber that joins late (zguide's last-value cache). Everything else is an
event or a sample and is never replayed.
"""

from __future__ import annotations

SEP = "/"

# Leaves whose latest message is the state of a thing. A drone's telemetry comes many
# times a second, but its latest sample is where the drone is: a dashboard that joins
# late (or re-subscribes after a replay's seek) shows it at once.
STATE_LEAVES = frozenset({"status", "health", "info", "sessions", "thumbnail", "stream",
                          "telemetry", "control"})
_STATE_LEAVES_B = frozenset(leaf.encode() for leaf in STATE_LEAVES)


def is_state(topic: bytes) -> bool:
    """True for a topic whose last value the broker caches (hot path: bytes in)."""
    return topic.rpartition(b"/")[2] in _STATE_LEAVES_B


# --- services -------------------------------------------------------------
SVC = "svc/"
# The broker's own service name: its health (`svc/bus/health`, 1 Hz) is the bus's
# heartbeat, on a live vehicle's bus and on a replay's.
BUS_SERVICE = "bus"


def svc_health(service: str) -> str:
    return f"svc/{service}/health"


# --- cameras --------------------------------------------------------------
CAM = "cam/"


def cam(camera_id: str) -> str:
    """Prefix of everything about one camera."""
    return f"cam/{camera_id}/"


def cam_status(camera_id: str) -> str:
    return f"cam/{camera_id}/status"


def cam_thumbnail(camera_id: str) -> str:
    return f"cam/{camera_id}/thumbnail"


def cam_control(camera_id: str) -> str:
    """Who steers a camera (`PtzStatus`); its steering is asked of `camera_service`."""
    return f"cam/{camera_id}/control"


def cam_stream(camera_id: str, profile: str) -> str:
    """Where a camera announces a stream's media-plane endpoint and codec parameters."""
    return f"cam/{camera_id}/{profile}/stream"


# --- drones ---------------------------------------------------------------
DRONE = "drone/"
# MAVLink system ids a vehicle may have (0 is a ground station's broadcast).
SYSIDS = range(1, 256)


def drone_id(link_id: str, sysid: int) -> str:
    """A drone's id: every vehicle heard on a link is `<link>-<sysid>` (`alpha-1`)."""
    return f"{link_id}-{sysid}"


def parse_drone_id(drone_id: str) -> tuple[str, int] | None:
    """(link, sysid) of an id :func:`drone_id` built, or None for any other id."""
    link, _, tail = drone_id.rpartition("-")
    # isdigit() alone takes "²", which int() refuses.
    if not link or not (tail.isascii() and tail.isdigit()) or int(tail) not in SYSIDS:
        return None
    return link, int(tail)


def drone(drone_id: str) -> str:
    return f"drone/{drone_id}/"


def drone_status(drone_id: str) -> str:
    return f"drone/{drone_id}/status"


def drone_telemetry(drone_id: str) -> str:
    return f"drone/{drone_id}/telemetry"


def drone_video(drone_id: str) -> str:
    """A drone camera's announced RTSP stream (state: the camera service ingests it)."""
    return f"drone/{drone_id}/stream"


# --- WAN links -------------------------------------------------------------
LINK = "link/"


def link_status(link_id: str) -> str:
    return f"link/{link_id}/status"


# The links service (probes, the tunnel's WAN): `LinkCommand` is asked of it by this name.
LINKS_SERVICE = "links"


# --- uplink to the city centre --------------------------------------------
UPLINK = "uplink/"
UPLINK_SESSIONS = "uplink/sessions"
# Every feed pushed to the centre's WHIP server (`UplinkPushStatus`): state, bridged to the
# centre like any other.
UPLINK_PUSH_STATUS = "uplink/push/status"
# The uplink's bus name: `PushCommand` (start or stop pushing a camera) is asked of it.
UPLINK_SERVICE = "uplink"

# --- the recorder -----------------------------------------------------------
RECORDER = "recorder/"
RECORDER_STATUS = "recorder/status"
RECORDER_SESSIONS = "recorder/sessions"

# --- GB/T 28181 devices (the gb28181 service) --------------------------------
GB = "gb/"
# The gb28181 service's bus name: `GbInvite`, `GbBye`, `GbKeyframe`, `GbPtzCommand` and
# `GbAdopt` are asked of it.
GB28181_SERVICE = "gb28181"


# The service's media settings for camera processes (`GbPlatformInfo`; state). Device ids
# are 20 digits, so no device is called "platform".
GB_PLATFORM_INFO = "gb/platform/info"


def gb_status(device_id: str) -> str:
    """A GB/T 28181 device as the platform sees it (state: online, channels, ...)."""
    return f"gb/{device_id}/status"


def gb_alert_source(device_id: str) -> str:
    """The `source` of a device's alerts (`alert/gb/<device id>`)."""
    return f"gb/{device_id}"


# --- alerts and the commander's marks --------------------------------------
ALERT = "alert/"


def alert(source: str) -> str:
    return f"alert/{source}"


EVENT = "event/"
EVENT_MARK = "event/mark"
# Every command a service carried out and its outcome (`CommandEvent`).
EVENT_COMMAND = "event/command"


# --- request routing: names a service answers to --------------------------
def drone_service(link_id: str) -> str:
    return f"drone@{link_id}"


def camera_service(camera_id: str) -> str:
    return f"camera@{camera_id}"


# One recorder a vehicle: its sessions (`RecordCommand`) are asked of it by this name.
RECORDER_SERVICE = "recorder"

# --- replay (`edge replay`: a recorded session on a private bus) -------------
REPLAY = "replay/"
REPLAY_STATUS = "replay/status"
# The replay vehicle's controls (`ReplayCommand`) are asked of it by this name.
REPLAY_SERVICE = "replay"
