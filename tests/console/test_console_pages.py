"""The console's Data and Sessions pages in a real headless Chromium (Debian's ``chromium``,
driven by playwright) against a real ``vfd up`` serving the console on its TCP listener:
sign-in with a one-time link, the folder lists and the create dialog (a user, a project, an
automount and a models folder; a 65-character name; a server error beside its field), the
explorer (a directory tree uploaded, files, a directory made, an entry renamed and deleted),
the quota panel following an upload, a folder renamed and shared read-only with a second
user who sees it marked shared and cannot write until the owner revokes them from the
dialog's list of members, trash, restore and delete forever behind
the exact name, the SFTP server and its key, the sessions list and a folder in use, CSRF and
a missing cookie refused — and axe-core on every page, with no serious or critical violation.

Screenshots of each page are saved under ``tests/artifacts/console/`` (printed).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "files"))
from filenode import Node, running_node, wait_until

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect
except ImportError:  # pragma: no cover - the dev extra installs it; needs_browser says so
    pass

pytestmark = pytest.mark.fuse

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "console" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts" / "console"
MiB = 1024 * 1024


# ----------------------------------------------------------------------------- fixtures


def needs_browser() -> None:
    """Skip (fail under CI) without playwright, Debian's chromium or axe-core, saying which."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not AXE.is_file():
        missing.append(f"{AXE} (cd console && npm ci)")
    if missing:
        reason = "console browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " — CI must run them")
        print(reason)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    needs_browser()
    db = Path(tempfile.mkdtemp(prefix="vfd-console-db-", dir="/tmp"))
    try:
        # the apps' links name another site than the console's (localhost, not 127.0.0.1):
        # the file manager's window opened from the console must work across sites
        extra = f'tcp_listen = "127.0.0.1:{free_port()}"\n[apps]\npublic_host = "localhost"\n'
        yield from running_node(f"sqlite:///{db / 'vfd.db'}", prefix="vfd-console-", extra=extra)
    finally:
        shutil.rmtree(db, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(node: Node) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the console: {ARTIFACTS}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class Person:
    """A vfd user with a browser context of their own (their own cookies)."""

    def __init__(self, node: Node, browser: Browser, user: dict[str, Any]) -> None:
        self.node = node
        self.user = user
        self.email: str = user["email"]
        self.context: BrowserContext = browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 860}
        )
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def link(self) -> str:
        """A one-time sign-in link, as ``vfd console`` asks for it (here for this user)."""
        with self.node.http(as_=self.email) as http:
            answer = http.post("/v1/console/links")
        assert answer.status_code == 201, answer.text
        url: str = answer.json()["url"]
        return url

    def sign_in(self) -> Page:
        self.page.goto(self.link())
        expect(self.page.locator("#who")).to_contain_text(self.email)
        # the Data page has loaded (its storage panel lists the hosts)
        expect(self.page.locator("#quota-rows tr").first).to_be_visible()
        return self.page

    def api(self, method: str, path: str, body: Any = None, csrf: str | None = "session") -> Any:
        """A call from the page itself (its cookie; the session's CSRF token unless told)."""
        return self.page.evaluate(
            """async ([method, path, body, csrf]) => {
                 const headers = {"Content-Type": "application/json"};
                 if (csrf === "session") {
                   const s = await (await fetch("/v1/console/session")).json();
                   headers["X-CSRF-Token"] = s.csrf_token;
                 } else if (csrf !== null) { headers["X-CSRF-Token"] = csrf; }
                 const res = await fetch(path, {method, headers,
                   body: body === null ? undefined : JSON.stringify(body)});
                 return {status: res.status, body: await res.json()};
               }""",
            [method, path, body, csrf],
        )

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], f"the console raised in {self.email}'s browser: {self.errors}"


def make_user(node: Node, role: str = "user") -> dict[str, Any]:
    uid = 20000 + secrets.randbelow(20000)
    body = {"email": f"c{secrets.token_hex(4)}@example.org", "uid": uid, "gid": uid, "role": role}
    with node.http() as http:
        made = http.post("/v1/admin/users", json=body)
    assert made.status_code == 201, made.text
    user: dict[str, Any] = made.json()
    return user


@pytest.fixture
def admin(node: Node, browser: Browser) -> Iterator[Person]:
    person = Person(node, browser, make_user(node, "admin"))
    yield person
    person.close()


@pytest.fixture
def alice(node: Node, browser: Browser) -> Iterator[Person]:
    person = Person(node, browser, make_user(node))
    yield person
    person.close()


