"""A typed ONVIF client over onvif-zeep-async: stream URIs and PTZ, one clear error line.

:class:`OnvifClient` talks to one device (Profile S: the device, media ver10
and PTZ ver20 services) with WS-UsernameToken digest authentication. Every
call is bounded by the client's `timeout` and every failure is an
:class:`~drivers.onvif.errors.OnvifError` naming the device, the operation
and the cause.

What comes back is plain frozen dataclasses, never zeep objects: answers are
flattened with `zeep.helpers.serialize_object` and read with :func:`_at`, so
an element a device leaves out is None rather than an AttributeError.

onvif-zeep-async's calls are truly async (aiohttp underneath), and it parses
each WSDL once per process in the default executor and opens its sqlite cache
in a thread. Measured against the simulated device on this 2-core machine: the
first connect in a process 0.2 s, its first profiles and stream URI 0.12 s more
and its first PTZ call 0.07 s more (each a WSDL parse), with the event loop
held up at most ~40 ms once (zeep building its client objects); later connects
take a few milliseconds and hold it up under 1 ms.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from drivers.onvif.errors import WRONG_CREDENTIALS, OnvifError, describe

log = logging.getLogger(__name__)

DEVICE_PATH = "/onvif/device_service"
DEFAULT_TIMEOUT = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class DeviceInfo:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware: str


@dataclass(frozen=True)
class Profile:
    """One media profile: an encoder configuration, and PTZ if the profile has it."""

    token: str
    name: str
    encoding: str | None  # "H264", "H265", "JPEG"
    width: int | None
    height: int | None
    fps: float | None
    ptz_configuration: str | None  # its PTZConfiguration token, None without PTZ
    ptz_node: str | None

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)


@dataclass(frozen=True)
class Range:
    min: float
    max: float


@dataclass(frozen=True)
class Space:
    """One PTZ coordinate space: its URI and the range of each axis it has."""

    uri: str
    x: Range | None
    y: Range | None = None


@dataclass(frozen=True)
class PtzCapabilities:
    """What a profile's PTZ can do, as the device says (GetNode, GetConfigurationOptions)."""

    node: str
    continuous_pan_tilt: Space | None
    continuous_zoom: Space | None
    relative_zoom: Space | None
    absolute_pan_tilt: Space | None
    absolute_zoom: Space | None
    max_presets: int
    home_supported: bool
    pan_limits: Range | None  # of the PTZ configuration, when it narrows the space
    tilt_limits: Range | None
    zoom_limits: Range | None


@dataclass(frozen=True)
class Preset:
    token: str
    name: str


def split_credentials(credentials: str | None) -> tuple[str | None, str | None]:
    """"user:password" (as the camera's secret holds it) -> (user, password)."""
    if not credentials:
        return None, None
    user, _, password = credentials.strip().partition(":")
    return user, password


def parse_address(address: str) -> tuple[str, int, str]:
    """`http[s]://HOST[:PORT][/path]` -> (host for onvif-zeep-async, port, device service URL).

    A bare path (or none) means the standard `/onvif/device_service`; any other
    path, as a device's WS-Discovery XAddr may give, is used as it is.
    """
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OnvifError(f'"{address}": expected http://HOST[:PORT][/path] of an ONVIF device')
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OnvifError(f'"{address}": the port is not a number in 1-65535') from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    path = parts.path if parts.path not in ("", "/") else DEVICE_PATH
    # The library builds every other URL itself; https has to reach it through `host`.
    lib_host = host if parts.scheme == "http" else f"https://{host}"
    return lib_host, port, f"{parts.scheme}://{host}:{port}{path}"


def choose_profile(profiles: list[Profile], which: str) -> Profile:
    """`main`: the largest picture; `sub`: the smallest; anything else: a profile token.

    Video profiles only (a profile without an encoder configuration carries no stream).
    """
    video = [p for p in profiles if p.encoding is not None]
    if which in ("main", "sub"):
        if not video:
            raise OnvifError("the device has no video profile")
        ranked = sorted(video, key=lambda p: p.pixels)
        return ranked[-1] if which == "main" else ranked[0]
    for p in profiles:
        if p.token == which:
            return p
    tokens = ", ".join(p.token for p in profiles) or "none"
    raise OnvifError(f'no profile with token "{which}" (the device has: {tokens})')


