"""How ``vfd run``, ``vfd session logs`` and ``vfd session exec`` write a session's output
and choose their exit status, against a small fake daemon on a real unix socket.

The fake answers each request with canned frames (``vfd.sessions.frames``), so every ending
a real daemon may give (an exit code, a cancelled session, an ERROR frame, a cut stream) is
checked here without docker; ``tests/sessions/test_session_cli.py`` runs the same commands
against real containers.
"""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result
from vfdcli import no_crash

from vfd.cli.main import app
from vfd.sessions.frames import MEDIA_TYPE, Kind, encode, encode_json

SID = "0123abcd-0000-4000-8000-000000000001"
SESSION = {"id": SID, "short_id": "0123abcd", "name": "bb-1", "status": "pending"}

Answer = tuple[int, str, bytes]


@dataclass
class FakeDaemon:
    """Answers ``(method, path)`` with a canned (status, content type, body); records the
    requests it got."""

    state_dir: Path
    routes: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def json(self, method: str, path: str, value: Any, status: int = 200) -> None:
        self.routes[(method, path)] = (status, "application/json", json.dumps(value).encode())

    def frames(self, method: str, path: str, *frames: bytes) -> None:
        self.routes[(method, path)] = (200, MEDIA_TYPE, b"".join(frames))

    def error(self, method: str, path: str, status: int, code: str, message: str) -> None:
        body = {"error": {"code": code, "message": message, "details": {}}}
        self.json(method, path, body, status)

    def body_of(self, method: str, path: str) -> Any:
        return next(b for m, p, b in self.requests if (m, p) == (method, path))


def _handler(fake: FakeDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            fake.requests.append((self.command, self.path, json.loads(raw) if raw else None))
            path = self.path.split("?", 1)[0]
            status, kind, body = fake.routes.get(
                (self.command, path),
                (
                    404,
                    "application/json",
                    b'{"error": {"code": '
                    b'"session_not_found", "message": "no such session", "details": {}}}',
                ),
            )
            cut = body.endswith(b"CUT")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body) + (100 if cut else 0)))
            self.end_headers()
            self.wfile.write(body.removesuffix(b"CUT"))
            self.close_connection = cut  # the daemon went away mid-answer

        do_GET = do_POST = do_DELETE = _answer

        def address_string(self) -> str:
            return "fake"

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake() -> Iterator[FakeDaemon]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        daemon = FakeDaemon(Path(tmp))
        (daemon.state_dir / "run").mkdir()
        server = socketserver.ThreadingUnixStreamServer(
            str(daemon.state_dir / "run" / "vfd.sock"), _handler(daemon)
        )
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield daemon
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


@pytest.fixture
def vfd(fake: FakeDaemon) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        env = {"VFD_STATE_DIR": str(fake.state_dir), "VFD_CONFIG": None, "COLUMNS": "200"}
        result = CliRunner().invoke(app, list(args), env=env)
        no_crash(result)
        return result

    return run


def _ended(status: str, code: int | None, reason: str | None = None) -> bytes:
    return encode_json(Kind.END, {"status": status, "exit_code": code, "reason": reason})


LOGS = f"/v1/sessions/{SID}/logs"


