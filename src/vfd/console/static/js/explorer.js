// The explorer: one folder's files through the daemon's file routes (docs/api.md "File,
// quota and mount routes"), with uploads, the SFTP server and the web file manager.

import { ApiError, api, download, folderUrl, putWithProgress, saveText, sessionUrl } from "./api.js";
import { $, ask, el, fail, openDialog, say } from "./ui.js";
import {
  PAGE_SIZE, formatBytes, joinPath, pageOf, sortEntries, tarParts, uploadKey,
} from "./logic.js";

const state = {
  folder: null, path: "", entries: [], offset: 0, selected: new Set(), upload: null, sftpKey: null,
};

const readonly = () => !state.folder || state.folder.permission === "ro";
const writable = () => !readonly() && !state.upload;
const hashOf = (name, path) => "#/folder/" + [name, ...(path ? path.split("/") : [])]
  .map(encodeURIComponent).join("/");

let generation = 0;

export async function open(name, path) {
  if (!state.folder || state.folder.name !== name || state.path !== path) {
    state.offset = 0;
  }
  if (state.folder && state.folder.name !== name) {
    state.folder = null; // nothing acts on the last folder while this one loads
    state.entries = [];
    controls();
  }
  const mine = ++generation;
  const folder = await api("GET", folderUrl(name));
  const listing = await api("GET", folderUrl(name, "/files"), undefined, { query: { path } });
  if (mine !== generation) { return; } // a later open (another directory) shows its own
  state.folder = folder;
  state.path = path;
  state.selected.clear();
  state.entries = sortEntries(listing.entries);
  render();
}

const reload = () => open(state.folder.name, state.path);

// -- rendering -------------------------------------------------------------------------------

function crumbs() {
  const nav = $("crumbs");
  nav.replaceChildren(el("a", { href: "#/data", text: "Data" }));
  const parts = state.path ? state.path.split("/") : [];
  const chain = [[state.folder.name, ""], ...parts.map((p, i) => [p, parts.slice(0, i + 1).join("/")])];
  chain.forEach(([label, path], i) => {
    nav.append(el("span", { class: "sep", "aria-hidden": "true", text: "/" }));
    const last = i === chain.length - 1;
    nav.append(el("a", {
      href: hashOf(state.folder.name, path), text: label, "aria-current": last ? "page" : undefined,
    }));
  });
}

function render() {
  const f = state.folder;
  $("explorer-title").textContent = f.name;
  crumbs();
  $("ro-badge").hidden = !readonly();
  const page = pageOf(state.entries, state.offset);
  state.offset = page.offset;
  $("page-note").textContent = page.note;
  $("page-note").hidden = !page.note;
  $("pager").hidden = !page.note;
  $("btn-prev").disabled = page.offset === 0;
  $("btn-next").disabled = page.offset + PAGE_SIZE >= page.total;
  const rows = $("entries");
  rows.replaceChildren();
  for (const e of page.rows) { rows.append(entryRow(e)); }
  $("entries-empty").hidden = state.entries.length > 0;
  $("select-all").checked = false;
  controls();
}

function entryRow(e) {
  const odd = e.name_b64 !== undefined;
  const full = joinPath(state.path, e.name);
  const box = el("input", {
    type: "checkbox", "aria-label": "Select " + e.name, disabled: odd,
    onchange: () => {
      if (box.checked) { state.selected.add(e.name); } else { state.selected.delete(e.name); }
      tr.classList.toggle("selected", box.checked);
      controls();
    },
  });
  let link;
  if (odd) {
    link = el("span", { text: e.name, title: "This name is not UTF-8 text: use the vfd command to work with it" });
  } else if (e.type === "dir") {
    link = el("a", { href: hashOf(state.folder.name, full), text: e.name });
  } else if (e.type === "file") {
    link = el("a", {
      href: folderUrl(state.folder.name, "/download?" + new URLSearchParams({ path: full })),
      download: e.name, text: e.name,
    });
  } else {
    link = el("span", { text: e.name + (e.target ? ` → ${e.target}` : "") });
  }
  const icon = el("span", { class: "icon " + (e.type === "symlink" ? "link" : e.type), "aria-hidden": "true" });
  const tr = el("tr", { "data-name": e.name },
    el("td", { class: "sel" }, box),
    el("td", { class: "name" }, icon, link),
    el("td", { class: "num", text: e.type === "file" ? formatBytes(e.size) : "" }),
    el("td", { text: new Date(e.mtime * 1000).toISOString().replace("T", " ").slice(0, 16) }),
  );
  return tr;
}

