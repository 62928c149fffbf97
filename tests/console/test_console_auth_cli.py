"""``vfd console`` end to end on a real node (``vfd up`` with its TCP listener): the process
prints a link, the link signs a client in once over HTTP, the session then works through the
same API as the CLI (a folder made with the cookie and its CSRF token is the CLI's folder);
``--as``, ``--host``, ``--json``; ``vfd up`` prints the console's URL; a node without a TCP
listener says so.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))
from filenode import Node, running_node
from vfdcli import run_vfd

pytestmark = pytest.mark.fuse

VFD = Path(sys.executable).parent / "vfd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    db = Path(tempfile.mkdtemp(prefix="vfd-cauth-db-", dir="/tmp"))
    try:
        extra = f'tcp_listen = "127.0.0.1:{free_port()}"\n'
        yield from running_node(f"sqlite:///{db / 'vfd.db'}", prefix="vfd-cauth-", extra=extra)
    finally:
        shutil.rmtree(db, ignore_errors=True)


def vfd(node: Node, *args: str) -> str:
    done = run_vfd(VFD, *args, env=node.env)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def base_url(node: Node) -> str:
    return f"http://{node.config.tcp_listen}"


def test_console_auth_cli_link_signs_in_once(node: Node) -> None:
    out = vfd(node, "console")
    assert "sign in to the vfd console as root@local" in out and "works once" in out
    url = out.strip().splitlines()[-1]
    assert url.startswith(f"{base_url(node)}/console/signin?code=")
    with httpx.Client(timeout=30) as browser:
        signed = browser.get(url)
        assert signed.status_code == 303 and signed.headers["location"] == "/console/"
        page = browser.get(f"{base_url(node)}/console/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        session = browser.get(f"{base_url(node)}/v1/console/session").json()
        assert session["user"]["email"] == "root@local" and session["role"] == "admin"
        name = f"console-{secrets.token_hex(3)}"
        made = browser.post(
            f"{base_url(node)}/v1/vfolders",
            json={"name": name},
            headers={"X-CSRF-Token": session["csrf_token"], "Origin": base_url(node)},
        )
        assert made.status_code == 201, made.text
        listed = json.loads(vfd(node, "vfolder", "list", "--json"))
        assert name in {f["name"] for f in listed["vfolders"]}  # the same folder as the CLI's
        with httpx.Client(timeout=30) as other:
            again = other.get(url)
            assert again.status_code == 401 and "used already" in again.text


def test_console_auth_cli_as_user_host_and_json(node: Node) -> None:
    user = node.user()
    link: dict[str, Any] = json.loads(
        vfd(node, "--as", user["email"], "console", "--json", "--host", "console.example.org")
    )
    assert link["user"] == user["email"] and link["expires_in"] == 300
    port = node.config.tcp_listen.rpartition(":")[2] if node.config.tcp_listen else ""
    assert link["url"] == f"http://console.example.org:{port}{link['path']}"
    assert urlsplit(link["url"]).query == f"code={link['code']}"
    with httpx.Client(base_url=base_url(node), timeout=30) as browser:
        assert browser.get(link["path"]).status_code == 303
        assert browser.get("/v1/whoami").json()["email"] == user["email"]
    bad = run_vfd(VFD, "console", "--host", "a/b", env=node.env)
    assert bad.returncode != 0 and "usage_error" in bad.stderr


def test_console_auth_cli_up_prints_the_console_url(node: Node) -> None:
    banner = node.log.read_text()
    assert f"console        {base_url(node)}/console/" in banner
    assert "console)" in banner  # how to sign in


def test_console_auth_cli_without_tcp_listener(node: Node) -> None:
    """A node without a TCP listener serves no console: ``vfd console`` says how to turn it on
    (the same store and daemon, asked through a config without ``tcp_listen``: the daemon's
    own config decides, so a second daemon is started for it)."""
    state = Path(tempfile.mkdtemp(prefix="vfd-cauth-notcp-", dir="/tmp"))
    try:
        url = f"sqlite:///{state / 'vfd.db'}"
        (state / "vfd.toml").write_text(f"database_url = {json.dumps(url)}\n")
        other = Node.launch(state)
        try:
            other.wait_ready()
            done = run_vfd(VFD, "console", env=other.env)
            assert done.returncode != 0
            assert "console_unavailable" in done.stderr and "tcp_listen" in done.stderr
            assert "/console/" not in other.log.read_text()  # vfd up printed no console URL
        finally:
            other.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
