"""NACK history: a real aiortc sender, its RTP captured, NACKs for packets long gone."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCRtpSender
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, RtpPacket

from edge.uplink.history import MIN_PACKETS, NackHistory, deepen_history, window_for
from edge.uplink.link_budget import REPAIR_BURST_S, LinkBudget
from tests.support.rtp_sender import H264, FakeDtls, Units

pytestmark = pytest.mark.timeout(30)

async def send(sender: RTCRtpSender, dtls: FakeDtls, n: int) -> None:
    await sender._run_rtp(H264)
    assert len(dtls.sent) == n


async def test_stock_sender_forgets_after_128_packets() -> None:
    # The problem, pinned: at 4 Mbit/s 128 packets are a third of a second.
    dtls = FakeDtls()
    sender = RTCRtpSender(Units(1000), dtls)  # type: ignore[arg-type]
    await send(sender, dtls, 1000)
    old = dtls.sent[100].sequence_number
    await sender._retransmit(old)
    assert len(dtls.sent) == 1000


async def test_deep_history_retransmits_old_packets_and_wraps_rtx() -> None:
    dtls = FakeDtls()
    sender = RTCRtpSender(Units(1000), dtls)  # type: ignore[arg-type]
    history = deepen_history(sender, worst_rtt_ms=600)
    assert history is not None and history.window_s == 1.2
    await send(sender, dtls, 1000)
    assert len(history) == 1000
    original = dtls.sent[100]
    await sender._retransmit(original.sequence_number)
    again = dtls.sent[-1]
    assert len(dtls.sent) == 1001
    assert (again.sequence_number, again.payload) == (original.sequence_number, original.payload)
    # With RTX negotiated the repair goes on its own SSRC, original number first (RFC 4588).
    sender._RTCRtpSender__rtx_payload_type = 103  # type: ignore[attr-defined]
    original = dtls.sent[200]
    await sender._retransmit(original.sequence_number)
    rtx = dtls.sent[-1]
    assert rtx.payload_type == 103 and rtx.ssrc == sender._rtx_ssrc
    assert rtx.payload[:2] == original.sequence_number.to_bytes(2, "big")
    assert rtx.payload[2:] == original.payload
    # A number never sent (or long forgotten) is counted, not answered.
    await sender._retransmit((original.sequence_number - 5000) % 65536)
    assert len(dtls.sent) == 1002 and history.missed == 1 and history.retransmitted == 2


def test_history_forgets_by_age_but_keeps_aiortcs_minimum_and_a_cap() -> None:
    history = NackHistory(window_s=0.05, max_packets=300)
    for seq in range(200):
        history[seq % 128] = RtpPacket(sequence_number=seq)
    time.sleep(0.06)  # let them age past the 0.05 s window (any longer is the same)
    history[0] = RtpPacket(sequence_number=200)
    assert len(history) == MIN_PACKETS and history.get(199) is not None
    assert history.get(0) is None
    for seq in range(201, 1000):
        history[seq % 128] = RtpPacket(sequence_number=seq)
    assert len(history) == 300 and history.get(999) is not None


def test_window_is_two_worst_round_trips_at_least_a_second() -> None:
    assert window_for(100) == 1.0
    assert window_for(1200) == 2.4


async def test_a_changed_aiortc_leaves_the_sender_alone(caplog: pytest.LogCaptureFixture) -> None:
    class Odd:
        pass

    assert deepen_history(Odd(), 600) is None  # type: ignore[arg-type]
    assert "NACK repair stays at aiortc's 128 packets" in caplog.text
    await asyncio.sleep(0)


def nack(sender: RTCRtpSender, *lost: int) -> RtcpRtpfbPacket:
    return RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1234, media_ssrc=sender._ssrc,
                           lost=list(lost))


async def test_a_packet_is_resent_once_per_round_trip_not_once_per_nack() -> None:
    """A browser that only receives assumes 100 ms and NACKs that often; the hop is longer."""
    dtls = FakeDtls()
    sender = RTCRtpSender(Units(300), dtls)  # type: ignore[arg-type]
    history = deepen_history(sender, worst_rtt_ms=600)
    assert history is not None
    await send(sender, dtls, 300)
    rtt = 0.3  # as RTCP receiver reports would have measured it
    sender._RTCRtpSender__rtt = rtt  # type: ignore[attr-defined]
    lost = [p.sequence_number for p in dtls.sent[100:110:3]]  # a scripted loss pattern
    started = time.monotonic()
    rounds = 0
    while rounds < 2:
        for _ in range(3):  # one NACK round: the same losses asked for three times
            await sender._handle_rtcp_packet(nack(sender, *lost))
            await asyncio.sleep(0.02)  # the receiver's NACK pacing, shortened
        rounds += 1
        # The next round comes once a round trip has passed since the first repair.
        await asyncio.sleep(max(0.0, started + rounds * rtt * 1.1 - time.monotonic()))
    resent = [p.sequence_number for p in dtls.sent[300:]]
    assert sorted(resent) == sorted(lost * 2)  # each once per round, not once per NACK
    assert history.retransmitted == 2 * len(lost)
    assert history.suppressed == 2 * 2 * len(lost)


async def test_repairs_stay_within_their_budget() -> None:
    dtls = FakeDtls()
    sender = RTCRtpSender(Units(300), dtls)  # type: ignore[arg-type]
    # Each unit is one packet of ~106 bytes; 4 kbit/s holds four of them a second.
    history = deepen_history(sender, worst_rtt_ms=600,
                             budget=LinkBudget(4000, REPAIR_BURST_S))
    assert history is not None
    await send(sender, dtls, 300)
    lost = [p.sequence_number for p in dtls.sent[:40]]
    await sender._handle_rtcp_packet(nack(sender, *lost))
    assert 1 <= history.retransmitted <= 5
    assert history.over_budget == len(lost) - history.retransmitted
