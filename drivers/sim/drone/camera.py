"""A MAVLink camera component (camera protocol v2) offering one RTSP stream.

Like a gimbal camera's own MAVLink endpoint: component id 100
(MAV_COMP_ID_CAMERA), HEARTBEAT with MAV_TYPE_CAMERA, and answers to
MAV_CMD_REQUEST_MESSAGE for CAMERA_INFORMATION and VIDEO_STREAM_INFORMATION
(plus the older dedicated request commands).
"""

from __future__ import annotations

from typing import Any

from drivers.mavlink.dialect import MAVLink, MAVLinkMessage, mavlink

CAMERA_COMPID = mavlink.MAV_COMP_ID_CAMERA


def _fixed(text: str, size: int) -> list[int]:
    raw = text.encode()[:size]
    return list(raw) + [0] * (size - len(raw))


class SimCamera:
    def __init__(
        self,
        encoder: MAVLink,
        rtsp_url: str,
        *,
        resolution: tuple[int, int] = (1920, 1080),
        framerate: float = 25.0,
        bitrate_bps: int = 4_000_000,
        encoding: int = mavlink.VIDEO_STREAM_ENCODING_H264,
    ) -> None:
        self.encoder = encoder
        self.rtsp_url = rtsp_url
        self.resolution = resolution
        self.framerate = framerate
        self.bitrate_bps = bitrate_bps
        self.encoding = encoding
        self.boot_s = 0.0

    @property
    def compid(self) -> int:
        return int(self.encoder.srcComponent)

    def heartbeat(self) -> MAVLinkMessage:
        return self.encoder.heartbeat_encode(
            mavlink.MAV_TYPE_CAMERA, mavlink.MAV_AUTOPILOT_INVALID, 0, 0, mavlink.MAV_STATE_ACTIVE
        )

    def camera_information(self) -> MAVLinkMessage:
        flags = mavlink.CAMERA_CAP_FLAGS_HAS_VIDEO_STREAM | mavlink.CAMERA_CAP_FLAGS_CAPTURE_VIDEO
        return self.encoder.camera_information_encode(
            int(self.boot_s * 1000),
            _fixed("EdgeSim", 32),
            _fixed("GimbalCam 1080", 32),
            0x01000000,
            4.5,
            6.17,
            4.55,
            self.resolution[0],
            self.resolution[1],
            0,
            flags,
            0,
            b"",
        )

    def video_stream_information(self) -> MAVLinkMessage:
        return self.encoder.video_stream_information_encode(
            1,
            1,
            mavlink.VIDEO_STREAM_TYPE_RTSP,
            mavlink.VIDEO_STREAM_STATUS_FLAGS_RUNNING,
            self.framerate,
            self.resolution[0],
            self.resolution[1],
            self.bitrate_bps,
            0,
            84,
            b"gimbal",
            self.rtsp_url.encode(),
            self.encoding,
        )

    def handle_command(self, cmd: Any) -> tuple[int, list[MAVLinkMessage]]:
        """(MAV_RESULT, messages to send after the ACK) for a COMMAND_LONG/INT."""
        command = cmd.command
        if command == mavlink.MAV_CMD_REQUEST_MESSAGE:
            wanted = int(cmd.param1)
            if wanted == mavlink.MAVLINK_MSG_ID_CAMERA_INFORMATION:
                return mavlink.MAV_RESULT_ACCEPTED, [self.camera_information()]
            if wanted == mavlink.MAVLINK_MSG_ID_VIDEO_STREAM_INFORMATION:
                if int(cmd.param2) not in (0, 1):
                    return mavlink.MAV_RESULT_DENIED, []
                return mavlink.MAV_RESULT_ACCEPTED, [self.video_stream_information()]
            return mavlink.MAV_RESULT_DENIED, []
        if command == mavlink.MAV_CMD_REQUEST_CAMERA_INFORMATION:
            return mavlink.MAV_RESULT_ACCEPTED, [self.camera_information()]
        if command == mavlink.MAV_CMD_REQUEST_VIDEO_STREAM_INFORMATION:
            return mavlink.MAV_RESULT_ACCEPTED, [self.video_stream_information()]
        return mavlink.MAV_RESULT_UNSUPPORTED, []
