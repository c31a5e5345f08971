"""RTP carrying MPEG-PS (GB/T 28181 media) to access units: UDP datagrams or RFC 4571 over TCP.

A device sends one picture as one RTP frame: packets with the same 90 kHz
timestamp, payload type 96 (`PS/90000` in the SDP), the marker bit on the
last, from the SSRC the platform put in the INVITE's `y=` line. Packets of
another SSRC (a stale session, a second stream on the same port) are counted
and dropped. Packets are put back in sequence order within a small window; a
sequence number still missing when the window is full is lost, and the PS
demuxer is told so (it drops the picture in progress and waits for the next
keyframe). In-order PS bytes go to the demuxer packet by packet, and each
frame end (marker bit, or a new timestamp when the marker was not set) is
passed on so that it can hand a picture on without waiting for the next.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from drivers.gb28181.ps_demux import PsAccessUnit, PsDemuxer
from drivers.rtsp.annexb import Codec

PS_PAYLOAD_TYPE = 96
RTP_VERSION = 2
# Packets held while waiting for a missing one: about 50 ms of a 4 Mbit/s stream in 1400-byte
# packets, more than the reordering on a carrier's network and less than a frame's interval.
REORDER_WINDOW = 32
# A sequence number this far from the expected one is a restarted sender, not reordering.
_MAX_JUMP = 3000


class RtpError(ValueError):
    """A datagram that is not an RTP packet; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """An RTP packet (RFC 3550 5.1), CSRCs, header extension and padding removed."""
    if len(data) < 12:
        raise RtpError(f"RTP packet of {len(data)} bytes is shorter than its 12-byte header")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    if b0 >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    pos = 12 + 4 * (b0 & 0x0F)
    end = len(data)
    if b0 & 0x10:
        if pos + 4 > end:
            raise RtpError("RTP header extension runs past the packet")
        pos += 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
    if b0 & 0x20:
        pad = data[-1] if end > 12 else 0
        if pad == 0:
            raise RtpError("RTP padding of 0 bytes")
        end -= pad
    if pos > end:
        raise RtpError("RTP header, extension and padding longer than the packet")
    return RtpPacket(bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, data[pos:end])


@dataclass(slots=True)
class RtpPsStats:
    """What the depacketiser received and dropped, by reason."""

    packets: int = 0  # accepted (right SSRC and payload type)
    bytes: int = 0  # PS payload bytes handed to the demuxer
    frames: int = 0  # RTP frames ended (marker bit or new timestamp)
    lost: int = 0  # sequence numbers never received
    reordered: int = 0  # packets put back in order
    duplicates: int = 0  # packets seen already, or arrived after their place was given up
    sequence_jumps: int = 0  # the sender restarted its sequence numbers
    foreign_ssrc: int = 0  # packets of an SSRC other than the INVITE's
    wrong_payload_type: int = 0
    malformed: int = 0  # not an RTP packet
    framing_errors: int = 0  # TCP: bytes skipped to find the RFC 4571 framing again
    last_problem: str = ""


