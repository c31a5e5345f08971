"""`edge run links`: the vehicle's WAN links, the tunnel to the centre, and which WAN carries it.

**Probes.** One :class:`~edge.links.prober.LinkProber` per ``[[links]]`` entry with an
``interface``: bound to that interface and to its address (``source``, else the
interface's first IPv4 address), 10 probes a second to the centre's responder
(``[centre] address``, ``probe_port``), outside the tunnel. Throughput and the data a
metered link used come from its interface counters, read once a second.

**The tunnel.** With ``[centre.tunnel]``, a :class:`~edge.links.wireguard.WireGuardTunnel`
to the centre, its own UDP packets marked with ``fwmark`` and routed by a
:class:`~edge.links.steering.Steering` rule onto the WAN the policy
(:mod:`edge.links.policy`) chooses. A switch is ``steer`` then ``rebind``: the route
alone is not enough while the old WAN still delivers, because wireguard-go sends from
where the centre's last packet came in ("sticky" source) and the centre's packets still
in flight on the old WAN would pin it there; a new local port forgets that. When the
old WAN is already dead the route alone would do; the rebind does no harm.
If wireguard-go stops, the tunnel is opened again (after 1 s, doubling to 60 s).

**Published.** ``link/<id>/status`` (:class:`LinkStatus`) for every configured link at
1 Hz and at once on a change of state, of the tunnel's WAN or of a force. A link that
cannot be measured (no interface here, no address, a probe socket that cannot be made)
is ``unknown`` with ``detail`` ``"unmeasurable: <why>"``; while the tunnel cannot run,
every status's detail says ``"tunnel not running: <why>"``. Alerts on
``alert/links``: a link down or back up, the tunnel moved (from, to, why), a forced
link that is down, a budget at 80% and 100%, the tunnel unable to run.

**Commands.** :class:`LinkCommand` requests to ``links``: ``force`` (the tunnel stays on
that link until ``release``), ``release``, ``new_incident`` (incident budgets count from
zero); answered with a :class:`Reply` and told to everyone on ``event/command``.

**Budgets** (:mod:`edge.links.budget`) are kept in ``links-budget.json`` in
``$STATE_DIRECTORY`` (systemd's ``StateDirectory=edge``: ``/var/lib/edge``), else in the
folder holding the recordings directory, which with the default ``[recorder] path`` is
that same ``/var/lib/edge``, and for a demo its private runtime dir: one place either
way, and no new config key for a file nobody edits.

**Without root** nothing crashes: the probes run if the kernel lets an unprivileged
socket bind to an interface (Linux 5.7 and later), else their links are unmeasurable
with the reason; the tunnel is reported as not running with the reason
(:func:`~edge.links.wireguard.tunnel_preflight`'s), in each status and in health.

**Config errors**, one line and exit 2 before anything runs: a link whose interface
does not exist here, an unreadable or malformed tunnel key, links with interfaces but no
``[centre]``, a centre that is not IPv4 while a tunnel is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import AsyncIPRoute, NetlinkError

from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    LINK_ACTIONS,
    Alert,
    CommandEvent,
    LinkCommand,
    LinkStateName,
    LinkStatus,
    Message,
    Reply,
    Severity,
)
from edge.config import ConfigError, SecretRef, WanLinkConfig
from edge.links import budget
from edge.links.counters import InterfaceCounters, Throughput
from edge.links.policy import Choice, LinkPolicy
from edge.links.probe_stats import LinkSnapshot, ProbeSettings
from edge.links.prober import LinkProber
from edge.links.steering import Steering, SteeringError, Wan
from edge.links.wireguard import (
    PeerSpec,
    TunnelError,
    TunnelSpec,
    WireGuardTunnel,
    tunnel_preflight,
)
from edge.recorder.layout import recordings_dir
from edge.runtime.service import Service, ServiceContext

SOURCE = "links"  # alerts' source
STATUS_EVERY_S = 1.0
# The shortest sleep of the control loop: a failback already due never makes it spin.
MIN_WAIT_S = 0.02
SAVE_EVERY_S = 10.0
TUNNEL_CHECK_S = 1.0
TUNNEL_RETRY_FIRST_S = 1.0
TUNNEL_RETRY_MAX_S = 60.0
TUNNEL_STABLE_S = 60.0
_USABLE: tuple[LinkStateName, ...] = ("up", "degraded")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def budget_file(ctx: ServiceContext) -> Path:
    """Where the budgets are kept (see the module's doc for why there)."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / budget.FILE_NAME
    return recordings_dir(ctx.config.recorder, ctx.config_dir).parent / budget.FILE_NAME


@dataclass(eq=False)
class _Link:
    cfg: WanLinkConfig
    index: int
    prober: LinkProber | None = None
    counters: InterfaceCounters | None = None
    source: str | None = None
    #: why this link cannot be measured at all (None: it can, or it has no interface)
    unmeasurable: str | None = None
    throughput: Throughput | None = None
    reported: LinkStateName = "unknown"  # the state last told (for the alerts)

    @property
    def id(self) -> str:
        return self.cfg.id


class LinksService(Service):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        cfg = ctx.config
        self.links = {link.id: _Link(link, i) for i, link in enumerate(cfg.links)}
        self.centre = cfg.centre
        # Why a link has no interface: a link the demo would emulate but could not (no
        # root) says so in its status, not only on the demo's terminal.
        self.no_interface = {link_id: "no interface on this vehicle" for link_id in self.links}
        emulated = {s.link for s in cfg.demo.sim_links} & {
            link.id for link in self.links.values() if not link.cfg.interface}
        if emulated:
            from drivers.sim.link.world import preflight

            why = preflight()
            for link_id in emulated if why else ():
                self.no_interface[link_id] = f"not emulated: the demo {why}"
        measured = [link for link in self.links.values() if link.cfg.interface]
        if measured and self.centre is None:
            names = ", ".join(link.id for link in measured)
            raise self._config_error(f"centre: links {names} have interfaces to probe, "
                                     "but there is no [centre] (its address and probe port)")
        for link in measured:
            try:
                socket.if_nametoindex(link.cfg.interface)
            except OSError:
                raise self._config_error(
                    f'links[{link.index}].interface: no interface "{link.cfg.interface}" on '
                    "this machine") from None
        policy = cfg.link_policy
        self.settings = ProbeSettings(down_after_s=policy.down_after_ms / 1000,
                                      up_after=policy.up_after)
        self.policy = LinkPolicy([])  # the links that can carry the tunnel, once probed
        self.tunnel = self._tunnel()
        self.steering: Steering | None = None
        self.tunnel_running = False
        self.tunnel_problem: str | None = None
        self.steered: str | None = None  # the WAN our route sends the tunnel over
        self.choice = Choice(None, "starting")
        self._forced_down_told = False
        self.book = budget.BudgetBook(
            {link.id: budget.Budget(link.cfg.budget_mb_per_day, link.cfg.budget_mb_per_incident)
             for link in measured}, day=dt.date.today(), now_ns=time.time_ns())
        self.budget_path = budget_file(ctx)
        self._changed = asyncio.Event()
        self._decide_lock = asyncio.Lock()
        self._tunnel_lock = asyncio.Lock()
        #: lasting problems already alerted, by kind ("tunnel", "move", "budget"): each
        #: is said once, and again only if it changes
        self._told: dict[str, str] = {}

    # -- config --------------------------------------------------------------------------
    def _config_error(self, problem: str) -> ConfigError:
        return ConfigError(str(self.ctx.config_path), [problem])

    def _secret(self, ref: SecretRef, where: str) -> str:
        # a few bytes read once at start-up, before the service runs
        try:
            return ref.read_text(self.ctx.config_dir)
        except ConfigError as e:
            raise self._config_error(f"{where}: {e.path}: {'; '.join(e.problems)}") from None

    def _tunnel(self) -> WireGuardTunnel | None:
        centre = self.centre
        t = centre.tunnel if centre is not None else None
        if centre is None or t is None:
            return None
        if ipaddress.ip_address(centre.address).version != 4:
            raise self._config_error(f'centre.address: "{centre.address}": the tunnel is '
                                     "steered between WANs for IPv4 only")
        private = self._secret(t.private_key, "centre.tunnel.private_key")
        public = self._secret(t.centre_public_key, "centre.tunnel.centre_public_key")
        network = ipaddress.ip_interface(t.address).network
        allowed = [str(network)]
        if ipaddress.ip_address(t.centre_address) not in network:
            allowed.append(f"{t.centre_address}/{network.max_prefixlen}")
        spec = TunnelSpec(t.interface, private, (t.address,), fwmark=t.fwmark, peers=(
            PeerSpec(public, tuple(allowed), endpoint=(centre.address, t.port),
                     persistent_keepalive_s=t.keepalive_s, name="centre"),))
        try:
            return WireGuardTunnel(spec)
        except ValueError as e:
            raise self._config_error(f"centre.tunnel: {e}") from None

    # -- running -------------------------------------------------------------------------
    async def run(self) -> None:
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._resolve_sources()
            self._start_probes()
            self._make_policy()
            self._make_steering()
            if self.book.metered:
                problem = await asyncio.to_thread(budget.load, self.budget_path, self.book,
                                                  day=dt.date.today())
                if problem is not None:
                    self._problem("budget", "warning", problem)
            for link in self.links.values():
                if link.prober is None:  # said once here; its status says it every second
                    self.ctx.log.log(logging.WARNING if link.cfg.interface else logging.INFO,
                                     "link %s: %s", link.id, self._state(link)[1])
            tasks.append(asyncio.create_task(self._control_loop(), name="links-control"))
            if self.tunnel is not None:
                tasks.append(asyncio.create_task(self._keep_tunnel(), name="links-tunnel"))
            self.ctx.bus.serve(topics.LINKS_SERVICE, self._handle)
            probed = sum(1 for link in self.links.values() if link.prober is not None)
            self.ctx.ready(f"probing {probed} of {len(self.links)} link(s)"
                           + ("" if self.tunnel is None else f"; tunnel {self.tunnel.ifname}"))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            # A task of its own: this one is being cancelled (that is how a service is
            # stopped), and the prober's close() would take that as its own cancellation
            # and stop half way, leaving wireguard-go and our rule behind.
            await asyncio.shield(self._close())

    async def _close(self) -> None:
        for link in self.links.values():
            if link.prober is not None:
                await link.prober.close()
            if link.counters is not None:
                link.counters.close()
        if self.tunnel is not None:
            await self.tunnel.close()
        if self.steering is not None:
            await self.steering.close()
        self.tunnel_running = False
        if self.book.metered and self.book.dirty:
            await self._save_budget()

    async def _resolve_sources(self) -> None:
        """Each probed link's source address: `source`, else its interface's first IPv4."""
        wanted = [link for link in self.links.values() if link.cfg.interface]
        for link in wanted:
            link.source = link.cfg.source or None
        missing = [link for link in wanted if link.source is None]
        if not missing:
            return
        try:
            async with AsyncIPRoute() as ipr:
                for link in missing:
                    link.source = await self._first_ipv4(ipr, link.cfg.interface)
                    if link.source is None:
                        link.unmeasurable = (f"{link.cfg.interface} has no IPv4 address "
                                             "(give the link a `source`, or start the "
                                             "service once the interface has one)")
        except (OSError, NetlinkError) as e:
            for link in missing:
                link.unmeasurable = f"cannot read {link.cfg.interface}'s addresses: {e}"

    @staticmethod
    async def _first_ipv4(ipr: AsyncIPRoute, interface: str) -> str | None:
        found = await ipr.link_lookup(ifname=interface)
        if not found:
            return None
        async for addr in await ipr.addr("dump", index=found[0], family=socket.AF_INET):
            local = addr.get("IFA_LOCAL") or addr.get("IFA_ADDRESS")
            if local:
                return str(local)
        return None

    def _start_probes(self) -> None:
        centre = self.centre
        rate = self.ctx.config.link_policy.probe_rate_hz
        for link in self.links.values():
            if not link.cfg.interface:
                continue
            link.counters = InterfaceCounters(link.cfg.interface)
            if link.unmeasurable is not None:
                continue
            assert centre is not None  # checked at start: interfaces need a centre
            try:
                link.prober = LinkProber(link.id, (centre.address, centre.probe_port),
                                         source=link.source, interface=link.cfg.interface,
                                         rate_hz=rate, settings=self.settings,
                                         on_change=self._on_probe_change)
            except ValueError as e:
                raise self._config_error(f"links[{link.index}]: {e}") from None
            link.prober.start()

    def _make_policy(self) -> None:
        """Only links that are probed may carry the tunnel: the others are never up."""
        policy = self.ctx.config.link_policy
        carriers = [link.id for link in self.links.values() if link.prober is not None]
        self.policy = LinkPolicy(carriers, prefer=[p for p in policy.prefer if p in carriers],
                                 failback_after_s=policy.failback_after_s)

    def _make_steering(self) -> None:
        if self.tunnel is None:
            return
        t = self.centre.tunnel if self.centre is not None else None
        assert t is not None
        wans = [Wan(link.id, link.cfg.interface, link.cfg.gateway or None, link.source)
                for link in self.links.values()
                if link.prober is not None and link.source is not None]
        if not wans:
            self.tunnel_problem = "no link can carry it (none has an interface and an address)"
            return
        try:
            self.steering = Steering(t.fwmark, wans, table=t.table)
        except ValueError as e:
            raise self._config_error(f"links: {e}") from None

    def _on_probe_change(self, snapshot: LinkSnapshot) -> None:
        self._changed.set()

    # -- the loop: states, the policy, statuses ------------------------------------------
    async def _control_loop(self) -> None:
        next_tick = time.monotonic()
        last_save = time.monotonic()
        while True:
            # woken by a prober's change of state, the next status tick, or a failback
            # falling due
            due = self.policy.next_check(time.monotonic())
            wake = next_tick if due is None else min(next_tick, due)
            wait = max(MIN_WAIT_S, wake - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()
            self._changed.clear()
            changed = self._note_states()
            moved = await self._decide()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = max(next_tick + STATUS_EVERY_S, now)  # never a burst after a stall
                crossed = await self._sample_counters()
                self._publish_all()
                if self.book.metered and self.book.dirty and (
                        crossed or now - last_save >= SAVE_EVERY_S):
                    last_save = now
                    await self._save_budget()
            elif changed or moved:
                self._publish_all()

    def _state(self, link: _Link) -> tuple[LinkStateName, str]:
        """(state, detail) of a link as its status says it."""
        if not link.cfg.interface:
            return "unknown", f"unmeasurable: {self.no_interface[link.id]}"
        if link.unmeasurable is not None:
            return "unknown", f"unmeasurable: {link.unmeasurable}"
        assert link.prober is not None
        snap = link.prober.snapshot()
        if link.prober.local_address is None and snap.received == 0 and snap.error:
            return "unknown", f"unmeasurable: {snap.error}"  # no socket, ever
        if snap.state == "unknown":
            return "unknown", "waiting for the centre to answer the first probes"
        if snap.state == "down":
            if snap.error:
                return "down", snap.error
            if snap.last_reply_age_s is None:
                return "down", "no answer from the centre since the start"
            return "down", f"no answer from the centre for {snap.last_reply_age_s:.1f} s"
        return snap.state, ""

    def _note_states(self) -> bool:
        """Alert on links that went down or came back; True if any state changed."""
        changed = False
        for link in self.links.values():
            state, detail = self._state(link)
            was, link.reported = link.reported, state
            if state == was:
                continue
            changed = True
            if state == "down":
                self._alert("warning", f"link {link.id} is down: {detail}")
            elif was == "down" and state in _USABLE:
                self._alert("notice", f"link {link.id} is back {state}")
            else:
                self.ctx.log.info("link %s: %s -> %s", link.id, was, state)
        return changed

    async def _decide(self) -> bool:
        """Apply the policy; True if the tunnel moved."""
        async with self._decide_lock:
            states = {link.id: link.reported for link in self.links.values()}
            choice = self.choice = self.policy.choose(states, time.monotonic())
            if choice.forced_down and not self._forced_down_told:
                self._forced_down_told = True
                self._alert("error", f"link {choice.link} is {states.get(str(choice.link))} "
                                     f"but forced by {self.policy.forced_by or 'a commander'}"
                                     ": the tunnel stays on it until the force is released")
            elif not choice.forced_down:
                self._forced_down_told = False
            if (choice.link is None or choice.link == self.steered or not self.tunnel_running
                    or self.steering is None or self.tunnel is None or self.centre is None):
                return False
            old = self.steered
            async with self._tunnel_lock:
                if not self.tunnel_running:
                    return False
                try:
                    await self.steering.steer(choice.link, self.centre.address)
                    self.steered = choice.link
                    await self.tunnel.rebind()
                except (SteeringError, TunnelError, ValueError) as e:
                    self._problem("move", "error", f"cannot move the tunnel to "
                                                   f"{choice.link}: {e}")
                    return self.steered != old
            self._told.pop("move", None)
            if old is None:
                self.ctx.log.info("tunnel over %s: %s", choice.link, choice.reason)
            else:
                # a failover (the old link failed) is news; a failback or a force is routine
                failed = states.get(old) not in _USABLE
                self._alert("warning" if failed else "notice",
                            f"tunnel moved from {old} to {choice.link}: {choice.reason}")
            return True

    async def _sample_counters(self) -> bool:
        """Each interface's throughput, and the budgets; True if a budget threshold was
        crossed."""
        crossed = False
        today = dt.date.today()
        self.book.roll(today)
        for link in self.links.values():
            if link.counters is None:
                continue
            link.throughput = t = await link.counters.sample()
            for crossing in self.book.count(link.id, t.rx_total + t.tx_total, today):
                crossed = True
                self._alert("error" if crossing.pct >= 100 else "warning", crossing.text())
        return crossed

    async def _save_budget(self) -> None:
        try:
            await asyncio.to_thread(budget.save, self.budget_path, self.book.to_json())
        except OSError as e:
            self.book.dirty = True
            self._problem("budget", "warning", f"cannot save the budget file "
                                               f"{self.budget_path}: {e.strerror or e}")
        else:
            self._told.pop("budget", None)

    def _publish_all(self) -> None:
        for link in self.links.values():
            self.ctx.bus.publish(topics.link_status(link.id), self.status(link))

    def status(self, link: _Link) -> LinkStatus:
        state, detail = self._state(link)
        parts = [detail] if detail else []
        forced = self.policy.forced == link.id
        if forced:
            by = f" by {self.policy.forced_by}" if self.policy.forced_by else ""
            parts.append(f"forced{by}" + (f", but {state}" if state not in _USABLE else ""))
        if self.tunnel is not None and not self.tunnel_running and self.tunnel_problem:
            parts.append(f"tunnel not running: {self.tunnel_problem}")
        snap = link.prober.snapshot() if link.prober is not None and state != "unknown" \
            else None
        t = link.throughput
        use = self.book.usage(link.id)
        return LinkStatus(
            link_id=link.id, name=link.cfg.name, kind=link.cfg.kind, state=state,
            detail="; ".join(parts),
            rtt_ms=_round(snap.rtt_ms) if snap else None,
            rtt_p95_ms=_round(snap.rtt_p95_ms) if snap else None,
            jitter_ms=_round(snap.jitter_ms) if snap else None,
            loss_pct=_round(snap.loss_pct) if snap else None,
            tx_kbps=_round(t.tx_bps / 1000) if t is not None and t.tx_bps is not None else None,
            rx_kbps=_round(t.rx_bps / 1000) if t is not None and t.rx_bps is not None else None,
            active=self.tunnel_running and self.steered == link.id,
            forced=forced,
            used_today_mb=_round(use.used_today_mb, 3) if use else None,
            budget_today_mb=use.budget_today_mb if use else None,
            used_incident_mb=_round(use.used_incident_mb, 3) if use else None,
            budget_incident_mb=use.budget_incident_mb if use else None)

    # -- the tunnel ----------------------------------------------------------------------
    async def _keep_tunnel(self) -> None:
        """Open the tunnel, watch it, and open it again if wireguard-go stops: after
        1 s, doubling to 60 s while it keeps failing (back to 1 s once it has run for
        a minute), so a crashing wireguard-go is not restarted in a tight loop."""
        assert self.tunnel is not None
        delay = TUNNEL_RETRY_FIRST_S
        opened_at = 0.0
        while True:
            if not self.tunnel_running:
                problem = await self._open_tunnel()
                if problem is not None:
                    self._tunnel_down(problem)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, TUNNEL_RETRY_MAX_S)
                    continue
                opened_at = time.monotonic()
                if self.tunnel_problem is not None:
                    self._alert("notice", f"the tunnel to the centre runs again "
                                          f"({self.tunnel.ifname})")
                else:
                    self.ctx.log.info("tunnel %s open", self.tunnel.ifname)
                self.tunnel_problem = None
                self._told.pop("tunnel", None)
                self._changed.set()  # the policy puts it on a WAN now
            await asyncio.sleep(TUNNEL_CHECK_S)
            try:
                async with self._tunnel_lock:
                    await self.tunnel.peers()
                continue
            except TunnelError as e:
                async with self._tunnel_lock:
                    self.tunnel_running = False
                    self.steered = None
                    await self.tunnel.close()
                self._tunnel_down(f"wireguard-go stopped ({e})")
            if time.monotonic() - opened_at >= TUNNEL_STABLE_S:
                delay = TUNNEL_RETRY_FIRST_S
            await asyncio.sleep(delay)
            delay = min(delay * 2, TUNNEL_RETRY_MAX_S)

    async def _open_tunnel(self) -> str | None:
        """Open the steering rule and the tunnel; None, or why they cannot run."""
        assert self.tunnel is not None
        if self.steering is None:
            return self.tunnel_problem or "no link can carry it"
        why = tunnel_preflight(self.tunnel.binary)
        if why is not None:
            return why
        async with self._tunnel_lock:
            try:
                await self.steering.open()
                await self.tunnel.open()
            except (SteeringError, TunnelError, OSError) as e:
                await self.tunnel.close()
                await self.steering.close()
                return str(e) or type(e).__name__
            self.tunnel_running = True
            self.steered = None  # a new wireguard-go: put it on the chosen WAN again
        return None

    def _tunnel_down(self, problem: str) -> None:
        if problem != self.tunnel_problem:
            self.tunnel_problem = problem
            self._publish_all()  # at once: no link carries the tunnel any more
        self._problem("tunnel", "error", f"the tunnel to the centre cannot run: {problem}")

    # -- alerts --------------------------------------------------------------------------
    def _alert(self, severity: Severity, text: str) -> None:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(severity, logging.INFO)
        self.ctx.log.log(level, "%s", text)
        self.ctx.bus.publish(topics.alert(SOURCE), Alert(severity=severity, source=SOURCE,
                                                         text=text))

    def _problem(self, kind: str, severity: Severity, text: str) -> None:
        """An alert for a lasting problem of `kind`: once, and again only if it changes."""
        if self._told.get(kind) == text:
            return
        self._told[kind] = text
        self._alert(severity, text)

    @property
    def budget_problem(self) -> str | None:
        return self._told.get("budget")

    # -- commands ------------------------------------------------------------------------
    async def _handle(self, env: Envelope) -> Message:
        started = time.monotonic()
        req = env.message
        if not isinstance(req, LinkCommand):
            return Reply(status="error", detail=f"expected a link.command request, got "
                                                f"{env.header.type}")
        action = req.action.strip().lower()
        try:
            reply = await self._answer(action, req.link_id.strip(), env.header.source)
        except Exception as e:  # the caller gets a reason, never a traceback
            self.ctx.log.exception("%s failed", action)
            reply = Reply(status="error", detail=f"internal error: {type(e).__name__}: {e}")
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        self.ctx.log.info("%s by %s: %s (%s)", f"{action} {req.link_id}".strip(),
                          env.header.source, reply.status, reply.detail)
        # everyone hears what was done (a second console, the recorder, a replay)
        self.ctx.bus.publish(topics.EVENT_COMMAND, CommandEvent(
            service=self.ctx.name, subject=req.link_id, action=action, by=env.header.source,
            status=reply.status, detail=reply.detail, elapsed_ms=reply.elapsed_ms))
        return reply

    async def _answer(self, action: str, link_id: str, by: str) -> Reply:
        if action == "force":
            link = self.links.get(link_id)
            if link is None:
                return Reply(status="rejected", detail=f"no link {link_id!r} (links: "
                             f"{', '.join(self.links) or 'none'})")
            if link_id not in self.policy.order:
                return Reply(status="rejected", detail=f"link {link_id} cannot carry the "
                             f"tunnel: {self._state(link)[1] or 'it is not steered'}")
            self.policy.force(link_id, by)
            detail = f"the tunnel is held on {link_id} until released"
        elif action == "release":
            was = self.policy.release()
            if was is None:
                return Reply(status="accepted", detail="no link was forced")
            detail = f"{was} released: the policy chooses again"
        elif action == "new_incident":
            self.book.new_incident(time.time_ns())
            if self.book.metered:
                await self._save_budget()
            self._publish_all()
            return Reply(status="accepted", detail="a new incident: incident budgets count "
                                                   "from zero")
        else:
            return Reply(status="rejected", detail=f"unknown action {action!r}: one of "
                                                   f"{', '.join(LINK_ACTIONS)}")
        await self._decide()
        self._publish_all()
        if self.tunnel is None:
            detail += " (no tunnel is configured)"
        elif not self.tunnel_running:
            detail += f" (the tunnel is not running: {self.tunnel_problem})"
        else:
            detail += f"; the tunnel is on {self.steered}: {self.choice.reason}"
        return Reply(status="accepted", detail=detail,
                     data={"active": self.steered, "forced": self.policy.forced})

    # -- health --------------------------------------------------------------------------
    def health(self) -> tuple[str, str]:
        if not self.ctx._ready.is_set():
            return ("starting", "")
        problems: list[str] = []
        states = {link.id: self._state(link)[0] for link in self.links.values()}
        usable = [i for i, s in states.items() if s in _USABLE]
        if self.links and not usable:
            problems.append("no link is up")
        if self.tunnel is not None and not self.tunnel_running:
            problems.append(f"tunnel not running: {self.tunnel_problem}"
                            if self.tunnel_problem else "tunnel opening")
        if self.budget_problem:
            problems.append(self.budget_problem)
        parts = [f"tunnel over {self.steered}"] if self.tunnel_running and self.steered else []
        parts += [f"{i} {s}" for i, s in states.items()]
        return ("degraded" if problems else "running", "; ".join([*problems, *parts]))
