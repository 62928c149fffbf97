"""The session commands of ``vfd`` against a real node and real containers (docs/sessions.md).

Each command runs as its own process (``node.run``), as a user of its own, so what is checked
is what a person sees: the exit status, stdout apart from stderr, the tables and the JSON.
``vfd session shell`` is driven through a pseudo-terminal, and Ctrl-C through SIGINT.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from sessionnode import IMAGE, SessionNode, containers_labelled

FINAL = {"terminated", "cancelled", "error"}
# 1 GiB for sessions on every machine; cpus overcommitted (more than the machine has)
NODE_CONFIG = "[sessions]\nmemory = 1073741824\ncpu = 4096\n"


@pytest.fixture
def user(node: SessionNode, image: str) -> dict[str, Any]:
    return node.user()


def detached(node: SessionNode, email: str, *args: str) -> tuple[str, str]:
    """``vfd run -d ARGS...``: the new session's short id and name."""
    done = node.run("run", "-d", *args, as_=email)
    assert done.returncode == 0, done.stderr
    short, name = done.stdout.split()
    return short, name


def test_session_cli_run_exits_with_the_commands_code(
    node: SessionNode, user: dict[str, Any]
) -> None:
    done = node.run("run", "--rm", IMAGE, "sh", "-c", "exit 3", as_=user["email"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "", "")
    done = node.run("run", "--rm", IMAGE, "true", as_=user["email"])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_session_cli_run_writes_into_a_folder_and_prints_nothing(
    node: SessionNode, user: dict[str, Any], tmp_path: Path
) -> None:
    node.folder(user, "f1")
    done = node.run(
        "run", "--rm", "-m", "f1", IMAGE, "sh", "-c", "echo hi > /home/work/f1/x", as_=user["email"]
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    node.cli.ok("vfolder", "download", "f1", "x", "--dest", str(tmp_path), as_=user["email"])
    assert (tmp_path / "x").read_text() == "hi\n"


def test_session_cli_run_keeps_stdout_and_stderr_apart(
    node: SessionNode, user: dict[str, Any]
) -> None:
    # whole lines of text: docker's json-file log driver stores lines as text (exec checks
    # raw bytes)
    script = "echo out; echo err >&2; printf 'a\\tb\\n'; echo \"$GREETING\" >&2"
    argv = node.argv(
        "run", "--rm", "-e", "GREETING=hello", IMAGE, "sh", "-c", script, as_=user["email"]
    )
    done = subprocess.run(argv, capture_output=True, env={**os.environ, **node.env}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"out\na\tb\n"
    assert done.stderr == b"err\nhello\n"


def test_session_cli_run_prints_a_last_line_without_newline(
    node: SessionNode, user: dict[str, Any]
) -> None:
    """docker's followed log stream may drop a last partial line; vfd run never does."""
    for _ in range(5):
        done = node.run(
            "run",
            "--rm",
            IMAGE,
            "sh",
            "-c",
            "sleep 0.5; echo out; printf x; printf y >&2",
            as_=user["email"],
        )
        assert (done.returncode, done.stdout, done.stderr) == (0, "out\nx", "y")


def test_session_cli_run_more_cpus_than_the_machine_is_refused(
    node: SessionNode, user: dict[str, Any]
) -> None:
    """[sessions] cpu may overcommit the node, but no one container gets more cpus than the
    machine has: refused before anything is stored, not failed by docker later."""
    more = str((os.cpu_count() or 1) + 1)
    done = node.run("run", "--rm", "--cpu", more, IMAGE, "true", as_=user["email"])
    assert done.returncode == 125, done.stderr
    assert "[exceeds_capacity]" in done.stderr and "machine" in done.stderr, done.stderr
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=user["email"]).stdout)
    assert not [s for s in listed["sessions"] if s["cpu"] == float(more)]


def test_session_cli_run_unknown_image_exits_125_with_the_code(
    node: SessionNode, user: dict[str, Any]
) -> None:
    done = node.run("run", "--rm", "vfd-test/nothing:here", "true", as_=user["email"])
    assert done.returncode == 125
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.rstrip().endswith(
        "[image_not_found]"
    ), done.stderr


def test_session_cli_rm_leaves_no_container(node: SessionNode, user: dict[str, Any]) -> None:
    e = user["email"]
    done = node.run("run", "--rm", "--name", "gone", IMAGE, "true", as_=e)
    assert done.returncode == 0, done.stderr
    kept = node.run("run", "--name", "kept", IMAGE, "true", as_=e)
    assert kept.returncode == 0, kept.stderr
    listed = json.loads(node.run("session", "list", "--all", "--json", as_=e).stdout)["sessions"]
    by_name = {s["name"]: s for s in listed}
    assert containers_labelled(f"vfd.session={by_name['gone']['id']}") == []
    assert containers_labelled(f"vfd.session={by_name['kept']['id']}") != []
    # destroying an ended session removes the container it kept
    destroyed = node.run("session", "destroy", by_name["kept"]["short_id"], as_=e)
    assert destroyed.returncode == 0, destroyed.stderr
    assert containers_labelled(f"vfd.session={by_name['kept']['id']}") == []


def test_session_cli_detached_then_logs_follow(node: SessionNode, user: dict[str, Any]) -> None:
    e = user["email"]
    short, name = detached(node, e, IMAGE, "sh", "-c", "echo one; sleep 1; echo two >&2; exit 5")
    assert len(short) == 8
    followed = node.run("session", "logs", "-f", short, as_=e)
    assert (followed.returncode, followed.stdout, followed.stderr) == (0, "one\n", "two\n")
    again = node.run("session", "logs", "--json", name[:0] or short, as_=e)
    ended = json.loads(again.stdout)
    assert (ended["stdout"], ended["stderr"], ended["status"], ended["exit_code"]) == (
        "one\n",
        "two\n",
        "terminated",
        5,
    )


def test_session_cli_exec_output_and_code(node: SessionNode, user: dict[str, Any]) -> None:
    e = user["email"]
    short, name = detached(node, e, IMAGE, "sleep", "300")
    node.wait_status(short, {"running"}, as_=e)
    done = node.run(
        "session", "exec", name, "--", "sh", "-c", "id -u; pwd; echo oops >&2; exit 4", as_=e
    )
    assert done.returncode == 4
    assert done.stdout.split() == [str(user["uid"]), "/home/work"]
    assert done.stderr == "oops\n"
    as_json = node.run("session", "exec", "--json", "-w", "/tmp", short, "pwd", as_=e)
    assert json.loads(as_json.stdout) == {"stdout": "/tmp\n", "stderr": "", "exit_code": 0}
    binary = subprocess.run(
        node.argv("session", "exec", short, "printf", "\\377\\000x", as_=e),
        capture_output=True,
        env={**os.environ, **node.env},
        timeout=120,
    )
    assert (binary.returncode, binary.stdout) == (0, b"\xff\x00x"), binary.stderr
    node.run("session", "destroy", "--force", short, as_=e)
    node.wait_status(short, FINAL, as_=e)
    refused = node.run("session", "exec", short, "true", as_=e)
    assert refused.returncode == 125
    assert refused.stderr.rstrip().endswith("[session_not_running]"), refused.stderr


def _read_until(fd: int, wanted: bytes, seen: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {wanted!r} on the terminal: {bytes(seen)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                pytest.fail(f"the terminal closed before {wanted!r}: {bytes(seen)!r}")
            seen += chunk


def _wait_exit(pid: int, fd: int, seen: bytearray, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                pass
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"vfd session shell did not exit: {bytes(seen)!r}")


def _shell(node: SessionNode, email: str, ref: str, typed: bytes | None) -> tuple[int, bytes]:
    """``vfd session shell REF`` on a pseudo-terminal; type ``typed`` after the prompt; the
    exit status and everything the terminal showed."""
    argv = node.argv("session", "shell", ref, as_=email)
    env = {**os.environ, **node.env}
    pid, fd = pty.fork()
    if pid == 0:  # the child: vfd on the pseudo-terminal
        os.execve(argv[0], argv, env)
    seen = bytearray()
    try:
        if typed is not None:
            _read_until(fd, b"$ ", seen)  # the shell's prompt
            os.write(fd, typed)
        return _wait_exit(pid, fd, seen), bytes(seen)
    finally:
        os.close(fd)


def test_session_cli_shell_through_a_terminal(node: SessionNode, user: dict[str, Any]) -> None:
    e = user["email"]
    short, _ = detached(node, e, IMAGE, "sleep", "300")
    node.wait_status(short, {"running"}, as_=e)
    code, seen = _shell(node, e, short, b"id -u; exit 7\n")
    assert code == 7, seen
    assert str(user["uid"]).encode() in seen
    node.run("session", "destroy", "--force", short, as_=e)
    node.wait_status(short, FINAL, as_=e)
    code, seen = _shell(node, e, short, None)
    assert code == 125, seen
    assert b"[session_not_running]" in seen


def test_session_cli_shell_follows_the_terminal_size(
    node: SessionNode, user: dict[str, Any]
) -> None:
    e = user["email"]
    short, _ = detached(node, e, IMAGE, "sleep", "300")
    node.wait_status(short, {"running"}, as_=e)
    argv = node.argv("session", "shell", short, as_=e)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, {**os.environ, **node.env})
    seen = bytearray()
    try:
        _read_until(fd, b"$ ", seen)
        # a new size on the terminal: the kernel sends vfd SIGWINCH, vfd tells the daemon
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        deadline = time.monotonic() + 30
        while b"33 101" not in seen and time.monotonic() < deadline:
            os.write(fd, b"stty size\n")
            _read_until(fd, b"$ ", seen := bytearray(), timeout=30)
        assert b"33 101" in seen, bytes(seen)
        os.write(fd, b"exit 0\n")
        assert _wait_exit(pid, fd, seen) == 0
    finally:
        os.close(fd)
    node.run("session", "destroy", "--force", short, as_=e)


def test_session_cli_shell_refuses_without_a_terminal(
    node: SessionNode, user: dict[str, Any]
) -> None:
    done = node.run("session", "shell", "abcd", as_=user["email"], stdin=subprocess.DEVNULL)
    assert done.returncode == 125
    assert "needs a terminal" in done.stderr


def test_session_cli_list_info_destroy(node: SessionNode, user: dict[str, Any]) -> None:
    e = user["email"]
    node.folder(user, "data")
    short, name = detached(
        node, e, "--name", "lister", "--cpu", "0.5", "--mem", "64m", "-m", "data:in:ro",
        IMAGE, "sleep", "300",
    )  # fmt: skip
    assert name == "lister"
    node.wait_status(short, {"running"}, as_=e)
    table = subprocess.run(
        node.argv("session", "list", as_=e),
        capture_output=True,
        text=True,
        env={**os.environ, **node.env, "COLUMNS": "200"},  # no folded cells
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID",
        "NAME",
        "STATUS",
        "IMAGE",
        "CPU",
        "MEM",
        "CREATED",
        "MOUNTS",
        "WAITS",
        "ON",
    ]
    [row] = [r for r in rows if r.startswith(short)]
    assert row.split()[:7] == [short, "lister", "running", IMAGE, "0.5", "64", "MiB"]
    assert row.split()[-2:] == ["data:ro", "-"]  # MOUNTS; WAITS ON: empty, it runs
    listed = json.loads(node.run("session", "list", "--json", as_=e).stdout)["sessions"]
    assert [s["short_id"] for s in listed] == [short]

    info = node.run("session", "info", short, as_=e)
    assert info.returncode == 0, info.stderr
    text = " ".join(info.stdout.split())
    for part in (
        "status running",
        "memory 64 MiB",
        "command sleep 300",
        "data -> /home/work/in (ro)",
    ):
        assert part in text, (part, info.stdout)
    assert "history" in text and "pending requested" in text
    as_json = json.loads(node.run("session", "info", "--json", "lister", as_=e).stdout)
    assert as_json["name"] == "lister"
    assert [ev["status"] for ev in as_json["events"]][:1] == ["pending"]

    destroyed = node.run("session", "destroy", "lister", as_=e)
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stdout.strip() in (
        f"Session {short} (lister) is terminating",
        f"Session {short} (lister) is terminated",
    )
    ended = node.wait_status(short, FINAL, as_=e)
    assert ended["status"] == "terminated"
    assert node.run("session", "list", "--json", as_=e).stdout.count(short) == 0
    again = node.run("session", "destroy", short, as_=e)  # idempotent
    assert (again.returncode, again.stdout.strip()) == (
        0,
        f"Session {short} (lister) is terminated",
    )
    missing = node.run("session", "info", "ffff0000", as_=e)
    assert missing.returncode == 1
    assert missing.stderr.rstrip().endswith("[session_not_found]")


def test_session_cli_info_shows_why_a_session_waits_and_how_it_ended(
    node: SessionNode, user: dict[str, Any]
) -> None:
    e = user["email"]
    big, _ = detached(node, e, "--mem", "800m", IMAGE, "sleep", "300")
    node.wait_status(big, {"running"}, as_=e)
    small, _ = detached(node, e, "--name", "waiter", "--mem", "500m", IMAGE, "true")
    waiting = node.wait_status(small, {"pending"}, as_=e)
    deadline = time.monotonic() + 60
    while not waiting["verdict"] and time.monotonic() < deadline:
        time.sleep(0.1)  # poll interval
        waiting = node.session(small, as_=e)
    assert waiting["status"] == "pending" and waiting["verdict"], waiting
    info = node.run("session", "info", "waiter", as_=e)
    assert info.returncode == 0, info.stderr
    assert f"waiting {waiting['verdict']}" in " ".join(info.stdout.split())

    destroyed = node.run("session", "destroy", "waiter", as_=e)
    assert destroyed.stdout.strip() == f"Session {small} (waiter) is cancelled"
    info = node.run("session", "info", small, as_=e)
    first = info.stdout.splitlines()[0]
    assert first.startswith(f"{small} cancelled: destroyed by "), info.stdout  # who did it
    node.run("session", "destroy", "--force", big, as_=e)
    node.wait_status(big, FINAL, as_=e)
