"""RTSP driver: demux H.264/H.265 access units from IP cameras with PyAV.

No decoding, no bus knowledge.  Public API:

* `RtspSource(url, *, transport="tcp", sink=..., on_state=...)`: the RTSP
  implementation of `drivers.source.Source`, long-running and reconnecting;
  what it hands out are `drivers.source`'s types (`AccessUnit`, `StreamInfo`).
* `probe(url, seconds=3.0, transport="tcp") -> ProbeResult`: one-shot check for
  `edge camera probe`, raising `ProbeError` with a one-line reason.
* `parse_sps`: profile/level/size from an SPS without decoding.
"""

from drivers.rtsp.errors import ProbeError, describe_error
from drivers.rtsp.probe import ProbeResult, probe
from drivers.rtsp.source import RtspSource
from drivers.rtsp.sps import SpsError, SpsInfo, parse_sps

__all__ = [
    "ProbeError",
    "ProbeResult",
    "RtspSource",
    "SpsError",
    "SpsInfo",
    "describe_error",
    "parse_sps",
    "probe",
]
