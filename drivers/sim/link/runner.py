"""`edge sim link`: build a world, relay until stopped, print the counters."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from drivers.sim.link.emulator import Emulator
from drivers.sim.link.path import Direction, PathCounters
from drivers.sim.link.profile import LinkProfile
from drivers.sim.link.script import ScriptedOutage
from drivers.sim.link.world import World

_COLUMNS = (("pkts in", "packets_in"), ("bytes in", "bytes_in"), ("pkts out", "packets_out"),
            ("bytes out", "bytes_out"), ("loss", "dropped_loss"), ("queue", "dropped_queue"),
            ("outage", "dropped_outage"), ("queued B", "queue_bytes"),
            ("peak B", "queue_peak_bytes"), ("limit B", "queue_limit_bytes"))


def with_script(wans: Sequence[tuple[str, LinkProfile]],
                script: Sequence[ScriptedOutage]) -> list[tuple[str, LinkProfile]]:
    """Each WAN's profile with the scripted outages that name it, or name no link."""
    return [(name, profile.with_outages(*(s.outage for s in script if s.wan in (None, name))))
            for name, profile in wans]


def describe(world: World, emulator: Emulator) -> list[str]:
    lines = [f"edge sim link: {len(world.wans)} emulated WAN(s), seed {emulator.seed}",
             f"  centre   netns {world.centre}   service address {world.service_address}",
             f"  vehicle  netns {world.vehicle}"]
    for wan in world.wans:
        p = wan.profile
        lines.append(f"  link {wan.name}: vehicle {wan.vehicle_address} <-> centre "
                     f"{wan.centre_address} (interface {wan.name} on both sides), "
                     f"profile {p.name}: {p.summary()}")
        for o in p.outages:
            lines.append(f"    {o.kind} at {o.start_s:g} s for {o.duration_s:g} s")
    lines += ["  run inside:  " + world.command_in(world.vehicle),
              "               " + world.command_in(world.centre)]
    return lines


def table(counters: dict[str, dict[Direction, PathCounters]]) -> list[str]:
    rows = [["link", "dir", *(title for title, _ in _COLUMNS)]]
    for wan, directions in counters.items():
        for direction, c in directions.items():
            d = c.as_dict()
            rows.append([wan, direction, *(str(d[key]) for _, key in _COLUMNS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]


def summary(world: World, emulator: Emulator) -> dict[str, object]:
    counters = emulator.counters()
    return {
        "seconds": round(emulator.elapsed(), 3),
        "seed": emulator.seed,
        "namespaces": {"vehicle": world.vehicle, "centre": world.centre},
        "links": {wan.name: {"profile": wan.profile.name,
                             "vehicle_address": wan.vehicle_address,
                             "centre_address": wan.centre_address,
                             **{d: c.as_dict() for d, c in counters[wan.name].items()}}
                  for wan in world.wans},
    }


async def _announce_changes(world: World, emulator: Emulator, out: TextIO) -> None:
    """A line whenever a link goes down, stalls or comes back (scripted or periodic)."""
    last = {wan.name: "up" for wan in world.wans}
    while True:
        await asyncio.sleep(0.05)
        for wan in world.wans:
            if (state := emulator.state(wan.name)) != last[wan.name]:
                last[wan.name] = state
                print(f"  {emulator.elapsed():8.2f} s  link {wan.name} {state}", file=out,
                      flush=True)


async def run_sim_link(wans: Sequence[tuple[str, LinkProfile]], *, seconds: float | None,
                       seed: int | None = None, out: TextIO = sys.stdout) -> None:
    """Relay until `seconds` pass or the task is cancelled (SIGTERM, Ctrl-C); then report.

    The world is always taken down, also when building it fails halfway.
    """
    async with World(wans) as world:
        emulator = Emulator(world, seed=seed)
        emulator.start()
        watch = asyncio.create_task(_announce_changes(world, emulator, out))
        try:
            for line in describe(world, emulator):
                print(line, file=out)
            until = f"for {seconds:g} s or " if seconds is not None else ""
            print(f"running {until}until Ctrl-C", file=out, flush=True)
            if seconds is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(seconds)
        finally:
            watch.cancel()
            emulator.stop()
            for line in table(emulator.counters()):
                print(line, file=out)
            print(json.dumps(summary(world, emulator)), file=out, flush=True)
