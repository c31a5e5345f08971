"""Offer checking and H.264 pinning, on a real Chromium offer and hand-made ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from edge.uplink.sdp import (
    AIORTC_PLID,
    BadOffer,
    choose_format,
    inspect_offer,
    pin_answer,
    pin_offer,
    profile_level_id_from_annexb,
    restore_payload_types,
)
from tests.support.uplink import offer_sdp

pytestmark = pytest.mark.timeout(30)

# What Chromium 156 (Debian) offers for one recvonly video transceiver: VP8
# first, H.264 constrained baseline, baseline and main at 96-127, High 4:4:4
# (f4001f) at 41, no 64xxxx at all, and mDNS host candidates.
CHROMIUM = (Path(__file__).parent / "data" / "chromium-156-offer.sdp").read_text()


def test_chromium_offer_lists_its_h264_formats() -> None:
    offer = inspect_offer(CHROMIUM)
    assert offer.codecs[0] == "VP8"
    assert [(f.pt, f.profile_level_id) for f in offer.h264] == [
        (102, "42001f"), (108, "42e01f"), (116, "4d001f"), (41, "f4001f")]
    assert all(f.rtx_pt is not None for f in offer.h264)


@pytest.mark.parametrize(("camera", "pt"), [
    ("42c01e", 108),  # x264 constrained baseline: the browser's constrained baseline
    ("42e01f", 108),
    ("4d0028", 116),  # main: the main decoder
    ("640028", 41),   # high: only the 4:4:4 predictive decoder takes High here
    ("zzzzzz", 102),  # unknown: the browser's first H.264 preference
])
def test_choose_format_by_camera_profile(camera: str, pt: int) -> None:
    assert choose_format(inspect_offer(CHROMIUM), camera).pt == pt


def test_high_camera_prefers_a_real_high_decoder() -> None:
    sdp = offer_sdp().replace("a=rtpmap:103 rtx/90000", "a=rtpmap:110 H264/90000\r\n"
                              "a=fmtp:110 packetization-mode=1;profile-level-id=64001f\r\n"
                              "a=rtpmap:103 rtx/90000").replace("102 103", "102 103 110")
    assert choose_format(inspect_offer(sdp), "640028").pt == 110


def test_pin_offer_keeps_one_format_renumbers_and_defers_mdns() -> None:
    offer = inspect_offer(CHROMIUM)
    chosen = choose_format(offer, "640028")
    pinned = pin_offer(CHROMIUM, chosen)
    video = pinned.sdp.split("m=video", 1)[1]
    # Only the chosen format (renumbered into aiortc's 96-127) and its RTX remain.
    new = next(iter(pinned.renumbered))
    assert pinned.renumbered == {new: 41} and 96 <= new <= 127
    assert video.split("\r\n", 1)[0].split()[2:] == [str(new), str(chosen.rtx_pt)]
    assert f"a=fmtp:{new} level-asymmetry-allowed=1;packetization-mode=1;" \
           f"profile-level-id={AIORTC_PLID}" in video
    assert f"a=fmtp:{chosen.rtx_pt} apt={new}" in video
    assert "VP8" not in video and "AV1" not in video and "a=rtpmap:41 " not in video
    # mDNS candidates wait until after the answer; the rest of the offer is intact.
    assert len(pinned.deferred) == 2 and all(".local" in v for _, v in pinned.deferred)
    assert ".local" not in pinned.sdp and "a=ice-ufrag:" in pinned.sdp
    assert inspect_offer(pinned.sdp).h264[0].pt == new


def test_pin_answer_and_restore_payload_types() -> None:
    pinned = pin_offer(CHROMIUM, choose_format(inspect_offer(CHROMIUM), "640028"))
    new = next(iter(pinned.renumbered))
    rtx = pinned.chosen.rtx_pt
    codecs = [RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=new),
              RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=rtx,
                                    parameters={"apt": new})]
    restore_payload_types(codecs, pinned.renumbered)
    assert codecs[0].payloadType == 41 and codecs[1].parameters["apt"] == 41
    answer = ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 41 42\r\na=rtpmap:41 H264/90000\r\n"
              "a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
              "\r\na=rtpmap:42 rtx/90000\r\na=fmtp:42 apt=41\r\n")
    out = pin_answer(answer, pinned, "640028")
    assert "a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640028" \
        in out
    assert "42e01f" not in out and "a=fmtp:42 apt=41" in out


@pytest.mark.parametrize(("sdp", "reason"), [
    ("", "must start with v=0"),
    ("hello", "must start with v=0"),
    ("v=0\r\nm=video\r\n", 'media line "m=video" is not m=KIND PORT PROTOCOL FORMAT'),
    (offer_sdp(video=False), "no video section"),
    (offer_sdp(h264=False), "no H.264 with packetization-mode=1 (offered: VP8)"),
    (offer_sdp(direction="sendonly"), "does not receive (a=sendonly)"),
    (offer_sdp().replace("a=ice-pwd:", "a=x-pwd:"), "no ICE credentials"),
    (offer_sdp().replace("a=fingerprint:", "a=x-fp:"), "no DTLS fingerprint"),
    (offer_sdp().replace("packetization-mode=1", "packetization-mode=0"),
     "no H.264 with packetization-mode=1"),
    (offer_sdp() + "a=x:" + "y" * 70_000 + "\r\n", "larger than 64 KiB"),
])
def test_bad_offers_say_why(sdp: str, reason: str) -> None:
    with pytest.raises(BadOffer) as e:
        inspect_offer(sdp)
    assert reason in str(e.value)


def test_profile_level_id_from_sps() -> None:
    sps = b"\x67\x64\x00\x28\xac"
    assert profile_level_id_from_annexb(b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01" + sps +
                                        b"\x00\x00\x01\x68\xee") == "640028"
    assert profile_level_id_from_annexb(b"\x00\x00\x01\x65\x88") is None
