"""Blocking PyAV side of the ingest: open an RTSP source, turn packets into access units.

Everything here blocks and belongs in a worker thread.  Nothing is decoded.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import av
from av.container import InputContainer
from av.video.stream import VideoStream

from drivers.rtsp.annexb import (
    H264_AUD,
    H265_AUD,
    ParameterSetCache,
    is_annexb,
    join_annexb,
    keyframe_nal_types,
    length_prefixed_to_annexb,
    nal_type,
    parameter_set_types,
    parse_extradata,
    picture_nal_types,
    split_annexb,
    sps_type,
)
from drivers.rtsp.sps import SpsError, parse_sps
from drivers.source import AccessUnit, Codec, StreamInfo

Transport = Literal["tcp", "udp"]

_CODECS: dict[str, Codec] = {"h264": "h264", "hevc": "h265"}
_RTP_TIME_BASE = Fraction(1, 90_000)


class SourceError(Exception):
    """A failure with an operator-facing one-line reason as its message."""


def redact_url(url: str) -> str:
    """The URL without its password, for logs and reasons."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def with_credentials(url: str, userpass: str | None) -> str:
    """Put `user:password` (from a secret file) into an RTSP URL, percent-encoded."""
    if not userpass:
        return url
    user, _, password = userpass.partition(":")
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def resolve_host(url: str) -> None:
    """Fail with "DNS failure" before FFmpeg turns it into a generic I/O error."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps"):
        raise SourceError(f"not an rtsp:// URL: {redact_url(url)}")
    host = parts.hostname
    if not host:
        raise SourceError("URL has no host")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, parts.port or 554, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SourceError(f"DNS failure: cannot resolve {host}") from exc


def rtsp_options(transport: Transport, io_timeout: float) -> dict[str, str]:
    return {
        "rtsp_transport": transport,
        # Socket-level timeout (microseconds), only a backstop: it must stay
        # longer than our own open and stall deadlines, because FFmpeg reports
        # its expiry as "invalid data" rather than as a timeout.
        "timeout": str(int(io_timeout * 1_000_000)),
        # Not "fflags=nobuffer": it discards the packets read while probing the
        # stream, which include the first keyframe, costing a whole GOP.
        "flags": "low_delay",
        # Probing only has to find the codec; our SPS parser does the rest.
        # Long probing would delay the first frame after every reconnect.
        "analyzeduration": "100000",
        "probesize": "500000",
        # Dome cameras often carry G.711 audio we do not want.
        "allowed_media_types": "video",
        # UDP: room for a whole IDR burst at the main stream bitrate.
        "buffer_size": "1048576",
        "user_agent": "edge-rtsp-ingest",
    }


def open_source(
    url: str,
    transport: Transport,
    open_timeout: float,
    read_timeout: float,
    io_timeout: float | None = None,
) -> InputContainer:
    """Open `url`; raises SourceError or a PyAV error.  Bounded by `open_timeout`.

    `read_timeout` bounds each later read (PyAV's interrupt); `io_timeout` is
    FFmpeg's socket timeout, by default `open_timeout + 2` s.
    """
    resolve_host(url)
    container = av.open(
        url,
        mode="r",
        options=rtsp_options(transport, io_timeout or open_timeout + 2.0),
        timeout=(open_timeout, read_timeout),
    )
    if not container.streams.video:
        container.close()
        raise SourceError("source has no video stream")
    return container


# FFmpeg opens a stream it has no codec for (an SDP payload type without
# a=rtpmap) without a codec context rather than failing.
NO_CODEC = "the camera's video stream names no codec FFmpeg knows (SDP without a=rtpmap?)"


def video_codec(stream: VideoStream) -> Codec:
    context = stream.codec_context
    if context is None:
        raise SourceError(NO_CODEC)
    name = context.name
    codec = _CODECS.get(name)
    if codec is None:
        raise SourceError(f"unsupported codec {name} (need H.264 or H.265)")
    return codec


class AccessUnitAssembler:
    """Turns demuxed packets of one connection into `AccessUnit`s.

    Drops packets until the first keyframe (a consumer cannot start earlier),
    keeps the parameter sets current, prepends them to keyframes that lack
    them, and builds the `StreamInfo` from the first keyframe's SPS.
    """

    def __init__(self, stream: VideoStream) -> None:
        self.stream = stream
        self.codec: Codec = video_codec(stream)
        self.extradata = bytes(stream.codec_context.extradata or b"")
        self.params = ParameterSetCache(self.codec)
        nals, self.length_size = parse_extradata(self.codec, self.extradata)
        for nal in nals:
            self.params.update(nal)
        self.stream_info: StreamInfo | None = None
        self._info_version = -1
        self.started = False
        self.skipped = 0
        self.time_base = Fraction(stream.time_base or _RTP_TIME_BASE)
        self._ps_types = frozenset(parameter_set_types(self.codec))
        self._key_types = frozenset(keyframe_nal_types(self.codec))

    def push(self, packet: av.Packet[Any], sequence: int = 0) -> AccessUnit | None:
        """The access unit for `packet`, or None if it is skipped.

        Runs for every frame of every camera: the common case (a picture that
        is neither a keyframe nor carries parameter sets) only reads the NAL
        headers up to its first slice and never copies or splits the data.
        """
        data = bytes(packet)
        if not data:
            return None  # PyAV's end-of-stream flush packets
        received_ns = time.time_ns()
        if self.length_size and not is_annexb(data):
            data = length_prefixed_to_annexb(data, self.length_size)
        codec = self.codec
        types = picture_nal_types(codec, data)
        keyframe = not self._key_types.isdisjoint(types) if types else bool(packet.is_keyframe)
        if keyframe or not self._ps_types.isdisjoint(types):
            data = self._keyframe_or_parameter_sets(data, keyframe)
        if not self.started:
            if not keyframe:
                self.skipped += 1
                return None
            self.started = True
        return AccessUnit(
            data=data,
            pts=packet.pts,
            dts=packet.dts,
            time_base=self.time_base,
            keyframe=keyframe,
            codec=codec,
            received_ns=received_ns,
            sequence=sequence,
        )

    def _keyframe_or_parameter_sets(self, data: bytes, keyframe: bool) -> bytes:
        """Track in-band parameter sets; give a keyframe the ones it lacks."""
        nals = split_annexb(data)
        ps_types = parameter_set_types(self.codec)
        present = set()
        for nal in nals:
            t = nal_type(self.codec, nal)
            if t in ps_types:
                self.params.update(nal)
                present.add(t)
        if keyframe:
            if not present.issuperset(ps_types) and self.params.complete:
                data = self._with_parameter_sets(nals)
            if self.params.version != self._info_version:
                self._info_version = self.params.version
                self.stream_info = self._build_info()
        return data

    def _with_parameter_sets(self, nals: list[bytes]) -> bytes:
        """The keyframe with the cached parameter sets in front of its slices.

        An access unit delimiter must stay first; partial in-band sets are
        dropped so the order is always (VPS,) SPS, PPS.
        """
        ps_types = parameter_set_types(self.codec)
        aud = H264_AUD if self.codec == "h264" else H265_AUD
        head = [n for n in nals[:1] if nal_type(self.codec, n) == aud]
        rest = [n for n in nals[len(head) :] if nal_type(self.codec, n) not in ps_types]
        return join_annexb([*head, *self.params.ordered(), *rest])

    def _build_info(self) -> StreamInfo:
        cc = self.stream.codec_context
        sps = self.params.get(sps_type(self.codec))
        parsed = None
        if sps is not None:
            try:
                parsed = parse_sps(self.codec, sps)
            except SpsError:
                parsed = None
        rate = self.stream.average_rate or self.stream.guessed_rate
        fps = parsed.fps if parsed and parsed.fps else (float(rate) if rate else None)
        level = (
            parsed.level if parsed else (str(cc.level) if cc.level and cc.level > 0 else "unknown")
        )
        return StreamInfo(
            codec=self.codec,
            profile=parsed.profile if parsed else (cc.profile or "unknown"),
            level=level,
            width=parsed.width if parsed else cc.width,
            height=parsed.height if parsed else cc.height,
            fps=round(fps, 3) if fps else None,
            extradata=self.extradata,
            parameter_sets=self.params.ordered(),
            profile_level_id=parsed.profile_level_id if parsed else None,
        )