@pytest.fixture
def bob(node: Node, browser: Browser) -> Iterator[Person]:
    person = Person(node, browser, make_user(node))
    yield person
    person.close()


# ----------------------------------------------------------------------------- helpers


def shot(page: Page, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def axe(page: Page, what: str) -> None:
    """axe-core on the page as it is: no serious or critical violation (the page's CSP is
    kept: axe is evaluated through the DevTools protocol, not as a script of the page)."""
    page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return {passes: r.passes.length, violations: r.violations.map(v => ({id: v.id,"
        " impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))}; }"
    )
    assert result["passes"] > 10, f"axe-core checked next to nothing on {what}: {result}"
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"axe-core on {what}:\n{json.dumps(bad, indent=1)}"


def row(page: Page, name: str) -> Any:
    return page.locator(f'#folder-rows tr[data-name="{name}"]')


def folders_of(node: Node, email: str, trash: bool = False) -> dict[str, dict[str, Any]]:
    with node.http(as_=email) as http:
        listed = http.get("/v1/vfolders", params={"trash": str(trash).lower()}).json()
    return {f["name"]: f for f in listed["vfolders"]}


def listing(node: Node, email: str, folder: str, path: str = "") -> dict[str, str]:
    with node.http(as_=email) as http:
        answer = http.get(f"/v1/vfolders/{folder}/files", params={"path": path})
    assert answer.status_code == 200, answer.text
    return {e["name"]: e["type"] for e in answer.json()["entries"]}


def create(
    page: Page,
    name: str,
    *,
    mode: str = "general",
    project: str | None = None,
    permission: str | None = None,
) -> None:
    page.click("#btn-create")
    expect(page.locator("#dlg-create")).to_be_visible()
    page.select_option("#create-mode", mode)
    page.fill("#create-name", name)
    if project is not None:
        page.check("#create-type-project")
        page.select_option("#create-project", project)
    if permission is not None:
        page.select_option("#create-permission", permission)
    page.click("#create-ok")


def tab(page: Page, name: str) -> None:
    page.click(f"#tab-{name}")
    expect(page.locator(f"#tab-{name}")).to_have_attribute("aria-selected", "true")


# ------------------------------------------------------------------------------- tests


def test_console_pages_signin_link_create_and_validate(node: Node, admin: Person) -> None:
    page = admin.page
    page.goto(f"http://{node.config.tcp_listen}/console/")
    expect(page.locator("#page-signin")).to_be_visible()
    shot(page, "signin")
    axe(page, "the sign-in page")

    link = admin.link()
    page.goto(link)
    expect(page.locator("#who")).to_contain_text(f"{admin.email} (admin)")
    expect(page.locator("#quota-rows tr").first).to_be_visible()
    assert page.url.endswith("/console/"), "the code leaves the address bar"
    # the link is single use
    other = admin.context.browser.new_context()  # type: ignore[union-attr]
    try:
        used = other.new_page().goto(link)
        assert used is not None and used.status == 401, used and used.status
    finally:
        other.close()

    with node.http() as http:
        made = http.post("/v1/admin/projects", json={"name": f"p{secrets.token_hex(3)}"})
        assert made.status_code == 201, made.text
        project = made.json()["name"]
        added = http.post(f"/v1/admin/projects/{project}/members", json={"email": admin.email})
        assert added.status_code == 200, added.text

    # the name is checked as it is typed, with the server's rules and words
    page.click("#btn-create")
    page.fill("#create-name", "x" * 65)
    error = page.locator("#create-name-error")
    expect(error).to_have_text("folder name has 65 characters; at most 64 are allowed")
    expect(page.locator("#create-name")).to_have_attribute("aria-invalid", "true")
    axe(page, "the create dialog")
    shot(page, "create-dialog-invalid")
    page.click("#create-ok")
    expect(error).to_be_visible()
    assert "x" * 65 not in folders_of(node, admin.email)
    page.fill("#create-name", "x" * 64)
    expect(error).to_be_hidden()
    page.fill("#create-name", "venv")
    page.select_option("#create-mode", "automount")
    expect(error).to_contain_text("starts with a dot")
    page.click("#dlg-create [data-close]")

    user_folder = f"data-{secrets.token_hex(2)}"
    create(page, user_folder)
    expect(row(page, user_folder)).to_contain_text("User")
    proj_folder = f"shared-{secrets.token_hex(2)}"
    create(page, proj_folder, project=project, permission="ro")
    expect(row(page, proj_folder).locator(".badge.project")).to_have_text("project")
    expect(row(page, proj_folder)).to_contain_text(project)
    folders = folders_of(node, admin.email)
    assert folders[user_folder]["ownership"] == "user"
    assert folders[proj_folder]["ownership"] == "project"
    assert folders[proj_folder]["owner"] == project
    assert folders[proj_folder]["default_permission"] == "ro"

    # a server refusal is shown beside the field it concerns
    create(page, user_folder)
    expect(page.locator("#create-name-error")).to_contain_text("vfolder_exists")
    expect(page.locator("#dlg-create")).to_be_visible()
    page.click("#dlg-create [data-close]")

    dot = f".dot{secrets.token_hex(2)}"
    create(page, dot, mode="automount")
    expect(page.locator("#tab-automount")).to_have_attribute("aria-selected", "true")
    expect(row(page, dot)).to_be_visible()
    model = f"model-{secrets.token_hex(2)}"
    create(page, model, mode="model")
    expect(page.locator("#tab-models")).to_have_attribute("aria-selected", "true")
    expect(row(page, model)).to_be_visible()
    assert folders_of(node, admin.email)[model]["usage_mode"] == "model"

    tab(page, "folders")
    expect(row(page, user_folder)).to_be_visible()
    expect(row(page, dot)).to_have_count(0)
    expect(row(page, model)).to_have_count(0)
    page.fill("#filter", "shared-")
    expect(row(page, user_folder)).to_have_count(0)
    expect(row(page, proj_folder)).to_be_visible()
    page.fill("#filter", "")
    # sorting by name, both ways
    page.click('#folder-head button[data-key="name"]')
    names = page.locator("#folder-rows tr").evaluate_all("rs => rs.map(r => r.dataset.name)")
    assert names == sorted(names, key=str.lower, reverse=True), names
    expect(page.locator('#folder-head th[aria-sort="descending"]')).to_have_count(1)
    # the storage panel counts the folders made
    expect(page.locator("#count-created")).to_contain_text("3")
    expect(page.locator("#count-project")).to_have_text("1")
    shot(page, "data-folders")
    axe(page, "the Data page")

    # keyboard: the tabs move with the arrow keys
    page.focus("#tab-folders")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-automount")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tab-automount")).to_be_focused()


def test_console_pages_explorer_uploads_and_quota(
    node: Node, alice: Person, tmp_path: Path
) -> None:
    page = alice.sign_in()
    name = f"work-{secrets.token_hex(2)}"
    create(page, name)
    expect(row(page, name)).to_be_visible()
    with node.http() as http:
        set_quota = http.put(
            "/v1/admin/quota", json={"user": alice.email, "host": "local", "max_bytes": 64 * MiB}
        )
        assert set_quota.status_code == 200, set_quota.text
    page.reload()
    quota = page.locator('#quota-rows tr[data-host="local"] td.user-quota')
    expect(quota).to_contain_text("of 64 MiB")
    before = quota.inner_text()

    tree = tmp_path / "results"
    (tree / "run1" / "logs").mkdir(parents=True)
    (tree / "run1" / "logs" / "out.txt").write_text("hello\n")
    (tree / "run1" / "weights.bin").write_bytes(os.urandom(3 * MiB))
    (tree / "ünïcode name.txt").write_text("x")
    (tree / ("long-" * 30 + ".txt")).write_text("long")
    single = tmp_path / "notes.txt"
    single.write_text("a note\n")

    page.click(f'a[aria-label="Open {name}"]')
    expect(page.locator("#explorer-title")).to_have_text(name)
    expect(page.locator("#entries-empty")).to_be_visible()
    page.set_input_files("#pick-dir", str(tree))
    expect(page.locator("#message")).to_contain_text("Uploaded 4 files")
    expect(page.locator('#entries tr[data-name="results"]')).to_be_visible()
    assert listing(node, alice.email, name, "results") == {
        "run1": "dir",
        "ünïcode name.txt": "file",
        "long-" * 30 + ".txt": "file",
    }
    assert listing(node, alice.email, name, "results/run1/logs") == {"out.txt": "file"}
    page.set_input_files("#pick-files", str(single))
    expect(page.locator('#entries tr[data-name="notes.txt"]')).to_be_visible()

    # a directory made, an entry renamed, one deleted; into a directory and back out
    page.click("#btn-mkdir")
    page.fill("#ask-input", "empty")
    page.click("#ask-ok")
    expect(page.locator('#entries tr[data-name="empty"]')).to_be_visible()
    page.check('#entries tr[data-name="notes.txt"] input[type=checkbox]')
    page.click("#btn-rename-entry")
    page.fill("#ask-input", "renamed.txt")
    page.click("#ask-ok")
    expect(page.locator('#entries tr[data-name="renamed.txt"]')).to_be_visible()
    page.check('#entries tr[data-name="empty"] input[type=checkbox]')
    page.click("#btn-delete")
    page.click("#ask-ok")
    expect(page.locator('#entries tr[data-name="empty"]')).to_have_count(0)
    assert listing(node, alice.email, name) == {"results": "dir", "renamed.txt": "file"}
    page.click('#entries tr[data-name="results"] a')
    expect(page.locator('#entries tr[data-name="run1"]')).to_be_visible()
    expect(page.locator("#crumbs")).to_contain_text(f"Data/{name}/results")
    shot(page, "explorer")
    axe(page, "the explorer")
    with page.expect_download() as got:
        page.click('#entries tr[data-name="ünïcode name.txt"] a')
    assert Path(got.value.path()).read_text() == "x"

    # the quota panel follows the upload
    page.click('#nav a[data-page="data"]')
    expect(quota).not_to_have_text(before)
    assert "3.0 MiB of 64 MiB" in quota.inner_text(), quota.inner_text()
    shot(page, "data-quota")


def test_console_pages_rename_share_read_only(node: Node, alice: Person, bob: Person) -> None:
    page = alice.sign_in()
    name = f"ds-{secrets.token_hex(2)}"
    create(page, name)
    with node.http(as_=alice.email) as http:
        params = {"path": "a.txt", "key": "k1234567", "size": 2}
        put = http.put(f"/v1/vfolders/{name}/upload", params=params, content=b"hi")
        assert put.status_code == 200, put.text
    renamed = name + "-v2"
    row(page, name).get_by_role("button", name=f"Rename {name}").click()
    page.fill("#ask-input", "bad/name")
    page.click("#ask-ok")
    expect(page.locator("#ask-error")).to_contain_text("must not contain '/'")
    page.fill("#ask-input", renamed)
    page.click("#ask-ok")
    expect(row(page, renamed)).to_be_visible()
    assert renamed in folders_of(node, alice.email)

    row(page, renamed).get_by_role("button", name=f"Share {renamed}").click()
    page.fill("#share-emails", bob.email)
    page.select_option("#share-permission", "ro")
    page.click("#share-invite")
    expect(page.locator("#share-pending")).to_contain_text(f"{bob.email} (ro)")
    expect(page.locator("#share-members")).to_have_text("no one")
    axe(page, "the share dialog")
    shot(page, "share-dialog")
    page.click("#dlg-share menu:last-of-type [data-close]")

    bpage = bob.sign_in()
    expect(bpage.locator("#invitations")).to_contain_text(renamed)
    shot(bpage, "data-invitation")
    bpage.get_by_role("button", name=f"Accept {renamed}").click()
    shared = row(bpage, renamed)
    expect(shared.locator(".badge.shared")).to_have_text("shared")
    expect(shared).to_contain_text("ro")
    expect(shared.get_by_role("button", name=f"Move to trash {renamed}")).to_have_count(0)
    expect(shared.get_by_role("button", name=f"Leave {renamed}")).to_be_visible()
    shared.get_by_role("link", name=f"Open {renamed}").click()
    expect(bpage.locator("#ro-badge")).to_be_visible()
    expect(bpage.locator('#entries tr[data-name="a.txt"]')).to_be_visible()
    for button in ("#btn-mkdir", "#btn-rename-entry", "#btn-move", "#btn-delete"):
        expect(bpage.locator(button)).to_be_disabled()
    expect(bpage.locator('label[for="pick-files"]')).to_have_attribute("aria-disabled", "true")
    shot(bpage, "explorer-read-only")
    axe(bpage, "a read-only folder")
    # and the daemon refuses a write all the same
    refused = bob.api("POST", f"/v1/vfolders/{renamed}/mkdir", {"path": "mine"})
    assert refused["status"] == 403, refused
    assert refused["body"]["error"]["code"] == "permission_denied"
    assert "mine" not in listing(node, alice.email, renamed)

    # the owner sees bob among the folder's members and revokes him there: it is gone from
    # bob's list, and the daemon refuses him the folder
    page.reload()
    row(page, renamed).get_by_role("button", name=f"Share {renamed}").click()
    members = page.locator("#share-members")
    expect(members.locator("li")).to_have_count(1)
    expect(members).to_contain_text(f"{bob.email} (ro), since")
    expect(page.locator("#share-pending")).to_have_text("none")
    axe(page, "the share dialog with a member")
    shot(page, "share-dialog-members")
    revoke = page.get_by_role("button", name=f"Revoke {bob.email}")
    revoke.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text(f"no longer shared with {bob.email}")
    expect(members).to_have_text("no one")
    expect(page.locator("#share-members-title")).to_be_focused()
    page.click("#dlg-share menu:last-of-type [data-close]")
    assert renamed not in folders_of(node, bob.email)
    gone = bob.api("GET", f"/v1/vfolders/{renamed}/files")
    assert gone["status"] == 404, gone
    assert gone["body"]["error"]["code"] == "vfolder_not_found"
    bpage.click('#nav a[data-page="data"]')
    expect(bpage.locator("#count-invited")).to_have_text("0")  # a fresh load, after the revoke
    expect(row(bpage, renamed)).to_have_count(0)


def test_console_pages_trash_restore_delete_forever(node: Node, alice: Person) -> None:
    page = alice.sign_in()
    name = f"old-{secrets.token_hex(2)}"
    create(page, name)
    row(page, name).get_by_role("button", name=f"Move to trash {name}").click()
    page.click("#ask-ok")
    expect(row(page, name)).to_have_count(0)
    tab(page, "trash")
    expect(row(page, name)).to_contain_text("delete-pending")
    shot(page, "data-trash")
    axe(page, "the Trash tab")
    row(page, name).get_by_role("button", name=f"Restore {name}").click()
    expect(row(page, name)).to_have_count(0)
    tab(page, "folders")
    expect(row(page, name)).to_contain_text("ready")

    row(page, name).get_by_role("button", name=f"Move to trash {name}").click()
    page.click("#ask-ok")
    tab(page, "trash")
    row(page, name).get_by_role("button", name=f"Delete forever {name}").click()
    page.fill("#ask-input", name.upper())
    page.click("#ask-ok")
    expect(page.locator("#ask-error")).to_contain_text("confirmation_mismatch")
    expect(page.locator("#dlg-ask")).to_be_visible()
    assert folders_of(node, alice.email, trash=True)[name]["status"] == "delete-pending"
    shot(page, "delete-forever-refused")
    page.fill("#ask-input", name)
    page.click("#ask-ok")
    expect(page.locator("#message")).to_contain_text(f"Deleted {name} forever")
    expect(row(page, name)).to_have_count(0)
    assert name not in folders_of(node, alice.email, trash=True)
    assert name not in folders_of(node, alice.email)


def test_console_pages_sftp_sessions_and_folder_in_use(node: Node, alice: Person) -> None:
    page = alice.sign_in()
    name = f"sftp-{secrets.token_hex(2)}"
    create(page, name)
    page.click(f'a[aria-label="Open {name}"]')
    expect(page.locator("#explorer-title")).to_have_text(name)
    page.click("#btn-sftp")
    expect(page.locator("#dlg-sftp")).to_be_visible(timeout=20_000)
    port = page.locator("#sftp-port").inner_text()
    assert port.isdigit(), port
    expect(page.locator("#sftp-command")).to_contain_text(f"sftp -i id_container -P {port}")
    axe(page, "the SFTP dialog")
    shot(page, "sftp-dialog")
    with page.expect_download() as got:
        page.click("#sftp-key")
    assert got.value.suggested_filename == "id_container"
    assert Path(got.value.path()).read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    page.click("#dlg-sftp [data-close]")

    # the folder is in use: shown, and trash refused
    page.click('#nav a[data-page="data"]')
    expect(row(page, name).locator(".badge.busy")).to_have_text(re.compile(r"^in use: sftp-"))
    expect(row(page, name).get_by_role("button", name=f"Move to trash {name}")).to_be_disabled()
    refused = alice.api("DELETE", f"/v1/vfolders/{name}")
    assert refused["status"] == 409, refused
    assert refused["body"]["error"]["code"] == "folder_in_use"

    page.click('#nav a[data-page="sessions"]')
    session = page.locator("#session-rows tr").filter(has_text=name)
    expect(session).to_contain_text("running")
    expect(session).to_contain_text("sftp (running)")
    expect(session).to_contain_text(f"{name} →")
    shot(page, "sessions")
    axe(page, "the Sessions page")
    session.get_by_role("button", name="Destroy").click()
    page.click("#ask-ok")
    expect(page.locator("#session-rows tr").filter(has_text=name)).to_have_count(0)

    def ended() -> bool:
        with node.http(as_=alice.email) as http:
            live = http.get("/v1/sessions").json()["sessions"]
        return not any(m["folder"] == name for s in live for m in s["mounts"])

    wait_until("the SFTP session to end", ended, timeout=30)
    page.click('#nav a[data-page="data"]')
    expect(row(page, name).get_by_role("button", name=f"Move to trash {name}")).to_be_enabled()


def test_console_pages_csrf_and_missing_cookie(node: Node, alice: Person, browser: Browser) -> None:
    page = alice.sign_in()
    for csrf in (None, "wrong"):
        refused = alice.api("POST", "/v1/vfolders", {"name": "nope"}, csrf=csrf)
        assert refused["status"] == 403, refused
        assert refused["body"]["error"]["code"] == "csrf_failed"
    assert "nope" not in folders_of(node, alice.email)
    made = alice.api("POST", "/v1/vfolders", {"name": f"yes-{secrets.token_hex(2)}"})
    assert made["status"] == 201, made

    # a browser without the cookie is asked to sign in; the API refuses it
    stranger = browser.new_context()
    try:
        spage = stranger.new_page()
        spage.goto(f"http://{node.config.tcp_listen}/console/#/data")
        expect(spage.locator("#page-signin")).to_be_visible()
        expect(spage.locator("#page-data")).to_be_hidden()
        answer = httpx.get(f"http://{node.config.tcp_listen}/v1/vfolders", timeout=10)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"
    finally:
        stranger.close()

    # sign-out ends the session server-side: the old cookie is refused
    cookie = next(c for c in alice.context.cookies() if c["name"] == "vfd_session")
    page.click("#btn-signout")
    expect(page.locator("#page-signin")).to_be_visible()
    answer = httpx.get(
        f"http://{node.config.tcp_listen}/v1/vfolders",
        cookies={"vfd_session": cookie["value"]},
        timeout=10,
    )
    assert answer.status_code == 401, answer.text


def upload_tree(node: Node, email: str, folder: str, names: list[str]) -> None:
    """Put empty files named ``names`` at the folder's root in one archive upload."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name in names:
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    with node.http(as_=email) as http:
        answer = http.put(
            f"/v1/vfolders/{folder}/upload-archive",
            params={"key": "k" + secrets.token_hex(6)},
            content=data.getvalue(),
        )
    assert answer.status_code == 200, answer.text


def test_console_pages_large_directory_move_and_tar_download(
    node: Node, alice: Person, tmp_path: Path
) -> None:
    page = alice.sign_in()
    name = f"many-{secrets.token_hex(2)}"
    create(page, name)
    upload_tree(node, alice.email, name, [f"f{i:03d}.txt" for i in range(450)])
    page.click(f'a[aria-label="Open {name}"]')
    note = page.locator("#page-note")
    expect(note).to_have_text("This directory holds 450 entries: showing 1 to 200, 200 at a time.")
    expect(page.locator("#entries tr")).to_have_count(200)
    expect(page.locator("#btn-prev")).to_be_disabled()
    page.click("#btn-next")
    expect(note).to_contain_text("showing 201 to 400")
    page.click("#btn-next")
    expect(note).to_contain_text("showing 401 to 450")
    expect(page.locator("#entries tr")).to_have_count(50)
    expect(page.locator("#btn-next")).to_be_disabled()
    shot(page, "explorer-paged")

    # a file of 2 MiB through the resumable upload route, then moved into a directory
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * MiB))
    page.click("#btn-mkdir")
    page.fill("#ask-input", "inbox")
    page.click("#ask-ok")
    expect(page.locator('#entries tr[data-name="inbox"]')).to_be_visible()
    page.set_input_files("#pick-files", str(big))
    expect(page.locator("#message")).to_have_text("Uploaded 1 file")
    page.check('#entries tr[data-name="big.bin"] input[type=checkbox]')
    page.check('#entries tr[data-name="f000.txt"] input[type=checkbox]')
    page.click("#btn-move")
    page.fill("#ask-input", "/inbox")
    page.click("#ask-ok")
    expect(page.locator('#entries tr[data-name="big.bin"]')).to_have_count(0)
    assert listing(node, alice.email, name, "inbox") == {"big.bin": "file", "f000.txt": "file"}
    # the same name again is refused before anything is sent
    page.click('#entries tr[data-name="inbox"] a')
    expect(page.locator('#entries tr[data-name="big.bin"]')).to_be_visible()
    page.set_input_files("#pick-files", str(big))
    expect(page.locator("#message")).to_contain_text("big.bin exists here already [path_exists]")

    # a directory downloads as a tar archive
    page.click(f'#crumbs a:text-is("{name}")')
    page.check('#entries tr[data-name="inbox"] input[type=checkbox]')
    with page.expect_download() as got:
        page.click("#btn-download")
    import tarfile

    with tarfile.open(got.value.path()) as tar:
        members = {m.name: m.size for m in tar.getmembers()}
    assert members.get("inbox/big.bin") == 2 * MiB, members


def test_console_pages_invitations_decline_and_leave(
    node: Node, alice: Person, bob: Person
) -> None:
    keep, refuse = f"keep-{secrets.token_hex(2)}", f"refuse-{secrets.token_hex(2)}"
    for name in (keep, refuse):
        node.folder(alice.user, name)
        with node.http(as_=alice.email) as http:
            sent = http.post(
                f"/v1/vfolders/{name}/invite", json={"emails": [bob.email], "permission": "rw"}
            )
            assert sent.status_code == 200, sent.text
    page = bob.sign_in()
    page.get_by_role("button", name=f"Decline {refuse}").click()
    expect(page.locator("#message")).to_have_text(f"Declined {refuse}")
    page.get_by_role("button", name=f"Accept {keep}").click()
    expect(row(page, keep).locator(".badge.shared")).to_be_visible()
    expect(row(page, keep)).to_contain_text("rw")
    expect(page.locator("#invitations")).to_be_hidden()
    assert refuse not in folders_of(node, bob.email)
    expect(page.locator("#count-invited")).to_have_text("1")
    row(page, keep).get_by_role("button", name=f"Leave {keep}").click()
    page.click("#ask-ok")
    expect(row(page, keep)).to_have_count(0)
    assert keep not in folders_of(node, bob.email)


def test_console_pages_keyboard_only_and_file_manager_window(node: Node, alice: Person) -> None:
    page = alice.sign_in()
    name = f"keys-{secrets.token_hex(2)}"
    # New folder, its dialog and Create, with the keyboard alone
    page.focus("#filter")
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#btn-create")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#create-mode")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#create-name")).to_be_focused()
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    expect(row(page, name)).to_be_visible()
    assert name in folders_of(node, alice.email)
    # Escape closes a dialog without doing anything
    page.click("#btn-create")
    page.keyboard.press("Escape")
    expect(page.locator("#dlg-create")).to_be_hidden()

    # the web file manager of the folder, in a window of its own
    upload_tree(node, alice.email, name, ["hello.txt"])
    page.click(f'a[aria-label="Open {name}"]')
    expect(page.locator("#explorer-title")).to_have_text(name)
    before = set(page.context.pages)
    page.click("#btn-filemanager")
    # a storage session and its app server start first (at most [apps] start_timeout)
    expect(page.locator("#message")).to_contain_text(
        "The file manager runs in session", timeout=20_000
    )

    def opened() -> Page | None:
        # the window is a page of its own once it left the console's origin (COOP)
        for candidate in page.context.pages:
            fresh = candidate not in before and not candidate.is_closed()
            if fresh and candidate.url.startswith("http"):
                return candidate
        page.wait_for_timeout(50)
        return None

    window = wait_until("the file manager's window", opened, timeout=20)
    window.wait_for_load_state()
    expect(window.locator('#rows tr[data-name="hello.txt"]')).to_be_visible()
    assert window.url.split("/")[2] != node.config.tcp_listen, "an origin of its own"
    assert window.url.startswith("http://localhost:"), "another site than the console's"
    assert "vfd_token" not in window.url
    shot(window, "file-manager-window")
    window.close()
    with node.http(as_=alice.email) as http:
        live = http.get("/v1/sessions").json()["sessions"]
        for s in live:
            if any(m["folder"] == name for m in s["mounts"]):
                assert any(a["name"] == "filebrowser" for a in s["apps"]), s
                http.delete(f"/v1/sessions/{s['id']}")


def test_console_pages_upload_past_the_quota(node: Node, alice: Person, tmp_path: Path) -> None:
    page = alice.sign_in()
    name = f"tight-{secrets.token_hex(2)}"
    create(page, name)
    expect(row(page, name)).to_be_visible()
    with node.http() as http:
        tight = {"user": alice.email, "host": "local", "max_bytes": 1 * MiB}
        assert http.put("/v1/admin/quota", json=tight).status_code == 200
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * MiB))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(os.urandom(2 * MiB))
    page.click(f'a[aria-label="Open {name}"]')
    expect(page.locator("#explorer-title")).to_have_text(name)
    for picker, source in (("#pick-files", big), ("#pick-dir", tree)):
        page.set_input_files(picker, str(source))
        expect(page.locator("#message")).to_contain_text("[quota_exceeded]")
        expect(page.locator("#progress")).to_be_hidden()
        page.evaluate("document.getElementById('message').hidden = true")
    expect(page.locator("#entries-empty")).to_be_visible()
    assert listing(node, alice.email, name) == {}


def test_console_pages_upload_cancelled_leaves_nothing(
    node: Node, alice: Person, tmp_path: Path
) -> None:
    page = alice.sign_in()
    name = f"slow-{secrets.token_hex(2)}"
    create(page, name)
    expect(row(page, name)).to_be_visible()
    folder = folders_of(node, alice.email)[name]
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 * MiB))
    page.click(f'a[aria-label="Open {name}"]')
    expect(page.locator("#explorer-title")).to_have_text(name)
    # a slow link, so that the upload is still going when Cancel is pressed
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 512 * 1024},
    )
    page.set_input_files("#pick-files", str(big))
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#btn-mkdir")).to_be_disabled()
    page.click("#btn-cancel")
    expect(page.locator("#message")).to_contain_text("upload cancelled [cancelled]")
    expect(page.locator("#progress")).to_be_hidden()
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    assert listing(node, alice.email, name) == {}
    wait_until(
        "the cut upload's part file to be removed",
        lambda: not any(node.backing(folder).iterdir()),
        timeout=15,
    )


def test_console_pages_compute_session_service_link_and_destroy(node: Node, alice: Person) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "apps"))
    from servicekit import build_service_image
    from sessionnode import docker_missing

    why = docker_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"docker is required in CI: {why}")
        print(f"compute session test skipped: {why}")
        pytest.skip(why)
    image = build_service_image()
    name = f"comp-{secrets.token_hex(2)}"
    node.folder(alice.user, name)
    with node.http(as_=alice.email) as http:
        made = http.post(
            "/v1/sessions",
            json={"image": image, "command": ["sleep", "600"], "mounts": [name]},
        )
        assert made.status_code == 201, made.text
        sid = made.json()["id"]
        wait_until(
            "the session to run",
            lambda: http.get(f"/v1/sessions/{sid}").json()["status"] == "running",
            timeout=60,
        )
        wrote = http.post(
            f"/v1/sessions/{sid}/exec",
            json={"command": ["sh", "-c", "echo served-by-the-session > /home/work/index.html"]},
        )
        assert wrote.status_code == 200, wrote.text
        started = http.post(f"/v1/sessions/{sid}/apps/files")
        assert started.status_code == 201, started.text

    page = alice.sign_in()
    expect(row(page, name).locator(".badge.busy")).to_contain_text("in use")
    page.click('#nav a[data-page="sessions"]')
    session = page.locator(f'#session-rows tr[data-id="{sid}"]')
    expect(session).to_contain_text("compute")
    expect(session).to_contain_text("running")
    expect(session).to_contain_text(f"{name} → /home/work/{name}")
    expect(session).to_contain_text("files (running)")
    axe(page, "the Sessions page with a compute session")
    shot(page, "sessions-compute")
    before = set(page.context.pages)
    session.get_by_role("button", name=re.compile("^Open files of ")).click()

    def opened() -> Page | None:
        for candidate in page.context.pages:
            fresh = candidate not in before and not candidate.is_closed()
            if fresh and candidate.url.startswith("http"):
                return candidate
        page.wait_for_timeout(50)
        return None

    window = wait_until("the service's window", opened, timeout=20)
    expect(window.locator("body")).to_contain_text("served-by-the-session")
    assert "vfd_token" not in window.url, "the proxy takes the token out of the address"
    window.close()

    session.get_by_role("button", name=re.compile("^Destroy ")).click()
    page.click("#ask-ok")
    expect(page.locator("#message")).to_contain_text("Destroyed")

    def ended() -> bool:
        with node.http(as_=alice.email) as http:
            return http.get(f"/v1/sessions/{sid}").json()["status"] == "terminated"

    wait_until("the session to end", ended, timeout=60)
    page.check("#sessions-all")
    expect(page.locator(f'#session-rows tr[data-id="{sid}"]')).to_contain_text("terminated")
    expect(page.locator(f'#session-rows tr[data-id="{sid}"]').get_by_role("button")).to_have_count(
        0
    )
