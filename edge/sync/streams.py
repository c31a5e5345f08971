"""The JetStream layout: one file stream on each vehicle, one sourcing stream per vehicle
at the centre.

On the vehicle, stream ``VEHICLE`` captures ``veh.<vehicle>.>``, bounded by age and
bytes. At the centre, stream ``VEHICLE_<vehicle>`` has no subjects of its own (so the
live traffic a leaf link also carries is not stored twice) and **sources** the
vehicle's stream through its domain's API (``$JS.<vehicle>.API``): the centre pulls
what it has not yet got, in stream order, when the link is up. Both are created or
brought up to date idempotently.
"""

from __future__ import annotations

from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamInfo,
    StreamSource,
)
from nats.js.errors import NotFoundError
from nats.js.manager import JetStreamManager

VEHICLE_STREAM = "VEHICLE"
SUBJECT_ROOT = "veh"
# A retried publish (an ack lost to a restart) is recognised by its message id this long.
DUPLICATE_WINDOW_S = 120.0


def vehicle_subjects(vehicle: str) -> str:
    return f"{SUBJECT_ROOT}.{vehicle}.>"


def centre_stream_name(vehicle: str) -> str:
    # Vehicle ids are [a-z0-9_-]: valid in a stream name as they are.
    return f"VEHICLE_{vehicle}"


def vehicle_stream_config(vehicle: str, max_age_s: float, max_bytes: int) -> StreamConfig:
    return StreamConfig(
        name=VEHICLE_STREAM, subjects=[vehicle_subjects(vehicle)], storage=StorageType.FILE,
        discard=DiscardPolicy.OLD, max_age=max_age_s, max_bytes=max_bytes,
        duplicate_window=DUPLICATE_WINDOW_S,
        description=f"vehicle {vehicle}: its bus, for the centre to source")


def centre_stream_config(vehicle: str, max_age_s: float, max_bytes: int,
                         replicas: int = 1) -> StreamConfig:
    """`replicas` > 1 on a centre cluster: the vehicle's history outlives a server."""
    return StreamConfig(
        name=centre_stream_name(vehicle), storage=StorageType.FILE, discard=DiscardPolicy.OLD,
        max_age=max_age_s, max_bytes=max_bytes, duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        sources=[StreamSource(name=VEHICLE_STREAM,
                              external=ExternalStream(api=f"$JS.{vehicle}.API"))],
        description=f"vehicle {vehicle}, sourced over its leaf link")


async def ensure_stream(jsm: JetStreamManager, config: StreamConfig) -> StreamInfo:
    """`config` in force: the stream is created, or updated when it exists."""
    assert config.name is not None
    try:
        await jsm.stream_info(config.name)
    except NotFoundError:
        return await jsm.add_stream(config)
    return await jsm.update_stream(config)


async def ensure_vehicle_stream(jsm: JetStreamManager, vehicle: str, max_age_s: float,
                                max_bytes: int) -> StreamInfo:
    return await ensure_stream(jsm, vehicle_stream_config(vehicle, max_age_s, max_bytes))


async def ensure_centre_stream(jsm: JetStreamManager, vehicle: str, max_age_s: float,
                               max_bytes: int) -> StreamInfo:
    return await ensure_stream(jsm, centre_stream_config(vehicle, max_age_s, max_bytes))
