"""MANSCDP bodies (GB/T 28181 §A.2, `Application/MANSCDP+xml`): parse and build.

Devices write GB2312 (sometimes GBK, sometimes UTF-8 that claims to be GB2312), so a
body is decoded by its declaration with a fall-back, and the declaration is dropped
before the XML parser sees the text. The stdlib parser (expat) never fetches external
entities; we also refuse any DTD outright, so no entity can expand, and bound the size.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

MAX_BODY_BYTES = 64 * 1024
CONTENT_TYPE = "Application/MANSCDP+xml"

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?\?>", re.IGNORECASE)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""", re.IGNORECASE)
# An '&' that starts no entity: devices put raw '&' in channel names.
_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_GB_NAMES = {"gb2312", "gbk", "gb18030", "cp936", "euc-cn", "x-gbk"}

RootTag = Literal["Notify", "Query", "Response", "Control"]


class ManscdpError(ValueError):
    """A body we cannot take; `str()` is one line naming what was wrong."""


def decode(raw: bytes) -> str:
    """The body as text: by its declared encoding, falling back when the device lied."""
    if len(raw) > MAX_BODY_BYTES:
        raise ManscdpError(f"body of {len(raw)} bytes is over the {MAX_BODY_BYTES}-byte limit")
    declaration = _DECLARATION.match(raw)
    declared = None
    if declaration is not None:
        found = _ENCODING.search(declaration.group(0))
        if found is not None:
            declared = found.group(1).decode("ascii").lower()
        raw = raw[declaration.end():]
    # GB18030 decodes everything GB2312 and GBK do, and the bytes of both.
    order = ["utf-8", "gb18030"]
    if declared in _GB_NAMES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # A GB2312 body that is also valid UTF-8 is (nearly) always UTF-8 mislabelled:
            # two-byte GB sequences seldom form valid UTF-8 runs.
            return text
        order = ["gb18030"]
    for encoding in order:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ManscdpError(f"body is neither {declared or 'UTF-8'} nor GB18030 text")


def parse_xml(raw: bytes) -> ET.Element:
    text = decode(raw).lstrip("\ufeff")
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ManscdpError("body has a DTD (refused: no entities in MANSCDP)")
    text = _BARE_AMP.sub("&amp;", text)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise ManscdpError(f"malformed XML: {exc}") from None


def _text(element: ET.Element, name: str) -> str | None:
    # Tag case varies between vendors (`DeviceID` vs `DeviceId`): match without case.
    lowered = name.lower()
    for child in element:
        if isinstance(child.tag, str) and child.tag.lower() == lowered:
            return (child.text or "").strip()
    return None


def _child(element: ET.Element, name: str) -> ET.Element | None:
    lowered = name.lower()
    for child in element:
        if isinstance(child.tag, str) and child.tag.lower() == lowered:
            return child
    return None


def _int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ManscdpError(f"{what} {value[:20]!r} is not a number") from None


def _flat(element: ET.Element) -> dict[str, str]:
    """Every simple child (no children of its own) as name -> text."""
    return {str(child.tag): (child.text or "").strip() for child in element
            if isinstance(child.tag, str) and len(child) == 0}


@dataclass(frozen=True)
class Manscdp:
    """Any MANSCDP message: root (`Notify`, `Query`, `Response`, `Control`), command, SN,
    the device it concerns, and the parsed element for the typed readers below."""

    root: str
    cmd_type: str
    sn: int
    device_id: str
    element: ET.Element = field(repr=False, compare=False)


def parse(raw: bytes) -> Manscdp:
    element = parse_xml(raw)
    root = str(element.tag)
    if root not in ("Notify", "Query", "Response", "Control"):
        raise ManscdpError(f"root element <{root[:30]}> is not Notify/Query/Response/Control")
    cmd_type = _text(element, "CmdType")
    if not cmd_type:
        raise ManscdpError(f"<{root}> has no CmdType")
    sn = _int(_text(element, "SN"), "SN")
    if sn is None:
        raise ManscdpError(f"<{root}> {cmd_type} has no SN")
    device_id = _text(element, "DeviceID")
    if not device_id:
        raise ManscdpError(f"<{root}> {cmd_type} has no DeviceID")
    return Manscdp(root, cmd_type, sn, device_id, element)


# -- typed readers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Keepalive:
    device_id: str
    sn: int
    status: str


def keepalive_of(message: Manscdp) -> Keepalive:
    return Keepalive(message.device_id, message.sn, _text(message.element, "Status") or "")


@dataclass(frozen=True)
class Channel:
    """One catalog item: a camera channel (or a group/region entry) of a device."""

    channel_id: str
    name: str
    status: str = ""
    manufacturer: str = ""
    model: str = ""
    parent_id: str = ""
    civil_code: str = ""
    address: str = ""
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    fields: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def online(self) -> bool:
        return self.status.upper() in ("ON", "ONLINE", "OK")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # a position a device fills with junk is absent, not an error


@dataclass(frozen=True)
class CatalogPart:
    """One Catalog response message: SumNum says how many items in all; a device sends
    them over several messages (same SN) when they do not fit one."""

    device_id: str
    sn: int
    sum_num: int
    channels: list[Channel]