function controls() {
  const n = state.selected.size;
  $("btn-sftp").disabled = !state.folder;
  $("btn-filemanager").disabled = !state.folder;
  for (const node of document.querySelectorAll("#page-explorer [data-write], #page-explorer [data-needs]")) {
    let ok = node.hasAttribute("data-write") ? writable() : !state.upload;
    const needs = node.getAttribute("data-needs");
    if (needs === "one") { ok = ok && n === 1; }
    if (needs === "some") { ok = ok && n > 0; }
    node.disabled = !ok;
  }
  for (const label of document.querySelectorAll("#page-explorer [data-write-label]")) {
    label.classList.toggle("disabled", !writable());
    label.setAttribute("aria-disabled", String(!writable()));
  }
}

// -- actions ---------------------------------------------------------------------------------

const selected = () => [...state.selected].map((name) => joinPath(state.path, name));

/** Show the page of the listing that holds `name` (an entry just made or renamed). */
function reveal(name) {
  const at = state.entries.findIndex((e) => e.name === name);
  if (at >= 0 && Math.floor(at / PAGE_SIZE) * PAGE_SIZE !== state.offset) {
    state.offset = at;
    render();
  }
}

async function act(work, done, shown) {
  say("");
  try {
    await work();
    await reload();
    if (shown) { reveal(shown); }
    if (done) { say(done, true); }
  } catch (err) {
    fail(err);
  }
}

async function mkdir() {
  const name = await ask({
    title: "New directory", label: "Name", ok: "Create",
    check: async (value) => {
      if (!value || value.includes("/")) { return "Give a name without '/'"; }
      await api("POST", folderUrl(state.folder.name, "/mkdir"), { path: joinPath(state.path, value) });
      return null;
    },
  });
  if (name) { await act(async () => {}, `Made ${name}`, name); }
}

async function renameEntry() {
  const [old] = state.selected;
  const name = await ask({
    title: `Rename ${old}`, label: "New name", value: old, ok: "Rename",
    check: async (value) => {
      if (!value || value.includes("/")) { return "Give a name without '/'"; }
      if (value === old) { return null; }
      await api("POST", folderUrl(state.folder.name, "/move"), {
        src: joinPath(state.path, old), dst: joinPath(state.path, value),
      });
      return null;
    },
  });
  if (name && name !== old) { await act(async () => {}, `Renamed ${old} to ${name}`, name); }
}

async function move() {
  const paths = selected();
  const where = await ask({
    title: `Move ${paths.length} ${paths.length === 1 ? "entry" : "entries"}`,
    label: `To the directory (inside ${state.folder.name})`, value: "/" + state.path, ok: "Move",
    check: async (value) => {
      const dst = value.split("/").filter(Boolean).join("/");
      for (const src of paths) {
        await api("POST", folderUrl(state.folder.name, "/move"), { src, dst: joinPath(dst, src.split("/").pop()) });
      }
      return null;
    },
  });
  if (where !== null) { await act(async () => {}, `Moved to /${where.split("/").filter(Boolean).join("/")}`); }
}

async function remove() {
  const paths = selected();
  const ok = await ask({
    title: `Delete ${paths.length} ${paths.length === 1 ? "entry" : "entries"}?`, input: false,
    text: "Directories are deleted with everything in them.", ok: "Delete", danger: true,
    check: async () => {
      await api("POST", folderUrl(state.folder.name, "/remove"), { paths, recursive: true });
      return null;
    },
  });
  if (ok) { await act(async () => {}, `Deleted ${paths.length}`); }
}

function downloadSelected() {
  const [name] = state.selected;
  const entry = state.entries.find((e) => e.name === name);
  const query = { path: joinPath(state.path, name) };
  if (entry && entry.type === "dir") { query.archive = "true"; }
  download(folderUrl(state.folder.name, "/download?" + new URLSearchParams(query)),
    entry && entry.type === "dir" ? name + ".tar" : name);
}

