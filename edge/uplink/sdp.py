"""SDP for passthrough: check the viewer's offer, pin it to H.264, answer with our profile.

Browsers list VP8 first and aiortc answers with the first codec both sides
know, so left alone a passthrough session would label H.264 bytes as VP8 and
the browser would decode nothing. aiortc also only knows two constrained
baseline profile-level-ids (42001f, 42e01f) and refuses an offer's High
profile entries as incompatible. So, before aiortc sees the offer:

1. :func:`inspect_offer` checks it (an operator gets a 400 with the reason,
   never a traceback; every line aiortc reads is checked first by
   :mod:`edge.uplink.offer_check`) and lists its H.264 formats with
   packetization-mode 1;
2. :func:`choose_format` picks the one whose decoder fits the camera's
   profile (High for a High camera, not the browser's favourite baseline);
3. :func:`pin_offer` removes every other video format, relabels the chosen
   one with the profile aiortc knows (so aiortc can only answer with it),
   renumbers it into 96-127 if the viewer numbered it elsewhere (aiortc only
   adopts an offer's number inside that range), and holds back mDNS candidates;

between setRemoteDescription and createAnswer, :func:`restore_payload_types`
gives the negotiated codec the viewer's number back (the RTP we send and the
answer both take it from there); and after aiortc has answered,
:func:`pin_answer` writes the camera's real profile-level-id (from its SPS)
into the answer. aiortc never looks at the profile when it packetises, so the
relabelling is invisible to it.

What Chromium does (156, Debian, software decoding): it decodes High profile
even when the answer labels it constrained baseline, so a wrong label goes
unnoticed there; a packet numbered as its VP8 is fed to the VP8 decoder and
nothing is shown (``framesDecoded`` stays 0 while PLIs pile up). Hardware
decoders and other players choose by the label, so the label is the truth.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from aiortc.exceptions import OperationError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import H264Profile, SessionDescription, parse_h264_profile_level_id

from edge.uplink.offer_check import BadOffer as BadOffer
from edge.uplink.offer_check import check_offer, shown

log = logging.getLogger(__name__)

# The profile-level-id aiortc accepts (its own codec table); the offer's chosen
# format is relabelled with it before aiortc negotiates.
AIORTC_PLID = "42e01f"
# RFC 6184: without profile-level-id a peer means Baseline level 1 (420010);
# WebRTC stacks have always read it as constrained baseline 3.1.
DEFAULT_PLID = "42e01f"
MAX_OFFER_BYTES = 64 * 1024

_P = H264Profile
# Which camera profiles a decoder announced as the key profile can decode.
# Constrained baseline is the common subset; a High decoder takes everything
# we may meet from a camera.
_DECODES: dict[H264Profile, frozenset[H264Profile]] = {
    _P.PROFILE_CONSTRAINED_BASELINE: frozenset({_P.PROFILE_CONSTRAINED_BASELINE}),
    _P.PROFILE_BASELINE: frozenset({_P.PROFILE_CONSTRAINED_BASELINE, _P.PROFILE_BASELINE}),
    _P.PROFILE_MAIN: frozenset({_P.PROFILE_CONSTRAINED_BASELINE, _P.PROFILE_MAIN}),
    _P.PROFILE_CONSTRAINED_HIGH: frozenset({_P.PROFILE_CONSTRAINED_BASELINE, _P.PROFILE_MAIN,
                                            _P.PROFILE_CONSTRAINED_HIGH}),
    _P.PROFILE_HIGH: frozenset({_P.PROFILE_CONSTRAINED_BASELINE, _P.PROFILE_BASELINE,
                                _P.PROFILE_MAIN, _P.PROFILE_CONSTRAINED_HIGH,
                                _P.PROFILE_HIGH}),
    # High 4:4:4 Predictive decoders take every 4:2:0 profile too. Chromium builds
    # without an H.264 High encoder offer this (f4001f) and no 64xxxx at all.
    _P.PROFILE_PREDICTIVE_HIGH_444: frozenset(_P),
}
_PLID_RE = re.compile(r"^[0-9a-fA-F]{6}$")


@dataclass(frozen=True, slots=True)
class H264Format:
    pt: int
    profile_level_id: str
    rtx_pt: int | None

    @property
    def profile(self) -> H264Profile | None:
        return profile_of(self.profile_level_id)


@dataclass(frozen=True, slots=True)
class VideoOffer:
    mid: str | None
    h264: tuple[H264Format, ...]  # packetization-mode 1 only, in the offer's order
    codecs: tuple[str, ...]  # every video codec offered, for error messages


def profile_of(plid: str) -> H264Profile | None:
    try:
        return parse_h264_profile_level_id(plid)[0]
    except ValueError:
        return None


def profile_level_id_from_annexb(data: bytes) -> str | None:
    """The SDP profile-level-id of the first H.264 SPS in an Annex-B access unit.

    Only for what our own encoder wrote (the transcoder's first keyframe): a
    camera's is read from its SPS by the ingest and carried in its
    ``CameraStream`` announcement.
    """
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        if start + 4 <= len(data) and data[start] & 0x1F == 7:
            return data[start + 1:start + 4].hex()
        i = data.find(b"\x00\x00\x01", start)
    return None


# -- parsing ---------------------------------------------------------------------
@dataclass
class _Section:
    lines: list[str]

    @property
    def kind(self) -> str:
        return self.lines[0][2:].split(" ", 1)[0]

    def attrs(self, name: str) -> list[str]:
        prefix = f"a={name}:"
        return [line[len(prefix):] for line in self.lines if line.startswith(prefix)]

    def flag(self, *names: str) -> str | None:
        for line in self.lines:
            if line[2:] in names and line.startswith("a="):
                return line[2:]
        return None


def _split(sdp: str) -> tuple[list[str], list[_Section]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session: list[str] = []
    sections: list[_Section] = []
    for line in lines:
        if line.startswith("m="):
            sections.append(_Section([line]))
        elif sections:
            sections[-1].lines.append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[_Section]) -> str:
    lines = session + [line for s in sections for line in s.lines]
    return "\r\n".join(lines) + "\r\n"


def _fmtp(section: _Section) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for value in section.attrs("fmtp"):
        pt, _, params = value.partition(" ")
        if not pt.isdigit():
            continue
        parsed: dict[str, str] = {}
        for item in params.split(";"):
            key, _, val = item.strip().partition("=")
            if key:
                parsed[key.lower()] = val.strip()
        out[int(pt)] = parsed
    return out


def _rtpmap(section: _Section) -> dict[int, str]:
    return {pt: name for pt, (name, _) in _rtpmap_clock(section).items()}


def _rtpmap_clock(section: _Section) -> dict[int, tuple[str, str]]:
    """Payload type -> (encoding name, clock rate as written)."""
    out: dict[int, tuple[str, str]] = {}
    for value in section.attrs("rtpmap"):
        pt, _, codec = value.partition(" ")
        if pt.isdigit():
            name, _, rest = codec.partition("/")
            out[int(pt)] = (name, rest.split("/", 1)[0])
    return out


def _unreadable_line(sdp: str) -> str:
    """The first line of `sdp` that aiortc's parser trips on, quoted; found by parsing prefixes.

    Only reached when :func:`check_offer` let through something aiortc still
    cannot read, so that even then the viewer learns which line it was.
    """
    lines = sdp.splitlines()
    for n in range(1, len(lines) + 1):
        try:
            SessionDescription.parse("\r\n".join(lines[:n]) + "\r\n")
        except Exception:
            return f"line {n}, {shown(lines[n - 1])}"
    return "a line it could not read"


def refusal_reason(exc: Exception) -> str:
    """One sentence for what aiortc refused in an offer that passed our checks.

    The exception's own text is for the log: it names Python's internals, not
    the viewer's offer.
    """
    text = str(exc)
    m = re.match(r"Failed to set remote (\w+) description send parameters", text)
    if isinstance(exc, OperationError) and m:
        return (f"the offer's {m.group(1)} section offers no codec this server can use "
                "with it")
    log.warning("cannot answer an offer: %s: %s", type(exc).__name__, text)
    return "this server cannot answer the offer (the uplink's log has aiortc's reason)"


def _first_video(sections: list[_Section]) -> _Section:
    for s in sections:
        if s.kind == "video":
            return s
    raise BadOffer("the offer has no video section (m=video)")


def inspect_offer(sdp: str) -> VideoOffer:
    """Check an offer and list its usable H.264 formats; BadOffer says what is wrong."""
    if len(sdp) > MAX_OFFER_BYTES:
        raise BadOffer(f"the offer is larger than {MAX_OFFER_BYTES // 1024} KiB")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("not an SDP offer (it must start with v=0)")
    check_offer(sdp)
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser raises whatever it trips on; all mean "bad SDP"
        raise BadOffer(f"the offer is not valid SDP: aiortc cannot read "
                       f"{_unreadable_line(sdp)}") from None
    session, sections = _split(sdp)
    video = _first_video(sections)
    direction = video.flag("sendrecv", "sendonly", "recvonly", "inactive") or "sendrecv"
    if direction not in ("recvonly", "sendrecv"):
        raise BadOffer(f"the video section does not receive (a={direction}); a WHEP viewer "
                       "offers recvonly")
    media = next(m for m in parsed.media if m.kind == "video")
    if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
        raise BadOffer("the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if media.dtls is None or not media.dtls.fingerprints:
        raise BadOffer("the offer has no DTLS fingerprint (a=fingerprint)")
    clock = _rtpmap_clock(video)
    rtpmap = _rtpmap(video)
    fmtp = _fmtp(video)
    rtx_for = {int(p["apt"]): pt for pt, p in fmtp.items()
               if rtpmap.get(pt, "").lower() == "rtx" and p.get("apt", "").isdigit()}
    formats: list[H264Format] = []
    for pt, name in rtpmap.items():
        if name.upper() != "H264" or clock[pt][1] != "90000":  # RFC 6184: always 90 kHz
            continue
        params = fmtp.get(pt, {})
        if params.get("packetization-mode", "0") != "1":
            continue
        plid = params.get("profile-level-id", DEFAULT_PLID)
        if not _PLID_RE.match(plid):
            continue
        formats.append(H264Format(pt, plid.lower(), rtx_for.get(pt)))
    codecs = tuple(dict.fromkeys(name for name in rtpmap.values()
                                 if name.lower() not in ("rtx", "red", "ulpfec", "flexfec-03")))
    if not formats:
        offered = ", ".join(codecs) or "none"
        raise BadOffer(f"the offer has no H.264 with packetization-mode=1 (offered: {offered}); "
                       "this vehicle sends H.264 as the camera encoded it")
    mids = video.attrs("mid")
    return VideoOffer(mids[0] if mids else None, tuple(formats), codecs)


def choose_format(offer: VideoOffer, camera_plid: str) -> H264Format:
    """The offered H.264 format whose decoder suits the camera's profile best.

    Same profile first, then a decoder that is a superset (a High decoder for
    a Main camera), then anything with packetization-mode 1; ties keep the
    viewer's order of preference.
    """
    camera = profile_of(camera_plid)

    def rank(f: H264Format) -> int:
        offered = f.profile
        if camera is None or offered is None:
            return 2
        if offered == camera:
            return 0
        return 1 if camera in _DECODES.get(offered, frozenset()) else 2

    return min(offer.h264, key=rank)


@dataclass(frozen=True, slots=True)
class PinnedOffer:
    """The offer as aiortc gets it, and what to undo or finish afterwards."""

    sdp: str
    chosen: H264Format
    # aiortc's payload type -> the viewer's, where they differ: aiortc negotiates
    # only 96-127 and keeps its own number for a codec the offer numbers
    # elsewhere (Chromium uses 35-63 once 96-127 are taken); see
    # restore_payload_types.
    renumbered: dict[int, int]
    # mDNS host candidates (`<uuid>.local`), held back: aiortc resolves them
    # before setRemoteDescription returns, and one that cannot be resolved costs
    # a second of the viewer's start. Added after the answer is sent; the
    # browser's own connectivity checks reach us meanwhile (peer reflexive).
    deferred: tuple[tuple[str | None, str], ...]  # (mid, candidate value)
    end_of_candidates: bool  # the offer said so; said again after the deferred ones


def _is_mdns_candidate(value: str) -> bool:
    bits = value.split()
    return len(bits) > 4 and bits[4].lower().endswith(".local")


def pin_offer(sdp: str, chosen: H264Format) -> PinnedOffer:
    """The offer with only `chosen` (and its RTX) in its first video section, as aiortc knows it."""
    session, sections = _split(sdp)
    video = _first_video(sections)
    rtx = chosen.rtx_pt
    renumbered: dict[int, int] = {}
    pt = chosen.pt
    if pt not in range(96, 128):
        pt = next(p for p in range(96, 128) if p != rtx)
        renumbered[pt] = chosen.pt
    keep = {chosen.pt} | ({rtx} if rtx is not None else set())
    m_parts = video.lines[0].split(" ")
    fmt = [p for p in m_parts[3:] if p.isdigit() and int(p) in keep]
    video.lines[0] = " ".join(m_parts[:3] + [str(pt) if int(p) == chosen.pt else p for p in fmt])
    kept: list[str] = [video.lines[0]]
    for line in video.lines[1:]:
        m = re.match(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)(\s.*)$", line)
        if m and int(m.group(2)) not in keep:
            continue
        if m and int(m.group(2)) == chosen.pt:
            rest = m.group(3)
            if m.group(1) == "fmtp":
                rest = re.sub(r"profile-level-id=[0-9a-fA-F]{6}",
                              f"profile-level-id={AIORTC_PLID}", rest)
                if "profile-level-id=" not in rest:
                    rest += f";profile-level-id={AIORTC_PLID}"
            line = f"a={m.group(1)}:{pt}{rest}"
        elif m and rtx is not None and int(m.group(2)) == rtx and m.group(1) == "fmtp":
            line = f"a=fmtp:{rtx} apt={pt}"
        kept.append(line)
    video.lines = kept
    deferred: list[tuple[str | None, str]] = []
    end = False
    for section in sections:
        mids = section.attrs("mid")
        held = [line for line in section.lines if line.startswith("a=candidate:")
                and _is_mdns_candidate(line[len("a=candidate:"):])]
        if not held:
            continue
        deferred += [(mids[0] if mids else None, line[len("a="):]) for line in held]
        end = end or "a=end-of-candidates" in section.lines
        section.lines = [line for line in section.lines
                         if line not in held and line != "a=end-of-candidates"]
    return PinnedOffer(_join(session, sections), chosen, renumbered, tuple(deferred), end)


def restore_payload_types(codecs: list[RTCRtpCodecParameters],
                          renumbered: dict[int, int]) -> None:
    """Give aiortc's negotiated codecs back the viewer's payload types, in place.

    Must run between setRemoteDescription and createAnswer: the answer and the
    sender's RTP both take their numbers from these codecs, and the viewer maps
    an incoming packet to a decoder by its number (a packet numbered as the
    viewer's VP8 is fed to the VP8 decoder, H.264 inside or not).
    """
    for codec in codecs:
        if codec.payloadType is not None:
            codec.payloadType = renumbered.get(codec.payloadType, codec.payloadType)
        apt = codec.parameters.get("apt")
        if isinstance(apt, int):
            codec.parameters["apt"] = renumbered.get(apt, apt)


def pin_answer(sdp: str, pinned: PinnedOffer, plid: str) -> str:
    """aiortc's answer with the camera's real profile-level-id for the chosen format."""
    return label_profile(sdp, pinned.chosen.pt, plid)


def label_profile(sdp: str, pt: int, plid: str) -> str:
    """`sdp` with format `pt` of its first video section labelled `plid` (packetization-mode 1).

    Our own descriptions get the camera's real profile; a peer's answer to our
    offer gets aiortc's :data:`AIORTC_PLID` back before aiortc reads it.
    """
    session, sections = _split(sdp)
    video = _first_video(sections)
    fmtp = f"a=fmtp:{pt} level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + (
        plid.lower() if _PLID_RE.match(plid) else AIORTC_PLID)
    lines = [fmtp if line.startswith(f"a=fmtp:{pt} ") else line for line in video.lines]
    if fmtp not in lines:
        at = next((i + 1 for i, line in enumerate(lines)
                   if line.startswith(f"a=rtpmap:{pt} ")), len(lines))
        lines.insert(at, fmtp)
    video.lines = lines
    return _join(session, sections)


def h264_payload_type(sdp: str) -> int | None:
    """The H.264 payload type of the description's first video section."""
    _, sections = _split(sdp)
    try:
        video = _first_video(sections)
    except BadOffer:
        return None
    for pt, name in _rtpmap(video).items():
        if name.upper() == "H264":
            return pt
    return None
