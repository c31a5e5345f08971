"""SOAP 1.2 envelopes and faults for the simulated ONVIF device (hand-written XML).

Requests are parsed with the standard library; responses are text templates, which
is what a simulator needs (the product's client uses onvif-zeep-async, not this).
Faults carry ONVIF's subcodes (ONVIF Core, "SOAP fault messages"), e.g.
env:Sender / ter:InvalidArgVal / ter:NoProfile, and are sent with the status the
SOAP 1.2 HTTP binding gives them: 400 for env:Sender, 500 for env:Receiver.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

ENV = "http://www.w3.org/2003/05/soap-envelope"
TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TER = "http://www.onvif.org/ver10/error"

NAMESPACES = {"env": ENV, "tt": TT, "tds": TDS, "trt": TRT, "tptz": TPTZ, "ter": TER}
_XMLNS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())


class SoapFault(Exception):
    """A fault to answer with: code env:Sender or env:Receiver, ONVIF subcodes, reason."""

    def __init__(self, reason: str, *subcodes: str, code: str = "env:Sender",
                 status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.subcodes = subcodes
        self.status = status if status is not None else (400 if code == "env:Sender" else 500)

    def xml(self) -> str:
        nested = ""
        for subcode in reversed(self.subcodes):
            nested = f"<env:Subcode><env:Value>{subcode}</env:Value>{nested}</env:Subcode>"
        return envelope(
            f"<env:Fault><env:Code><env:Value>{self.code}</env:Value>{nested}</env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{escape(self.reason)}</env:Text>'
            "</env:Reason></env:Fault>")


def invalid_arg(reason: str) -> SoapFault:
    return SoapFault(reason, "ter:InvalidArgVal", "ter:InvalidArgs")


def not_authorized() -> SoapFault:
    # Reason as real devices word it; zeep shows it as the error's message.
    return SoapFault("Sender not Authorized", "ter:NotAuthorized")


def action_not_supported(name: str) -> SoapFault:
    return SoapFault(f"Action {name} is not supported", "ter:ActionNotSupported",
                     code="env:Receiver")


def envelope(body: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {_XMLNS}>'
            f"<env:Body>{body}</env:Body></env:Envelope>")


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed SOAP request: its operation (the Body's first element) and header."""

    namespace: str
    operation: str
    body: ET.Element
    header: ET.Element | None

    def text(self, path: str) -> str | None:
        """Text of a child by ONVIF-prefixed path, e.g. ``tptz:ProfileToken``."""
        found = self.body.findtext(path, namespaces=NAMESPACES)
        return None if found is None else found.strip()

    def find(self, path: str) -> ET.Element | None:
        return self.body.find(path, namespaces=NAMESPACES)


def parse_request(data: bytes) -> Request:
    """The request in `data`; SoapFault (env:Sender) if it is not a SOAP 1.2 request."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SoapFault(f"not well-formed XML: {exc}", "ter:WellFormed") from None
    if root.tag != f"{{{ENV}}}Envelope":
        raise SoapFault("not a SOAP 1.2 envelope", "ter:InvalidArgs")
    body = root.find(f"{{{ENV}}}Body")
    if body is None or len(body) == 0:
        raise SoapFault("the envelope has no operation in its Body", "ter:InvalidArgs")
    operation = body[0]
    namespace, _, name = operation.tag[1:].partition("}")
    return Request(namespace, name, operation, root.find(f"{{{ENV}}}Header"))


def vector(pan: float, tilt: float, zoom: float, element: str = "tt:PTZPosition",
           *, pan_tilt_space: str = "", zoom_space: str = "") -> str:
    pts = f' space="{pan_tilt_space}"' if pan_tilt_space else ""
    zs = f' space="{zoom_space}"' if zoom_space else ""
    return (f'<{element}><tt:PanTilt x="{pan:.6g}" y="{tilt:.6g}"{pts}/>'
            f'<tt:Zoom x="{zoom:.6g}"{zs}/></{element}>')
