"""TUN devices: a file descriptor that reads and writes the IP packets of an interface."""

from __future__ import annotations

import fcntl
import os
import struct

TUN_PATH = "/dev/net/tun"
_TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000  # bare IP packets, without the 4-byte protocol header
IFNAMSIZ = 16


def open_tun(name: str) -> int:
    """A new TUN interface `name` in this process's namespace; closing the fd removes it."""
    if not 0 < len(name.encode()) < IFNAMSIZ:
        raise ValueError(f"interface name {name!r} must be 1..{IFNAMSIZ - 1} bytes")
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


def tun_available() -> str | None:
    """None if a TUN device can be opened here, else why not."""
    try:
        os.close(os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC))
    except FileNotFoundError:
        return (f"{TUN_PATH} is missing: this kernel or container has no TUN device "
                "(load the tun module, or give the container --device /dev/net/tun)")
    except PermissionError:
        return f"{TUN_PATH} cannot be opened: it needs root (CAP_NET_ADMIN)"
    except OSError as e:
        return f"{TUN_PATH} cannot be opened: {e.strerror or e}"
    return None
