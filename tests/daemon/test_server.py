"""The daemon process: start-up errors, the API socket, signals, and atomic folder creation."""

from __future__ import annotations

import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from daemonapi import error, ok, unique

from vfd.store.db import make_engine


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vfd.daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vfd daemon: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_server_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text('colour = "blue"\n')
    _one_line_error(_run(["--state-dir", str(tmp_path)]), "colour", "unknown key")


def test_server_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    _one_line_error(_run(["--config", str(tmp_path / "none.toml")]), "does not exist")


def test_server_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    (tmp_path / "vfd.toml").write_text(
        f'database_url = "postgresql://nobody:x@127.0.0.1:{number}/none"\n'
    )
    _one_line_error(_run(["--state-dir", str(tmp_path)]), "database_url")


def test_server_bad_tcp_listen_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "vfd.toml").write_text('tcp_listen = "no-port"\n')
    _one_line_error(_run(["--state-dir", str(tmp_path)]), "tcp_listen")


def test_server_socket_is_world_writable_and_replaces_a_stale_one(
    vfd_daemon_factory: Any,
) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="vfd-sock-", dir="/tmp"))
    try:
        sock_path = run_dir / "api.sock"
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(sock_path))
        stale.close()  # a socket file nobody listens on
        with vfd_daemon_factory(settings={"api_socket": str(sock_path)}) as daemon:
            assert stat.S_IMODE(sock_path.stat().st_mode) == 0o666
            ok(daemon.http.get("/v1/status"))
        assert not sock_path.exists()
    finally:
        shutil.rmtree(run_dir)


def test_server_refuses_a_socket_in_use(vfd_daemon_factory: Any, database_url: str) -> None:
    with vfd_daemon_factory() as daemon:
        proc = _run(["--state-dir", str(daemon.state_dir)])
        _one_line_error(proc, "in use")
        ok(daemon.http.get("/v1/status"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_server_stops_cleanly_on_signal(vfd_daemon_factory: Any, sig: signal.Signals) -> None:
    with vfd_daemon_factory() as daemon:
        daemon.process.send_signal(sig)
        assert daemon.process.wait(30) == 0
        assert not daemon.socket_path.exists()
        assert "stopped" in daemon.log()


def test_server_nothing_is_half_created_when_the_directory_fails(
    vfd_daemon_factory: Any,
) -> None:
    settings = {"hosts": {"local": "{state_dir}/hosts/local", "broken": "{state_dir}/broken"}}
    with vfd_daemon_factory(settings=settings) as daemon:
        broken = daemon.config.hosts["broken"]
        broken.rmdir()
        broken.write_text("a file where the host root should be")
        email = daemon.make_user()["email"]
        user = daemon.as_user(email)
        name = unique()
        error(user.post("/v1/vfolders", json={"name": name, "host": "broken"}), 500, "internal")
        error(user.get(f"/v1/vfolders/{name}"), 404, "vfolder_not_found")
        assert ok(user.get("/v1/storage-status"))["created"] == 0
        engine = make_engine(daemon.config.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT count(*) FROM vfolder WHERE name = :n"), {"n": name}
                ).scalar()
                scopes = conn.execute(
                    sa.text("SELECT count(*) FROM quotascope WHERE host = 'broken'")
                ).scalar()
                audits = conn.execute(
                    sa.text("SELECT count(*) FROM auditevent WHERE target = :n"), {"n": name}
                ).scalar()
        finally:
            engine.dispose()
        assert (rows, scopes, audits) == (0, 0, 0)
        assert broken.is_file()
        assert "cannot create backing directory" in daemon.log()
        # with the host root back, the same request succeeds: the failure was the directory
        broken.unlink()
        broken.mkdir()
        made = ok(user.post("/v1/vfolders", json={"name": name, "host": "broken"}), 201)
        assert made["host"] == "broken"
