"""NACK retransmission history sized for the worst round trip, one sender at a time.

aiortc's :class:`~aiortc.RTCRtpSender` keeps the last ``RTP_HISTORY_SIZE``
(128) packets, keyed by ``seq % 128``: a third of a second at 4 Mbit/s, while
a NACK over a 600 ms satellite hop arrives after more than that, so every
repair request would find nothing. The constant is module-global and baked
into the key, so raising it would change every sender in the process and
grow each history to 65,536 packets.

Instead :func:`deepen_history` changes one sender (ours), and nothing else:

- its history dict is replaced by :class:`NackHistory`, which files each
  packet under its full sequence number (aiortc's ``seq % 128`` key is
  ignored; the packet carries its own number) and forgets packets older than
  the window or beyond a packet cap;
- its ``_retransmit`` is replaced, on that instance only, by one that looks
  the full number up, wrapping in RTX exactly as aiortc does.

Both touch aiortc private attributes (``_RTCRtpSender__rtp_history`` and
friends). :func:`deepen_history` checks they exist and otherwise leaves the
sender as aiortc made it (and says so), so an aiortc upgrade degrades repair
range rather than breaking sessions; the tests pin the behaviour.

Window: a lost packet is NACKed about one round trip after it was sent and,
if the retransmission is lost too, again one round trip later, so the
history covers two worst round trips, and never less than one second.

Storms: a receiver that does not know the round trip (a browser that only
receives has no RTT estimate of its own and assumes 100 ms) repeats its NACK
for a packet every 100 ms until the repair arrives: over a 600 ms hop, six
NACKs for one loss, each answered, and the bursts of repairs overflow the
modem. So a packet is resent at most once per round trip (the sender's RTT
from RTCP receiver reports; half the worst round trip until the first
report): a NACK for a packet resent less than that ago is counted
(``suppressed``), not answered; a repair that was itself lost is asked for
again after the round trip and answered then. Repairs are also held to the
link's repair budget (:mod:`edge.uplink.link_budget`, a share of its
capacity shared by every session): beyond it a NACK is counted
(``over_budget``) and the viewer waits for the next keyframe.
"""

from __future__ import annotations

import logging
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtp import RtpPacket, wrap_rtx
from aiortc.utils import uint16_add

from edge.uplink.link_budget import LinkBudget

log = logging.getLogger(__name__)

MIN_WINDOW_S = 1.0
# A memory bound whatever the bitrate: ~1,200-byte packets, so ~10 MB a viewer.
MAX_PACKETS = 8192
MIN_PACKETS = 128  # never less than aiortc's own
_PRIVATE = ("_RTCRtpSender__rtp_history", "_RTCRtpSender__rtx_payload_type",
            "_RTCRtpSender__rtx_sequence_number", "_RTCRtpSender__rtp_header_extensions_map",
            "_RTCRtpSender__rtt")


def window_for(worst_rtt_ms: int) -> float:
    return max(MIN_WINDOW_S, 2 * worst_rtt_ms / 1000)


