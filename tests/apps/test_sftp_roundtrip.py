"""The SFTP app end to end with OpenSSH's ``sftp`` client: ``vfd vfolder sftp`` serves
folders; uploads land in the rw folder as the user's files and count in its quota; the ro
folder refuses writes; a write past the quota fails; symbolic links and ``..`` lead nowhere
outside the session's folders; a wrong key or user is refused; ``vfd session info`` and
``sftp-key`` show how to reach it; and nothing is left behind (processes, ports, fds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from appnode import (
    AppNode,
    app_node_fixture,
    app_servers,
    descendants,
    port_free,
    proc_status,
    wait_gone,
)
from sftpclient import require_sftp, sftp

CONFIG = '[apps]\nports = "31300-31399"\nlisten = "127.0.0.1"\npublic_host = "127.0.0.1"\n'


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppNode]:
    require_sftp()
    yield from app_node_fixture(tmp_path_factory, CONFIG)


@pytest.fixture
def user(node: AppNode) -> dict[str, Any]:
    return node.user()


def vfd(node: AppNode, *args: str, as_: str) -> subprocess.CompletedProcess[str]:
    """The real ``vfd`` command as a process."""
    argv = [str(Path(sys.executable).parent / "vfd"), "--as", as_, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VFD_")}
    env.update(node.env, COLUMNS="200")
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


class Served:
    """A storage session serving folders over SFTP, as ``vfd vfolder sftp -o KEY`` made it."""

    def __init__(self, node: AppNode, user: dict[str, Any], key: Path, out: dict[str, Any]):
        self.node, self.user, self.key = node, user, key
        self.session = out["session"]
        self.command = out["command"]
        [app] = self.session["apps"]
        self.port: int = app["port"]
        self.pid: int = app["pid"]

    def run(self, script: str, key: Path | None = None, user: str | None = None) -> Any:
        return sftp(key or self.key, self.port, user or self.user["username"], script)

    def destroy(self) -> None:
        done = vfd(self.node, "session", "destroy", self.session["id"], as_=self.user["email"])
        assert done.returncode == 0, done.stderr


def serve(node: AppNode, user: dict[str, Any], tmp: Path, *specs: str) -> Served:
    key = tmp / "id_container"
    done = vfd(node, "vfolder", "sftp", *specs, "-o", str(key), "--json", as_=user["email"])
    assert done.returncode == 0, done.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    return Served(node, user, key, json.loads(done.stdout))


def test_sftp_upload_into_rw_owned_and_counted(
    node: AppNode, user: dict[str, Any], tmp_path: Path
) -> None:
    data = node.folder(user)
    kept = node.folder(user)
    served = serve(node, user, tmp_path, data["name"], f"{kept['name']}:ro")
    uname, port = user["username"], served.port
    assert served.command == f"sftp -i {served.key} -P {port} {uname}@127.0.0.1"
    blob = os.urandom(300_000)
    (tmp_path / "up.bin").write_bytes(blob)
    before = node.usage(data)["used_bytes"]
    done = served.run(
        f"put {tmp_path / 'up.bin'} {data['name']}/up.bin\n"
        f"mkdir {data['name']}/sub\n"
        f"get {data['name']}/up.bin {tmp_path / 'back.bin'}\n"
        "ls -1 /\n"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "back.bin").read_bytes() == blob
    listed = [line.strip().strip("/") for line in done.stdout.splitlines() if "sftp>" not in line]
    assert sorted(x for x in listed if x) == sorted([data["name"], kept["name"]])
    backing = node.backing(data) / "up.bin"
    st = backing.stat()
    assert (st.st_uid, st.st_gid, st.st_size) == (user["uid"], user["uid"], len(blob))
    sub = (node.backing(data) / "sub").stat()
    assert (sub.st_uid, sub.st_gid) == (user["uid"], user["uid"])
    assert node.usage(data)["used_bytes"] >= before + len(blob)
    served.destroy()


def test_sftp_ro_folder_refuses_writes(node: AppNode, user: dict[str, Any], tmp_path: Path) -> None:
    data = node.folder(user)
    (tmp_path / "x.txt").write_text("x")
    node.cli.ok("vfolder", "upload", data["name"], str(tmp_path / "x.txt"), as_=user["email"])
    served = serve(node, user, tmp_path, f"{data['name']}:ro")
    name = data["name"]
    for command in (
        f"put {tmp_path / 'x.txt'} {name}/new.txt",
        f"put {tmp_path / 'x.txt'} {name}/x.txt",
        f"mkdir {name}/d",
        f"rm {name}/x.txt",
        f"rename {name}/x.txt {name}/y.txt",
        f"chmod 600 {name}/x.txt",
        f"symlink x.txt {name}/l",
    ):
        done = served.run(command + "\n")
        assert done.returncode != 0, command
        assert "Permission denied" in done.stderr, (command, done.stderr)
    got = served.run(f"get {name}/x.txt {tmp_path / 'got.txt'}\n")
    assert got.returncode == 0 and (tmp_path / "got.txt").read_text() == "x"
    assert sorted(os.listdir(node.backing(data))) == ["x.txt"]
    assert (node.backing(data) / "x.txt").stat().st_mode & 0o777 == 0o644
    served.destroy()


def test_sftp_quota_overrun_fails(node: AppNode, user: dict[str, Any], tmp_path: Path) -> None:
    data = node.folder(user)
    node.cli.ok("admin", "quota", "set", "--user", user["email"], "--bytes", "1M")
    served = serve(node, user, tmp_path, data["name"])
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * 2**20))
    (tmp_path / "small.bin").write_bytes(b"s" * 1000)
    done = served.run(f"put {tmp_path / 'big.bin'} {data['name']}/big.bin\n")
    assert done.returncode != 0
    assert "big.bin" in done.stderr, done.stderr
    assert node.usage(data)["used_bytes"] <= 2**20
    ok = served.run(f"rm {data['name']}/big.bin\nput {tmp_path / 'small.bin'} {data['name']}/\n")
    assert ok.returncode == 0, ok.stderr  # room again once the partial file is gone
    served.destroy()


def test_sftp_no_escape_through_links_or_dotdot(
    node: AppNode, user: dict[str, Any], tmp_path: Path
) -> None:
    other = node.user()
    theirs = node.folder(other)
    (tmp_path / "secret.txt").write_text("not yours")
    node.cli.ok(
        "vfolder", "upload", theirs["name"], str(tmp_path / "secret.txt"), as_=other["email"]
    )
    secret_backing = node.backing(theirs) / "secret.txt"
    secret_view = node.config.mount_point / "rw" / theirs["id"] / "secret.txt"
    data = node.folder(user)
    served = serve(node, user, tmp_path, data["name"])
    name = data["name"]
    links = {
        "abs": "/etc/passwd",
        "backing": str(secret_backing),
        "view": str(secret_view),
        "up": "../../../../../../etc/hostname",
        "dir": "/",
    }
    script = "".join(f"symlink {target} {name}/{link}\n" for link, target in links.items())
    made = served.run(script)
    assert made.returncode == 0, made.stderr
    for link in links:
        got = served.run(f"get {name}/{link} {tmp_path / ('got-' + link)}\n")
        assert got.returncode != 0, link
        assert not (tmp_path / f"got-{link}").exists()
    for path in (
        "/etc/passwd",
        "../etc/passwd",
        f"{name}/../../etc/passwd",
        f"/../../{secret_backing}",
        str(secret_view),
        str(node.state_dir / "vfd.db"),
    ):
        got = served.run(f"get {path} {tmp_path / 'stolen'}\n")
        assert got.returncode != 0, path
        assert not (tmp_path / "stolen").exists()
    walked = served.run("cd ..\ncd ..\npwd\nls -1\n")
    assert walked.returncode == 0, walked.stderr
    assert "Remote working directory: /" in walked.stdout
    assert name in walked.stdout and "etc" not in walked.stdout.split()
    served.destroy()


def test_sftp_wrong_key_or_user_refused(
    node: AppNode, user: dict[str, Any], tmp_path: Path
) -> None:
    data = node.folder(user)
    served = serve(node, user, tmp_path, data["name"])
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    wrong = served.run("ls\n", key=stranger)
    assert wrong.returncode != 0
    assert "Permission denied" in wrong.stderr, wrong.stderr
    other = node.user()
    as_other = served.run("ls\n", user=other["username"])
    assert as_other.returncode != 0 and "Permission denied" in as_other.stderr
    # another user's session key opens only that user's session
    (tmp_path / "other").mkdir()
    theirs = serve(node, other, tmp_path / "other", node.folder(other)["name"])
    crossed = sftp(theirs.key, served.port, user["username"], "ls\n")
    assert crossed.returncode != 0
    assert served.run("ls\n").returncode == 0
    served.destroy()
    theirs.destroy()


def test_sftp_info_and_key_commands(node: AppNode, user: dict[str, Any], tmp_path: Path) -> None:
    data = node.folder(user)
    done = vfd(node, "vfolder", "sftp", data["name"], "--name", "share-it", as_=user["email"])
    assert done.returncode == 0, done.stderr
    assert "serves over SFTP at sftp://" in done.stdout
    info = vfd(node, "session", "info", "share-it", as_=user["email"])
    assert info.returncode == 0, info.stderr
    flat = " ".join(info.stdout.split())
    assert "kind storage (no container)" in flat
    session = node.session("share-it", user["email"])
    [app] = session["apps"]
    assert f"app sftp running sftp://{user['username']}@127.0.0.1:{app['port']}" in flat
    listed = vfd(node, "session", "list", as_=user["email"])
    assert "(storage: sftp)" in listed.stdout
    key = vfd(node, "session", "sftp-key", "share-it", as_=user["email"])
    assert key.returncode == 0, key.stderr
    assert key.stdout.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert f"sftp -i id_container -P {app['port']} {user['username']}@127.0.0.1" in key.stderr
    (tmp_path / "k").write_text(key.stdout)
    (tmp_path / "k").chmod(0o600)
    assert sftp(tmp_path / "k", app["port"], user["username"], "ls\n").returncode == 0
    assert "private_key" not in json.dumps(node.session("share-it", user["email"]))
    gone = vfd(node, "session", "destroy", "share-it", as_=user["email"])
    assert gone.returncode == 0 and "is terminated" in gone.stdout, gone.stdout
    after = vfd(node, "session", "sftp-key", session["id"], as_=user["email"])
    assert after.returncode == 1 and "[app_not_found]" in after.stderr


def test_sftp_leaves_nothing_behind(node: AppNode, user: dict[str, Any], tmp_path: Path) -> None:
    daemon = node.child_pid(b"vfd.daemon")

    def fds() -> int:
        return len(os.listdir(f"/proc/{daemon}/fd"))

    data = node.folder(user)
    warm = serve(node, user, tmp_path, data["name"])
    warm.run("ls\n")
    warm.destroy()
    before = fds()
    pids, ports = [], []
    for _ in range(3):
        served = serve(node, user, tmp_path, data["name"])
        assert served.run(f"put {served.key} {data['name']}/k\n").returncode == 0
        pids.append(served.pid)
        ports.append(served.port)
        served.destroy()
    for pid in pids:
        wait_gone(pid)
    assert all(port_free(port) for port in ports)
    assert app_servers(node, "vfd.apps.sftpd") == []
    children = [proc_status(pid) for pid in descendants(daemon)]
    assert [c for c in children if c.get("State", "").startswith("Z")] == []
    assert fds() <= before + 2  # the store's pool may have grown a connection