class RtpPsReceiver:
    """One INVITE's media: RTP packets in, access units out.

    `ssrc` is the INVITE's `y=` value; None accepts the first SSRC heard and
    then only that one. `demuxer` defaults to a `PsDemuxer(codec)`.
    """

    def __init__(self, ssrc: int | None, *, codec: Codec | None = None,
                 demuxer: PsDemuxer | None = None, payload_type: int = PS_PAYLOAD_TYPE,
                 reorder_window: int = REORDER_WINDOW) -> None:
        self.ssrc = ssrc
        self.demuxer = demuxer if demuxer is not None else PsDemuxer(codec)
        self.payload_type = payload_type
        self.stats = RtpPsStats()
        self._window = max(1, reorder_window)
        self._next: int | None = None  # the sequence number we wait for
        self._held: dict[int, RtpPacket] = {}
        self._frame_ts: int | None = None  # timestamp of the RTP frame in progress
        self._tcp = bytearray()
        self._tcp_lost = False

    # -- input ---------------------------------------------------------------------------

    def datagram(self, data: bytes) -> list[PsAccessUnit]:
        """One UDP datagram (one RTP packet)."""
        out: list[PsAccessUnit] = []
        try:
            packet = parse_rtp(data)
        except RtpError as e:
            self.stats.malformed += 1
            self.stats.last_problem = str(e)
            return out
        if self._accept(packet):
            self._sequence(packet, out)
        return out

    def stream(self, data: bytes) -> list[PsAccessUnit]:
        """Bytes of a TCP connection, RFC 4571 framed, split anywhere."""
        out: list[PsAccessUnit] = []
        buf = self._tcp
        buf += data
        pos = 0
        while len(buf) - pos >= 2:
            size = buf[pos] << 8 | buf[pos + 1]
            if not self._plausible(buf, pos, size):
                # One byte at a time: the next plausible length + RTP header is the framing.
                pos += 1
                self.stats.framing_errors += 1
                if not self._tcp_lost:
                    self._tcp_lost = True
                    self.stats.last_problem = "TCP media lost its RFC 4571 framing; resynchronising"
                continue
            if len(buf) - pos < 2 + size:
                break
            if self._tcp_lost:
                self._tcp_lost = False
                self._lose("TCP framing lost")
            out += self.datagram(bytes(buf[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        del buf[:pos]
        return out

    def skip_missing(self) -> list[PsAccessUnit]:
        """Give up now on packets still missing (for the caller's timer when the stream has
        gone quiet behind a gap, so held packets do not wait for the window to fill)."""
        out: list[PsAccessUnit] = []
        while self._held:
            self._skip_to_held(out)
        return out

    def flush(self) -> list[PsAccessUnit]:
        """The session ended: deliver what is held, end the frame, flush the demuxer."""
        out = self.skip_missing()
        if self._frame_ts is not None:
            self._frame_ts = None
            self.stats.frames += 1
            out += self.demuxer.end_of_frame()
        out += self.demuxer.flush()
        return out

    # -- internals -----------------------------------------------------------------------

    def _plausible(self, buf: bytearray, pos: int, size: int) -> bool:
        """Could a framed RTP packet of ours start at `pos`? (Checked on what has arrived.)"""
        if size < 12:
            return False
        if len(buf) - pos >= 4:
            if buf[pos + 2] >> 6 != RTP_VERSION or buf[pos + 3] & 0x7F != self.payload_type:
                return False
        if self.ssrc is not None and len(buf) - pos >= 14:
            return bool(struct.unpack_from("!I", buf, pos + 10)[0] == self.ssrc)
        return True

    def _accept(self, packet: RtpPacket) -> bool:
        if self.ssrc is None:
            self.ssrc = packet.ssrc
        if packet.ssrc != self.ssrc:
            self.stats.foreign_ssrc += 1
            self.stats.last_problem = (f"RTP from SSRC {packet.ssrc} dropped: the INVITE asked "
                                       f"for {self.ssrc}")
            return False
        if packet.payload_type != self.payload_type:
            self.stats.wrong_payload_type += 1
            self.stats.last_problem = (f"RTP payload type {packet.payload_type} dropped: PS is "
                                       f"{self.payload_type}")
            return False
        return True

    def _sequence(self, packet: RtpPacket, out: list[PsAccessUnit]) -> None:
        seq = packet.sequence
        if self._next is None:
            self._next = seq
        delta = (seq - self._next) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        if delta < -_MAX_JUMP or delta > _MAX_JUMP:
            self.stats.sequence_jumps += 1
            while self._held:
                self._skip_to_held(out)
            self._lose(f"RTP sequence jumped from {self._next} to {seq}")
            self._next = seq
            delta = 0
        if delta < 0 or seq in self._held:
            self.stats.duplicates += 1
            return
        if delta > 0:
            self._held[seq] = packet
            if len(self._held) > self._window:
                self._skip_to_held(out)
            return
        if self._held:
            self.stats.reordered += 1  # it was overtaken by what is held
        self._deliver(packet, out)
        self._drain(out)

    def _drain(self, out: list[PsAccessUnit]) -> None:
        while self._next is not None and self._next in self._held:
            self._deliver(self._held.pop(self._next), out)

    def _skip_to_held(self, out: list[PsAccessUnit]) -> None:
        """Give up on the missing packets before the earliest held one."""
        assert self._next is not None
        start = self._next
        gap = min((s - start) & 0xFFFF for s in self._held)
        self.stats.lost += gap
        self._next = (start + gap) & 0xFFFF
        self._lose(f"{gap} RTP packet{'s' if gap > 1 else ''} lost")
        self._drain(out)

    def _lose(self, reason: str) -> None:
        self.stats.last_problem = reason
        self._frame_ts = None
        self.demuxer.discontinuity(reason)

    def _deliver(self, packet: RtpPacket, out: list[PsAccessUnit]) -> None:
        self._next = (packet.sequence + 1) & 0xFFFF
        if self._frame_ts is not None and packet.timestamp != self._frame_ts:
            # The previous frame's last packet had no marker: its end is known only now.
            self.stats.frames += 1
            out += self.demuxer.end_of_frame()
        self._frame_ts = packet.timestamp
        self.stats.packets += 1
        self.stats.bytes += len(packet.payload)
        out += self.demuxer.feed(packet.payload)
        if packet.marker:
            self._frame_ts = None
            self.stats.frames += 1
            out += self.demuxer.end_of_frame()
