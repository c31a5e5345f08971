"""MANSCDP bodies: GB2312 and mislabelled encodings, device samples, builders, bad XML."""

from __future__ import annotations

import pytest

from drivers.gb28181 import manscdp
from drivers.gb28181.manscdp import Channel, ManscdpError
from drivers.gb28181.ptz_cmd import PtzCmd

CATALOG = """<?xml version="1.0" encoding="GB2312"?>
<Response>
<CmdType>Catalog</CmdType>
<SN>17430</SN>
<DeviceID>34020000001320000001</DeviceID>
<SumNum>3</SumNum>
<DeviceList Num="2">
<Item>
<DeviceID>34020000001310000001</DeviceID>
<Name>北门球机</Name>
<Manufacturer>Hikvision</Manufacturer>
<Model>iDS-2DE</Model>
<Owner>Owner</Owner>
<CivilCode>3402000000</CivilCode>
<Address>北门 3号杆</Address>
<Parental>0</Parental>
<ParentID>34020000001320000001</ParentID>
<SafetyWay>0</SafetyWay>
<RegisterWay>1</RegisterWay>
<Secrecy>0</Secrecy>
<Status>ON</Status>
<Longitude>117.2272</Longitude>
<Latitude>31.8206</Latitude>
<Info><PTZType>1</PTZType></Info>
</Item>
<Item>
<DeviceID>34020000001310000002</DeviceID>
<Name>南门 & 东侧</Name>
<Status>OFF</Status>
<Longitude>none</Longitude>
</Item>
</DeviceList>
</Response>
"""


def test_gb2312_catalog_part() -> None:
    message = manscdp.parse(CATALOG.encode("gb2312"))
    assert (message.root, message.cmd_type, message.sn, message.device_id) == (
        "Response", "Catalog", 17430, "34020000001320000001")
    part = manscdp.catalog_of(message)
    assert part.sum_num == 3  # more parts to come under the same SN
    first, second = part.channels
    assert (first.channel_id, first.name, first.address, first.online) == (
        "34020000001310000001", "北门球机", "北门 3号杆", True)
    assert (first.manufacturer, first.ptz_type, first.longitude, first.latitude) == (
        "Hikvision", 1, 117.2272, 31.8206)
    assert first.fields["RegisterWay"] == "1"
    assert (second.name, second.online, second.longitude) == ("南门 & 东侧", False, None)


@pytest.mark.parametrize(("declared", "written"), [
    ("GB2312", "utf-8"),   # labelled GB2312, sent as UTF-8: common
    ("UTF-8", "gbk"),      # labelled UTF-8, sent as GBK
    ("GBK", "gb18030"),
    ("gb2312", "gb2312"),
    ("x-unknown", "utf-8"),
])
def test_encodings_as_devices_send_them(declared: str, written: str) -> None:
    body = CATALOG.replace('encoding="GB2312"', f'encoding="{declared}"').encode(written)
    assert manscdp.catalog_of(manscdp.parse(body)).channels[0].name == "北门球机"


def test_no_declaration_and_bom() -> None:
    body = "\ufeff" + CATALOG.split("\n", 1)[1]
    assert manscdp.parse(body.encode("utf-8")).sn == 17430


def test_device_info_and_status_responses() -> None:
    info = manscdp.device_info_of(manscdp.parse("""<?xml version="1.0" encoding="GB2312"?>
<Response><CmdType>DeviceInfo</CmdType><SN>5</SN><DeviceID>34020000001320000001</DeviceID>
<Result>OK</Result><DeviceName>布控球</DeviceName><Manufacturer>Dahua</Manufacturer>
<Model>SD-5G</Model><Firmware>V2.8</Firmware><Channel>1</Channel></Response>""".encode("gbk")))
    assert (info.name, info.manufacturer, info.model, info.firmware, info.channels) == (
        "布控球", "Dahua", "SD-5G", "V2.8", 1)
    status = manscdp.device_status_of(manscdp.parse(b"""<?xml version="1.0"?>
<Response><CmdType>DeviceStatus</CmdType><SN>6</SN><DeviceId>34020000001320000001</DeviceId>
<Result>OK</Result><Online>ONLINE</Online><Status>OK</Status><Encode>ON</Encode>
<Record>OFF</Record><DeviceTime>2026-12-02T09:00:00</DeviceTime>
<Alarmstatus Num="0"></Alarmstatus></Response>"""))
    assert (status.online, status.status_ok, status.encode, status.record) == (
        True, True, "ON", "OFF")