// -- uploads ---------------------------------------------------------------------------------
// Single files go one by one through PUT .../upload (each appears whole when complete); a
// directory tree goes as one tar stream through PUT .../upload-archive, so the tree appears
// at once or not at all.

function progress(text, fraction) {
  $("progress").hidden = false;
  $("progress-text").textContent = text;
  $("progress-bar").value = fraction;
}

async function withUpload(work) {
  const up = { abort: new AbortController(), first: null };
  state.upload = up;
  controls();
  say("");
  try {
    await work(up);
  } catch (err) {
    fail(err);
  } finally {
    state.upload = null;
    $("progress").hidden = true;
    await reload().catch(fail);
    if (up.first) { reveal(up.first); }
  }
}

function refuseExisting(names) {
  const taken = names.filter((n) => state.entries.some((e) => e.name === n));
  if (taken.length) {
    throw new ApiError(409, "path_exists", `${taken.join(", ")} exists here already`);
  }
}

function uploadFiles(files) {
  if (!files.length) { return Promise.resolve(); }
  return withUpload(async (up) => {
    refuseExisting(files.map((f) => f.name));
    up.first = files[0].name;
    const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
    let done = 0;
    for (let i = 0; i < files.length; i++) {
      const file = files[i];
      const path = joinPath(state.path, file.name);
      const query = { path, key: uploadKey(), size: String(file.size), offset: "0" };
      const show = (n) => progress(`Uploading ${file.name} (${i + 1} of ${files.length})`, (done + n) / total);
      show(0);
      try {
        await putWithProgress(folderUrl(state.folder.name, "/upload?" + new URLSearchParams(query)),
          file, show, up.abort.signal);
      } catch (err) {
        // the daemon keeps a cut upload's part file for a resume this page will not make:
        // remove it, so that its bytes leave the quota
        const where = new URLSearchParams({ path, key: query.key });
        await api("DELETE", folderUrl(state.folder.name, "/upload?" + where)).catch(() => {});
        throw err;
      }
      done += file.size;
    }
    say(`Uploaded ${files.length} file${files.length === 1 ? "" : "s"}`, true);
  });
}

function uploadTree(files, dirs) {
  if (!files.length && !dirs.length) { return Promise.resolve(); }
  return withUpload(async (up) => {
    const tar = tarParts(files, dirs);
    refuseExisting(tar.entries);
    up.first = tar.entries[0];
    const blob = new Blob(tar.parts, { type: "application/x-tar" });
    const query = { key: uploadKey(), path: state.path };
    const label = `Uploading ${tar.entries.join(", ")}: ${files.length} file${files.length === 1 ? "" : "s"}`;
    progress(label, 0);
    const answer = await putWithProgress(
      folderUrl(state.folder.name, "/upload-archive?" + new URLSearchParams(query)), blob,
      (n) => progress(label, n / blob.size), up.abort.signal);
    say(`Uploaded ${answer.files} file${answer.files === 1 ? "" : "s"} in ${answer.dirs} ` +
      `director${answer.dirs === 1 ? "y" : "ies"} (${formatBytes(answer.bytes)})`, true);
  });
}

function fromPicker(input, tree) {
  const picked = [...input.files];
  input.value = "";
  if (tree) {
    return uploadTree(picked.map((file) => ({ rel: file.webkitRelativePath || file.name, file })), []);
  }
  return uploadFiles(picked);
}

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walk(entry, rel, files, dirs) {
  if (entry.isFile) {
    files.push({ rel, file: await new Promise((resolve, reject) => entry.file(resolve, reject)) });
    return;
  }
  const reader = entry.createReader();
  let any = false;
  for (;;) {
    const batch = await readEntries(reader);
    if (!batch.length) { break; }
    any = true;
    for (const child of batch) { await walk(child, rel + "/" + child.name, files, dirs); }
  }
  if (!any) { dirs.push(rel); }
}

