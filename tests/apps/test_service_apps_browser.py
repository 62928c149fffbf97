"""A service app in a real headless Chromium (Debian's ``chromium``, driven by playwright):
the link with the token lands on the page without it in the address bar, the page's own
requests pass on the HttpOnly cookie, and a browser without the token is refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "sessions"))
sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from fbserver import CHROMIUM, needs_browser
from servicekit import build_service_image
from sessionnode import SessionNode, node_fixture

NODE_CONFIG = """
[apps]
listen = "127.0.0.1"
public_host = "127.0.0.1"
ports = "44000-44999"
"""
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "service-apps"
PAGE = """<!doctype html><title>service</title>
<h1 id="said">waiting</h1>
<script>
fetch("data.txt").then(r => r.text())
  .then(t => { document.getElementById("said").textContent = t.trim(); });
</script>
"""


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Iterator[SessionNode]:
    yield from node_fixture(request)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    needs_browser()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the service app: {ARTIFACTS}")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def test_service_app_in_a_browser(node: SessionNode, browser: Any, tmp_path: Path) -> None:
    alice = node.user()
    folder = node.folder(alice)
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "data.txt").write_text("fetched with the cookie\n")
    for name in ("index.html", "data.txt"):
        node.cli.ok("vfolder", "upload", folder["name"], str(tmp_path / name), as_=alice["email"])
    done = node.run(
        "run",
        "-d",
        "--json",
        "-m",
        folder["name"],
        build_service_image(),
        "sleep",
        "600",
        as_=alice["email"],
    )
    assert done.returncode == 0, done.stderr
    ref = json.loads(done.stdout)["id"]
    node.wait_status(ref, {"running"}, as_=alice["email"])
    url = node.run("session", "app", ref, "files", as_=alice["email"]).stdout.strip()
    origin, _, query = url.partition("/?")
    page_path = f"/{folder['name']}/index.html"

    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{origin}{page_path}?{query}")
        assert page.url == f"{origin}{page_path}"  # redirected: the token left the address bar
        page.wait_for_function(
            "document.getElementById('said').textContent !== 'waiting'", timeout=10_000
        )
        assert page.inner_text("#said") == "fetched with the cookie"  # the page's own request
        assert "vfd_app_" not in page.evaluate("document.cookie")  # HttpOnly
        [cookie] = [c for c in context.cookies() if c["name"].startswith("vfd_app_")]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        page.screenshot(path=str(ARTIFACTS / "service-page.png"))
        again = page.goto(f"{origin}/{folder['name']}/data.txt")  # the cookie alone
        assert again is not None and again.status == 200
    finally:
        context.close()

    stranger = browser.new_context()
    try:
        page = stranger.new_page()
        refused = page.goto(f"{origin}{page_path}")
        assert refused is not None and refused.status == 401
        assert "needs its token" in page.inner_text("body")
        page.screenshot(path=str(ARTIFACTS / "service-refused.png"))
        wrong = page.goto(f"{origin}{page_path}?vfd_token=not-the-token")
        assert wrong is not None and wrong.status == 403
    finally:
        stranger.close()
    node.cli.ok("session", "destroy", ref, as_=alice["email"])
