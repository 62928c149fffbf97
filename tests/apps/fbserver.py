"""The web file manager run standalone on a tmp directory, for its tests.

``python -m vfd.apps.filebrowser.standalone`` with a spec on stdin, as a real process: the
tests reach it over HTTP (httpx) or with a real Chromium, and count its descriptors and
threads in ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

START_TIMEOUT = 30.0
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "filebrowser"
"""Where the browser tests save their screenshots (ignored by git; printed by the tests)."""


@dataclass
class FileServer:
    proc: subprocess.Popen[bytes]
    root: Path
    token: str
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?vfd_token={self.token}"

    @property
    def cookie(self) -> str:
        return f"vfd_files_{self.port}"

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """A client signed in the way a browser is: the token link, then the cookie."""
        with httpx.Client(base_url=self.base, timeout=30, headers={"X-Vfd-Files": "1"}) as client:
            answer = client.get(f"/?vfd_token={self.token}")
            assert answer.status_code == 303, answer.text
            assert client.cookies.get(self.cookie) == self.token
            yield client

    def fds(self) -> list[str]:
        """What the server's descriptors point at."""
        out = []
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                out.append(os.readlink(f"/proc/{self.proc.pid}/fd/{fd}"))
        return out

    def files_open(self) -> list[str]:
        """The server's descriptors on anything below its root (none between requests; the
        root itself stays open)."""
        return [t for t in self.fds() if t.startswith(f"{self.root}/")]


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {value!r})")
        time.sleep(0.05)


@contextlib.contextmanager
def file_server(root: Path, folders: list[dict[str, Any]], **settings: Any) -> Iterator[FileServer]:
    token = secrets.token_urlsafe(24)
    spec = {"root": str(root), "folders": folders, "token": token, **settings}
    log = root.parent / f"filebrowser-{secrets.token_hex(4)}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vfd.apps.filebrowser.standalone"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        line = proc.stdout.readline()
        assert line, f"the file manager did not start: {log.read_text()}"
        port = json.loads(line)["port"]
        server = FileServer(proc, root, token, port, log)
        wait_for(lambda: _answers(server), START_TIMEOUT, "the file manager to answer")
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()


def _answers(server: FileServer) -> bool:
    try:
        return httpx.get(server.base + "/api/list", timeout=2).status_code == 401
    except httpx.TransportError:
        return False


def make_tree(root: Path) -> None:
    """Two folders: ``data`` (rw) with a few entries, ``refs`` (ro) with one file."""
    (root / "data" / "docs").mkdir(parents=True)
    (root / "data" / "docs" / "a.txt").write_text("alpha\n")
    (root / "data" / "notes.txt").write_text("notes\n")
    (root / "refs").mkdir()
    (root / "refs" / "paper.txt").write_text("read me\n")


FOLDERS = [{"name": "data", "readonly": False}, {"name": "refs", "readonly": True}]


def needs_browser() -> None:
    """Skip (fail under CI) without playwright or Debian's chromium, saying which."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI must run them")
        pytest.skip(reason)


def chromium() -> Iterator[Any]:
    """A headless Chromium (for a module-scoped fixture); the screenshots' directory made
    and printed."""
    needs_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the file manager: {ARTIFACTS}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Save a screenshot of ``page`` as ``ARTIFACTS/<name>.png``."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0
