"""``vfd mount`` / ``vfd umount`` called by an unprivileged uid that tries to redirect them:
a target swapped for a symbolic link while the daemon works, links in umount paths, mounts
that are not vfd's, stacked mounts, and names the kernel escapes in mountinfo."""

from __future__ import annotations

import contextlib
import ctypes
import grp
import itertools
import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filenode import Node

from vfd import mountinfo

SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter lives under /root (0700)
RACE_CALLS = 200
RACE_SECONDS = 30.0

# A client of the API that runs as the test uid (SO_PEERCRED) and keeps running: one JSON
# request per stdin line, one JSON answer per stdout line.
_CLIENT = r"""
import json, os, socket, sys
for line in sys.stdin:
    method, target, body = json.loads(line)
    data = json.dumps(body).encode()
    head = [f"{method} {target} HTTP/1.1", "Host: vfd", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(data)}"]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)  # a daemon stuck on a request fails the test instead of hanging it
    s.connect(sys.argv[1])
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    top, _, rest = buf.partition(b"\r\n\r\n")
    out = {"uid": os.getuid(), "status": int(top.split()[1]), "body": json.loads(rest)}
    print(json.dumps(out), flush=True)
"""

# Exchanges the names "t" (a directory) and "alt" (a symbolic link) in a loop, atomically
# (renameat2 RENAME_EXCHANGE), until the stop file appears or the time is up.
_SWAPPER = r"""
import ctypes, errno, json, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
play, stop, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
fd = os.open(play, os.O_RDONLY | os.O_DIRECTORY)
swaps = busy = rounds = 0
deadline = time.monotonic() + seconds
print("started", flush=True)
while True:
    rounds += 1
    if rounds % 256 == 0 and (os.path.exists(stop) or time.monotonic() > deadline):
        break
    if libc.renameat2(fd, b"t", fd, b"alt", 2) == 0:
        swaps += 1
    elif ctypes.get_errno() == errno.EBUSY:  # the directory is a mount point now
        busy += 1
    else:
        raise OSError(ctypes.get_errno(), "renameat2")
print(json.dumps({"uid": os.getuid(), "swaps": swaps, "busy": busy}), flush=True)
"""


def free_uid() -> int:
    """A uid (and gid) with no passwd or group entry."""
    uid = 42000 + secrets.randbelow(20000)
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                return uid
        uid += 1


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def code(self) -> str | None:
        if self.status < 400:
            return None
        code: str = self.body["error"]["code"]
        return code