class NackHistory:
    """Sent packets by full sequence number, for `window_s`, at most `max_packets`.

    Quacks like the dict aiortc keeps: ``history[key] = packet`` (the key is
    ignored) and ``history.get(seq)``.
    """

    def __init__(self, window_s: float, max_packets: int = MAX_PACKETS,
                 budget: LinkBudget | None = None) -> None:
        self.window_s = window_s
        self.max_packets = max(MIN_PACKETS, max_packets)
        self._packets: OrderedDict[int, tuple[float, RtpPacket]] = OrderedDict()
        self._resent: dict[int, float] = {}  # seq → when we last resent it
        self.rtt_fallback_s = window_s / 4  # half the worst round trip
        self.budget = budget
        # Told of every packet as it is sent (edge.uplink.redundancy listens).
        self.on_sent: Callable[[RtpPacket], None] | None = None
        self.retransmitted = 0
        self.missed = 0
        self.suppressed = 0
        self.over_budget = 0

    def __setitem__(self, _key: int, packet: RtpPacket) -> None:
        now = time.monotonic()
        seq = packet.sequence_number
        self._packets.pop(seq, None)
        self._packets[seq] = (now, packet)
        horizon = now - self.window_s
        while self._packets:
            oldest_seq, (sent, _) = next(iter(self._packets.items()))
            if len(self._packets) > self.max_packets or (
                    sent < horizon and len(self._packets) > MIN_PACKETS):
                del self._packets[oldest_seq]
                self._resent.pop(oldest_seq, None)
            else:
                break
        if self.on_sent is not None:
            self.on_sent(packet)

    def get(self, seq: int, default: RtpPacket | None = None) -> RtpPacket | None:
        item = self._packets.get(seq)
        return item[1] if item is not None else default

    def may_resend(self, seq: int, size: int, rtt_s: float | None) -> bool:
        """Whether to answer a NACK for `seq` (`size` bytes) now; counts the refusals."""
        now = time.monotonic()
        last = self._resent.get(seq)
        if last is not None and now - last < (rtt_s or self.rtt_fallback_s):
            self.suppressed += 1
            return False
        if self.budget is not None and not self.budget.try_take(size * 8):
            self.over_budget += 1
            return False
        self._resent[seq] = now
        return True

    def __len__(self) -> int:
        return len(self._packets)

    def __iter__(self) -> Iterator[int]:
        return iter(self._packets)

    @property
    def span_s(self) -> float:
        """How far back the history reaches now."""
        if not self._packets:
            return 0.0
        return time.monotonic() - next(iter(self._packets.values()))[0]


async def _retransmit(self: RTCRtpSender, sequence_number: int) -> None:
    # aiortc's RTCRtpSender._retransmit, with the lookup by full sequence number.
    history: NackHistory = self._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
    packet = history.get(sequence_number)
    if packet is None:
        history.missed += 1
        return
    rtt: float | None = self._RTCRtpSender__rtt  # type: ignore[attr-defined]
    if not history.may_resend(sequence_number, len(packet.payload), rtt):
        return
    history.retransmitted += 1
    await send_again(self, packet)


async def send_again(sender: RTCRtpSender, packet: RtpPacket) -> None:
    """Send `packet` once more, in RTX when negotiated, exactly as aiortc repairs.

    Only for a sender :func:`deepen_history` accepted (it checked the private
    attributes this reads).
    """
    rtx_pt = sender._RTCRtpSender__rtx_payload_type  # type: ignore[attr-defined]
    if rtx_pt is not None:
        rtx_seq = sender._RTCRtpSender__rtx_sequence_number  # type: ignore[attr-defined]
        packet = wrap_rtx(packet, payload_type=rtx_pt, sequence_number=rtx_seq,
                          ssrc=sender._rtx_ssrc)
        sender._RTCRtpSender__rtx_sequence_number = uint16_add(  # type: ignore[attr-defined]
            rtx_seq, 1)
    extensions = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    await sender.transport._send_rtp(packet.serialize(extensions))


def deepen_history(sender: RTCRtpSender, worst_rtt_ms: int, max_packets: int = MAX_PACKETS,
                   budget: LinkBudget | None = None) -> NackHistory | None:
    """Give `sender` a history of two worst round trips; None if aiortc changed shape."""
    if not all(hasattr(sender, name) for name in _PRIVATE) or not hasattr(sender, "_retransmit"):
        log.warning("aiortc %s has no RTCRtpSender history we know; NACK repair stays at "
                    "aiortc's 128 packets", _aiortc_version())
        return None
    history = NackHistory(window_for(worst_rtt_ms), max_packets, budget)
    sender._RTCRtpSender__rtp_history = history  # type: ignore[attr-defined]
    sender._retransmit = types.MethodType(_retransmit, sender)  # type: ignore[method-assign]
    return history


def _aiortc_version() -> Any:
    import aiortc

    return getattr(aiortc, "__version__", "?")
