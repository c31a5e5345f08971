"""A camera's session description (RFC 8866), read for its video: payload type, codec, control.

FFmpeg reads the SDP the ingest works with; when it cannot make a stream of
it, it opens a stream with no codec at all and says nothing about why. This
parser reads the same SDP to name the problem (:mod:`drivers.rtsp.diagnose`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from drivers.rtsp.errors import MalformedReply
from drivers.rtsp.rtsp_reply import shown

# RFC 3551's static video payload types: these need no a=rtpmap.
STATIC_VIDEO = {26: ("JPEG", 90000), 28: ("nv", 90000), 31: ("H261", 90000),
                32: ("MPV", 90000), 33: ("MP2T", 90000), 34: ("H263", 90000)}
_MEDIA = re.compile(r"^m=(\S+) (\S+) (\S+)((?: \S+)*)$")
_RTPMAP = re.compile(r"^(\S+) ([^/\s]+)/([^/\s]+)(?:/(\S+))?$")


@dataclass(frozen=True, slots=True)
class SdpVideo:
    """The first video stream of a session description."""

    payload_type: int
    encoding: str  # as the SDP names it: "H264", "H265", "JPEG", ...
    clock_rate: int
    control: str | None  # a=control of the media section, if any
    fmtp: dict[str, str] = field(default_factory=dict)
    m_line: str = ""


def _port_ok(text: str) -> bool:
    port, _, count = text.partition("/")
    return (port.isascii() and port.isdigit() and int(port) <= 65535
            and (not count or (count.isascii() and count.isdigit())))


def parse_video(sdp: str) -> SdpVideo:
    """The first m=video section of `sdp`; MalformedReply says what makes it unusable."""
    lines = [line.rstrip("\r") for line in sdp.split("\n")]
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections and line:
            sections[-1].append(line)
    for section in sections:
        m_line = section[0]
        m = _MEDIA.match(m_line)
        if m is None:
            raise MalformedReply(f"the SDP's media line {shown(m_line)} is not "
                                 "m=MEDIA PORT PROTO FORMAT...")
        if m.group(1) != "video":
            continue
        if not _port_ok(m.group(2)):
            raise MalformedReply(f"the SDP's {shown(m_line)} has no valid port")
        formats = m.group(4).split()
        if not formats:
            raise MalformedReply(f"the SDP's {shown(m_line)} lists no payload type")
        first = formats[0]
        if not (first.isascii() and first.isdigit() and int(first) <= 127):
            raise MalformedReply(f"the SDP's {shown(m_line)} starts with payload type "
                                 f"{shown(first)}, not a number 0-127")
        pt = int(first)
        return _video(section, pt, m_line)
    raise MalformedReply("the SDP has no video stream (no m=video line)")


def _video(section: list[str], pt: int, m_line: str) -> SdpVideo:
    rtpmap: tuple[str, int] | None = None
    fmtp: dict[str, str] = {}
    control: str | None = None
    for line in section[1:]:
        name, _, value = line[2:].partition(":") if line.startswith("a=") else ("", "", "")
        if name == "rtpmap":
            m = _RTPMAP.match(value)
            if m is None or not m.group(3).isascii() or not m.group(3).isdigit() \
                    or int(m.group(3)) == 0:
                raise MalformedReply(f"the SDP's {shown(line)} is not "
                                     "a=rtpmap:PT ENCODING/CLOCK-RATE")
            if m.group(1) == str(pt):
                rtpmap = (m.group(2), int(m.group(3)))
        elif name == "fmtp" and value.split(" ", 1)[0] == str(pt):
            for item in value.partition(" ")[2].split(";"):
                key, _, val = item.strip().partition("=")
                if key:
                    fmtp[key.lower()] = val.strip()
        elif name == "control":
            control = value.strip()
    if rtpmap is None:
        if pt not in STATIC_VIDEO:
            raise MalformedReply(f"the SDP gives no a=rtpmap for payload type {pt} of "
                                 f"{shown(m_line)}, so its codec is unknown")
        rtpmap = STATIC_VIDEO[pt]
    return SdpVideo(pt, rtpmap[0], rtpmap[1], control, fmtp, m_line)
