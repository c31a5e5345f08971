"""One-line reasons for everything that can go wrong talking to an ONVIF device.

zeep, aiohttp and onvif-zeep-async each raise their own exceptions, several of
them with a multi-line or empty `str()`; an operator sees only the
:class:`OnvifError` line built here, which names the device, the operation and
the cause ("wrong user name or password", "connection refused", a SOAP fault's
subcode), never the library's text or a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "wrong user name or password"
# ONVIF Core 5.11.2.1: the sender subcodes a device answers a rejected UsernameToken with.
_AUTH_SUBCODES = frozenset({"NotAuthorized", "FailedAuthentication", "InvalidSecurity",
                            "FailedCheck"})


class OnvifError(Exception):
    """A failed exchange with an ONVIF device; `str()` is one line for an operator."""


def _local(name: Any) -> str:
    """`ter:NotAuthorized`, `{ns}NotAuthorized` or a QName -> `NotAuthorized`."""
    text = str(getattr(name, "localname", None) or name)
    return text.rpartition("}")[2].rpartition(":")[2]


def _fault_reason(exc: Any) -> str:
    if getattr(exc, "code", None) is None and not getattr(exc, "subcodes", None):
        # zeep's reading of an error answer with no SOAP Fault in it (a web page, say).
        return "the device's answer is not ONVIF (a web server, or the wrong path?)"
    subcodes = [_local(code) for code in (getattr(exc, "subcodes", None) or [])]
    if any(code in _AUTH_SUBCODES for code in subcodes):
        return f"{WRONG_CREDENTIALS} ({subcodes[-1]})"
    message = " ".join(str(getattr(exc, "message", "") or "").split())[:160]
    code = subcodes[-1] if subcodes else _local(getattr(exc, "code", None) or "fault")
    if code == "ActionNotSupported":
        return "the device does not support this operation (ActionNotSupported)"
    return f"SOAP fault {code}" + (f": {message}" if message else "")


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError) or exc.errno == 111:
        return "connection refused (nothing listening there?)"
    return f"cannot connect ({exc.strerror or type(exc).__name__})"


def describe(exc: BaseException, *, timeout: float) -> str:
    """Why the exchange that raised `exc` failed, in a few words."""
    import aiohttp
    import zeep.exceptions
    from lxml import etree

    if isinstance(exc, OnvifError):
        return str(exc)
    if isinstance(exc, zeep.exceptions.Fault):
        return _fault_reason(exc)
    if isinstance(exc, zeep.exceptions.TransportError):
        if exc.status_code in (401, 403):
            return f"{WRONG_CREDENTIALS} (HTTP {exc.status_code})"
        return f"HTTP {exc.status_code} from the device"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout:g} s (unreachable?)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _os_reason(exc.os_error)
    if isinstance(exc, aiohttp.ClientError):
        return f"HTTP exchange failed ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    if isinstance(exc, etree.XMLSyntaxError | zeep.exceptions.XMLSyntaxError
                  | zeep.exceptions.XMLParseError | zeep.exceptions.ValidationError):
        return "the device's answer is not valid ONVIF XML"
    if isinstance(exc, AttributeError | TypeError | ValueError) and _raised_in_zeep_parser(exc):
        # zeep trips over an answer that is not XML at all ("Not Found" in plain text).
        return "the device's answer is not ONVIF (a web server, or the wrong path?)"
    # onvif-zeep-async wraps what it cannot place in ONVIFError("Unknown error: ...").
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        return describe(cause, timeout=timeout)
    text = str(exc)
    if "doesn`t support service" in text or "doesn't support service" in text:
        return "the device does not offer this service"
    # A bug here or in the libraries: the operator gets a line, the log the traceback.
    log.warning("unexpected failure in the ONVIF client", exc_info=exc)
    return f"unexpected failure in the ONVIF client ({type(exc).__name__}; see the log)"


def _raised_in_zeep_parser(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_next is None:
            return "zeep" in tb.tb_frame.f_code.co_filename \
                and tb.tb_frame.f_code.co_name in ("parse_xml", "process_reply")
        tb = tb.tb_next
    return False
