"""Every media packet sent twice to a far viewer, so that a loss costs no round trip.

Over a satellite hop a lost packet freezes the picture for a round trip
(600 ms and more) while the NACK goes out and the repair comes back: at 0.5%
random loss the sub stream froze 9-11% of the time although every loss was
repaired. Forward error correction is the cure; the formats Chromium
negotiates need work on both ends that aiortc has none of:

- ``red`` + ``ulpfec`` (RFC 2198, RFC 5109): every media packet wrapped in a
  RED header, XOR parity packets over groups of them. About 10-30% overhead,
  but a receiver must unwrap RED, which aiortc's cannot (our bench viewer and
  any aiortc centre), and ULPFEC repairs one loss per group only;
- ``flexfec-03``: behind a field trial in Chromium, not on by default.

What every WebRTC receiver already takes is RTX (RFC 4588), negotiated for
NACK repair: a receiver unwraps an RTX packet whether or not it asked for it,
and keeps the first copy of a sequence number it gets. So a far viewer gets
each media packet again in RTX, :data:`DELAY_S` after the original (a
repetition code, the simplest FEC): a packet is lost only if both copies
are, 0.0025% at 0.5% random loss, and repair takes 30 ms instead of a round
trip. The price is the stream's bit rate once more: affordable for the sub
stream (~0.5 Mbit/s) on a 4 Mbit/s satellite uplink, not for main. Copies
draw from the link's repair budget (:mod:`edge.uplink.link_budget`) and
leave half of it to NACK repairs, which come first: a copy the budget cannot
take is skipped (counted), and NACK repairs the loss as before.

On by ``[uplink] redundancy``: ``"auto"`` (the default) for viewers whose
round trip says satellite (:data:`~edge.uplink.streams.SATELLITE_RTT_MS`),
``"always"``, or ``"off"`` (a metered link where data costs more than
freezes). It costs satellite data: the viewer page and the session JSON show
it (``copies``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from aiortc import RTCRtpSender
from aiortc.rtp import RtpPacket

from edge.uplink.history import NackHistory, send_again
from edge.uplink.link_budget import LinkBudget

log = logging.getLogger(__name__)

# Later than a burst of a frame's packets leaving together, soon enough that
# the copy arrives long before a NACK round trip could have repaired the loss.
DELAY_S = 0.03
# Of the repair budget: what copies leave to NACK repairs.
NACK_RESERVE = 0.5
# A copy that could not leave within this is no use any more (the viewer's
# NACK is on its way) and a queue that long means the loop is starved.
STALE_S = 0.25


class Redundancy:
    """Copies of `sender`'s media packets in RTX, while `enabled`."""

    def __init__(self, sender: RTCRtpSender, history: NackHistory,
                 budget: LinkBudget | None, name: str = "") -> None:
        self.sender = sender
        self.budget = budget
        self.name = name
        self.enabled = False
        self.copies = 0
        self.skipped = 0  # no budget, or too late
        self._due: deque[tuple[float, RtpPacket]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        history.on_sent = self._sent

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"redundancy-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._due.clear()

    def _sent(self, packet: RtpPacket) -> None:
        if self.enabled and self._task is not None:
            self._due.append((time.monotonic() + DELAY_S, packet))
            self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, packet = self._due[0]
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            self._due.popleft()
            size = len(packet.payload) * 8
            if now - due > STALE_S or not (
                    self.budget is None or self.budget.try_take(size, reserve=NACK_RESERVE)):
                self.skipped += 1
                continue
            try:
                await send_again(self.sender, packet)
            except ConnectionError as e:  # the transport closed under us: the session ends
                log.debug("redundancy %s: %s", self.name, e)
                return
            self.copies += 1