class AsUser:
    """API calls from a process running as one uid (no passwd entry, no groups)."""

    def __init__(self, node: Node, uid: int) -> None:
        self.uid = uid
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, "-I", "-c", _CLIENT, str(node.config.api_socket)],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, method: str, target: str, body: Any) -> Answer:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps([method, target, body]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the client as uid {self.uid} exited {self.proc.wait()}"
        out = json.loads(line)
        assert out["uid"] == self.uid
        return Answer(out["status"], out["body"])

    def mount(self, name: str, target: Path | str, ro: bool = False) -> Answer:
        return self.call("POST", f"/v1/vfolders/{name}/mount", {"target": str(target), "ro": ro})

    def umount(self, target: Path | str) -> Answer:
        return self.call("POST", "/v1/umount", {"target": str(target)})

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(30)
        if self.proc.stdout:
            self.proc.stdout.close()


@dataclass
class Player:
    """A vfd user with a uid of no passwd entry, a folder, and a directory it owns."""

    user: dict[str, Any]
    folder: str
    api: AsUser
    base: Path
    """Root-owned, 0755: holds ``play`` and directories the user must not mount over."""
    play: Path
    """Owned by the user."""

    @property
    def uid(self) -> int:
        uid: int = self.user["uid"]
        return uid

    def owned_dir(self, name: str) -> Path:
        path = self.play / name
        path.mkdir()
        os.chown(path, self.uid, self.uid)
        return path


@pytest.fixture
def player(node: Node) -> Iterator[Player]:
    node.state_dir.chmod(0o755)  # other uids must reach the API socket
    uid = free_uid()
    user = node.user(uid)
    folder = node.folder(user)["name"]
    # not under tmp_path: its parents are root-only, and the user must reach its own directory
    base = Path(tempfile.mkdtemp(prefix="vfd-mrace-", dir="/tmp"))
    base.chmod(0o755)
    play = base / "play"
    play.mkdir()
    os.chown(play, uid, uid)
    api = AsUser(node, uid)
    try:
        yield Player(user, folder, api, base, play)
    finally:
        api.close()
        for entry in reversed(mountinfo.read()):
            if entry.mount_point.startswith(f"{base}/"):
                subprocess.run(["umount", "-l", entry.mount_point], check=False)
        shutil.rmtree(base, ignore_errors=True)


def mounts_under(path: Path) -> list[mountinfo.MountEntry]:
    prefix = str(path)
    return [
        e
        for e in mountinfo.read()
        if e.mount_point == prefix or e.mount_point.startswith(prefix + "/")
    ]


def unmount_all(player: Player) -> None:
    """Remove the user's mounts under ``play`` through the API, as the user.

    A mounted directory cannot be renamed (the swapper gets EBUSY), but a rename already
    under way when the mount was attached may still move it once: then its new name is
    asked for again.
    """
    deadline = time.monotonic() + 10
    while now := mounts_under(player.base):
        assert time.monotonic() < deadline, now
        for entry in now:
            assert entry.mount_point in (str(player.play / "t"), str(player.play / "alt"))
            gone = player.api.umount(entry.mount_point)
            assert gone.status == 200 or gone.code == "invalid_path", gone.body


@contextlib.contextmanager
def dead_fuse(path: Path, uid: int) -> Iterator[None]:
    """A FUSE file system on ``path`` as ``uid`` mounts one with ``fusermount3``
    (``user_id=uid``, ``allow_other``), whose server never answers: whatever asks it anything
    waits until the connection is closed."""
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id={uid},group_id={uid},allow_other"
    nosuid_nodev = 0x2 | 0x4
    if libc.mount(b"dead", os.fsencode(path), b"fuse.dead", nosuid_nodev, options.encode()):
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, os.strerror(err), str(path))
    try:
        yield
    finally:
        os.close(fd)  # aborts the connection: anything still waiting gets ENOTCONN
        subprocess.run(["umount", "-l", path], check=False)


def raw_mount_points() -> list[bytes]:
    """Mount points as the kernel writes them (octal escapes kept), without vfd's parser."""
    with open("/proc/self/mountinfo", "rb") as f:
        return [line.split(b" ")[4] for line in f]


