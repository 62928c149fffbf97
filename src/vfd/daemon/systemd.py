"""The sd_notify protocol: tell the service manager we are ready, alive, or stopping.

A datagram ``KEY=VALUE\\n...`` sent to the AF_UNIX socket named by ``NOTIFY_SOCKET``; a name
starting with ``@`` is an abstract socket (leading NUL byte). Without ``NOTIFY_SOCKET`` every
call is a no-op, so the daemon runs the same under systemd, under ``vfd up`` and in tests.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(name: str) -> str | bytes:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=serving"``); True when a datagram was sent.

    Failures are logged, never raised: a lost notification must not stop the daemon.
    """
    env = os.environ if env is None else env
    name = env.get("NOTIFY_SOCKET", "")
    if not name:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(name))
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", name, exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when unset.

    ``WATCHDOG_PID``, when set, must name this process (systemd sets it for the main PID only).
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2