class OnvifClient:
    """One ONVIF device. Use as `async with OnvifClient(...) as c:` or connect()/close()."""

    def __init__(self, address: str, credentials: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = address
        self._host, self._port, self.device_url = parse_address(address)
        self._user, self._password = split_credentials(credentials)
        self.timeout = timeout
        self._camera: Any = None
        self._media: Any = None
        self._ptz: Any = None
        self.connect_seconds: float | None = None  # how long the last connect() took

    async def __aenter__(self) -> OnvifClient:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # ------------------------------------------------------------------ plumbing

    async def _call(self, what: str, make: Callable[[], Awaitable[T]]) -> T:
        """`await make()` within the timeout; any failure is one OnvifError line."""
        try:
            async with asyncio.timeout(self.timeout):
                return await make()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            reason = describe(e, timeout=self.timeout)
            if self._user is None and reason.startswith(WRONG_CREDENTIALS):
                reason = "the device needs a user name and password (give the camera's " \
                         "`credentials`)" + reason[len(WRONG_CREDENTIALS):]
            raise OnvifError(f"ONVIF {self.device_url}: {what}: {reason}") from None

    async def connect(self) -> None:
        """Find the device's services (GetServices, else GetCapabilities) and check the login.

        GetServices and GetCapabilities need no authentication on most devices,
        so the credentials are checked with GetDeviceInformation, which does.
        """
        started = time.monotonic()
        await self.close()
        # The library signs every request; without credentials it signs as nobody,
        # which a device that needs none ignores and one that does refuses.
        # The ONVIF library (zeep, lxml, aiohttp, httpx) is imported in a thread: 0.2 s of
        # CPU on a quiet machine, which would stall the camera's event loop. The camera
        # itself is made on the loop: its HTTP connector wants the running loop.
        await asyncio.to_thread(_import_library)
        camera = _make_camera(self._host, self._port, self._user or "", self._password or "",
                              self.device_url)
        self._camera = camera
        try:
            await self._call("GetServices", camera.update_xaddrs)
            await self.device_info()
        except BaseException:
            await self.close()  # its HTTP sessions, which `async with` would not reach
            raise
        self.connect_seconds = time.monotonic() - started
        log.debug("ONVIF %s connected in %.2f s", self.device_url, self.connect_seconds)

    async def close(self) -> None:
        camera, self._camera, self._media, self._ptz = self._camera, None, None, None
        if camera is not None:
            try:
                await camera.close()
            except Exception:  # letting go of sockets must not hide the first error
                log.debug("closing ONVIF client of %s", self.device_url, exc_info=True)

    def _connected(self) -> Any:
        if self._camera is None:
            raise OnvifError(f"ONVIF {self.device_url}: not connected")
        return self._camera

    async def _media_service(self) -> Any:
        if self._media is None:
            camera = self._connected()
            self._media = await self._call("media service", camera.create_media_service)
        return self._media

    async def _ptz_service(self) -> Any:
        if self._ptz is None:
            camera = self._connected()
            if not any(ns.endswith("/ptz/wsdl") for ns in camera.xaddrs):
                raise OnvifError(f"ONVIF {self.device_url}: the device has no PTZ service")
            self._ptz = await self._call("PTZ service", camera.create_ptz_service)
        return self._ptz

    # ------------------------------------------------------------------ device and media

    async def device_info(self) -> DeviceInfo:
        device = await self._call("device service", self._connected().create_devicemgmt_service)
        r = _flat(await self._call("GetDeviceInformation", device.GetDeviceInformation))
        return DeviceInfo(manufacturer=_text(r, "Manufacturer"), model=_text(r, "Model"),
                          firmware=_text(r, "FirmwareVersion"),
                          serial=_text(r, "SerialNumber"), hardware=_text(r, "HardwareId"))

    async def profiles(self) -> list[Profile]:
        media = await self._media_service()
        answer = _flat(await self._call("GetProfiles", media.GetProfiles))
        return [_profile(p) for p in (answer or []) if isinstance(p, dict)]

    async def stream_uri(self, profile_token: str) -> str:
        """The RTSP URI of a profile (RTP-Unicast over RTSP), without credentials."""
        media = await self._media_service()
        request = {"ProfileToken": profile_token,
                   "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}}
        r = _flat(await self._call("GetStreamUri", lambda: media.GetStreamUri(request)))
        uri = _at(r, "Uri")
        if not isinstance(uri, str) or not uri.startswith(("rtsp://", "rtsps://")):
            raise OnvifError(f"ONVIF {self.device_url}: GetStreamUri: profile "
                             f'"{profile_token}" gave no RTSP URI ({uri!r})')
        return uri

    async def resolve(self, which: str) -> tuple[Profile, str]:
        """The profile `which` names (`main`, `sub` or a token) and its RTSP URI."""
        try:
            profile = choose_profile(await self.profiles(), which)
        except OnvifError as e:
            if str(e).startswith("ONVIF "):
                raise
            raise OnvifError(f"ONVIF {self.device_url}: {e}") from None
        return profile, await self.stream_uri(profile.token)

    # ------------------------------------------------------------------ PTZ

    async def ptz_capabilities(self, profile: Profile) -> PtzCapabilities:
        """The profile's PTZ node and configuration: spaces, ranges, presets, home."""
        if profile.ptz_configuration is None:
            raise OnvifError(f'ONVIF {self.device_url}: profile "{profile.token}" has no PTZ')
        ptz = await self._ptz_service()
        nodes = _flat(await self._call("GetNodes", ptz.GetNodes)) or []
        node = next((n for n in nodes if isinstance(n, dict)
                     and (profile.ptz_node is None or n.get("token") == profile.ptz_node)), None)
        if node is None:
            raise OnvifError(f"ONVIF {self.device_url}: GetNodes: no PTZ node "
                             f'"{profile.ptz_node}" for profile "{profile.token}"')
        spaces = _at(node, "SupportedPTZSpaces") or {}
        try:
            options = _flat(await self._call("GetConfigurationOptions", lambda: (
                ptz.GetConfigurationOptions({"ConfigurationToken": profile.ptz_configuration}))))
            spaces = _at(options, "Spaces") or spaces
        except OnvifError as e:
            log.debug("%s; using the node's spaces", e)  # optional for a device to narrow
        config = _flat(await self._call("GetConfiguration", lambda: ptz.GetConfiguration(
            {"PTZConfigurationToken": profile.ptz_configuration})))
        pt_limits = _at(config, "PanTiltLimits", "Range")
        return PtzCapabilities(
            node=str(node.get("token")),
            continuous_pan_tilt=_space(spaces, "ContinuousPanTiltVelocitySpace"),
            continuous_zoom=_space(spaces, "ContinuousZoomVelocitySpace"),
            relative_zoom=_space(spaces, "RelativeZoomTranslationSpace"),
            absolute_pan_tilt=_space(spaces, "AbsolutePanTiltPositionSpace"),
            absolute_zoom=_space(spaces, "AbsoluteZoomPositionSpace"),
            max_presets=int(_at(node, "MaximumNumberOfPresets") or 0),
            home_supported=bool(_at(node, "HomeSupported")),
            pan_limits=_range(_at(pt_limits, "XRange")),
            tilt_limits=_range(_at(pt_limits, "YRange")),
            zoom_limits=_range(_at(config, "ZoomLimits", "Range", "XRange")))

    async def continuous_move(self, profile_token: str, pan: float = 0.0, tilt: float = 0.0,
                              zoom: float = 0.0) -> None:
        """Move at these velocities (each in -1..1) until :meth:`stop`."""
        for axis, v in (("pan", pan), ("tilt", tilt), ("zoom", zoom)):
            if not (math.isfinite(v) and -1.0 <= v <= 1.0):
                raise OnvifError(f"{axis} velocity {v} is not in -1..1")
        velocity: dict[str, Any] = {}
        if pan or tilt:
            velocity["PanTilt"] = {"x": pan, "y": tilt}
        if zoom:
            velocity["Zoom"] = {"x": zoom}
        ptz = await self._ptz_service()
        request = {"ProfileToken": profile_token, "Velocity": velocity}
        await self._call("ContinuousMove", lambda: ptz.ContinuousMove(request))

    async def stop(self, profile_token: str, *, pan_tilt: bool = True, zoom: bool = True) -> None:
        ptz = await self._ptz_service()
        request = {"ProfileToken": profile_token, "PanTilt": pan_tilt, "Zoom": zoom}
        await self._call("Stop", lambda: ptz.Stop(request))

    async def relative_zoom(self, profile_token: str, delta: float) -> None:
        """Zoom in (delta > 0) or out by `delta` of the relative zoom space (-1..1)."""
        if not (math.isfinite(delta) and -1.0 <= delta <= 1.0):
            raise OnvifError(f"zoom step {delta} is not in -1..1")
        ptz = await self._ptz_service()
        request = {"ProfileToken": profile_token, "Translation": {"Zoom": {"x": delta}}}
        await self._call("RelativeMove", lambda: ptz.RelativeMove(request))

    async def presets(self, profile_token: str) -> list[Preset]:
        ptz = await self._ptz_service()
        answer = _flat(await self._call(
            "GetPresets", lambda: ptz.GetPresets({"ProfileToken": profile_token}))) or []
        return [Preset(token=str(p.get("token")), name=str(p.get("Name") or ""))
                for p in answer if isinstance(p, dict)]

    async def set_preset(self, profile_token: str, name: str | None = None,
                         token: str | None = None) -> str:
        """Store the current position as a preset (a new one, or `token` overwritten)."""
        request: dict[str, Any] = {"ProfileToken": profile_token}
        if name is not None:
            request["PresetName"] = name
        if token is not None:
            request["PresetToken"] = token
        ptz = await self._ptz_service()
        answer = _flat(await self._call("SetPreset", lambda: ptz.SetPreset(request)))
        got = answer if isinstance(answer, str) else _at(answer, "PresetToken")
        if not got:
            raise OnvifError(f"ONVIF {self.device_url}: SetPreset: the device gave no token")
        return str(got)

    async def goto_preset(self, profile_token: str, preset_token: str) -> None:
        ptz = await self._ptz_service()
        request = {"ProfileToken": profile_token, "PresetToken": preset_token}
        await self._call("GotoPreset", lambda: ptz.GotoPreset(request))

    async def goto_home(self, profile_token: str) -> None:
        ptz = await self._ptz_service()
        await self._call("GotoHomePosition",
                         lambda: ptz.GotoHomePosition({"ProfileToken": profile_token}))

    async def ptz_position(self, profile_token: str) -> tuple[float | None, float | None,
                                                               float | None]:
        """(pan, tilt, zoom) as GetStatus reports them; None where the device says nothing."""
        ptz = await self._ptz_service()
        r = _flat(await self._call("GetStatus",
                                   lambda: ptz.GetStatus({"ProfileToken": profile_token})))
        return (_num(_at(r, "Position", "PanTilt", "x")), _num(_at(r, "Position", "PanTilt", "y")),
                _num(_at(r, "Position", "Zoom", "x")))


# ---------------------------------------------------------------------- reading answers

def _import_library() -> None:
    # Imported here: onvif.client calls logging.basicConfig() at import, which must
    # come after whoever runs us has set logging up, or it installs its own handler.
    import onvif  # noqa: F401


def _make_camera(host: str, port: int, user: str | None, password: str | None,
                 device_url: str) -> Any:
    # Imported here: onvif.client calls logging.basicConfig() at import, which must
    # come after whoever runs us has set logging up, or it installs its own handler.
    from onvif import ONVIFCamera

    class _Camera(ONVIFCamera):  # type: ignore[misc]
        """ONVIFCamera with the device service where the device says it is."""

        def get_definition(self, name: str, port_type: str | None = None
                           ) -> tuple[str, str, str]:
            xaddr, wsdl, binding = super().get_definition(name, port_type)
            return (device_url if name == "devicemgmt" else xaddr), wsdl, binding

    return _Camera(host, port, user, password)


def _flat(answer: Any) -> Any:
    import zeep.helpers

    serialize: Any = zeep.helpers.serialize_object  # untyped
    return serialize(answer, target_cls=dict)


def _at(value: Any, *path: str) -> Any:
    """`value[a][b]…`, or None where any step is missing."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any, key: str) -> str:
    got = _at(value, key)
    return "" if got is None else str(got)


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _range(value: Any) -> Range | None:
    lo, hi = _num(_at(value, "Min")), _num(_at(value, "Max"))
    return Range(lo, hi) if lo is not None and hi is not None else None


def _space(spaces: Any, name: str) -> Space | None:
    found = _at(spaces, name)
    first = found[0] if isinstance(found, list) and found else found
    if not isinstance(first, dict):
        return None
    return Space(uri=str(first.get("URI") or ""), x=_range(first.get("XRange")),
                 y=_range(first.get("YRange")))


def _profile(p: dict[str, Any]) -> Profile:
    encoder = _at(p, "VideoEncoderConfiguration")
    width, height = (_at(encoder, "Resolution", "Width"), _at(encoder, "Resolution", "Height"))
    fps = _num(_at(encoder, "RateControl", "FrameRateLimit"))
    ptz = _at(p, "PTZConfiguration")
    return Profile(
        token=str(p.get("token")), name=str(p.get("Name") or ""),
        encoding=None if encoder is None else str(_at(encoder, "Encoding") or "") or None,
        width=int(width) if width is not None else None,
        height=int(height) if height is not None else None, fps=fps,
        ptz_configuration=None if ptz is None else str(_at(ptz, "token")),
        ptz_node=None if ptz is None else (_at(ptz, "NodeToken") and str(_at(ptz, "NodeToken"))))

