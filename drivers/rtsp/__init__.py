"""RTSP ingest driver: demux H.264/H.265 access units from IP cameras with PyAV.

No decoding, no bus knowledge.  Public API:

* `RtspIngest(url, *, transport="tcp", ...)`: long-running, reconnecting
  source for an asyncio service (`async for au in ingest.access_units()`).
* `AccessUnit`, `StreamInfo`, `IngestState`, `IngestStats`: what it hands out.
* `probe(url, seconds=3.0, transport="tcp") -> ProbeResult`: one-shot check for
  `edge camera probe`, raising `ProbeError` with a one-line reason.
* `parse_sps`: profile/level/size from an SPS without decoding.
"""

from drivers.rtsp.errors import ProbeError, describe_error
from drivers.rtsp.ingest import RtspIngest
from drivers.rtsp.model import AccessUnit, IngestState, IngestStats, StreamInfo
from drivers.rtsp.probe import ProbeResult, probe
from drivers.rtsp.sps import SpsError, SpsInfo, parse_sps

__all__ = [
    "AccessUnit",
    "IngestState",
    "IngestStats",
    "ProbeError",
    "ProbeResult",
    "RtspIngest",
    "SpsError",
    "SpsInfo",
    "StreamInfo",
    "describe_error",
    "parse_sps",
    "probe",
]
