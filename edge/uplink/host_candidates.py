"""Which of the vehicle's addresses a WHEP session offers the viewer as ICE host candidates.

aioice gathers a host candidate on every address of the machine. On a vehicle that is
every WAN's address as well as the tunnel's: a centre that can reach a WAN address
(they are public on purpose: the probes and the tunnel arrive there) pairs with it,
and its media then leaves outside the tunnel and dies with that WAN instead of
following the tunnel to the other one (seen in `edge bench failover`: Chromium in
the centre nominated the 4G address).

A viewer's session offers only the address the viewer reached the uplink at, when
that is one of the machine's host addresses: a centre that came through the tunnel
gets the tunnel's address, a laptop on the vehicle's LAN its LAN address. Otherwise
(the loopback address, which aioice never gathers; or an address we cannot tell)
it offers every address, as aioice does. :func:`offer_only` replaces, on one aioice
``Connection`` only (ours), its ``gather_candidates`` with the same gathering over
the one address; server-reflexive and relay candidates (STUN, TURN) still come from
that address's socket, as aioice makes them.
"""

from __future__ import annotations

import logging
from typing import Any

from aioice.ice import Connection, get_host_addresses

log = logging.getLogger(__name__)


def chosen_address(local: str | None) -> str | None:
    """The one address to offer for a viewer who reached us at `local`, or None (all)."""
    if not local:
        return None
    hosts = get_host_addresses(use_ipv4=True, use_ipv6=True)
    return local if local in hosts else None


def offer_only(connection: Any, address: str) -> bool:
    """Make `connection` (aioice's) gather host candidates on `address` alone. False (and
    nothing changed) when it is not the aioice connection this was written against."""
    if not isinstance(connection, Connection) or not hasattr(connection, "_local_candidates"):
        return False

    async def gather_candidates() -> None:
        # aioice 0.13's own gathering, over the one address.
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in connection._components:
            connection._local_candidates += await connection.get_component_candidates(
                component=component, addresses=[address])
        connection._local_candidates_end = True

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]
    return True
