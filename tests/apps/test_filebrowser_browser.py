"""The web file manager in a real headless Chromium (Debian's ``chromium``, driven by
playwright): the token, browsing, uploads of a directory tree (picker and drag and drop) with
their progress, move, rename, delete, downloads, a read-only folder, a large directory's pages.

Screenshots of the main views are saved under ``tests/artifacts/filebrowser/`` (printed).
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fbserver import FOLDERS, FileServer, chromium, file_server, make_tree, shot, wait_for

try:
    from playwright.sync_api import Browser, Page, Route, expect
except ImportError:  # pragma: no cover - the dev extra installs it; needs_browser says so
    pass


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "root"
    make_tree(root)
    with file_server(root, FOLDERS) as srv:
        yield srv


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 700})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"the page raised: {errors}"


def pump_until(page: Page, check: Any, what: str, timeout: float = 15.0) -> None:
    """Wait for ``check()`` while playwright delivers the page's events (route handlers run
    only inside playwright's calls)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def row(page: Page, name: str) -> Any:
    return page.locator(f'#rows tr[data-name="{name}"]')


def open_dir(page: Page, name: str) -> None:
    row(page, name).locator("td.name a").click()
    expect(page.locator("#crumbs a").last).to_have_text(name)


def select(page: Page, *names: str) -> None:
    for name in names:
        row(page, name).locator("input[type=checkbox]").check()


def answer_dialog(page: Page, text: str | None = None) -> None:
    dialog = page.locator("#ask")
    expect(dialog).to_be_visible()
    if text is not None:
        page.fill("#ask-input", text)
    page.click("#ask-ok")
    expect(dialog).to_be_hidden()


def test_filebrowser_browser_wrong_token(browser: Browser, server: FileServer, page: Page) -> None:
    answer = page.goto(f"{server.base}/?vfd_token=not-the-token-at-all")
    assert answer is not None and answer.status == 403
    expect(page.locator("h1")).to_have_text("Wrong token")
    shot(page, "wrong-token")
    answer = page.goto(f"{server.base}/")
    assert answer is not None and answer.status == 401
    expect(page.locator("h1")).to_have_text("Not signed in")
    assert page.context.cookies() == []


def test_filebrowser_browser_manage(
    browser: Browser, server: FileServer, page: Page, tmp_path: Path
) -> None:
    data = server.root / "data"
    answer = page.goto(server.url)
    assert answer is not None and answer.ok
    assert page.url == f"{server.base}/"  # the token left the address bar
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    expect(row(page, "refs").locator(".badge")).to_have_text("read-only")
    shot(page, "folders")

    open_dir(page, "data")
    expect(page.locator("#quota-text")).to_contain_text("used")
    expect(row(page, "notes.txt").locator("td.num")).to_have_text("6 B")
    shot(page, "listing")

    # a directory tree through the folder picker, its progress shown until it is placed
    tree = tmp_path / "local" / "proj"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "readme.md").write_text("# proj\n")
    (tree / "sub" / "data.bin").write_bytes(os.urandom(5 << 20))
    (tree / "sub" / "deeper" / "x.txt").write_text("x\n")
    held: list[Route] = []
    page.route("**/api/uploads/*/commit", lambda route: held.append(route))
    page.set_input_files("#pick-dir", str(tree))
    expect(page.locator("#progress")).to_be_visible()
    pump_until(page, lambda: held, "the upload's commit")
    expect(page.locator("#progress-text")).to_contain_text("3 files")
    shot(page, "upload-progress")
    assert not (data / "proj").exists()  # nothing shows before the commit
    held[0].continue_()
    page.unroute("**/api/uploads/*/commit")
    expect(row(page, "proj")).to_be_visible()
    expect(page.locator("#message")).to_contain_text("Uploaded 3 files")
    for rel in ["readme.md", "sub/data.bin", "sub/deeper/x.txt"]:
        assert (data / "proj" / rel).read_bytes() == (tree / rel).read_bytes()
    assert [n for n in os.listdir(data) if n.startswith(".vfd-upload-")] == []

    # plain files through the file picker
    one = tmp_path / "local" / "one.txt"
    one.write_text("one\n")
    page.set_input_files("#pick-files", str(one))
    expect(row(page, "one.txt")).to_be_visible()

    # drag and drop
    page.evaluate(
        """() => {
            const dt = new DataTransfer();
            dt.items.add(new File(["dropped\\n"], "dropped.txt", {type: "text/plain"}));
            const drop = document.getElementById("drop");
            drop.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
            drop.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }"""
    )
    expect(row(page, "dropped.txt")).to_be_visible()
    assert (data / "dropped.txt").read_text() == "dropped\n"

    # new folder, move, rename
    page.click("#btn-mkdir")
    answer_dialog(page, "archive")
    expect(row(page, "archive")).to_be_visible()
    assert (data / "archive").is_dir()
    select(page, "one.txt", "dropped.txt")
    page.click("#btn-move")
    answer_dialog(page, "/archive")
    expect(row(page, "one.txt")).to_have_count(0)
    assert sorted(os.listdir(data / "archive")) == ["dropped.txt", "one.txt"]
    select(page, "notes.txt")
    page.click("#btn-rename")
    answer_dialog(page, "renamed.txt")
    expect(row(page, "renamed.txt")).to_be_visible()
    assert (data / "renamed.txt").read_text() == "notes\n"
    assert not (data / "notes.txt").exists()

    # downloads: a file by its link, a directory as an archive
    with page.expect_download() as got:
        row(page, "renamed.txt").locator("td.name a").click()
    saved = tmp_path / "dl-file"
    got.value.save_as(saved)
    assert got.value.suggested_filename == "renamed.txt"
    assert saved.read_text() == "notes\n"
    select(page, "proj")
    with page.expect_download() as got:
        page.click("#btn-download")
    assert got.value.suggested_filename == "proj.tar"
    saved = tmp_path / "dl-dir.tar"
    got.value.save_as(saved)
    with tarfile.open(saved) as tar:
        member = tar.extractfile("proj/sub/data.bin")
        assert member is not None
        assert member.read() == (tree / "sub" / "data.bin").read_bytes()

    # delete, after confirming
    select(page, "proj", "renamed.txt")
    page.click("#btn-delete")
    answer_dialog(page)
    expect(row(page, "proj")).to_have_count(0)
    expect(row(page, "renamed.txt")).to_have_count(0)
    assert sorted(os.listdir(data)) == ["archive", "docs"]
    shot(page, "after-changes")

    # an error is shown with its code
    select(page, "docs")
    page.click("#btn-rename")
    answer_dialog(page, "archive")
    expect(page.locator("#message")).to_contain_text("[path_exists]")

    # breadcrumbs lead back
    open_dir(page, "archive")
    page.locator("#crumbs a", has_text="data").click()
    expect(row(page, "archive")).to_be_visible()
    page.locator("#crumbs a", has_text="Folders").click()
    expect(row(page, "refs")).to_be_visible()
    wait_for(lambda: server.files_open() == [], what="descriptors released")


