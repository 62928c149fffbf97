"""A stand-in mountd speaking the control protocol (``vfd.mountctl``), recording calls.

It answers like mountd does (health, attach, detach, set_limits, purge) so the daemon's side
of the protocol can be tested before and without a FUSE mount; ``purge`` really removes the
backing tree. ``fail`` maps an op to the error code it answers instead; an op in ``hang`` is
read and never answered (a busy or stuck mountd) until ``release()``, which then closes those
connections unanswered — or, with ``release(answer=True)``, answers them first.
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from vfd.errors import ErrorCode, VfdError
from vfd.folders import layout
from vfd.mountctl import encode, fail, ok

MOUNT_POINT = "/srv/fake-mount"


class FakeMountd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[dict[str, Any]] = []
        self.fail: dict[str, ErrorCode] = {}
        self.attached: set[str] = set()
        self.hang: set[str] = set()
        self.hung: list[dict[str, Any]] = []
        self._released = threading.Event()
        self._answers: dict[int, bool] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    request = json.loads(line)
                    if request["op"] in fake.hang:
                        with fake._lock:
                            fake.hung.append(request)
                        released = fake._released
                        released.wait()
                        if fake._answers.get(id(released)):
                            self.wfile.write(encode(fake.answer(request)))
                        return  # closed, answered only when released with ``answer``
                    self.wfile.write(encode(fake.answer(request)))

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeMountd:
        self.thread.start()
        return self

    def wait_hung(self, count: int = 1, timeout: float = 30.0) -> None:
        """Poll until ``count`` requests hang; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.hung) < count:
            assert time.monotonic() < deadline, f"{len(self.hung)} of {count} requests hung"
            time.sleep(0.01)

    def release(self, *, answer: bool = False) -> None:
        """Stop hanging: close the hung connections unanswered (with ``answer``, answer their
        requests first, as a mountd that was only slow); answer every op again."""
        self.hang.clear()
        released, self._released = self._released, threading.Event()
        self._answers[id(released)] = answer
        released.set()

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.path.unlink(missing_ok=True)

    def ops(self, *names: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if not names or c["op"] in names]

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        with self._lock:
            self.calls.append(request)
        if op in self.fail:
            return fail(VfdError(self.fail[op], f"fake mountd refuses {op}"))
        if op == "health":
            return ok(
                {
                    "version": "fake",
                    "mount_point": MOUNT_POINT,
                    "folders": 0,
                    "scopes": 0,
                    "pid": os.getpid(),
                }
            )
        if op == "attach":
            vfid = request["vfid"]
            self.attached.add(vfid)
            return ok(
                {"vfid": vfid, "rw": f"{MOUNT_POINT}/rw/{vfid}", "ro": f"{MOUNT_POINT}/ro/{vfid}"}
            )
        if op == "detach":
            if request["vfid"] not in self.attached:
                return fail(VfdError(ErrorCode.VFOLDER_NOT_FOUND, "not attached"))
            self.attached.discard(request["vfid"])
            return ok({"vfid": request["vfid"]})
        if op == "set_limits":
            fields = ("host", "scope", "max_bytes", "max_files")
            return ok({**{k: request[k] for k in fields}, "used_bytes": 0, "used_files": 0})
        if op == "purge":
            if request["vfid"] in self.attached:
                return fail(VfdError(ErrorCode.INVALID_STATUS, "attached; detach first"))
            layout.remove_folder_dir(Path(request["path"]))
            return ok({"vfid": request["vfid"], "freed_bytes": 0, "freed_files": 0})
        return fail(VfdError(ErrorCode.INVALID_ARGUMENT, f"unknown op {op}"))