async function fromDrop(ev) {
  ev.preventDefault();
  $("listing").classList.remove("dragging");
  if (!writable()) { say("You cannot upload into this folder"); return; }
  const items = [...(ev.dataTransfer.items || [])];
  const entries = items.map((it) => (it.webkitGetAsEntry ? it.webkitGetAsEntry() : null));
  if (entries.every((e) => e && e.isFile)) {
    await uploadFiles(items.map((it) => it.getAsFile()));
    return;
  }
  const files = [];
  const dirs = [];
  for (const entry of entries) { if (entry) { await walk(entry, entry.name, files, dirs); } }
  await uploadTree(files, dirs);
}

// -- SFTP and the web file manager -----------------------------------------------------------

const mountSpec = () => state.folder.name + (readonly() ? ":ro" : "");

async function runSftp() {
  if (!state.folder) { return; }
  say("Starting an SFTP server…", true);
  try {
    const session = await api("POST", "/v1/sessions/storage", { mounts: [mountSpec()], app: "sftp" });
    const key = await api("GET", sessionUrl(session.id, "/sftp-key"));
    state.sftpKey = key.private_key;
    $("sftp-info").replaceChildren(
      el("dt", { text: "Host" }), el("dd", { id: "sftp-host", text: key.host }),
      el("dt", { text: "Port" }), el("dd", { id: "sftp-port", text: String(key.port) }),
      el("dt", { text: "User" }), el("dd", { text: key.user }),
      el("dt", { text: "Session" }), el("dd", { text: `${session.short_id} (${session.name}), ended from the Sessions page` }),
    );
    $("sftp-command").textContent = key.command;
    say("");
    openDialog($("dlg-sftp"), $("sftp-key"));
  } catch (err) {
    fail(err);
  }
}

async function openFileManager() {
  if (!state.folder) { return; }
  // opened before the await, so that no pop-up blocker takes it for an unasked window
  const win = window.open("", "_blank");
  try {
    const session = await api("POST", "/v1/sessions/storage", { mounts: [mountSpec()], app: "filebrowser" });
    const link = await api("GET", sessionUrl(session.id, "/filebrowser"));
    if (win) {
      win.opener = null;
      // the file manager opens at this folder (its address's #/folder part survives the
      // redirect that takes the token out of the address)
      win.location.href = link.url + "#/" + encodeURIComponent(state.folder.name);
    }
    say(`The file manager runs in session ${session.short_id}: end it from the Sessions page`, true);
  } catch (err) {
    if (win) { win.close(); }
    fail(err);
  }
}

// -- wiring ----------------------------------------------------------------------------------

export function wire() {
  $("btn-mkdir").addEventListener("click", mkdir);
  $("btn-rename-entry").addEventListener("click", renameEntry);
  $("btn-move").addEventListener("click", move);
  $("btn-delete").addEventListener("click", remove);
  $("btn-download").addEventListener("click", downloadSelected);
  $("btn-cancel").addEventListener("click", () => state.upload && state.upload.abort.abort());
  $("pick-files").addEventListener("change", (ev) => fromPicker(ev.target, false));
  $("pick-dir").addEventListener("change", (ev) => fromPicker(ev.target, true));
  for (const label of document.querySelectorAll("#page-explorer [data-write-label]")) {
    label.tabIndex = 0;
    label.setAttribute("role", "button");
    label.addEventListener("keydown", (ev) => {
      if ((ev.key === "Enter" || ev.key === " ") && writable()) {
        ev.preventDefault();
        $(label.htmlFor).click();
      }
    });
  }
  $("btn-prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); render(); });
  $("btn-next").addEventListener("click", () => { state.offset += PAGE_SIZE; render(); });
  $("select-all").addEventListener("change", (ev) => {
    for (const box of document.querySelectorAll("#entries input[type=checkbox]")) {
      if (!box.disabled && box.checked !== ev.target.checked) { box.click(); }
    }
  });
  $("btn-sftp").addEventListener("click", runSftp);
  $("btn-filemanager").addEventListener("click", openFileManager);
  $("sftp-key").addEventListener("click", () => state.sftpKey && saveText(state.sftpKey, "id_container"));
  const drop = $("listing");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", fromDrop);
  window.addEventListener("beforeunload", (ev) => { if (state.upload) { ev.preventDefault(); } });
}

