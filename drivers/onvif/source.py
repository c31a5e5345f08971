"""An ONVIF camera's stream: the RTSP URI asked of the device, read by the RTSP source.

:class:`OnvifSource` is a :class:`drivers.source.Source` built on
:class:`drivers.resolved_source.ResolvedSource`: the resolver here asks the
device (GetProfiles, GetStreamUri) for the configured profile's URI, and the
`connect` it is given (the RTSP source) reads it. The device is asked again
when that source has been failing for `stale_after` seconds, since a camera
that rebooted with new settings, or moved, hands out a different URI; the
source is replaced only if the URI did change.

While no URI is known the state is DOWN with the device's answer as the
reason ("wrong user name or password"), not ResolvedSource's generic waiting
line, so that an operator sees why; asking is retried with capped backoff.

With a :class:`~drivers.onvif.uri_memory.UriMemory`, the URI the device gave
last time is read at once, before the ONVIF library is even imported (asking a
cheap dome takes seconds), while the device is asked as above; its answer
replaces the remembered URI only if it differs, and is remembered. A device
that cannot be asked while the remembered URI plays is a warning in the log:
the camera is live. Until the device has answered, a remembered URI that does
not play shows the camera as still asking the device (its own error, a stale
port's "connection refused", would mislead), then the device's problem as the
reason: nothing has vouched for that URI, and the device's answer says more.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator

from drivers.onvif.client import DEFAULT_TIMEOUT, OnvifClient
from drivers.onvif.errors import OnvifError
from drivers.onvif.uri_memory import UriMemory
from drivers.resolved_source import Connect, ResolvedSource
from drivers.rtsp.demux import redact_url
from drivers.source import (
    AccessUnitSink,
    Source,
    SourceState,
    SourceStats,
    StateCallback,
    StreamInfo,
)

log = logging.getLogger(__name__)

ASKING = "asking the ONVIF device for its stream URI"
STALE_AFTER_S = 15.0  # the RTSP source retries every 2 s at most: some 7 failed attempts
RETRY_MIN_S, RETRY_MAX_S = 1.0, 30.0


class OnvifSource:
    """The RTSP stream of one profile (`main`, `sub` or a token) of an ONVIF device."""

    def __init__(self, address: str, credentials: str | None, profile: str, connect: Connect,
                 *, name: str, sink: AccessUnitSink, on_state: StateCallback | None = None,
                 timeout: float = DEFAULT_TIMEOUT, stale_after: float = STALE_AFTER_S,
                 retry: tuple[float, float] = (RETRY_MIN_S, RETRY_MAX_S),
                 memory: UriMemory | None = None) -> None:
        self.name = name
        self.sink = sink
        self.address = address
        self._credentials = credentials
        self._profile = profile
        self._connect = connect
        self._on_state = on_state
        self._timeout = timeout
        self._stale_after = stale_after
        self._retry = retry
        self._memory = memory
        # Why there is no URI the device gave yet, as the device said.
        self._problem: str | None = None
        # The URI being read is only remembered: the device has not answered yet.
        self._unconfirmed = False
        self._reported: tuple[SourceState, str] | None = None
        # Since when the current RTSP source has been anything but live; None while live.
        self._failing_since: float | None = None
        self.resolutions = 0  # successful GetStreamUri answers, for tests and logs
        self._resolved = ResolvedSource(self._uris(), self._connect_rtsp, name=name,
                                        waiting=ASKING, sink=sink, on_state=self._relay)

    # The Source protocol, by way of the ResolvedSource.

    @property
    def stream_info(self) -> StreamInfo | None:
        return self._resolved.stream_info

    @property
    def stats(self) -> SourceStats:
        return self._shown(self._resolved.stats)

    async def start(self) -> None:
        await self._resolved.start()

    async def stop(self) -> None:
        await self._resolved.stop()

    async def request_keyframe(self) -> str | None:
        return await self._resolved.request_keyframe()

    # Internals.

    def _instead(self, state: SourceState, reason: str) -> tuple[SourceState, str] | None:
        """What to show instead of what the source says, if anything: the device's problem
        while there is no URI it gave; and while a remembered URI does not play and the
        device has not answered yet, that the device is being asked (the remembered URI's
        own error, a stale port's "connection refused", would only mislead)."""
        if state is SourceState.CONNECTING and reason == ASKING and self._problem is not None:
            return SourceState.DOWN, self._problem
        if state is SourceState.DOWN and self._unconfirmed:
            if self._problem is not None:
                return SourceState.DOWN, self._problem
            return SourceState.CONNECTING, ASKING
        return None

    def _shown(self, stats: SourceStats) -> SourceStats:
        instead = self._instead(stats.state, stats.reason)
        if instead is not None:
            return dataclasses.replace(stats, state=instead[0], reason=instead[1])
        return stats

    def _relay(self, state: SourceState, reason: str) -> None:
        instead = self._instead(state, reason)
        if instead is not None:
            state, reason = instead
        if (state, reason) == self._reported:
            return
        self._reported = (state, reason)
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                log.exception("%s: on_state callback failed", self.name)

    def _set_problem(self, problem: str | None) -> None:
        self._problem = problem
        st = self._resolved.stats
        self._relay(st.state, st.reason)

    def _connect_rtsp(self, url: str, sink: AccessUnitSink, on_state: StateCallback) -> Source:
        self._failing_since = time.monotonic()

        def watch(state: SourceState, reason: str) -> None:
            if state is SourceState.LIVE:
                self._failing_since = None
            elif self._failing_since is None:
                self._failing_since = time.monotonic()
            on_state(state, reason)

        return self._connect(url, sink, watch)

    async def _resolve(self) -> str:
        async with OnvifClient(self.address, self._credentials, timeout=self._timeout) as c:
            profile, uri = await c.resolve(self._profile)
        log.info("%s: ONVIF profile %s (%s, %sx%s) streams at %s", self.name, profile.token,
                 profile.encoding, profile.width, profile.height, redact_url(uri))
        return uri

    def _recall(self) -> str | None:
        if self._memory is None:
            return None
        uri = self._memory.recall(self.address, self._profile)
        if uri is not None:
            log.info("%s: starting on the remembered stream URI %s, asking the ONVIF device "
                     "meanwhile", self.name, redact_url(uri))
        return uri

    async def _uris(self) -> AsyncGenerator[str, None]:
        current = self._recall()
        if current is not None:
            self._unconfirmed = True
            yield current
        delay = self._retry[0]
        warned: str | None = None  # the device's problem last logged as a warning
        while True:
            try:
                uri = await self._resolve()
            except Exception as e:  # an answer we misread must not end the asking for good
                if not isinstance(e, OnvifError):
                    log.exception("%s: reading the ONVIF answer failed", self.name)
                    e = OnvifError(f"ONVIF {self.address}: unexpected answer "
                                   f"({type(e).__name__}; see the log)")
                # A device that stays unreachable behind a stream that plays (ONVIF turned
                # off after set-up) would otherwise warn at every retry, for ever.
                level = logging.DEBUG if str(e) == warned else logging.WARNING
                if self._unconfirmed:
                    log.log(level, "%s: asking for the stream URI failed, reading the "
                            "remembered one: %s", self.name, e)
                elif current is not None:  # the RTSP source's own reason says more about it
                    log.log(level, "%s: asking again for the stream URI failed: %s", self.name, e)
                warned = str(e) if current is not None else None
                if current is None or self._unconfirmed:
                    self._set_problem(str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry[1])
                continue
            delay, warned = self._retry[0], None
            self.resolutions += 1
            if self._memory is not None:
                self._memory.remember(self.address, self._profile, uri)
            self._set_problem(None)
            if uri != current:
                current = uri
                yield uri  # resumed once the source reads it: the stale one says no more
            elif self._failing_since is not None:
                self._failing_since = time.monotonic()  # same URI: give it another round
            self._unconfirmed = False
            await self._until_stale()

    async def _until_stale(self) -> None:
        """Return once the RTSP source has been failing for `stale_after` seconds."""
        while True:
            since = self._failing_since
            now = time.monotonic()
            if since is not None and now - since >= self._stale_after:
                log.info("%s: RTSP failing for %.0f s; asking the device for the URI again",
                         self.name, now - since)
                return
            wait = self._stale_after if since is None else self._stale_after - (now - since)
            await asyncio.sleep(min(1.0, max(0.05, wait)))