def catalog_of(message: Manscdp) -> CatalogPart:
    sum_num = _int(_text(message.element, "SumNum"), "SumNum")
    if sum_num is None or sum_num < 0:
        raise ManscdpError("Catalog response has no SumNum")
    channels: list[Channel] = []
    device_list = _child(message.element, "DeviceList")
    items = [] if device_list is None else [
        item for item in device_list if isinstance(item.tag, str) and item.tag.lower() == "item"]
    for item in items:
        flat = _flat(item)
        channel_id = _text(item, "DeviceID")
        if not channel_id:
            raise ManscdpError("Catalog item has no DeviceID")
        info = _child(item, "Info")
        ptz_type = _int(_text(info, "PTZType"), "PTZType") if info is not None else None
        channels.append(Channel(
            channel_id=channel_id, name=_text(item, "Name") or "",
            status=_text(item, "Status") or "",
            manufacturer=_text(item, "Manufacturer") or "", model=_text(item, "Model") or "",
            parent_id=_text(item, "ParentID") or "", civil_code=_text(item, "CivilCode") or "",
            address=_text(item, "Address") or "",
            longitude=_float(_text(item, "Longitude")), latitude=_float(_text(item, "Latitude")),
            ptz_type=ptz_type, fields=flat))
    return CatalogPart(message.device_id, message.sn, sum_num, channels)


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    result: str
    name: str
    manufacturer: str
    model: str
    firmware: str
    channels: int | None
    fields: dict[str, str] = field(default_factory=dict, compare=False)


def device_info_of(message: Manscdp) -> DeviceInfo:
    e = message.element
    return DeviceInfo(message.device_id, _text(e, "Result") or "", _text(e, "DeviceName") or "",
                      _text(e, "Manufacturer") or "", _text(e, "Model") or "",
                      _text(e, "Firmware") or "", _int(_text(e, "Channel"), "Channel"),
                      _flat(e))


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    result: str
    online: bool
    status_ok: bool
    encode: str
    record: str
    device_time: str
    fields: dict[str, str] = field(default_factory=dict, compare=False)


def device_status_of(message: Manscdp) -> DeviceStatus:
    e = message.element
    return DeviceStatus(
        message.device_id, _text(e, "Result") or "",
        (_text(e, "Online") or "").upper() == "ONLINE", (_text(e, "Status") or "").upper() == "OK",
        _text(e, "Encode") or "", _text(e, "Record") or "", _text(e, "DeviceTime") or "",
        _flat(e))


# -- builders ----------------------------------------------------------------------------------

def build(root: RootTag, cmd_type: str, sn: int, device_id: str,
          fields: list[tuple[str, str]] | None = None, *, encoding: str = "GB2312",
          extra: list[ET.Element] | None = None) -> bytes:
    """A body: `<?xml ... encoding=...?><Root><CmdType/><SN/><DeviceID/>fields...</Root>`."""
    element = ET.Element(root)
    for name, value in [("CmdType", cmd_type), ("SN", str(sn)), ("DeviceID", device_id),
                        *(fields or [])]:
        ET.SubElement(element, name).text = value
    for child in extra or []:
        element.append(child)
    ET.indent(element, space="")
    text = ET.tostring(element, encoding="unicode")
    try:
        body = text.encode("gb18030" if encoding.lower() in _GB_NAMES else encoding)
    except (UnicodeEncodeError, LookupError) as exc:
        raise ManscdpError(f"cannot write the body as {encoding}: {exc}") from None
    return f'<?xml version="1.0" encoding="{encoding}"?>\n'.encode("ascii") + body + b"\n"


def catalog_query(sn: int, device_id: str) -> bytes:
    return build("Query", "Catalog", sn, device_id)


def device_info_query(sn: int, device_id: str) -> bytes:
    return build("Query", "DeviceInfo", sn, device_id)


def device_status_query(sn: int, device_id: str) -> bytes:
    return build("Query", "DeviceStatus", sn, device_id)


def keepalive(sn: int, device_id: str, status: str = "OK") -> bytes:
    return build("Notify", "Keepalive", sn, device_id, [("Status", status)])


def ptz_control(sn: int, channel_id: str, ptz_cmd_hex: str, priority: int = 5) -> bytes:
    """DeviceControl with PTZCmd (A.2.3.1); `ControlPriority` 1..10, 5 as most platforms."""
    info = ET.Element("Info")
    ET.SubElement(info, "ControlPriority").text = str(priority)
    return build("Control", "DeviceControl", sn, channel_id, [("PTZCmd", ptz_cmd_hex)],
                 extra=[info])


def keyframe_control(sn: int, channel_id: str) -> bytes:
    """DeviceControl asking for an I-frame now (A.2.3: `IFameCmd` `Send`, the 2016 text's own
    spelling, which devices and platforms such as WVP use; 2022 writes `IFrameCmd`)."""
    return build("Control", "DeviceControl", sn, channel_id, [("IFameCmd", "Send")])


def keyframe_requested(message: Manscdp) -> bool:
    """Whether a DeviceControl asks for an I-frame, in either spelling."""
    if message.root != "Control" or message.cmd_type != "DeviceControl":
        return False
    value = _text(message.element, "IFameCmd")
    if value is None:
        value = _text(message.element, "IFrameCmd")
    return value is not None and value.lower() == "send"


def catalog_response(sn: int, device_id: str, sum_num: int, channels: list[Channel],
                     encoding: str = "GB2312") -> bytes:
    """One part of a Catalog response (for simulators and tests)."""
    device_list = ET.Element("DeviceList", Num=str(len(channels)))
    for channel in channels:
        item = ET.SubElement(device_list, "Item")
        for name, value in (("DeviceID", channel.channel_id), ("Name", channel.name),
                            ("Manufacturer", channel.manufacturer), ("Model", channel.model),
                            ("ParentID", channel.parent_id), ("Status", channel.status)):
            ET.SubElement(item, name).text = value
    return build("Response", "Catalog", sn, device_id, [("SumNum", str(sum_num))],
                 encoding=encoding, extra=[device_list])
