"""``vfd status``: what answers, versions, hosts, database, who you are; exit 1 when down."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from vfdcli import Cli

from vfd import __version__


def test_status_reports_daemon_database_hosts_and_identity(
    cli: Cli, vfd_daemon: Any, database_url: str
) -> None:
    status = cli.json("status")
    kind = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    assert status["database"] == kind
    assert status["version"] == __version__
    assert status["hosts"] == ["local"]
    assert status["identity"]["email"] == "root@local" and status["identity"]["role"] == "admin"
    out = cli.ok("status")
    for text in (__version__, str(vfd_daemon.config.api_socket), kind, "local", "root@local"):
        assert text in out
    assert "mountd" in out


def test_status_as_a_user_shows_that_user(cli: Cli, vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    assert cli.json("status", as_=email)["identity"]["email"] == email
    out = cli.ok("status", as_=email)
    assert email in out and "acting for" in out


def test_status_unknown_act_as_user_is_refused(cli: Cli) -> None:
    cli.fails("status", as_="nobody-at-all@example.com", code="user_not_found")


def test_status_daemon_down_exits_1_with_the_reason() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as state:
        down = Cli({"VFD_STATE_DIR": state})
        error = down.fails("status", code="daemon_unavailable")
        socket = Path(state) / "run" / "vfd.sock"
        assert error["message"].startswith(f"vfd daemon is not running (socket {socket}")
        assert "vfd up" in error["message"]
        down.fails("vfolder", "list", code="daemon_unavailable")