def test_filebrowser_browser_readonly(browser: Browser, server: FileServer, page: Page) -> None:
    page.goto(server.url)
    open_dir(page, "refs")
    expect(page.locator("#ro-badge")).to_be_visible()
    select(page, "paper.txt")  # selection works; no write control does
    for control in ["#btn-mkdir", "#pick-files", "#pick-dir", "#btn-move", "#btn-rename",
                    "#btn-delete"]:  # fmt: skip
        expect(page.locator(control)).to_be_disabled()
    expect(page.locator("#btn-download")).to_be_enabled()
    shot(page, "readonly")
    # the server refuses what the page would not offer
    status = page.evaluate(
        """async () => {
            const r = await fetch("/api/delete", {method: "POST",
                headers: {"X-Vfd-Files": "1", "Content-Type": "application/json"},
                body: JSON.stringify({paths: ["refs/paper.txt"]})});
            return [r.status, (await r.json()).error.code];
        }"""
    )
    assert status == [403, "read_only"]
    assert (server.root / "refs" / "paper.txt").exists()


def test_filebrowser_browser_large_directory(
    browser: Browser, server: FileServer, page: Page
) -> None:
    many = server.root / "data" / "many"
    many.mkdir()
    for i in range(10_000):
        (many / f"file-{i:05d}.txt").touch()
    page.goto(server.url)
    open_dir(page, "data")
    open_dir(page, "many")
    expect(page.locator("#page-text")).to_have_text("1\u2013200 of 10000")
    expect(page.locator("#rows tr")).to_have_count(200)
    shot(page, "large-directory", full_page=False)
    page.click("#btn-next")
    expect(page.locator("#page-text")).to_have_text("201\u2013400 of 10000")
    expect(row(page, "file-00200.txt")).to_be_visible()
    page.click("#btn-next")
    page.click("#btn-prev")
    expect(page.locator("#page-text")).to_have_text("201\u2013400 of 10000")
    page.click("#btn-prev")
    expect(page.locator("#page-text")).to_have_text("1\u2013200 of 10000")


def test_filebrowser_browser_cancelled_upload(
    browser: Browser, server: FileServer, page: Page, tmp_path: Path
) -> None:
    """Cancel during an upload: nothing of it is left, visible or hidden."""
    data = server.root / "data"
    page.goto(server.url)
    open_dir(page, "data")
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        out.truncate(64 << 20)
    held: list[Route] = []
    page.route("**/api/uploads/*/file?*", lambda route: held.append(route))
    page.set_input_files("#pick-files", str(big))
    pump_until(page, lambda: held, "the upload's file request")
    page.click("#btn-cancel")
    expect(page.locator("#message")).to_contain_text("cancelled")
    wait_for(
        lambda: [n for n in os.listdir(data) if n.startswith(".vfd-upload-")] == [],
        what="the cancelled upload removed",
    )
    assert not (data / "big.bin").exists()
    expect(row(page, "big.bin")).to_have_count(0)
