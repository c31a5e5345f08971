"""A far viewer gets every media packet twice: the copy in RTX, soon after, within budget."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import unwrap_rtx

from edge.uplink.history import deepen_history
from edge.uplink.link_budget import REPAIR_BURST_S, LinkBudget
from edge.uplink.redundancy import NACK_RESERVE, Redundancy
from tests.support import eventually
from tests.support.rtp_sender import H264, FakeDtls, Units

pytestmark = pytest.mark.timeout(30)

RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=103,
                            parameters={"apt": 102})


async def sender_with_rtx(n: int) -> tuple[RTCRtpSender, FakeDtls]:
    dtls = FakeDtls()
    sender = RTCRtpSender(Units(n), dtls)  # type: ignore[arg-type]
    # What aiortc's send() sets up from a negotiated RTX format, without running it.
    sender._RTCRtpSender__rtx_payload_type = RTX.payloadType  # type: ignore[attr-defined]
    return sender, dtls


async def test_every_packet_is_sent_again_in_rtx() -> None:
    sender, dtls = await sender_with_rtx(50)
    history = deepen_history(sender, worst_rtt_ms=600)
    assert history is not None
    copies = Redundancy(sender, history, budget=None)
    copies.enabled = True
    copies.start()
    try:
        await sender._run_rtp(H264)
        await eventually(lambda: copies.copies == 50, what="every packet copied or skipped")
    finally:
        await copies.stop()
    media = [p for p in dtls.sent if p.payload_type == H264.payloadType]
    rtx = [p for p in dtls.sent if p.payload_type == RTX.payloadType]
    assert len(media) == len(rtx) == 50
    assert H264.payloadType is not None
    restored = [unwrap_rtx(p, H264.payloadType, media[0].ssrc) for p in rtx]
    assert [(p.sequence_number, p.payload) for p in restored] == \
        [(p.sequence_number, p.payload) for p in media]
    assert history.retransmitted == 0  # copies are not NACK repairs


async def test_nothing_is_copied_while_disabled() -> None:
    sender, dtls = await sender_with_rtx(20)
    history = deepen_history(sender, worst_rtt_ms=600)
    assert history is not None
    copies = Redundancy(sender, history, budget=None)
    copies.start()
    try:
        await sender._run_rtp(H264)
        await asyncio.sleep(0.1)  # longer than a copy's delay: one would have gone
    finally:
        await copies.stop()
    assert len(dtls.sent) == 20 and copies.copies == 0


async def test_copies_leave_half_the_repair_budget_to_nacks() -> None:
    sender, dtls = await sender_with_rtx(200)
    # Each packet is ~106 bytes; a budget of 8 kbit/s holds about ten of them.
    budget = LinkBudget(8000, REPAIR_BURST_S)
    history = deepen_history(sender, worst_rtt_ms=600, budget=budget)
    assert history is not None
    copies = Redundancy(sender, history, budget)
    copies.enabled = True
    copies.start()
    try:
        await sender._run_rtp(H264)
        await eventually(lambda: copies.copies + copies.skipped == 200,
                         what="every packet copied or skipped")
    finally:
        await copies.stop()
    assert 1 <= copies.copies < 10 and copies.skipped > 150
    # What the copies left is there for a NACK repair.
    assert budget.try_take(int(8000 * REPAIR_BURST_S * NACK_RESERVE * 0.9))
