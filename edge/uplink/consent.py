"""ICE consent freshness that survives a satellite round trip, one connection at a time.

RFC 7675 has each side re-check every ~5 s that its peer still wants the
media, and stop sending once no check has been answered for 30 s. aioice
0.13 sends each check once (``retransmissions=0``) and gives up on it after
its initial RTO of 0.5 s, then closes the connection after six failed checks
in a row. Over a link whose round trip is beyond 0.5 s (a geostationary
satellite hop is ~600 ms) every check "fails" although every answer arrives,
and every session dies about 30 s after it connected.

:func:`sustain_consent` replaces, on one aioice ``Connection`` only (ours),
its ``query_consent`` coroutine with one that follows the RFC:

- each check is a STUN transaction with retransmissions (RFC 5389
  section 7.2.1), so a response that comes back after any number of RTOs
  within the transaction's life counts, and a lost request or response is
  sent again;
- consent expires when no check has been answered for
  :data:`CONSENT_TIMEOUT_S` (the RFC's 30 s), measured in time, not counted
  in failures.

It touches aioice private attributes (``_nominated``, ``build_request``,
``remote_password``, ``query_consent``). If any is missing (a new aioice),
the connection is left as aioice made it and a warning is logged, as
:mod:`edge.uplink.history` does for aiortc's NACK history. The proper fix
belongs upstream in aioice: retransmit consent checks and expire by time.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import types
from typing import Any

from aioice import stun

log = logging.getLogger(__name__)

CONSENT_INTERVAL_S = 5.0  # RFC 7675 section 5.1: 4-6 s, randomised
CONSENT_TIMEOUT_S = 30.0  # RFC 7675 section 5.1
# Retransmissions per check: aioice's RTO starts at 0.5 s and doubles, so the
# transaction lives 0.5 * (2**(n+1) - 1) s: 7.5 s for 3, enough for any round
# trip a vehicle will see and shorter than the consent timeout.
CHECK_RETRANSMISSIONS = 3
_PRIVATE = ("query_consent", "_nominated", "build_request", "remote_password", "close")


async def _query_consent(self: Any) -> None:
    """RFC 7675 consent freshness, bound to one aioice Connection as `self`."""
    answered = time.monotonic()
    while True:
        await asyncio.sleep(CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request, pair.remote_addr,
                    integrity_key=self.remote_password.encode("utf8"),
                    retransmissions=CHECK_RETRANSMISSIONS)
                answered = time.monotonic()
            except stun.TransactionError:
                pass
        if time.monotonic() - answered > CONSENT_TIMEOUT_S:
            log.info("ICE consent expired: no check answered for %.0f s", CONSENT_TIMEOUT_S)
            self._query_consent_task = None
            await self.close()
            return


def sustain_consent(connection: Any) -> bool:
    """Give one aioice Connection RFC 7675 consent checks; False if it cannot be done.

    Call it before the connection connects (its consent task starts then).
    """
    missing = [name for name in _PRIVATE if not hasattr(connection, name)]
    if missing:
        log.warning("cannot adapt ICE consent checks to long round trips (aioice lacks %s): "
                    "sessions over links beyond 500 ms RTT will close after ~30 s",
                    ", ".join(missing))
        return False
    connection.query_consent = types.MethodType(_query_consent, connection)
    return True
