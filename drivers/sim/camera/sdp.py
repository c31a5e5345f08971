"""SDP for one camera stream (RFC 4566, H.264 fmtp per RFC 6184, H.265 per RFC 7798)."""

from __future__ import annotations

import base64

from drivers.sim.camera.encoder import ParameterSets

PAYLOAD_TYPE = 96
TRACK_CONTROL = "trackID=0"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def fmtp(params: ParameterSets) -> str:
    if params.codec == "h264":
        # profile-level-id is bytes 1..3 of the SPS: profile_idc, constraint flags, level_idc.
        profile_level_id = params.sps[1:4].hex().upper()
        return (
            f"packetization-mode=1;profile-level-id={profile_level_id};"
            f"sprop-parameter-sets={_b64(params.sps)},{_b64(params.pps)}"
        )
    assert params.vps is not None
    return f"sprop-vps={_b64(params.vps)};sprop-sps={_b64(params.sps)};sprop-pps={_b64(params.pps)}"


def session_description(
    *,
    session_id: int,
    server_ip: str,
    title: str,
    params: ParameterSets,
    width: int,
    height: int,
    fps: int,
    bitrate: int,
) -> str:
    encoding = "H264" if params.codec == "h264" else "H265"
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN IP4 {server_ip}",
        f"s={title}",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=tool:edge-sim-camera",
        "a=range:npt=0-",
        "a=control:*",
        f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
        f"b=AS:{max(1, bitrate // 1000)}",
        f"a=rtpmap:{PAYLOAD_TYPE} {encoding}/90000",
        f"a=fmtp:{PAYLOAD_TYPE} {fmtp(params)}",
        f"a=framerate:{fps}",
        f"a=x-dimensions:{width},{height}",
        f"a=control:{TRACK_CONTROL}",
    ]
    return "\r\n".join(lines) + "\r\n"