def test_builders_parse_back() -> None:
    query = manscdp.parse(manscdp.catalog_query(9, "34020000001320000001"))
    assert (query.root, query.cmd_type, query.sn) == ("Query", "Catalog", 9)
    control = manscdp.parse(manscdp.ptz_control(10, "34020000001310000001", "A50F0100000000B5"))
    assert control.cmd_type == "DeviceControl"
    ptz = control.element.findtext("PTZCmd")
    assert ptz is not None and PtzCmd.decode(ptz).kind == "stop"
    assert control.element.findtext("Info/ControlPriority") == "5"
    keepalive = manscdp.keepalive_of(manscdp.parse(manscdp.keepalive(3, "3402")))
    assert (keepalive.sn, keepalive.status) == (3, "OK")
    body = manscdp.catalog_response(4, "d", 1, [Channel("c1", "北门", status="ON")])
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert "北门".encode("gb2312") in body
    assert manscdp.catalog_of(manscdp.parse(body)).channels[0].name == "北门"


def test_keyframe_control_as_the_standard_and_wvp_write_it() -> None:
    body = manscdp.keyframe_control(11, "34020000001310000001")
    control = manscdp.parse(body)
    assert (control.root, control.cmd_type, control.sn, control.device_id) == (
        "Control", "DeviceControl", 11, "34020000001310000001")
    assert control.element.findtext("IFameCmd") == "Send"
    assert manscdp.keyframe_requested(control)


@pytest.mark.parametrize(("element", "asked"), [
    ("<IFameCmd>Send</IFameCmd>", True),
    ("<IFrameCmd>Send</IFrameCmd>", True),  # GB/T 28181-2022's spelling
    ("<ifamecmd> send </ifamecmd>", True),  # tag and value case as some devices write
    ("<IFameCmd>Stop</IFameCmd>", False),
    ("<PTZCmd>A50F0100000000B5</PTZCmd>", False),
])
def test_keyframe_requested_in_either_spelling(element: str, asked: bool) -> None:
    body = (f"<Control><CmdType>DeviceControl</CmdType><SN>1</SN>"
            f"<DeviceID>34020000001310000001</DeviceID>{element}</Control>").encode()
    assert manscdp.keyframe_requested(manscdp.parse(body)) is asked
    query = manscdp.parse(manscdp.catalog_query(1, "34020000001320000001"))
    assert not manscdp.keyframe_requested(query)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&lol2;</DeviceID></Notify>"""


@pytest.mark.parametrize(("body", "reason"), [
    (BILLION_LAUGHS, "has a DTD"),
    (b"<Notify><CmdType>Keepalive</CmdType>", "malformed XML"),
    (b"", "malformed XML"),
    (b"<Alarm><CmdType>x</CmdType></Alarm>", "is not Notify/Query/Response/Control"),
    (b"<Notify><SN>1</SN><DeviceID>1</DeviceID></Notify>", "has no CmdType"),
    (b"<Notify><CmdType>Keepalive</CmdType><DeviceID>1</DeviceID></Notify>", "has no SN"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>x1</SN><DeviceID>1</DeviceID></Notify>",
     "SN 'x1' is not a number"),
    (b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>", "has no DeviceID"),
    (b'<?xml version="1.0" encoding="UTF-8"?><Notify>\xff\xff\xff</Notify>', "neither"),
    (b"<Notify>" + b" " * 70000 + b"</Notify>", "over the"),
])
def test_bad_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(ManscdpError) as caught:
        manscdp.parse(body)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("body", "reason"), [
    (b"<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>1</DeviceID></Response>",
     "no SumNum"),
    (b"<Response><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>1</DeviceID><SumNum>1</SumNum>"
     b"<DeviceList><Item><Name>x</Name></Item></DeviceList></Response>", "item has no DeviceID"),
])
def test_bad_catalogs(body: bytes, reason: str) -> None:
    with pytest.raises(ManscdpError, match=reason):
        manscdp.catalog_of(manscdp.parse(body))
