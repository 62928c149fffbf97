"""The SFTP app attached to a running compute session (``vfd session app ID sftp``): it
serves the session's mounts, what it writes is seen inside the container, a read-only mount
refuses writes, and it stops with the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
from appnode import app_servers, proc_status, wait_gone
from sessionnode import IMAGE, SessionNode, node_fixture
from sftpclient import require_sftp, sftp

NODE_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "31600-31699"
"""


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    require_sftp()
    yield from node_fixture(request)


def test_sftp_in_a_compute_session(node: SessionNode, tmp_path: Path) -> None:
    user = node.user()
    email = user["email"]
    rw = node.folder(user)["name"]
    ro = node.folder(user)["name"]
    started = node.run(
        "run", "-d", "-m", rw, "-m", f"{ro}:in/data:ro", IMAGE, "sleep", "300", as_=email
    )
    assert started.returncode == 0, started.stderr
    ref = started.stdout.split()[0]
    node.wait_status(ref, {"running"}, as_=email)
    app = node.run("session", "app", ref, "sftp", as_=email)
    assert app.returncode == 0, app.stderr
    assert app.stdout.startswith(f"sftp://{user['username']}@127.0.0.1:")
    key = tmp_path / "key"
    saved = node.run("session", "sftp-key", ref, "-o", str(key), as_=email)
    assert saved.returncode == 0, saved.stderr
    [running] = [a for a in node.session(ref, as_=email)["apps"] if a["name"] == "sftp"]
    assert proc_status(running["pid"])["Uid"].split()[0] == str(user["uid"])
    (tmp_path / "hello.txt").write_text("from sftp\n")
    done = sftp(
        key, running["port"], user["username"], f"ls -1 /\nput {tmp_path / 'hello.txt'} {rw}/\n"
    )
    assert done.returncode == 0, done.stderr
    listed = [n.strip().strip("/") for n in done.stdout.splitlines() if "sftp>" not in n]
    assert sorted(n for n in listed if n) == sorted([rw, "data"])
    seen = node.run("session", "exec", ref, "--", "cat", f"/home/work/{rw}/hello.txt", as_=email)
    assert (seen.returncode, seen.stdout) == (0, "from sftp\n"), seen.stderr
    refused = sftp(key, running["port"], user["username"], f"put {tmp_path / 'hello.txt'} data/\n")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    gone = node.run("session", "destroy", ref, as_=email)
    assert gone.returncode == 0, gone.stderr
    ended = node.wait_status(ref, {"terminated"}, as_=email)
    [stopped] = [a for a in ended["apps"] if a["name"] == "sftp"]
    assert (stopped["status"], stopped["status_reason"]) == ("stopped", "its session ended")
    wait_gone(running["pid"])
    assert app_servers(node, "vfd.apps.sftpd") == []