def test_run_writes_stdout_and_stderr_apart_bytes_untouched(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    fake.frames(
        "GET",
        LOGS,
        encode(Kind.STDOUT, b"out\n"),
        encode(Kind.STDERR, b"err\n"),
        encode(Kind.STDOUT, b"\xff\x00 not utf-8\n"),
        _ended("terminated", 0),
    )
    result = vfd("run", "--rm", "vfd-test/busybox:latest", "sh", "-c", "true")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b"out\n\xff\x00 not utf-8\n"
    assert result.stderr_bytes == b"err\n"


def test_run_exits_with_the_containers_exit_code(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    fake.frames("GET", LOGS, _ended("terminated", 3))
    result = vfd("run", "img", "sh", "-c", "exit 3")
    assert result.exit_code == 3
    assert result.stdout == "" and result.stderr == ""


def test_run_options_before_image_the_rest_is_the_command(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    result = vfd(
        "run", "-d", "--rm", "-m", "f1", "-m", "f2:data:ro", "--cpu", "0.5", "--mem", "512m",
        "--name", "job", "-e", "A=1", "img", "ls", "-l", "-d", "--rm", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "0123abcd bb-1\n"
    assert fake.body_of("POST", "/v1/sessions") == {
        "image": "img",
        "command": ["ls", "-l", "-d", "--rm", "--json"],
        "mounts": ["f1", "f2:data:ro"],
        "env": {"A": "1"},
        "auto_remove": True,
        "name": "job",
        "cpu": 0.5,
        "memory": 512 << 20,
    }
    assert not any(path.endswith("/logs") for _, path, _ in fake.requests)


def test_run_detached_json_prints_the_session(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    result = vfd("run", "-d", "--json", "img")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == SESSION
    assert fake.body_of("POST", "/v1/sessions")["command"] == []


def test_run_refused_exits_125_with_the_daemons_code(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.error("POST", "/v1/sessions", 404, "image_not_found", "no image nope:latest here")
    result = vfd("run", "nope")
    assert result.exit_code == 125
    assert result.stderr == "error: no image nope:latest here [image_not_found]\n"
    assert result.stdout == ""


def test_run_cancelled_session_names_the_plugin(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    fake.frames("GET", LOGS, _ended("cancelled", None, "image not allowed"))
    fake.json("GET", f"/v1/sessions/{SID}", {**SESSION, "status": "cancelled",
              "status_reason": "image not allowed", "status_plugin": "deny-images"})  # fmt: skip
    result = vfd("run", "img")
    assert result.exit_code == 125
    assert result.stderr == "error: session 0123abcd cancelled: image not allowed [deny-images]\n"


def test_run_usage_errors_exit_2(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    for args in (
        ["--mem", "lots", "img"],
        ["-e", "=x", "img"],
        ["--cpu", "many", "img"],
        ["--bogus", "img"],
        [],
    ):
        result = vfd("run", *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and "[usage_error]" in result.stderr
    assert fake.requests == []


def test_logs_error_frame_is_the_error_it_carries(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    error = {"error": {"code": "runtime_unavailable", "message": "docker is gone", "details": {}}}
    fake.frames("GET", LOGS, encode(Kind.STDOUT, b"partial\n"), encode_json(Kind.ERROR, error))
    result = vfd("session", "logs", SID)
    assert result.exit_code == 1
    assert result.stdout == "partial\n"
    assert result.stderr == "error: docker is gone [runtime_unavailable]\n"


def test_logs_cut_stream_is_daemon_unavailable(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.frames("GET", LOGS, encode(Kind.STDOUT, b"partial\n") + b"CUT")
    result = vfd("session", "logs", "-f", SID)
    assert result.exit_code == 1
    assert result.stderr.rstrip().endswith("[daemon_unavailable]"), result.stderr
    assert fake.requests[-1][1] == f"{LOGS}?follow=true"


def test_logs_json_collects_output_and_ending(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    fake.frames(
        "GET",
        LOGS,
        encode(Kind.STDOUT, b"a\xff"),
        encode(Kind.STDERR, b"b"),
        _ended("running", None),
    )
    out = json.loads(vfd("session", "logs", "--json", SID).stdout)
    assert out == {
        "stdout": "a\ufffd",
        "stdout_b64": "Yf8=",
        "stderr": "b",
        "status": "running",
        "exit_code": None,
        "reason": None,
    }


def test_exec_exits_with_the_commands_code(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    path = f"/v1/sessions/{SID}/exec"
    fake.frames(
        "POST", path, encode(Kind.STDERR, b"oops\n"), encode_json(Kind.END, {"exit_code": 7})
    )
    result = vfd("session", "exec", "-w", "/tmp", SID, "--", "sh", "-c", "exit 7")
    assert result.exit_code == 7
    assert result.stderr == "oops\n" and result.stdout == ""
    assert fake.body_of("POST", path) == {
        "command": ["sh", "-c", "exit 7"],
        "env": {},
        "workdir": "/tmp",
    }


def test_exec_json_and_refusal(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    path = f"/v1/sessions/{SID}/exec"
    fake.frames("POST", path, encode(Kind.STDOUT, b"hi\n"), encode_json(Kind.END, {"exit_code": 0}))
    result = vfd("session", "exec", "--json", SID, "echo", "hi")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"stdout": "hi\n", "stderr": "", "exit_code": 0}
    fake.error("POST", path, 409, "session_not_running", "session bb-1 is terminated")
    result = vfd("session", "exec", SID, "true")
    assert result.exit_code == 125
    assert result.stderr == "error: session bb-1 is terminated [session_not_running]\n"


def test_shell_refuses_without_a_terminal(fake: FakeDaemon, vfd: Callable[..., Result]) -> None:
    result = vfd("session", "shell", SID)
    assert result.exit_code == 125
    assert "needs a terminal" in result.stderr and "[invalid_argument]" in result.stderr
    assert fake.requests == []


def test_run_json_prints_output_and_the_ended_session(
    fake: FakeDaemon, vfd: Callable[..., Result]
) -> None:
    fake.json("POST", "/v1/sessions", SESSION, 201)
    fake.frames("GET", LOGS, encode(Kind.STDOUT, b"hi\n"), _ended("terminated", 2))
    ended = {**SESSION, "status": "terminated", "exit_code": 2}
    fake.json("GET", f"/v1/sessions/{SID}", ended)
    result = vfd("run", "--json", "img", "sh", "-c", "echo hi; exit 2")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "session": ended,
        "stdout": "hi\n",
        "stderr": "",
        "exit_code": 2,
    }
