"""sd_notify against real AF_UNIX datagram sockets, and the daemon's notifications.

The daemon must say READY=1 only once its API answers (systemd starts dependent units then),
STOPPING=1 when asked to stop, and WATCHDOG=1 periodically when a watchdog is configured.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vfd.daemon import systemd


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name

    def receive(self, timeout: float = 30.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def receive_until(self, needle: str, timeout: float = 60.0) -> list[str]:
        """Every datagram up to and including the first containing ``needle``."""
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while time.monotonic() < deadline:
            try:
                got.append(self.receive(max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                break
            if needle in got[-1]:
                return got
        pytest.fail(f"no {needle!r} within {timeout}s; got {got}")


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        yield NotifySocket(sock, str(path))


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    name = f"vfd-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        yield NotifySocket(sock, "@" + name)


def test_notify_sends_to_path_socket(path_socket: NotifySocket) -> None:
    assert systemd.notify("READY=1\nSTATUS=ok", env={"NOTIFY_SOCKET": path_socket.name})
    assert path_socket.receive() == "READY=1\nSTATUS=ok"


def test_notify_sends_to_abstract_socket(abstract_socket: NotifySocket) -> None:
    assert systemd.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": abstract_socket.name})
    assert abstract_socket.receive() == "WATCHDOG=1"


def test_notify_without_socket_is_a_no_op() -> None:
    assert systemd.notify("READY=1", env={}) is False


def test_notify_to_missing_socket_reports_failure(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    own = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.watchdog_interval(own) == 1.0


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "x"},
        {"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"},
    ],
    ids=["unset", "zero", "garbage", "other-pid"],
)
def test_watchdog_interval_none_when_not_for_us(env: dict[str, str]) -> None:
    assert systemd.watchdog_interval(env) is None


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_daemon_notifies_ready_only_once_serving(
    kind: str,
    request: pytest.FixtureRequest,
    database_url: str,
    vfd_daemon_factory,  # type: ignore[no-untyped-def]
) -> None:
    notify: NotifySocket = request.getfixturevalue(f"{kind}_socket")
    env = {"NOTIFY_SOCKET": notify.name, "WATCHDOG_USEC": "400000"}
    with vfd_daemon_factory(env=env, wait=False) as daemon:
        got = notify.receive_until("READY=1")
        # at READY=1 the API already answers: no polling, no retry
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(daemon.socket_path)), base_url="http://vfd"
        ) as client:
            assert client.get("/v1/status").status_code == 200
        assert not any("READY=1" in g for g in got[:-1])
        assert any("STATUS=" in g for g in got[:-1]), got
        notify.receive_until("WATCHDOG=1")
        notify.receive_until("WATCHDOG=1")
        assert daemon.stop() == 0
        notify.receive_until("STOPPING=1")
