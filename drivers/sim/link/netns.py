"""Named network namespaces (``/run/netns``, as ``ip netns`` keeps them) and work inside them.

Nothing here forks. pyroute2's own helpers (``netns.create``, ``create_socket``, an
``IPRoute(netns=...)``) fork a child and stop it with SIGTERM; a forked child shares
the parent's asyncio signal wake-up fd, so the parent's loop took that SIGTERM for
its own and stopped. Namespaces are made by a thread that unshares and is bind-mounted
(pyroute2's ``attach``), and netlink sockets are opened in the namespace by a thread.

Running something inside a namespace takes two forms:

- a process: ``nsenter --net=/run/netns/NAME -- ARGV`` (:func:`exec_prefix`). nsenter
  (util-linux, in every Debian) joins the namespace and execs the program, so the
  child's pid is the program's; no ``preexec_fn``, which is unsafe in a process with
  threads, and no proxy process as pyroute2's ``NSPopen`` keeps;
- a socket or a sysctl in this process (:func:`call_in`): ``setns`` changes the
  namespace of the calling thread only, so a short-lived thread joins the namespace,
  opens what it needs and ends; a socket stays in the namespace it was made in.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import netns as _netns

NETNS_DIR = "/run/netns"
T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_libc = ctypes.CDLL(None, use_errno=True)

#: our namespaces: edge-<role>-<owner pid>-<4 hex>, so a run can tell a dead run's leftovers
_OURS = re.compile(r"^edge-(?:vehicle|centre)-(?P<pid>\d+)-[0-9a-f]{4}$")


def path_of(name: str) -> str:
    return f"{NETNS_DIR}/{name}"


def exists(name: str) -> bool:
    return os.path.exists(path_of(name))


def create(name: str) -> None:
    if exists(name):
        raise FileExistsError(f"network namespace {name} already exists")

    def make() -> None:
        if _libc.unshare(_CLONE_NEWNET) != 0:  # this thread only
            err = ctypes.get_errno()
            raise OSError(err, f"cannot create a network namespace: {os.strerror(err)}")
        _netns.attach(name, threading.get_native_id())

    _in_thread(make, f"netns-create-{name}")


def remove(name: str) -> None:
    if exists(name):
        _netns.remove(name)


def listed() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def sweep_stale() -> list[str]:
    """Remove namespaces a run left behind when it was killed (SIGKILL skips all cleanup).

    Only ours (by name) whose owner process is gone; another live run's are left alone.
    """
    removed = []
    for name in listed():
        m = _OURS.match(name)
        if m and not os.path.exists(f"/proc/{m['pid']}"):
            try:
                remove(name)
            except OSError:
                continue
            removed.append(name)
    return removed


def exec_prefix(name: str) -> list[str]:
    """Put this in front of an argv to run it inside namespace `name`."""
    return ["nsenter", f"--net={path_of(name)}", "--"]


def _in_thread(fn: Callable[[], T], thread_name: str) -> T:
    """`fn()` in a fresh thread (whose namespace changes die with it); its result or error."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    thread = threading.Thread(target=target, name=thread_name, daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def call_in(name: str, fn: Callable[[], T]) -> T:
    """`fn()` run in a thread that has joined namespace `name`; its result or its error."""
    def joined() -> T:
        fd = os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot enter network namespace {name}: "
                                   f"{os.strerror(err)}")
        finally:
            os.close(fd)
        return fn()

    return _in_thread(joined, f"netns-{name}")


def socket_in(name: str, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM,
              proto: int = 0) -> socket.socket:
    """A socket in namespace `name` (bind, connect and send as any other)."""
    return call_in(name, lambda: socket.socket(family, type, proto))


def netlink_in(name: str) -> socket.socket:
    """A route netlink socket in `name`, for ``AsyncIPRoute(use_socket=...)``."""
    return socket_in(name, socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)


def write_sysctl(name: str, key: str, value: str) -> bool:
    """Set net sysctl `key` (e.g. ``net/ipv6/conf/geo/disable_ipv6``) inside `name`.

    False if the key does not exist here (a kernel without IPv6 has no ipv6 keys).
    """
    def write() -> bool:
        try:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)
        except FileNotFoundError:
            return False
        return True

    return call_in(name, write)
