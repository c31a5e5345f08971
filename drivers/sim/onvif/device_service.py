"""The simulated camera's ONVIF device: Device, Media and PTZ services over HTTP (SOAP 1.2).

``SimOnvifDevice(camera, ptz, port=...)`` serves

* ``/onvif/device_service``: GetDeviceInformation, GetSystemDateAndTime,
  GetCapabilities, GetServices, GetScopes, GetHostname;
* ``/onvif/media_service``: GetProfiles, GetProfile, GetStreamUri (the camera's
  RTSP URLs; profile ``main`` and ``sub``), GetVideoSources;
* ``/onvif/ptz_service``: GetNodes, GetNode, GetConfigurations, GetConfiguration,
  GetConfigurationOptions, GetStatus, ContinuousMove, Stop, RelativeMove,
  AbsoluteMove, GotoPreset, SetPreset, GetPresets, RemovePreset, GotoHomePosition,
  SetHomePosition.

With a user, every operation but the pre-authentication ones (GetSystemDateAndTime,
GetServices, GetCapabilities, GetHostname, GetWsdlUrl, GetServiceCapabilities, as
ONVIF Core's PRE_AUTH class) needs a WS-Security UsernameToken (`ws_security`);
a missing or wrong one is HTTP 400 with env:Sender / ter:NotAuthorized, which
onvif-zeep-async raises as ``zeep.exceptions.Fault("Sender not Authorized")``.
An operation the device does not have is ter:ActionNotSupported, a bad argument
ter:InvalidArgVal with ONVIF's specific subcode (ter:NoProfile, ter:NoToken, ...).
The PTZ moves the camera's picture through `PtzState.view`.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import web

from drivers.sim.onvif import soap
from drivers.sim.onvif.discovery import GROUP, DiscoveryResponder
from drivers.sim.onvif.discovery import PORT as DISCOVERY_PORT
from drivers.sim.onvif.ptz_state import (
    DEFAULT_TIMEOUT_S,
    MAX_PRESETS,
    TIMEOUT_RANGE_S,
    Position,
    PresetError,
    PtzState,
)
from drivers.sim.onvif.soap import Request, SoapFault, invalid_arg
from drivers.sim.onvif.ws_security import AuthFailure, UsernameTokenChecker

if TYPE_CHECKING:
    from drivers.sim.camera import SimCamera

log = logging.getLogger(__name__)

MANUFACTURER = "edge"
MODEL = "sim-camera"
FIRMWARE = "1.0"
PRE_AUTH = frozenset({"GetSystemDateAndTime", "GetServices", "GetCapabilities", "GetHostname",
                      "GetWsdlUrl", "GetServiceCapabilities", "GetEndpointReference"})
NODE = "ptz_node"
PTZ_CONFIG = "ptz_config"
VIDEO_SOURCE = "video_source"
_SPACES = "http://www.onvif.org/ver10/tptz"
PT_POSITION = f"{_SPACES}/PanTiltSpaces/PositionGenericSpace"
ZOOM_POSITION = f"{_SPACES}/ZoomSpaces/PositionGenericSpace"
PT_TRANSLATION = f"{_SPACES}/PanTiltSpaces/TranslationGenericSpace"
ZOOM_TRANSLATION = f"{_SPACES}/ZoomSpaces/TranslationGenericSpace"
PT_VELOCITY = f"{_SPACES}/PanTiltSpaces/VelocityGenericSpace"
ZOOM_VELOCITY = f"{_SPACES}/ZoomSpaces/VelocityGenericSpace"
PT_SPEED = f"{_SPACES}/PanTiltSpaces/GenericSpeedSpace"
ZOOM_SPEED = f"{_SPACES}/ZoomSpaces/ZoomGenericSpeedSpace"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")

Handler = Callable[[Request], str]


def parse_duration(text: str) -> float:
    """xs:duration (days, hours, minutes, seconds; e.g. ``PT1.5S``) in seconds."""
    found = _DURATION.match(text.strip())
    if not found or text.strip() in ("P", "PT"):
        raise invalid_arg(f"{text!r} is not a duration such as PT5S")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _range(low: float, high: float, name: str = "XRange") -> str:
    return f"<tt:{name}><tt:Min>{low:g}</tt:Min><tt:Max>{high:g}</tt:Max></tt:{name}>"


def _space2d(tag: str, uri: str, low: float = -1.0, high: float = 1.0) -> str:
    return (f"<tt:{tag}><tt:URI>{uri}</tt:URI>{_range(low, high)}"
            f"{_range(low, high, 'YRange')}</tt:{tag}>")


def _space1d(tag: str, uri: str, low: float, high: float) -> str:
    return f"<tt:{tag}><tt:URI>{uri}</tt:URI>{_range(low, high)}</tt:{tag}>"


SPACES = "".join([
    _space2d("AbsolutePanTiltPositionSpace", PT_POSITION),
    _space1d("AbsoluteZoomPositionSpace", ZOOM_POSITION, 0, 1),
    _space2d("RelativePanTiltTranslationSpace", PT_TRANSLATION),
    _space1d("RelativeZoomTranslationSpace", ZOOM_TRANSLATION, -1, 1),
    _space2d("ContinuousPanTiltVelocitySpace", PT_VELOCITY),
    _space1d("ContinuousZoomVelocitySpace", ZOOM_VELOCITY, -1, 1),
    _space1d("PanTiltSpeedSpace", PT_SPEED, 0, 1),
    _space1d("ZoomSpeedSpace", ZOOM_SPEED, 0, 1),
])


def _float(element: ET.Element, attribute: str, low: float, high: float,
           fault: str) -> float | None:
    text = element.get(attribute)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise SoapFault(f"{attribute}={text!r} is not a number", "ter:InvalidArgVal",
                        fault) from None
    if not low <= value <= high:
        raise SoapFault(f"{attribute}={value:g} is outside {low:g}..{high:g}",
                        "ter:InvalidArgVal", fault)
    return value


def _vector(request: Request, path: str, pt: tuple[float, float], zoom: tuple[float, float],
            fault: str) -> tuple[float | None, float | None, float | None]:
    """(pan, tilt, zoom) of a PTZVector/PTZSpeed child; None for what it leaves out."""
    pan = tilt = z = None
    pan_tilt = request.find(f"{path}/tt:PanTilt")
    if pan_tilt is not None:
        pan = _float(pan_tilt, "x", *pt, fault)
        tilt = _float(pan_tilt, "y", *pt, fault)
    zoom_el = request.find(f"{path}/tt:Zoom")
    if zoom_el is not None:
        z = _float(zoom_el, "x", *zoom, fault)
    return pan, tilt, z


class SimOnvifDevice:
    """The ONVIF services of `camera`, steering `ptz` (which the camera must show:
    ``SimCamera(..., view=ptz.view)``). `port=0` picks a free port. `discovery_port`
    (None: no responder) answers WS-Discovery probes on `discovery_group`."""

    def __init__(self, camera: SimCamera, ptz: PtzState, *, host: str | None = None,
                 port: int = 0, user: str | None = None, password: str | None = None,
                 discovery_port: int | None = None, discovery_group: str = GROUP,
                 discovery_interface: str = "0.0.0.0",
                 endpoint: str | None = None) -> None:
        self.camera = camera
        self.ptz = ptz
        self.host = host if host is not None else camera.host
        self.port = port
        self.endpoint = endpoint or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, camera.name)}"
        self._auth = UsernameTokenChecker(user, password or "") if user is not None else None
        self.discovery: DiscoveryResponder | None = None
        self._discovery_args = (discovery_port, discovery_group, discovery_interface)
        self._runner: web.AppRunner | None = None
        self.requests: dict[str, int] = {}
        """Operations answered, by name (a test sees what a client asked)."""
        self._handlers: dict[tuple[str, str], Handler] = {
            (soap.TDS, "GetDeviceInformation"): self._device_information,
            (soap.TDS, "GetSystemDateAndTime"): self._system_date_and_time,
            (soap.TDS, "GetCapabilities"): self._capabilities,
            (soap.TDS, "GetServices"): self._services,
            (soap.TDS, "GetScopes"): self._scopes,
            (soap.TDS, "GetHostname"): self._hostname,
            (soap.TRT, "GetProfiles"): self._profiles,
            (soap.TRT, "GetProfile"): self._profile,
            (soap.TRT, "GetStreamUri"): self._stream_uri,
            (soap.TRT, "GetVideoSources"): self._video_sources,
            (soap.TPTZ, "GetNodes"): self._nodes,
            (soap.TPTZ, "GetNode"): self._node,
            (soap.TPTZ, "GetConfigurations"): self._configurations,
            (soap.TPTZ, "GetConfiguration"): self._configuration,
            (soap.TPTZ, "GetConfigurationOptions"): self._configuration_options,
            (soap.TPTZ, "GetStatus"): self._status,
            (soap.TPTZ, "ContinuousMove"): self._continuous_move,
            (soap.TPTZ, "Stop"): self._stop,
            (soap.TPTZ, "RelativeMove"): self._relative_move,
            (soap.TPTZ, "AbsoluteMove"): self._absolute_move,
            (soap.TPTZ, "GotoPreset"): self._goto_preset,
            (soap.TPTZ, "SetPreset"): self._set_preset,
            (soap.TPTZ, "GetPresets"): self._presets,
            (soap.TPTZ, "RemovePreset"): self._remove_preset,
            (soap.TPTZ, "GotoHomePosition"): self._goto_home,
            (soap.TPTZ, "SetHomePosition"): self._set_home,
        }
        self._services_at = {"device_service": soap.TDS, "media_service": soap.TRT,
                             "ptz_service": soap.TPTZ}

    # -- lifecycle -----------------------------------------------------------------

    def url(self, service: str = "device_service") -> str:
        return f"http://{self._advertised_host()}:{self.port}/onvif/{service}"

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_post("/onvif/{service}", self._on_post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        port, group, interface = self._discovery_args
        if port is not None:
            self.discovery = DiscoveryResponder(self.endpoint, [self.url()], self.scopes(),
                                                port=port, group=group, interface=interface)
            try:
                await self.discovery.start()
            except OSError:
                await self.close()
                raise
        log.info("sim onvif %s: device service at %s", self.camera.name, self.url())

    async def close(self) -> None:
        if self.discovery is not None:
            self.discovery.close()
            self.discovery = None
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimOnvifDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _advertised_host(self) -> str:
        if self.host not in ("", "0.0.0.0"):
            return self.host
        # The address other hosts reach us by: the one the default route leaves from.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("192.0.2.1", 9))
                return str(probe.getsockname()[0])
            except OSError:
                return "127.0.0.1"

    def scopes(self) -> list[str]:
        base = "onvif://www.onvif.org"
        return [f"{base}/type/video_encoder", f"{base}/type/ptz",
                f"{base}/Profile/Streaming", f"{base}/name/{quote(self.camera.name)}",
                f"{base}/hardware/{MODEL}", f"{base}/location/vehicle"]

    # -- HTTP ----------------------------------------------------------------------

    async def _on_post(self, http: web.Request) -> web.Response:
        service = self._services_at.get(http.match_info["service"])
        try:
            if service is None:
                raise SoapFault(f"no service at {http.path}", "ter:InvalidArgVal",
                                status=404)
            request = soap.parse_request(await http.read())
            handler = self._handlers.get((request.namespace, request.operation))
            if handler is None or request.namespace != service:
                raise soap.action_not_supported(request.operation)
            self._authorise(request)
            body = handler(request)
        except SoapFault as fault:
            return web.Response(status=fault.status, text=fault.xml(),
                                content_type="application/soap+xml", charset="utf-8")
        self.requests[request.operation] = self.requests.get(request.operation, 0) + 1
        return web.Response(text=soap.envelope(body), content_type="application/soap+xml",
                            charset="utf-8")

    def _authorise(self, request: Request) -> None:
        if self._auth is None or request.operation in PRE_AUTH:
            return
        try:
            self._auth.check(request.header)
        except AuthFailure as why:
            log.info("sim onvif %s: %s refused: %s", self.camera.name, request.operation, why)
            raise soap.not_authorized() from None

    # -- device --------------------------------------------------------------------

    def _device_information(self, _: Request) -> str:
        return ("<tds:GetDeviceInformationResponse>"
                f"<tds:Manufacturer>{MANUFACTURER}</tds:Manufacturer>"
                f"<tds:Model>{MODEL}</tds:Model>"
                f"<tds:FirmwareVersion>{FIRMWARE}</tds:FirmwareVersion>"
                f"<tds:SerialNumber>{escape(self.camera.name)}</tds:SerialNumber>"
                f"<tds:HardwareId>{MODEL}</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>")

    def _system_date_and_time(self, _: Request) -> str:
        now = time.gmtime()
        return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
                "<tt:DateTimeType>NTP</tt:DateTimeType>"
                "<tt:DaylightSavings>false</tt:DaylightSavings>"
                "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
                f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.tm_hour}</tt:Hour>"
                f"<tt:Minute>{now.tm_min}</tt:Minute><tt:Second>{now.tm_sec}</tt:Second>"
                f"</tt:Time><tt:Date><tt:Year>{now.tm_year}</tt:Year>"
                f"<tt:Month>{now.tm_mon}</tt:Month><tt:Day>{now.tm_mday}</tt:Day></tt:Date>"
                "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")

    def _capabilities(self, request: Request) -> str:
        categories = set((request.text("tds:Category") or "All").split())
        parts = []
        if categories & {"All", "Device"}:
            parts.append(f"<tt:Device><tt:XAddr>{self.url()}</tt:XAddr></tt:Device>")
        if categories & {"All", "Media"}:
            parts.append(f"<tt:Media><tt:XAddr>{self.url('media_service')}</tt:XAddr>"
                         "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
                         "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
                         "</tt:StreamingCapabilities></tt:Media>")
        if categories & {"All", "PTZ"}:
            parts.append(f"<tt:PTZ><tt:XAddr>{self.url('ptz_service')}</tt:XAddr></tt:PTZ>")
        if not parts:
            raise SoapFault(f"no {' '.join(sorted(categories))} capability",
                            "ter:ActionNotSupported", "ter:NoSuchService", code="env:Receiver")
        return ("<tds:GetCapabilitiesResponse><tds:Capabilities>" + "".join(parts)
                + "</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def _services(self, _: Request) -> str:
        entries = [(soap.TDS, "device_service", 2), (soap.TRT, "media_service", 2),
                   (soap.TPTZ, "ptz_service", 2)]
        return ("<tds:GetServicesResponse>" + "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
            f"<tds:XAddr>{self.url(path)}</tds:XAddr><tds:Version><tt:Major>{major}</tt:Major>"
            "<tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, path, major in entries) + "</tds:GetServicesResponse>")

    def _scopes(self, _: Request) -> str:
        return ("<tds:GetScopesResponse>" + "".join(
            f"<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{escape(s)}"
            "</tt:ScopeItem></tds:Scopes>" for s in self.scopes()) + "</tds:GetScopesResponse>")

    def _hostname(self, _: Request) -> str:
        return ("<tds:GetHostnameResponse><tds:HostnameInformation>"
                f"<tt:FromDHCP>false</tt:FromDHCP><tt:Name>{escape(self.camera.name)}</tt:Name>"
                "</tds:HostnameInformation></tds:GetHostnameResponse>")

    # -- media ---------------------------------------------------------------------

    def _profile_token(self, request: Request, prefix: str) -> str:
        token = request.text(f"{prefix}:ProfileToken")
        if token is None:
            raise invalid_arg("ProfileToken is missing")
        if token not in self.camera.specs:
            raise SoapFault(f"no profile {token!r} (profiles: "
                            f"{', '.join(self.camera.specs)})", "ter:InvalidArgVal",
                            "ter:NoProfile")
        return token

    def _profile_xml(self, stream: str, element: str = "trt:Profiles") -> str:
        spec = self.camera.specs[stream]
        main = self.camera.specs["main"]
        cam = self.camera
        h264 = ""
        if cam.codec == "h264":
            h264 = (f"<tt:H264><tt:GovLength>{cam.gop}</tt:GovLength>"
                    f"<tt:H264Profile>{cam.profile.capitalize()}</tt:H264Profile></tt:H264>")
        return (
            f'<{element} token="{stream}" fixed="true"><tt:Name>{stream}</tt:Name>'
            f'<tt:VideoSourceConfiguration token="video_source_config">'
            "<tt:Name>video_source_config</tt:Name>"
            f"<tt:UseCount>{len(cam.specs)}</tt:UseCount>"
            f"<tt:SourceToken>{VIDEO_SOURCE}</tt:SourceToken>"
            f'<tt:Bounds x="0" y="0" width="{main.width}" height="{main.height}"/>'
            "</tt:VideoSourceConfiguration>"
            f'<tt:VideoEncoderConfiguration token="encoder_{stream}">'
            f"<tt:Name>encoder_{stream}</tt:Name><tt:UseCount>1</tt:UseCount>"
            f"<tt:Encoding>{cam.codec.upper()}</tt:Encoding>"
            f"<tt:Resolution><tt:Width>{spec.width}</tt:Width>"
            f"<tt:Height>{spec.height}</tt:Height></tt:Resolution>"
            "<tt:Quality>5</tt:Quality>"
            f"<tt:RateControl><tt:FrameRateLimit>{cam.fps}</tt:FrameRateLimit>"
            "<tt:EncodingInterval>1</tt:EncodingInterval>"
            f"<tt:BitrateLimit>{spec.bitrate // 1000}</tt:BitrateLimit></tt:RateControl>"
            f"{h264}"
            "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
            "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
            "<tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
            f"<tt:SessionTimeout>PT{int(cam.session_timeout)}S</tt:SessionTimeout>"
            "</tt:VideoEncoderConfiguration>"
            f"{self._ptz_configuration_xml('tt:PTZConfiguration')}"
            f"</{element}>")

    def _profiles(self, _: Request) -> str:
        return ("<trt:GetProfilesResponse>"
                + "".join(self._profile_xml(s) for s in self.camera.specs)
                + "</trt:GetProfilesResponse>")

    def _profile(self, request: Request) -> str:
        stream = self._profile_token(request, "trt")
        return (f"<trt:GetProfileResponse>{self._profile_xml(stream, 'trt:Profile')}"
                "</trt:GetProfileResponse>")

    def _stream_uri(self, request: Request) -> str:
        stream = self._profile_token(request, "trt")
        kind = request.text("trt:StreamSetup/tt:Stream") or "RTP-Unicast"
        protocol = request.text("trt:StreamSetup/tt:Transport/tt:Protocol") or "RTSP"
        if kind != "RTP-Unicast" or protocol not in ("RTSP", "UDP", "TCP"):
            raise SoapFault(f"only RTP-Unicast over RTSP is offered, not {kind} over {protocol}",
                            "ter:InvalidArgVal", "ter:InvalidStreamSetup")
        uri = self.camera.url(stream)
        return ("<trt:GetStreamUriResponse><trt:MediaUri>"
                f"<tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false"
                "</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
                "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>")

    def _video_sources(self, _: Request) -> str:
        main = self.camera.specs["main"]
        return (f'<trt:GetVideoSourcesResponse><trt:VideoSources token="{VIDEO_SOURCE}">'
                f"<tt:Framerate>{self.camera.fps}</tt:Framerate><tt:Resolution>"
                f"<tt:Width>{main.width}</tt:Width><tt:Height>{main.height}</tt:Height>"
                "</tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>")

    # -- PTZ -----------------------------------------------------------------------

    def _node_xml(self, element: str) -> str:
        return (f'<{element} token="{NODE}" FixedHomePosition="false"><tt:Name>{NODE}</tt:Name>'
                f"<tt:SupportedPTZSpaces>{SPACES}</tt:SupportedPTZSpaces>"
                f"<tt:MaximumNumberOfPresets>{MAX_PRESETS}</tt:MaximumNumberOfPresets>"
                f"<tt:HomeSupported>true</tt:HomeSupported></{element}>")

    def _ptz_configuration_xml(self, element: str) -> str:
        return (
            f'<{element} token="{PTZ_CONFIG}"><tt:Name>{PTZ_CONFIG}</tt:Name>'
            f"<tt:UseCount>{len(self.camera.specs)}</tt:UseCount>"
            f"<tt:NodeToken>{NODE}</tt:NodeToken>"
            f"<tt:DefaultAbsolutePantTiltPositionSpace>{PT_POSITION}"
            "</tt:DefaultAbsolutePantTiltPositionSpace>"
            f"<tt:DefaultAbsoluteZoomPositionSpace>{ZOOM_POSITION}"
            "</tt:DefaultAbsoluteZoomPositionSpace>"
            f"<tt:DefaultRelativePanTiltTranslationSpace>{PT_TRANSLATION}"
            "</tt:DefaultRelativePanTiltTranslationSpace>"
            f"<tt:DefaultRelativeZoomTranslationSpace>{ZOOM_TRANSLATION}"
            "</tt:DefaultRelativeZoomTranslationSpace>"
            f"<tt:DefaultContinuousPanTiltVelocitySpace>{PT_VELOCITY}"
            "</tt:DefaultContinuousPanTiltVelocitySpace>"
            f"<tt:DefaultContinuousZoomVelocitySpace>{ZOOM_VELOCITY}"
            "</tt:DefaultContinuousZoomVelocitySpace>"
            f"{soap.vector(1, 1, 1, 'tt:DefaultPTZSpeed')}"
            f"<tt:DefaultPTZTimeout>PT{int(DEFAULT_TIMEOUT_S)}S</tt:DefaultPTZTimeout>"
            f"<tt:PanTiltLimits>{_space2d('Range', PT_POSITION)}</tt:PanTiltLimits>"
            f"<tt:ZoomLimits>{_space1d('Range', ZOOM_POSITION, 0, 1)}</tt:ZoomLimits>"
            f"</{element}>")

    def _nodes(self, _: Request) -> str:
        return f"<tptz:GetNodesResponse>{self._node_xml('tptz:PTZNode')}</tptz:GetNodesResponse>"

    def _node(self, request: Request) -> str:
        token = request.text("tptz:NodeToken")
        if token != NODE:
            raise SoapFault(f"no PTZ node {token!r} (the node is {NODE!r})",
                            "ter:InvalidArgVal", "ter:NoEntity")
        return f"<tptz:GetNodeResponse>{self._node_xml('tptz:PTZNode')}</tptz:GetNodeResponse>"

    def _configurations(self, _: Request) -> str:
        return ("<tptz:GetConfigurationsResponse>"
                f"{self._ptz_configuration_xml('tptz:PTZConfiguration')}"
                "</tptz:GetConfigurationsResponse>")

    def _check_configuration(self, request: Request, path: str) -> None:
        token = request.text(path)
        if token != PTZ_CONFIG:
            raise SoapFault(f"no PTZ configuration {token!r} (it is {PTZ_CONFIG!r})",
                            "ter:InvalidArgVal", "ter:NoConfig")

    def _configuration(self, request: Request) -> str:
        self._check_configuration(request, "tptz:PTZConfigurationToken")
        return ("<tptz:GetConfigurationResponse>"
                f"{self._ptz_configuration_xml('tptz:PTZConfiguration')}"
                "</tptz:GetConfigurationResponse>")

    def _configuration_options(self, request: Request) -> str:
        self._check_configuration(request, "tptz:ConfigurationToken")
        low, high = TIMEOUT_RANGE_S
        return ("<tptz:GetConfigurationOptionsResponse><tptz:PTZConfigurationOptions>"
                f"<tt:Spaces>{SPACES}</tt:Spaces><tt:PTZTimeout><tt:Min>PT{int(low)}S</tt:Min>"
                f"<tt:Max>PT{int(high)}S</tt:Max></tt:PTZTimeout>"
                "</tptz:PTZConfigurationOptions></tptz:GetConfigurationOptionsResponse>")

    def _status(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        here = self.ptz.position()
        pan_tilt, zoom = self.ptz.moving()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return ("<tptz:GetStatusResponse><tptz:PTZStatus>"
                + soap.vector(here.pan, here.tilt, here.zoom, "tt:Position",
                              pan_tilt_space=PT_POSITION, zoom_space=ZOOM_POSITION)
                + f"<tt:MoveStatus><tt:PanTilt>{'MOVING' if pan_tilt else 'IDLE'}</tt:PanTilt>"
                f"<tt:Zoom>{'MOVING' if zoom else 'IDLE'}</tt:Zoom></tt:MoveStatus>"
                f"<tt:UtcTime>{stamp}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>")

    def _continuous_move(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        if request.find("tptz:Velocity") is None:
            raise invalid_arg("ContinuousMove needs a Velocity")
        pan, tilt, zoom = _vector(request, "tptz:Velocity", (-1, 1), (-1, 1),
                                  "ter:InvalidVelocity")
        timeout_text = request.text("tptz:Timeout")
        timeout = None
        if timeout_text is not None:
            timeout = parse_duration(timeout_text)
            low, high = TIMEOUT_RANGE_S
            if not low <= timeout <= high:
                raise SoapFault(f"Timeout {timeout_text} is outside PT{low:g}S..PT{high:g}S",
                                "ter:InvalidArgVal", "ter:TimeoutNotSupported")
        self.ptz.continuous_move(pan, tilt, zoom, timeout)
        return "<tptz:ContinuousMoveResponse/>"

    def _stop(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        pan_tilt = (request.text("tptz:PanTilt") or "true").lower() in ("true", "1")
        zoom = (request.text("tptz:Zoom") or "true").lower() in ("true", "1")
        self.ptz.stop(pan_tilt=pan_tilt, zoom=zoom)
        return "<tptz:StopResponse/>"

    def _relative_move(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        if request.find("tptz:Translation") is None:
            raise invalid_arg("RelativeMove needs a Translation")
        pan, tilt, zoom = _vector(request, "tptz:Translation", (-2, 2), (-1, 1),
                                  "ter:InvalidTranslation")
        self.ptz.move_by(pan or 0.0, tilt or 0.0, zoom or 0.0)
        return "<tptz:RelativeMoveResponse/>"

    def _absolute_move(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        if request.find("tptz:Position") is None:
            raise invalid_arg("AbsoluteMove needs a Position")
        pan, tilt, zoom = _vector(request, "tptz:Position", (-1, 1), (0, 1),
                                  "ter:InvalidPosition")
        here = self.ptz.position()
        self.ptz.move_to(Position(here.pan if pan is None else pan,
                                  here.tilt if tilt is None else tilt,
                                  here.zoom if zoom is None else zoom))
        return "<tptz:AbsoluteMoveResponse/>"

    def _preset_token(self, request: Request) -> str:
        token = request.text("tptz:PresetToken")
        if not token:
            raise invalid_arg("PresetToken is missing")
        return token

    def _goto_preset(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        return self._preset_call(lambda: self.ptz.goto_preset(self._preset_token(request)),
                                 "<tptz:GotoPresetResponse/>")

    def _remove_preset(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        return self._preset_call(lambda: self.ptz.remove_preset(self._preset_token(request)),
                                 "<tptz:RemovePresetResponse/>")

    def _preset_call(self, call: Callable[[], None], response: str) -> str:
        try:
            call()
        except PresetError as why:
            raise SoapFault(str(why), "ter:InvalidArgVal", "ter:NoToken") from None
        return response

    def _set_preset(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        name = request.text("tptz:PresetName")
        token = request.text("tptz:PresetToken") or None
        if token is not None and token not in self.ptz.presets:
            raise SoapFault(f"no preset {token!r}", "ter:InvalidArgVal", "ter:NoToken")
        if name is not None and any(p.name == name and p.token != token
                                    for p in self.ptz.presets.values()):
            raise SoapFault(f"a preset is already named {name!r}", "ter:InvalidArgVal",
                            "ter:PresetExist")
        try:
            token = self.ptz.set_preset(name, token)
        except PresetError as why:
            raise SoapFault(str(why), "ter:InvalidArgVal", "ter:TooManyPresets",
                            code="env:Receiver") from None
        return (f"<tptz:SetPresetResponse><tptz:PresetToken>{escape(token)}</tptz:PresetToken>"
                "</tptz:SetPresetResponse>")

    def _presets(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        return ("<tptz:GetPresetsResponse>" + "".join(
            f'<tptz:Preset token="{escape(p.token)}"><tt:Name>{escape(p.name)}</tt:Name>'
            + soap.vector(p.position.pan, p.position.tilt, p.position.zoom, "tt:PTZPosition",
                          pan_tilt_space=PT_POSITION, zoom_space=ZOOM_POSITION)
            + "</tptz:Preset>" for p in self.ptz.presets.values())
            + "</tptz:GetPresetsResponse>")

    def _goto_home(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        self.ptz.move_to(self.ptz.home)
        return "<tptz:GotoHomePositionResponse/>"

    def _set_home(self, request: Request) -> str:
        self._profile_token(request, "tptz")
        self.ptz.home = self.ptz.position()
        return "<tptz:SetHomePositionResponse/>"


async def run_sim_onvif_camera(name: str, port: int, host: str = "127.0.0.1", *,
                               onvif_port: int, onvif_user: str | None = None,
                               onvif_password: str | None = None,
                               discovery_port: int | None = DISCOVERY_PORT,
                               **options: object) -> None:
    """A PTZ camera with its ONVIF device until cancelled (`edge sim camera --onvif`).

    `options` are `SimCamera`'s; RTSP asks for the ONVIF user and password unless
    they name a `user` of their own, as a camera with one account does.
    """
    import asyncio

    from drivers.sim.camera import SimCamera

    ptz = PtzState()
    if "user" not in options:
        options.update(user=onvif_user, password=onvif_password)
    camera = SimCamera(name, host=host, port=port, view=ptz.view,
                       **options)  # type: ignore[arg-type]
    device = SimOnvifDevice(camera, ptz, port=onvif_port, user=onvif_user,
                            password=onvif_password, discovery_port=discovery_port)
    try:
        await camera.start(wait=False)
        await device.start()
        await camera.wait_ready()
        log.info("sim camera %s ready, ONVIF at %s", name, device.url())
        await asyncio.Event().wait()
    finally:
        await device.close()
        await camera.close()
