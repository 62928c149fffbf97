"""``GET /v1/status`` and ``vfd status`` show the node-wide figures (store, hosts, mountd's
health, worker pools) to admins only; a user gets the version, whether mountd is up, and
themselves."""

from __future__ import annotations

from typing import Any

from vfdcli import Cli

from vfd import __version__


def test_status_of_a_user_holds_no_node_wide_figures(cli: Cli, vfd_daemon: Any) -> None:
    email = vfd_daemon.make_user()["email"]
    status = cli.json("status", as_=email)
    assert set(status) == {"version", "mountd_up", "identity"}, status
    assert status["version"] == __version__
    assert status["mountd_up"] is False  # this daemon runs without mountd
    assert status["identity"]["email"] == email
    out = cli.ok("status", as_=email)
    assert "mountd" in out and "not answering" in out
    for hidden in ("database", "hosts", "fast path", "sqlite", "postgresql"):
        assert hidden not in out, out


def test_status_of_an_admin_holds_the_node_wide_figures(cli: Cli) -> None:
    status = cli.json("status")
    assert {"version", "mountd_up", "identity", "database", "hosts", "mountd", "workers"} <= set(
        status
    )
    assert status["mountd"] is None and status["mountd_up"] is False
    assert status["workers"]["files"]["size"] >= 1
    out = cli.ok("status")
    assert "database" in out and "hosts" in out
