"""The vehicle's WAN links: probes, the WireGuard tunnel to the centre, and which WAN carries it."""
