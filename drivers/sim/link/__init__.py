"""Link emulator: network namespaces joined by emulated WANs (`edge sim link`).

- :mod:`~drivers.sim.link.profile`: what a link does (`LinkProfile`, the named `PROFILES`);
- :mod:`~drivers.sim.link.path`: one direction doing it to packets (`Path`, `PathCounters`);
- :mod:`~drivers.sim.link.world`: the namespaces, TUN pairs, addresses and routes (`World`);
- :mod:`~drivers.sim.link.emulator`: the relay between the TUNs (`Emulator`);
- :mod:`~drivers.sim.link.script`: outage scripts; :mod:`~drivers.sim.link.runner`: the CLI's run.

Nothing is re-exported here, so that `edge` can read the profiles for its argument
parser without importing pyroute2.
"""
