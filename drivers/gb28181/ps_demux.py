"""MPEG-2 Program Stream (GB/T 28181 media) to H.264/H.265 access units, incrementally.

Fed PS bytes as they arrive (any split), it walks pack headers, system headers,
program stream maps and PES packets, keeps the payload of one video stream, and
cuts that elementary stream into access units: Annex-B, 90 kHz timestamps
(unwrapped past 33 bits), a keyframe flag, keyframes led by their parameter
sets. Nothing is decoded. Without a program stream map (FFmpeg writes none)
or a codec hint, the codec is told from the parameter sets' NAL headers.

Access unit boundaries come from the NAL units themselves (H.264 7.4.1.2.3,
H.265 7.4.2.4.4: an AUD, parameter set or prefix SEI after a slice, or a slice
that is the first of its picture), not from "a new PES with a PTS": FFmpeg and
some devices pack several pictures into one PES or start a picture mid-PES,
and devices that split a large picture into several PES sometimes stamp each
with the same PTS. NAL detection finds a picture's end only when the next one
begins, one frame late, so the RTP layer calls `end_of_frame()` at each marker
bit: once three frame ends in a row have coincided with an access unit
boundary found in the NAL units (the device sends one picture per RTP frame,
as GB/T 28181 asks), the demuxer cuts there and the delay goes; one
contradiction turns that off for good.

Memory is bounded: the PS buffer holds at most one PES (its length field is 16
bits) and the access unit under assembly at most `max_access_unit` bytes.
Nothing raises on bad input: what was skipped is counted in `stats`, and
`stats.last_problem` says the latest reason in one line.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from drivers.rtsp.annexb import (
    H264_AUD,
    H265_AUD,
    Codec,
    ParameterSetCache,
    join_annexb,
    keyframe_nal_types,
    nal_type,
    nal_types,
    parameter_set_types,
    split_annexb,
)

PACK_START = b"\x00\x00\x01\xba"
PACK = 0xBA
SYSTEM_HEADER = 0xBB
PROGRAM_STREAM_MAP = 0xBC
PADDING = 0xBE
PROGRAM_END = 0xB9

# ISO 13818-1 table 2-34 stream_type values we decode, and GB/T 28181's SVAC
# (named so that the reason a camera shows nothing is readable).
STREAM_TYPES: dict[int, Codec] = {0x1B: "h264", 0x24: "h265"}
_UNSUPPORTED_VIDEO = {0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x10: "MPEG-4 video",
                      0x80: "SVAC"}

# A 4K H.265 IDR picture is 1-2 MB; more than this is a stream without
# boundaries we can find, not a picture.
MAX_ACCESS_UNIT = 8 * 1024 * 1024
# PTS, DTS and SCR are 33-bit: they wrap after 26.5 hours, which a dome camera outlives.
TIMESTAMP_WRAP = 1 << 33
# Frame ends that must coincide with NAL-found boundaries before we trust them.
_ALIGNED_AFTER = 3

_H264_AU_START = frozenset({6, 7, 8, 9, 14, 15, 16, 17, 18})
_H265_AU_START = frozenset({32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)})
_H264_PROFILES = frozenset({66, 77, 88, 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139,
                            134, 135})


@dataclass(frozen=True, slots=True)
class PsAccessUnit:
    """One picture: Annex-B `data`, `pts`/`dts` in 1/90000 s (None when the PS gave none)."""

    codec: Codec
    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool


@dataclass(slots=True)
class PsDemuxStats:
    """What the demuxer read and what it skipped, by reason."""

    bytes_in: int = 0
    packs: int = 0
    video_pes: int = 0
    program_stream_maps: int = 0
    access_units: int = 0
    keyframes: int = 0
    # Skipped data, each counter one reason.
    garbage_bytes: int = 0  # bytes that were no PS packet, skipped while scanning for a pack
    resyncs: int = 0  # times the stream was lost and found again at a pack header
    bad_headers: int = 0  # pack or PES headers whose fields are impossible
    truncated_pes: int = 0  # PES cut short: the next packet's start code inside its payload
    audio_pes: int = 0  # audio is not ours to carry
    other_pes: int = 0  # private streams, a second video stream, unsupported video
    unknown_codec_bytes: int = 0  # video dropped before the codec could be told
    oversized_access_units: int = 0
    units_dropped: int = 0  # damaged pictures (data lost before or inside them)
    units_before_keyframe: int = 0  # whole pictures skipped while waiting for a keyframe
    keyframes_without_parameter_sets: int = 0
    misaligned_frames: int = 0  # a frame end that turned out to be mid-picture
    discontinuities: int = 0  # data lost upstream (told by the RTP layer)
    last_problem: str = ""


def read_timestamp(data: bytes | bytearray, pos: int) -> int:
    """A 33-bit PTS/DTS/SCR base from its 5-byte PES form (marker bits ignored)."""
    return (((data[pos] >> 1) & 0x07) << 30 | data[pos + 1] << 22 | (data[pos + 2] >> 1) << 15
            | data[pos + 3] << 7 | data[pos + 4] >> 1)


def sniff_codec(data: bytes | bytearray) -> Codec | None:
    """H.264 or H.265, from the first parameter set or AUD whose header only one of them allows.

    For a PS without a program stream map (FFmpeg writes none) and no hint from
    the SDP. Slices are ignored: their first bytes fit either codec.
    """
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 4:
        b0, b1 = data[i + 3], data[i + 4]
        if not b0 & 0x80:
            # H.265's VPS, SPS, PPS, AUD (layer 0, temporal id 1: a second byte of 1). 0x40 0x01
            # is also an H.264 P slice starting at macroblock 127+, so a VPS must show its
            # 16 reserved 1 bits. H.264's SPS has profile_idc there, its AUD
            # primary_pic_type << 5 | 0x10.
            if b1 == 1 and (b0 in (0x42, 0x44, 0x46)
                            or (b0 == 0x40 and data[i + 7 : i + 9] == b"\xff\xff")):
                return "h265"
            if (b0 & 0x1F == 7 and b1 in _H264_PROFILES) or (b0 == 0x09 and b1 & 0x1F == 0x10):
                return "h264"
        i = data.find(b"\x00\x00\x01", i + 3)
    return None


class PsDemuxer:
    """Incremental PS demuxer for one device's video; see the module docstring.

    `codec` is a hint (from the SDP or config); a program stream map overrides
    it, and without either the codec is sniffed from the parameter sets.
    """

    def __init__(self, codec: Codec | None = None, *,
                 max_access_unit: int = MAX_ACCESS_UNIT) -> None:
        self.stats = PsDemuxStats()
        self.codec: Codec | None = codec
        self.params: ParameterSetCache | None = ParameterSetCache(codec) if codec else None
        self._max_au = max_access_unit
        self._ps = bytearray()
        self._in_sync = False  # at a packet boundary we trust (after a pack header)
        self._video_id: int | None = None
        self._psm_types: dict[int, int] = {}
        # Elementary stream of the picture under assembly: _es[0] is absolute offset _base.
        self._es = bytearray()
        self._base = 0
        self._scan = 0
        self._au_nal: int | None = None  # absolute offset of its first start code
        self._au_has_vcl = False
        self._markers: deque[tuple[int, int | None, int | None]] = deque(maxlen=4096)
        self._need_au_start = True  # drop bytes until a NAL that begins a picture
        self._need_keyframe = True
        # Frame-end learning (module docstring): None learning, True trusted, False refuted.
        self._aligned: bool | None = None
        self._confirmed = 0
        self._hint: int | None = None
        self._check_start = False  # a frame end was trusted: the next NAL must begin a picture
        self._ts_ref: int | None = None  # the last timestamp handed on, unwrapped
        self._ts_wraps = 0

    @property
    def buffered(self) -> int:
        """Bytes held: an incomplete PS packet plus the picture under assembly."""
        return len(self._ps) + len(self._es)

    # -- input ---------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> list[PsAccessUnit]:
        """Consume PS bytes (any amount, any split); the access units they completed."""
        out: list[PsAccessUnit] = []
        self.stats.bytes_in += len(data)
        self._ps += data
        pos = self._parse(out)
        del self._ps[:pos]
        return out

    def end_of_frame(self) -> list[PsAccessUnit]:
        """The RTP layer saw a frame end (marker bit): the picture may be complete."""
        out: list[PsAccessUnit] = []
        if self._ps or not self._au_has_vcl or self.codec is None:
            return out  # a PES still open: this frame end is not a picture end
        end = self._base + len(self._es)
        if self._aligned:
            self._emit(len(self._es), out)
            self._check_start = True
        elif self._aligned is None:
            self._hint = end
        return out

    def flush(self) -> list[PsAccessUnit]:
        """End of stream: the picture under assembly, if it has a slice."""
        out: list[PsAccessUnit] = []
        if self._ps:
            self._problem("truncated_pes", f"stream ended inside a packet ({len(self._ps)} bytes)")
            self._ps.clear()
        if self._au_has_vcl and self.codec is not None:
            self._scan_es(out)
            if self._au_has_vcl:
                self._emit(len(self._es), out)
        return out

    def discontinuity(self, reason: str) -> None:
        """Data was lost before what comes next: drop partial state, wait for a keyframe."""
        self.stats.discontinuities += 1
        damaged = bool(self._ps or self._es)  # a picture was under way
        self._ps.clear()
        self._in_sync = False
        self._drop_es(reason, damaged=damaged)

    # -- PS packets ----------------------------------------------------------------------

    def _parse(self, out: list[PsAccessUnit]) -> int:
        buf = self._ps
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            if not (buf[pos] == 0 and buf[pos + 1] == 0 and buf[pos + 2] == 1) or \
                    buf[pos + 3] < PROGRAM_END:
                pos = self._resync(pos, "bytes that are not a PS packet")
                continue
            sid = buf[pos + 3]
            if sid == PROGRAM_END:
                pos += 4
                continue
            if sid == PACK:
                size = self._pack_size(pos)
                if size is None:
                    break
                if size < 0:
                    pos = self._resync(pos, "a pack header with bad marker bits", bad=True)
                    continue
                self.stats.packs += 1
                self._in_sync = True
                pos += size
                continue
            if n - pos < 6:
                break
            end = pos + 6 + (buf[pos + 4] << 8 | buf[pos + 5])
            if end > n:
                break
            if not self._in_sync:
                # A start code found by chance inside payload after a loss: wait for a pack.
                pos = self._resync(pos, "a packet outside any pack")
                continue
            if sid == PROGRAM_STREAM_MAP:
                self._read_psm(bytes(buf[pos:end]))
            elif 0xE0 <= sid <= 0xEF:
                cut = self._video_pes(sid, pos, end, out)
                if cut is not None:
                    self._problem("truncated_pes", "a PES cut short by the next packet")
                    self._drop_es("truncated PES", damaged=True)
                    pos = cut
                    continue
            elif 0xC0 <= sid <= 0xDF:
                self.stats.audio_pes += 1
            elif sid not in (SYSTEM_HEADER, PADDING):
                self.stats.other_pes += 1
            pos = end
        return pos

    def _resync(self, pos: int, what: str, *, bad: bool = False) -> int:
        """Skip to the next pack header (keeping a partial start code at the end)."""
        buf = self._ps
        nxt = buf.find(PACK_START, pos + 1)
        stop = nxt if nxt >= 0 else max(pos + 1, len(buf) - 3)
        if bad:
            self.stats.bad_headers += 1
        self.stats.garbage_bytes += stop - pos
        if self._in_sync or bad or self._au_has_vcl:
            self.stats.resyncs += 1
            self._problem(None, f"PS stream lost ({what}); resynchronising at the next pack")
        self._in_sync = False
        self._drop_es("PS stream lost", damaged=self._au_has_vcl)
        return stop

    def _pack_size(self, pos: int) -> int | None:
        """Length of the pack header at `pos`, None if incomplete, -1 if malformed."""
        buf = self._ps
        if len(buf) - pos < 14:
            return None
        b4 = buf[pos + 4]
        if b4 & 0xC0 == 0x40:  # MPEG-2 (ISO 13818-1 2.5.3.3)
            if not (b4 & 0x04 and buf[pos + 6] & 0x04 and buf[pos + 8] & 0x04
                    and buf[pos + 9] & 0x01 and buf[pos + 12] & 0x03 == 0x03):
                return -1
            return 14 + (buf[pos + 13] & 0x07)
        if b4 & 0xF0 == 0x20:  # MPEG-1 systems, as FFmpeg's "mpeg" muxer writes
            if not (b4 & 0x01 and buf[pos + 6] & 0x01 and buf[pos + 8] & 0x01):
                return -1
            return 12
        return -1

    def _read_psm(self, psm: bytes) -> None:
        self.stats.program_stream_maps += 1
        if len(psm) < 16:
            self._problem("bad_headers", "a program stream map too short")
            return
        pos = 10 + (psm[8] << 8 | psm[9])
        if pos + 2 > len(psm):
            self._problem("bad_headers", "a program stream map with bad lengths")
            return
        end = min(pos + 2 + (psm[pos] << 8 | psm[pos + 1]), len(psm) - 4)  # before the CRC
        pos += 2
        types: dict[int, int] = {}
        while pos + 4 <= end:
            types[psm[pos + 1]] = psm[pos]
            pos += 4 + (psm[pos + 2] << 8 | psm[pos + 3])
        self._psm_types = types
        video = [(sid, t) for sid, t in types.items() if 0xE0 <= sid <= 0xEF]
        if self._video_id is None:
            known = [v for v in video if v[1] in STREAM_TYPES]
            if known or video:
                self._video_id = (known or video)[0][0]
        if self._video_id in types:
            self._set_codec_from_type(types[self._video_id])

    def _set_codec_from_type(self, stream_type: int) -> None:
        codec = STREAM_TYPES.get(stream_type)
        if codec is None:
            name = _UNSUPPORTED_VIDEO.get(stream_type, "unknown video")
            self.stats.last_problem = (f"video stream_type 0x{stream_type:02x} ({name}) is not "
                                       "supported; only H.264 and H.265")
            return
        if codec != self.codec:
            if self.codec is not None:
                self._drop_es(f"codec changed to {codec}", damaged=self._au_has_vcl)
            self.codec = codec
            self.params = ParameterSetCache(codec)

    def _video_pes(self, sid: int, pos: int, end: int, out: list[PsAccessUnit]) -> int | None:
        """Take one video PES; the offset of a packet start inside it if it was cut short."""
        if self._video_id is None:
            self._video_id = sid
        if sid != self._video_id:
            self.stats.other_pes += 1
            return None
        stream_type = self._psm_types.get(sid)
        if stream_type is not None and stream_type not in STREAM_TYPES:
            self.stats.other_pes += 1
            return None
        header = self._pes_header(pos, end)
        if header is None:
            self._problem("bad_headers", "a video PES header with impossible fields")
            self._drop_es("bad PES header", damaged=self._au_has_vcl)
            return None
        start, pts, dts = header
        payload = self._ps[start:end]
        # 00 00 01 followed by a byte >= 0x80 is never inside H.264/H.265 (forbidden_zero_bit):
        # it is the next PS packet, so this PES claimed more bytes than it had.
        cut = _packet_start_in(payload)
        if cut >= 0:
            return start + cut
        self.stats.video_pes += 1
        if payload:
            self._es_data(payload, pts, dts, out)
        return None

    def _pes_header(self, pos: int, end: int) -> tuple[int, int | None, int | None] | None:
        """(payload offset, pts, dts) of the PES at `pos`, None if malformed."""
        buf = self._ps
        i = pos + 6
        if i < end and buf[i] & 0xC0 == 0x80:  # MPEG-2 PES header (2.4.3.7)
            if i + 3 > end:
                return None
            flags = buf[i + 1] >> 6
            start = i + 3 + buf[i + 2]
            stamps = (0, 0, 5, 10)[flags]
            if start > end or flags == 1 or i + 3 + stamps > start:
                return None
            pts = read_timestamp(buf, i + 3) if flags & 2 else None
            dts = read_timestamp(buf, i + 8) if flags == 3 else pts
            return start, pts, dts
        # MPEG-1 packet header (ISO 11172-1 2.4.3.3): stuffing, STD buffer, timestamps.
        while i < end and buf[i] == 0xFF and i - pos < 6 + 16:
            i += 1
        if i < end and buf[i] & 0xC0 == 0x40:
            i += 2
        if i >= end:
            return None
        kind = buf[i] >> 4
        if kind == 2 and i + 5 <= end:
            pts = read_timestamp(buf, i)
            return i + 5, pts, pts
        if kind == 3 and i + 10 <= end:
            return i + 10, read_timestamp(buf, i), read_timestamp(buf, i + 5)
        if buf[i] == 0x0F:
            return i + 1, None, None
        return None

    # -- elementary stream ---------------------------------------------------------------

    def _es_data(self, payload: bytes | bytearray, pts: int | None, dts: int | None,
                 out: list[PsAccessUnit]) -> None:
        if pts is not None:
            self._markers.append((self._base + len(self._es), pts, dts))
        before = len(self._es)
        self._es += payload
        if len(self._es) > self._max_au:
            if self.codec is None:
                self.stats.last_problem = ("video codec unknown: no program stream map and no "
                                           "H.264/H.265 parameter sets in the stream")
                self._drop_es("codec unknown", damaged=False)
                return
            self._problem("oversized_access_units",
                          f"a picture over {self._max_au} bytes (no boundary found)")
            self._drop_es("oversized picture", damaged=True)
            return
        if self.codec is None:
            # Only the new bytes (and a start code split before them) need looking at.
            codec = sniff_codec(self._es[max(0, before - 5):])
            if codec is None:
                return
            self.codec = codec
            self.params = ParameterSetCache(codec)
        self._scan_es(out)

    def _scan_es(self, out: list[PsAccessUnit]) -> None:
        """Find NAL starts not looked at yet and cut pictures at their boundaries."""
        es = self._es
        h264 = self.codec == "h264"
        need = 5 if h264 else 6  # start code, NAL header, first byte of the slice header
        au_start = _H264_AU_START if h264 else _H265_AU_START
        i = es.find(b"\x00\x00\x01", self._scan)
        while i >= 0:
            if i + need > len(es):
                self._scan = i
                return
            header = es[i + 3]
            if h264:
                t = header & 0x1F
                vcl = 1 <= t <= 5
                first_slice = vcl and es[i + 4] & 0x80
            else:
                t = (header >> 1) & 0x3F
                vcl = t < 32
                first_slice = vcl and es[i + 5] & 0x80
            begins = bool(first_slice) or t in au_start
            if self._au_nal is None:
                self._au_nal = self._base + i
            if self._check_start:
                self._check_start = False
                if not begins or any(es[:i]):
                    # The picture handed on was incomplete and this is its rest.
                    self._aligned = False
                    self._problem("misaligned_frames",
                                  "an RTP frame ended inside a picture; cutting by NAL units")
                    self.stats.units_dropped += 1
                    self._need_au_start = True
                    self._need_keyframe = True
            if self._need_au_start:
                if not begins:
                    i = es.find(b"\x00\x00\x01", i + 3)
                    continue
                self._need_au_start = False
                cut = i - 1 if i and es[i - 1] == 0 else i
                del es[:cut]
                self._base += cut
                i -= cut
                self._au_nal = self._base + i
            elif begins and self._au_has_vcl:
                cut = i - 1 if es[i - 1] == 0 else i
                self._learn(self._base + cut, self._base + i)
                self._emit(cut, out)
                i -= cut
                self._au_nal = self._base + i
            if vcl:
                self._au_has_vcl = True
            i = es.find(b"\x00\x00\x01", i + 3)
        self._scan = max(0, len(es) - 3)
        if self._need_au_start:
            # Nothing here begins a picture: keep only what could be a split start code.
            keep = min(len(es), 3 + need)
            self._base += len(es) - keep
            del es[: len(es) - keep]
            self._scan = 0

    def _learn(self, cut: int, nal: int) -> None:
        """A boundary found in the NAL units: did the last frame end say the same?"""
        hint = self._hint
        if self._aligned is not None or hint is None:
            return
        if cut <= hint <= nal:
            self._hint = None
            self._confirmed += 1
            if self._confirmed >= _ALIGNED_AFTER:
                self._aligned = True
        elif cut > hint:
            self._hint = None
            self._aligned = False

    def _emit(self, cut: int, out: list[PsAccessUnit]) -> None:
        """Hand on es[:cut] as a picture (or skip it) and start the next one after it."""
        assert self.codec is not None and self.params is not None
        data = bytes(self._es[:cut])
        del self._es[:cut]
        start = self._au_nal if self._au_nal is not None else self._base
        self._base += cut
        self._scan = max(0, self._scan - cut)
        self._au_has_vcl = False
        self._au_nal = None
        pts: int | None = None
        dts: int | None = None
        markers = self._markers
        while markers and markers[0][0] <= start:
            _, pts, dts = markers.popleft()
        pts, dts = self._unwrap(pts), self._unwrap(dts)
        codec = self.codec
        types = nal_types(codec, data)
        keyframe = not set(keyframe_nal_types(codec)).isdisjoint(types)
        ps_types = parameter_set_types(codec)
        if keyframe or not set(ps_types).isdisjoint(types):
            nals = split_annexb(data)
            for nal in nals:
                if nal_type(codec, nal) in ps_types:
                    self.params.update(nal)
            if keyframe and not set(ps_types).issubset(types):
                if not self.params.complete:
                    self._problem("keyframes_without_parameter_sets",
                                  "a keyframe before any parameter sets")
                    self._need_keyframe = True
                    return
                data = self._with_parameter_sets(nals)
        if self._need_keyframe:
            if not keyframe:
                self.stats.units_before_keyframe += 1
                return
            self._need_keyframe = False
        self.stats.access_units += 1
        self.stats.keyframes += keyframe
        out.append(PsAccessUnit(codec, data, pts, dts, keyframe))

    def _unwrap(self, ts: int | None) -> int | None:
        """A 33-bit timestamp made monotonic across wraps (B-frames may step back a little)."""
        if ts is None:
            return None
        value = ts + self._ts_wraps * TIMESTAMP_WRAP
        ref = self._ts_ref
        if ref is not None:
            if value < ref - TIMESTAMP_WRAP // 2:
                self._ts_wraps += 1
                value += TIMESTAMP_WRAP
            elif value > ref + TIMESTAMP_WRAP // 2:
                # From just before the wrap, arriving after it (before the first: negative).
                value -= TIMESTAMP_WRAP
        self._ts_ref = value
        return value

    def _with_parameter_sets(self, nals: list[bytes]) -> bytes:
        """The keyframe led by the cached parameter sets (after its AUD, if any)."""
        assert self.codec is not None and self.params is not None
        codec = self.codec
        ps_types = parameter_set_types(codec)
        aud = H264_AUD if codec == "h264" else H265_AUD
        head = [n for n in nals[:1] if nal_type(codec, n) == aud]
        rest = [n for n in nals[len(head):] if nal_type(codec, n) not in ps_types]
        return join_annexb([*head, *self.params.ordered(), *rest])

    def _drop_es(self, reason: str, *, damaged: bool) -> None:
        """Forget the picture under assembly; the stream restarts at the next keyframe."""
        if damaged:
            self.stats.units_dropped += 1
            self.stats.last_problem = f"picture dropped: {reason}"
        if self.codec is None:
            self.stats.unknown_codec_bytes += len(self._es)
        self._base += len(self._es)
        self._es.clear()
        self._scan = 0
        self._markers.clear()
        self._au_nal = None
        self._au_has_vcl = False
        self._need_au_start = True
        self._need_keyframe = True
        self._hint = None
        self._check_start = False

    def _problem(self, counter: str | None, reason: str) -> None:
        if counter is not None:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.stats.last_problem = reason


def _packet_start_in(payload: bytes | bytearray) -> int:
    """Offset of a PS packet start code (00 00 01 >= 0xB9) in `payload`, or -1."""
    i = payload.find(b"\x00\x00\x01")
    while i >= 0:
        if i + 3 < len(payload) and payload[i + 3] >= PROGRAM_END:
            return i
        i = payload.find(b"\x00\x00\x01", i + 3)
    return -1
