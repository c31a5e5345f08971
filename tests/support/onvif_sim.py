"""Helpers for the simulated ONVIF device's tests: a WS-Discovery probe and an RTSP
picture watcher.

The probe is a hand-written WS-Discovery Probe (a test's client, not the product's):
it sends one Probe and collects the ProbeMatches that answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
ENV = "http://www.w3.org/2003/05/soap-envelope"


def probe_xml(types: str = "dn:NetworkVideoTransmitter", scopes: str = "") -> tuple[str, bytes]:
    """(MessageID, the Probe's bytes)."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    scope = f"<d:Scopes>{scopes}</d:Scopes>" if scopes else ""
    return message_id, (
        f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{ENV}" '
        f'xmlns:w="{WSA}" xmlns:d="{WSD}" xmlns:dn="http://www.onvif.org/ver10/network/wsdl" '
        'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">'
        f"<e:Header><w:MessageID>{message_id}</w:MessageID>"
        "<w:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>"
        f"<w:Action>{WSD}/Probe</w:Action></e:Header><e:Body><d:Probe>"
        f"<d:Types>{types}</d:Types>{scope}</d:Probe></e:Body></e:Envelope>").encode()


@dataclass(frozen=True)
class ProbeMatch:
    relates_to: str
    endpoint: str
    xaddrs: list[str]
    scopes: list[str]


def parse_probe_matches(data: bytes) -> list[ProbeMatch]:
    root = ET.fromstring(data)
    relates = root.findtext(f"{{{ENV}}}Header/{{{WSA}}}RelatesTo") or ""
    return [ProbeMatch(relates,
                       m.findtext(f"{{{WSA}}}EndpointReference/{{{WSA}}}Address") or "",
                       (m.findtext(f"{{{WSD}}}XAddrs") or "").split(),
                       (m.findtext(f"{{{WSD}}}Scopes") or "").split())
            for m in root.iter(f"{{{WSD}}}ProbeMatch")]


def probe(address: tuple[str, int], *, types: str = "dn:NetworkVideoTransmitter",
          scopes: str = "", listen_s: float = 5.0, multicast_interface: str | None = None,
          expect: int | None = None) -> list[ProbeMatch]:
    """Send one Probe to `address` (a unicast address, or the multicast group sent out of
    `multicast_interface`) and return the ProbeMatches answering it within `listen_s`, or
    as soon as `expect` of them came (blocking: run it in a thread). Waiting for "no
    answer" is the one place a test must wait out `listen_s`: keep it short there."""
    message_id, data = probe_xml(types, scopes)
    found: list[ProbeMatch] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if multicast_interface is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(multicast_interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.sendto(data, address)
        deadline = time.monotonic() + listen_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply, _ = sock.recvfrom(65536)
            except TimeoutError:
                break
            found += [m for m in parse_probe_matches(reply) if m.relates_to == message_id]
            if expect is not None and len(found) >= expect:
                break
    return found


Picture = npt.NDArray[np.uint8]


class PictureWatcher:
    """Decodes an RTSP stream with PyAV in a thread; `last` is the newest picture (BGR)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.last: Picture | None = None
        self.pictures = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onvif-test-decode",
                                        daemon=True)

    def _run(self) -> None:
        try:
            # A short probe: the SDP already names the codec and size, and FFmpeg's
            # default (seconds of analysis) would make every test wait for it.
            options = {"rtsp_transport": "tcp", "analyzeduration": "200000",
                       "probesize": "32768"}
            with av.open(self.url, options=options, timeout=(5, 5)) as container:
                for frame in container.decode(video=0):
                    self.last = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                    self.pictures += 1
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # reported to the test by count()
            self.error = exc

    def count(self) -> int:
        if self.error is not None:
            raise AssertionError(f"decoding {self.url} failed: {self.error!r}")
        return self.pictures

    def picture_after(self, count: int) -> Picture | None:
        """The newest picture once more than `count` were decoded (None until then)."""
        return self.last if self.count() > count else None

    def newest(self) -> Picture:
        """The newest picture (the test waited for one with `picture_after`)."""
        assert self.last is not None, "no picture decoded yet"
        return self.last


@contextlib.asynccontextmanager
async def watching(url: str) -> AsyncIterator[PictureWatcher]:
    """A `PictureWatcher` on `url`; on the way out it waits for the decoder to stop (off
    the event loop: its TEARDOWN needs the camera in this loop to answer)."""
    watcher = PictureWatcher(url)
    watcher._thread.start()
    try:
        yield watcher
    finally:
        watcher._stop.set()
        await asyncio.to_thread(watcher._thread.join, 10)
