"""The user's own keys open their SFTP apps: ``authorized_keys`` at the top of their ``.ssh``
automount folder (put there with ``vfd vfolder upload``) is read when the app starts; a key
it lists connects with the real OpenSSH ``sftp`` client, one it does not list is refused; a
malformed line or one with options is skipped with a warning naming it, the rest still
count; an ``authorized_keys`` that is a symbolic link to a file outside is not followed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import AppNode, app_node_fixture, wait_gone
from sftpclient import require_sftp, sftp

CONFIG = '[apps]\nports = "31800-31899"\nlisten = "127.0.0.1"\npublic_host = "127.0.0.1"\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    require_sftp()
    if shutil.which("ssh-keygen") is None:
        pytest.fail("ssh-keygen (openssh-client) is required by the SFTP tests")
    yield from app_node_fixture(tmp_path_factory, CONFIG)


def keygen(path: Path, comment: str) -> str:
    """A new ed25519 keypair at ``path`` (private) and ``path.pub``; the public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Path(f"{path}.pub").read_text().strip()


def serve(node: AppNode, user: dict[str, Any], key: Path, *specs: str) -> dict[str, Any]:
    """``vfd vfolder sftp SPEC... -o KEY``: the session (with its one app)."""
    out = json.loads(
        node.cli.ok("vfolder", "sftp", *specs, "-o", str(key), "--json", as_=user["email"])
    )
    session: dict[str, Any] = out["session"]
    return session


def destroy(node: AppNode, user: dict[str, Any], session: dict[str, Any]) -> None:
    ended = node.cli.json("session", "destroy", session["id"], as_=user["email"])
    assert ended["status"] == "terminated", ended
    wait_gone(session["apps"][0]["pid"])


def test_sftp_user_key_from_ssh_folder(node: AppNode, tmp_path: Path) -> None:
    user = node.user()
    name = user["username"]
    keys = node.folder(user, ".ssh")  # an automount folder: no longer a reserved name
    assert keys["name"] == ".ssh"
    data = node.folder(user)
    mine = keygen(tmp_path / "mine", "mine")
    stranger = keygen(tmp_path / "stranger", "stranger")
    optioned = keygen(tmp_path / "optioned", "optioned")
    assert stranger != mine
    listed = tmp_path / "authorized_keys"
    listed.write_text(
        "# my laptop\n"
        "\n"
        f"{mine}\n"  # line 3
        "this is not a key\n"  # line 4
        f'from="10.9.9.9" {optioned}\n'  # line 5: options are not applied, so not taken
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA!!broken\n"  # line 6
    )
    node.cli.ok("vfolder", "upload", ".ssh", str(listed), as_=user["email"])
    assert (node.backing(keys) / "authorized_keys").read_text() == listed.read_text()

    session = serve(node, user, tmp_path / "id_container", data["name"])
    [app] = session["apps"]
    port = app["port"]
    (tmp_path / "up.txt").write_text("with my own key")
    done = sftp(tmp_path / "mine", port, name, f"put {tmp_path / 'up.txt'} {data['name']}/\n")
    assert done.returncode == 0, done.stderr
    assert (node.backing(data) / "up.txt").read_text() == "with my own key"
    # the session's own key still opens it
    again = sftp(tmp_path / "id_container", port, name, f"ls {data['name']}\n")
    assert again.returncode == 0 and "up.txt" in again.stdout, again.stderr
    for refused in ("stranger", "optioned"):
        denied = sftp(tmp_path / refused, port, name, "ls\n")
        assert denied.returncode != 0, refused
        assert "Permission denied" in denied.stderr, (refused, denied.stderr)
    # my key is mine: another user name with it is refused
    other = sftp(tmp_path / "mine", port, "root", "ls\n")
    assert other.returncode != 0 and "Permission denied" in other.stderr, other.stderr
    log = node.log.read_text()
    for line in (4, 5, 6):
        assert f"line {line} of .ssh/authorized_keys of {name} is no public key" in log, log
    for line in (1, 2, 3):
        assert f"line {line} of .ssh/authorized_keys of {name}" not in log
    destroy(node, user, session)

    # the dotfile paths under .ssh stay reserved, and the folder now holds .ssh/ for dotfiles
    config = tmp_path / "config"
    config.write_text("Host *\n")
    for path in (".ssh/authorized_keys", ".ssh/config"):
        node.cli.fails(
            "dotfile",
            "create",
            path,
            "--file",
            str(config),
            as_=user["email"],
            code="reserved_name",
        )


def test_sftp_authorized_keys_link_is_not_followed(node: AppNode, tmp_path: Path) -> None:
    user = node.user()
    name = user["username"]
    keys = node.folder(user, ".ssh")
    data = node.folder(user)
    mine = keygen(tmp_path / "mine", "mine")
    # a file outside every folder, that the user could read, listing the user's key
    outside = Path(tempfile.mkdtemp(prefix="vfd-keys-", dir="/tmp"))
    try:
        outside.chmod(0o755)
        target = outside / "authorized_keys"
        target.write_text(mine + "\n")
        target.chmod(0o644)
        link = node.backing(keys) / "authorized_keys"
        link.symlink_to(target)
        os.lchown(link, user["uid"], user["uid"])

        session = serve(node, user, tmp_path / "id_container", data["name"])
        port = session["apps"][0]["port"]
        denied = sftp(tmp_path / "mine", port, name, "ls\n")
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied.stderr
        assert f".ssh/authorized_keys of {name} not read" in node.log.read_text()
        fine = sftp(tmp_path / "id_container", port, name, f"ls {data['name']}\n")
        assert fine.returncode == 0, fine.stderr
        destroy(node, user, session)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
