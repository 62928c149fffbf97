"""A fake vfd daemon for CLI tests that need no real one: a state directory whose API socket
answers every request with one JSON object, and records the requests it got."""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def answering(answer: dict[str, Any]) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """The state directory, and the requests its socket got (``request``: method and path,
    ``act_as``: the act-as header, ``body``: the JSON body or None), each answered 200 with
    ``answer``."""
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        state = Path(tmp)
        (state / "run").mkdir()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(state / "run" / "vfd.sock"))
        listener.listen()
        seen: list[dict[str, Any]] = []
        reply_body = json.dumps(answer).encode()

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                        data += chunk
                    head, _, body = data.partition(b"\r\n\r\n")
                    lines = head.decode().split("\r\n")
                    fields = dict(line.split(": ", 1) for line in lines[1:])
                    length = int(fields.get("Content-Length", "0"))
                    while len(body) < length and (chunk := conn.recv(65536)):
                        body += chunk
                    method, path, _ = lines[0].split(" ", 2)
                    seen.append(
                        {
                            "request": f"{method} {path}",
                            "act_as": fields.get("X-Vfd-Act-As"),
                            "body": json.loads(body) if body else None,
                        }
                    )
                    reply = (
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(reply_body)}\r\nConnection: close\r\n\r\n"
                    )
                    conn.sendall(reply.encode() + reply_body)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield state, seen
        finally:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(10)
