"""Find MAVLink frames in a byte stream, resynchronising after garbage.

pymavlink's own ``parse_buffer`` throws away a whole candidate frame when its
CRC fails, so a stray ``0xFD`` in line noise swallows up to 280 bytes of good
traffic behind it. Here a bad candidate costs one byte: we step past its
magic byte and scan again, as the C library does. Good frames are then decoded
with pymavlink's ``MAVLink.decode`` (or, for a router that only forwards,
checked by CRC and never decoded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.mavlink.dialect import MESSAGE_CLASSES, MAVError, MAVLink, MAVLinkMessage, mavlink

_mcrf4xx: Callable[[bytes, int], int] | None
try:
    from fastcrc.crc16 import mcrf4xx as _mcrf4xx
except ImportError:  # pragma: no cover - fastcrc ships with pymavlink's extras
    _mcrf4xx = None

_MAGIC_V2 = 0xFD
_MAGIC_V1 = 0xFE
_MAGIC = re.compile(b"[\xfd\xfe]")
_SIG_LEN = 13
_CRC_EXTRA = {msg_id: cls.crc_extra for msg_id, cls in MESSAGE_CLASSES.items()}
_ONE_BYTE = [bytes([i]) for i in range(256)]

SignatureCheck = Callable[[bytes, int, int], bool]


def frame_crc_ok(raw: bytes | bytearray, crc_end: int, crc_extra: int) -> bool:
    """True when the X.25 CRC at ``raw[crc_end-2:crc_end]`` matches."""
    body = bytes(raw[1 : crc_end - 2])
    if _mcrf4xx is not None:
        crc = _mcrf4xx(_ONE_BYTE[crc_extra], _mcrf4xx(body, 0xFFFF))
    else:  # pragma: no cover
        acc = mavlink.x25crc(body)
        acc.accumulate(_ONE_BYTE[crc_extra])
        crc = acc.crc
    return crc == raw[crc_end - 2] | (raw[crc_end - 1] << 8)


def _known_frame_at(buf: bytearray, pos: int, n: int) -> bool | None:
    """Is there a complete, CRC-valid frame of a known message at ``pos``?

    None when the buffer ends before that can be told.
    """
    if pos >= n:
        return None
    magic = buf[pos]
    if magic == _MAGIC_V2:
        if n - pos < 10:
            return None
        if buf[pos + 2] & 0xFE:
            return False
        crc_end = 12 + buf[pos + 1]
        flen = crc_end + (_SIG_LEN if buf[pos + 2] else 0)
        msg_id = buf[pos + 7] | (buf[pos + 8] << 8) | (buf[pos + 9] << 16)
    elif magic == _MAGIC_V1:
        if n - pos < 6:
            return None
        crc_end = flen = 8 + buf[pos + 1]
        msg_id = buf[pos + 5]
    else:
        return False
    crc_extra = _CRC_EXTRA.get(msg_id)
    if crc_extra is None:
        return False
    if n - pos < flen:
        return None
    return frame_crc_ok(buf[pos : pos + flen], crc_end, crc_extra)


class Frame:
    """One complete MAVLink frame as it came off the wire.

    A plain ``__slots__`` class rather than a dataclass: one is built per
    message on the hot path.
    """

    __slots__ = ("raw", "msg_id", "sysid", "compid", "seq", "signed", "sig_ok", "msg")

    def __init__(
        self,
        raw: bytes,
        msg_id: int,
        sysid: int,
        compid: int,
        seq: int,
        signed: bool,
        sig_ok: bool | None,
        msg: Any,
    ) -> None:
        self.raw = raw
        self.msg_id = msg_id
        self.sysid = sysid
        self.compid = compid
        self.seq = seq
        #: the frame carries a signature block
        self.signed = signed
        #: signature verified (True/False), or None when we hold no key
        self.sig_ok = sig_ok
        #: the decoded pymavlink message (fields vary by type, hence Any), or None
        #: when the parser does not decode
        self.msg = msg

    @property
    def name(self) -> str:
        cls = MESSAGE_CLASSES.get(self.msg_id)
        return cls.msgname if cls is not None else f"UNKNOWN_{self.msg_id}"

    def __repr__(self) -> str:
        return f"<Frame {self.name} {self.sysid}/{self.compid} seq={self.seq} len={len(self.raw)}>"


@dataclass(slots=True)
class FrameStats:
    frames: int = 0
    bytes_in: int = 0
    #: bytes skipped while looking for a frame start (noise, truncated frames)
    bad_bytes: int = 0
    #: candidate frames whose CRC (or payload) did not check out
    crc_errors: int = 0
    #: frames of message ids this dialect does not know (forwarded, not decoded)
    unknown: int = 0


class FrameParser:
    """Incremental frame finder for one peer's byte stream.

    ``decode``: decode each frame with a pymavlink ``MAVLink`` object that
    holds no signing key, so it never judges signatures; ``check_signature``
    does that and the caller decides what a bad or missing signature means.
    Without decoding, frames are only CRC-checked: what a router needs.
    """

    def __init__(
        self,
        *,
        decode: bool = True,
        check_signature: SignatureCheck | None = None,
        stats: FrameStats | None = None,
    ) -> None:
        self._buf = bytearray()
        self._decoder: MAVLink | None = MAVLink(None) if decode else None
        self._check_signature = check_signature
        self.stats = stats if stats is not None else FrameStats()

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes, *, datagram: bool = False) -> list[Frame]:
        """Add bytes; return the frames they complete.

        ``datagram``: the bytes are one whole UDP datagram. A frame never spans
        two datagrams, so a tail that looks like the start of an unfinished
        frame is noise: resynchronise inside it instead of waiting for more.
        """
        stats = self.stats
        stats.bytes_in += len(data)
        buf = self._buf
        buf += data
        out: list[Frame] = []
        n = len(buf)
        pos = 0
        decoder = self._decoder
        crc_extra_of = _CRC_EXTRA
        while pos < n:
            magic = buf[pos]
            if magic != _MAGIC_V2 and magic != _MAGIC_V1:
                found = _MAGIC.search(buf, pos)
                nxt = found.start() if found is not None else n
                stats.bad_bytes += nxt - pos
                pos = nxt
                continue
            avail = n - pos
            if magic == _MAGIC_V2:
                if avail < 3:
                    if datagram:
                        stats.bad_bytes += 1
                        pos += 1
                        continue
                    break
                incompat = buf[pos + 2]
                if incompat & 0xFE:
                    # only the signed flag is defined; anything else is noise
                    stats.bad_bytes += 1
                    pos += 1
                    continue
                signed = bool(incompat)
                crc_end = 12 + buf[pos + 1]
                flen = crc_end + _SIG_LEN if signed else crc_end
                if avail < flen:
                    if datagram:
                        stats.bad_bytes += 1
                        pos += 1
                        continue
                    break
                seq = buf[pos + 4]
                sysid = buf[pos + 5]
                compid = buf[pos + 6]
                msg_id = buf[pos + 7] | (buf[pos + 8] << 8) | (buf[pos + 9] << 16)
            else:
                if avail < 2:
                    if datagram:
                        stats.bad_bytes += 1
                        pos += 1
                        continue
                    break
                signed = False
                crc_end = flen = 8 + buf[pos + 1]
                if avail < flen:
                    if datagram:
                        stats.bad_bytes += 1
                        pos += 1
                        continue
                    break
                seq = buf[pos + 2]
                sysid = buf[pos + 3]
                compid = buf[pos + 4]
                msg_id = buf[pos + 5]
            raw = bytes(buf[pos : pos + flen])
            crc_extra = crc_extra_of.get(msg_id)
            msg: MAVLinkMessage | None = None
            if crc_extra is None:
                # Unknown to this dialect, so no CRC to check it by. Take it only
                # when a verifiable frame follows right after it (or, for a
                # datagram, when it ends the datagram); noise almost never does.
                following = _known_frame_at(buf, pos + flen, n)
                if following is None and not datagram:
                    break  # wait for the next frame to decide
                if following is False:
                    stats.bad_bytes += 1
                    pos += 1
                    continue
                stats.unknown += 1
            elif decoder is not None:
                try:
                    msg = decoder.decode(bytearray(raw))
                except MAVError:
                    stats.crc_errors += 1
                    stats.bad_bytes += 1
                    pos += 1
                    continue
            elif not frame_crc_ok(raw, crc_end, crc_extra):
                stats.crc_errors += 1
                stats.bad_bytes += 1
                pos += 1
                continue
            sig_ok: bool | None = None
            if signed and self._check_signature is not None:
                sig_ok = self._check_signature(raw, sysid, compid)
            pos += flen
            stats.frames += 1
            out.append(Frame(raw, msg_id, sysid, compid, seq, signed, sig_ok, msg))
        if pos:
            del buf[:pos]
        return out