def test_files_mount_race_symlink_swap_never_redirects(node: Node, player: Player) -> None:
    victim = player.base / "root-owned"
    victim.mkdir()  # root's, empty: what the user wants its view mounted over
    target = player.owned_dir("t")
    alt = player.play / "alt"
    alt.symlink_to(victim)
    os.lchown(alt, player.uid, player.uid)
    stop = player.base / "stop"
    swapper = subprocess.Popen(
        [SYSTEM_PYTHON, "-I", "-c", _SWAPPER, str(player.play), str(stop), str(RACE_SECONDS + 30)],
        user=player.uid,
        group=player.uid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout
    assert swapper.stdout.readline().strip() == "started"
    codes: dict[str | None, int] = {}
    landed: list[str] = []
    deadline = time.monotonic() + RACE_SECONDS
    try:
        for attempt in range(1, RACE_CALLS + 1):
            answer = player.api.mount(player.folder, target)
            codes[answer.code] = codes.get(answer.code, 0) + 1
            # after every call: nothing on the root-owned directory, and a vfd mount only on
            # the user's own directory, under whichever of its two names it had then
            now = [e for e in mounts_under(player.base)]
            assert not [e for e in now if e.mount_point == str(victim)], (attempt, now)
            assert {e.mount_point for e in now} <= {str(target), str(alt)}, now
            assert all(e.fstype == "fuse.vfd" for e in now), now
            if answer.status == 200:
                assert len(now) == 1, now
                landed.append(now[0].mount_point)
                unmount_all(player)
            else:
                assert answer.code == "invalid_path", answer.body
            seen_both = codes.get(None, 0) >= 3 and codes.get("invalid_path", 0) >= 3
            if (attempt >= 40 and seen_both) or time.monotonic() > deadline:
                break
    finally:
        stop.touch()
        out, _ = swapper.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["uid"] == player.uid and swapper.returncode == 0
    # it really raced: the swapper swapped, the daemon met the link (refused) and the
    # directory (mounted) at the same name
    assert result["swaps"] > 0, result
    assert codes.get("invalid_path", 0) > 0, codes
    assert codes.get(None, 0) > 0, codes
    assert set(landed) <= {str(target), str(alt)}
    assert not mounts_under(player.base)
    assert os.listdir(victim) == []


def test_files_umount_refuses_symlinked_paths(node: Node, player: Player) -> None:
    target = player.owned_dir("t")
    assert player.api.mount(player.folder, target).status == 200
    link = player.play / "link"
    link.symlink_to(target)
    assert player.api.umount(link).code == "invalid_path"
    parent_link = player.base / "via"
    parent_link.symlink_to(player.play)
    assert player.api.umount(parent_link / "t").code == "invalid_path"
    assert player.api.umount(player.play / "x" / ".." / "t").code == "invalid_path"
    assert [e.mount_point for e in mounts_under(player.base)] == [str(target)]
    assert player.api.umount(target).status == 200
    assert not mounts_under(player.base)
    assert player.api.umount(target).code == "path_not_found"
    assert player.api.umount(player.play / "missing").code == "path_not_found"


def test_files_umount_refuses_other_mounts(node: Node, player: Player) -> None:
    target = player.owned_dir("tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"uid={player.uid}", "none", target], check=True)
    assert player.api.umount(target).code == "permission_denied"
    # a mount point, even one the user owns, is no mount target
    assert player.api.mount(player.folder, target).code == "path_exists"
    assert [e.fstype for e in mounts_under(target)] == ["tmpfs"]


def test_files_umount_acts_on_the_topmost_mount(node: Node, player: Player) -> None:
    target = player.owned_dir("t")
    assert player.api.mount(player.folder, target).status == 200
    # root stacks a file system that is not vfd's on top: the user's umount sees that one
    subprocess.run(["mount", "-t", "tmpfs", "none", target], check=True)
    assert player.api.umount(target).code == "permission_denied"
    assert [e.fstype for e in mounts_under(target)] == ["fuse.vfd", "tmpfs"]
    subprocess.run(["umount", target], check=True)
    # a view of a folder the user cannot reach, stacked by root: refused, nothing removed
    other = node.folder(node.user())
    source = node.config.mount_point / "rw" / other["id"].replace("-", "")
    subprocess.run(["mount", "--bind", source, target], check=True)
    assert player.api.umount(target).code == "permission_denied"
    assert len(mounts_under(target)) == 2
    subprocess.run(["umount", target], check=True)
    assert player.api.umount(target).status == 200
    assert not mounts_under(player.base)


def test_files_mount_refuses_targets_inside_a_view(node: Node, player: Player) -> None:
    target = player.owned_dir("t")
    assert player.api.mount(player.folder, target).status == 200
    node.cli.ok("vfolder", "mkdir", player.folder, "sub", as_=player.user["email"])
    assert (target / "sub").stat().st_uid == player.uid
    assert player.api.mount(player.folder, target / "sub").code == "invalid_path"
    assert player.api.umount(target).status == 200


def test_files_mount_escaped_names(node: Node, player: Player) -> None:
    target = player.owned_dir("dé x")
    out = player.api.mount(player.folder, target, ro=True)
    assert out.status == 200, out.body
    assert out.body["target"] == str(target) and out.body["view"] == "ro"
    # the kernel escapes the space as \040 and leaves the UTF-8 bytes as they are
    raw = os.fsencode(str(target)).replace(b" ", b"\\040")
    assert raw in raw_mount_points()
    (entry,) = mountinfo.mounts_at(target)
    assert {"ro", "nosuid", "nodev"} <= set(entry.options)
    assert player.api.umount(target).status == 200
    assert raw not in raw_mount_points()
    assert not mounts_under(player.base)


def test_files_mount_never_enters_a_users_fuse(node: Node, player: Player) -> None:
    """Any user may mount a FUSE file system (fusermount3) whose server never answers: the
    daemon refuses to walk into it rather than wait on it forever."""
    dead = player.owned_dir("dead")
    with dead_fuse(dead, player.uid):
        (entry,) = mounts_under(dead)
        assert f"user_id={player.uid}" in entry.super_options
        assert player.api.mount(player.folder, dead).code == "invalid_path"
        assert player.api.mount(player.folder, dead / "below").code == "invalid_path"
        assert player.api.umount(dead).code == "permission_denied"
        assert player.api.umount(dead / "below").code == "permission_denied"
        # the daemon still serves mounts elsewhere: nothing of it is stuck on the dead server
        target = player.owned_dir("t")
        assert player.api.mount(player.folder, target).status == 200
        assert player.api.umount(target).status == 200


# Makes and removes the directory "t" in a loop, until the stop file appears or the time is up.
_REMOVER = r"""
import json, os, sys, time
play, stop, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
os.chdir(play)
made = removed = rounds = 0
deadline = time.monotonic() + seconds
print("started", flush=True)
while True:
    rounds += 1
    if rounds % 256 == 0 and (os.path.exists(stop) or time.monotonic() > deadline):
        break
    try:
        os.mkdir("t")
        made += 1
    except OSError:
        pass
    try:
        os.rmdir("t")
        removed += 1
    except OSError:  # EBUSY: the daemon mounted it
        pass
print(json.dumps({"uid": os.getuid(), "made": made, "removed": removed}), flush=True)
"""


def test_files_mount_race_target_removed_is_a_client_error(node: Node, player: Player) -> None:
    """A target removed between the daemon's open and its mount is the caller's doing: the
    answer is a 4xx (it was a 500: the mount syscall's ENOENT was taken for a failure of the
    daemon), and nothing is left mounted."""
    target = player.play / "t"
    stop = player.base / "stop"
    remover = subprocess.Popen(
        [SYSTEM_PYTHON, "-I", "-c", _REMOVER, str(player.play), str(stop), str(RACE_SECONDS + 30)],
        user=player.uid,
        group=player.uid,
        extra_groups=[],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert remover.stdout
    assert remover.stdout.readline().strip() == "started"
    codes: dict[str | None, int] = {}
    raced = 0
    deadline = time.monotonic() + RACE_SECONDS
    try:
        # until the race is met a few times or the time is up, not a fixed count: on a loaded
        # machine the remover can win every one of the first few hundred calls
        for attempt in itertools.count(1):
            answer = player.api.mount(player.folder, target)
            assert answer.status < 500, answer.body
            codes[answer.code] = codes.get(answer.code, 0) + 1
            if answer.status == 200:
                assert player.api.umount(target).status == 200
            elif "changed while" in answer.body["error"]["message"]:
                raced += 1
            if (attempt >= 20 and raced >= 3) or time.monotonic() > deadline:
                break
    finally:
        stop.touch()
        out, _ = remover.communicate(timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["uid"] == player.uid and remover.returncode == 0
    assert result["removed"] > 0, result
    assert set(codes) <= {None, "path_not_found"}, codes
    assert raced > 0, codes  # the race was met: the directory went away inside the daemon
    assert not mounts_under(player.base)
