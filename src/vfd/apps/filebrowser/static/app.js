// vfd's web file manager: plain JavaScript over the server's JSON API (server.py).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { path: "", offset: 0, limit: 200, page: null, selected: new Set(), upload: null };

// -- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function api(method, url, body) {
  const init = { method, headers: { "X-Vfd-Files": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || { code: "http_" + res.status, message: res.statusText };
    throw new ApiError(err.code, err.message);
  }
  return data;
}

const q = (params) => new URLSearchParams(params).toString();
const join = (...parts) => parts.filter((p) => p !== "").join("/");
const folderOf = (path) => path.split("/")[0];

// -- formatting ------------------------------------------------------------------------------

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
}

function when(mtime) {
  return new Date(mtime * 1000).toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
  });
}

function say(text, ok) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("ok", !!ok);
  box.hidden = !text;
}

function fail(err) {
  say(err instanceof ApiError ? `${err.message} [${err.code}]` : String(err));
}

// -- listing ---------------------------------------------------------------------------------

function pathFromHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  return raw.split("/").filter(Boolean).map(decodeURIComponent).join("/");
}

async function load() {
  const path = pathFromHash();
  if (path !== state.path) { state.offset = 0; }
  state.path = path;
  state.selected.clear();
  try {
    state.page = await api("GET", "/api/list?" + q({ path, offset: state.offset, limit: state.limit }));
  } catch (err) {
    fail(err);
    if (path !== "") { state.page = null; }
    return;
  }
  render();
}

function crumbs() {
  const nav = $("crumbs");
  nav.replaceChildren();
  const top = document.createElement("a");
  top.href = "#/";
  top.textContent = "Folders";
  nav.append(top);
  const parts = state.path ? state.path.split("/") : [];
  parts.forEach((part, i) => {
    const sep = document.createElement("span");
    sep.className = "sep";
    sep.textContent = "/";
    const a = document.createElement("a");
    a.textContent = part;
    a.href = "#/" + parts.slice(0, i + 1).map(encodeURIComponent).join("/");
    nav.append(sep, a);
  });
}

function render() {
  const page = state.page;
  crumbs();
  const rows = $("rows");
  rows.replaceChildren();
  for (const e of page.entries) {
    const tr = document.createElement("tr");
    tr.dataset.name = e.name;
    const sel = document.createElement("td");
    sel.className = "sel";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.setAttribute("aria-label", "Select " + e.name);
    // a name whose bytes are not UTF-8 cannot be addressed from here: shown, not offered
    const odd = e.name_b64 !== undefined;
    box.disabled = state.path === "" || odd;
    box.addEventListener("change", () => {
      if (box.checked) { state.selected.add(e.name); } else { state.selected.delete(e.name); }
      tr.classList.toggle("selected", box.checked);
      controls();
    });
    sel.append(box);
    const name = document.createElement("td");
    name.className = "name";
    const icon = document.createElement("span");
    icon.className = "icon " + e.type;
    icon.title = { dir: "directory", file: "file", link: "symbolic link" }[e.type] || "special file";
    const full = join(state.path, e.name);
    const a = document.createElement("a");
    a.textContent = e.name;
    if (odd) {
      a.title = "This name is not UTF-8 text: use the vfd command to work with it";
    } else if (e.type === "dir") {
      a.href = "#/" + full.split("/").map(encodeURIComponent).join("/");
    } else if (e.type === "file") {
      a.href = "/api/download?" + q({ path: full });
      a.download = e.name;
    }
    name.append(icon, a);
    if (e.readonly) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "read-only";
      name.append(" ", badge);
    }
    const sz = document.createElement("td");
    sz.className = "num";
    sz.textContent = e.type === "file" ? size(e.size) : "";
    const mt = document.createElement("td");
    mt.textContent = when(e.mtime);
    tr.append(sel, name, sz, mt);
    rows.append(tr);
  }
  $("empty").hidden = page.entries.length > 0 || state.path === "";
  const last = Math.min(page.offset + page.entries.length, page.total);
  $("page-text").textContent = page.total
    ? `${page.offset + 1}–${last} of ${page.total}` : "";
  $("btn-prev").disabled = page.offset === 0;
  $("btn-next").disabled = last >= page.total;
  $("pager").hidden = page.total <= state.limit && page.offset === 0;
  $("select-all").checked = false;
  $("select-all").disabled = state.path === "";
  const quota = page.quota;
  $("quota").hidden = !quota;
  if (quota) {
    const limit = quota.limit || 0;
    $("quota-meter").hidden = !limit;  // 0: no limit
    $("quota-meter").max = Math.max(limit, 1);
    $("quota-meter").value = quota.used;
    $("quota-text").textContent = limit
      ? `${size(quota.used)} of ${size(limit)} used` : `${size(quota.used)} used (no limit)`;
  }
  controls();
}

function writable() {
  return state.page !== null && state.path !== "" && !state.page.readonly && !state.upload;
}

function controls() {
  const n = state.selected.size;
  $("ro-badge").hidden = !(state.page && state.path !== "" && state.page.readonly);
  for (const el of document.querySelectorAll("[data-write], [data-needs]")) {
    let ok = true;
    if (el.hasAttribute("data-write")) { ok = writable(); }
    const needs = el.getAttribute("data-needs");
    if (needs === "one") { ok = ok && n === 1; }
    if (needs === "some") { ok = ok && n > 0; }
    if (needs && state.path === "") { ok = false; }
    el.disabled = !ok;
  }
  for (const label of document.querySelectorAll("[data-write-label]")) {
    label.classList.toggle("disabled", !writable());
  }
}

// -- dialogs ---------------------------------------------------------------------------------

function ask(text, value, withInput = true) {
  return new Promise((resolve) => {
    const dialog = $("ask");
    const input = $("ask-input");
    $("ask-text").textContent = text;
    input.hidden = !withInput;
    input.value = value || "";
    dialog.returnValue = "";
    const done = () => {
      dialog.removeEventListener("close", done);
      resolve(dialog.returnValue === "ok" ? (withInput ? input.value : true) : null);
    };
    dialog.addEventListener("close", done);
    dialog.showModal();
    if (withInput) { input.focus(); input.select(); } else { $("ask-ok").focus(); }
  });
}

// -- actions ---------------------------------------------------------------------------------

const selectedPaths = () => [...state.selected].map((name) => join(state.path, name));

async function act(work, done) {
  say("");
  try {
    await work();
    if (done) { say(done, true); }
  } catch (err) {
    fail(err);
  }
  await load();
}

async function mkdir() {
  const name = await ask("New folder name:", "");
  if (!name) { return; }
  await act(() => api("POST", "/api/mkdir", { path: join(state.path, name) }), `Made ${name}`);
}

async function rename() {
  const [old] = state.selected;
  const name = await ask(`Rename ${old} to:`, old);
  if (!name || name === old) { return; }
  await act(() => api("POST", "/api/rename", { path: join(state.path, old), name }),
    `Renamed ${old} to ${name}`);
}

async function move() {
  const folder = folderOf(state.path);
  const here = state.path.split("/").slice(1).join("/");
  const n = state.selected.size;
  const where = await ask(`Move ${n} ${n === 1 ? "entry" : "entries"} to the directory (inside ${folder}):`,
    "/" + here);
  if (where === null) { return; }
  const dest = join(folder, where.split("/").filter(Boolean).join("/"));
  await act(() => api("POST", "/api/move", { paths: selectedPaths(), dest }), `Moved to ${dest}`);
}

async function remove() {
  const n = state.selected.size;
  const ok = await ask(`Delete ${n} ${n === 1 ? "entry" : "entries"} and everything in them?`,
    "", false);
  if (!ok) { return; }
  await act(() => api("POST", "/api/delete", { paths: selectedPaths() }), `Deleted ${n}`);
}

function download() {
  const [name] = state.selected;
  const a = document.createElement("a");
  a.href = "/api/download?" + q({ path: join(state.path, name) });
  a.download = "";
  document.body.append(a);
  a.click();
  a.remove();
}

// -- uploads ---------------------------------------------------------------------------------
// An upload names its top-level entries, sends each file (XHR, for progress), then commits:
// the server shows nothing of it before the commit, and removes it when it is aborted.

function put(url, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    state.upload.xhr = xhr;
    xhr.open("PUT", url);
    xhr.setRequestHeader("X-Vfd-Files", "1");
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) { resolve(); return; }
      let err = { code: "http_" + xhr.status, message: xhr.statusText };
      try { err = JSON.parse(xhr.responseText).error || err; } catch (e) { /* not JSON */ }
      reject(new ApiError(err.code, err.message));
    };
    xhr.onerror = () => reject(new ApiError("network", "the connection failed"));
    xhr.onabort = () => reject(new ApiError("cancelled", "upload cancelled"));
    xhr.send(file);
  });
}

async function upload(files, dirs) {
  // files: [{rel, file}], dirs: [rel] (empty ones); rel is relative to the current directory
  if (!files.length && !dirs.length) { return; }
  const names = [...new Set([...files.map((f) => f.rel), ...dirs].map((r) => r.split("/")[0]))];
  const total = files.reduce((sum, f) => sum + f.file.size, 0);
  const up = { key: null, xhr: null, cancelled: false };
  state.upload = up;
  controls();
  $("progress").hidden = false;
  const bar = $("progress-bar");
  const text = $("progress-text");
  let done = 0;
  const show = (i, loaded) => {
    const frac = total ? (done + loaded) / total : 1;
    bar.value = frac;
    text.textContent = `Uploading ${Math.min(i + 1, files.length)} of ${files.length} ` +
      `file${files.length === 1 ? "" : "s"} — ${Math.floor(frac * 100)}%`;
  };
  say("");
  try {
    up.key = (await api("POST", "/api/uploads", { dest: state.path, names })).key;
    const base = "/api/uploads/" + encodeURIComponent(up.key);
    for (const rel of dirs) {
      if (up.cancelled) { throw new ApiError("cancelled", "upload cancelled"); }
      await api("POST", base + "/dir?" + q({ path: rel }));
    }
    for (let i = 0; i < files.length; i++) {
      if (up.cancelled) { throw new ApiError("cancelled", "upload cancelled"); }
      show(i, 0);
      await put(base + "/file?" + q({ path: files[i].rel }), files[i].file, (n) => show(i, n));
      done += files[i].file.size;
    }
    show(files.length - 1, 0);
    await api("POST", base + "/commit");
    say(`Uploaded ${files.length} file${files.length === 1 ? "" : "s"}`, true);
  } catch (err) {
    if (up.key) { api("DELETE", "/api/uploads/" + encodeURIComponent(up.key)).catch(() => {}); }
    fail(err);
  } finally {
    state.upload = null;
    $("progress").hidden = true;
    await load();
  }
}

function cancelUpload() {
  const up = state.upload;
  if (!up) { return; }
  up.cancelled = true;
  if (up.xhr) { up.xhr.abort(); }
}

function fromPicker(input, tree) {
  const files = [...input.files].map((file) => ({
    rel: tree && file.webkitRelativePath ? file.webkitRelativePath : file.name, file,
  }));
  input.value = "";
  return upload(files, []);
}

function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

async function walkEntry(entry, rel, files, dirs) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    files.push({ rel, file });
    return;
  }
  const reader = entry.createReader();
  let any = false;
  for (;;) {
    const batch = await readEntries(reader);
    if (!batch.length) { break; }
    any = true;
    for (const child of batch) { await walkEntry(child, rel + "/" + child.name, files, dirs); }
  }
  if (!any) { dirs.push(rel); }
}

async function fromDrop(ev) {
  ev.preventDefault();
  $("drop").classList.remove("dragging");
  if (!writable()) { say("You cannot upload here"); return; }
  const items = [...(ev.dataTransfer.items || [])];
  const entries = items.map((it) => (it.webkitGetAsEntry ? it.webkitGetAsEntry() : null));
  const plain = items.map((it) => (it.kind === "file" ? it.getAsFile() : null));
  const files = [];
  const dirs = [];
  for (let i = 0; i < items.length; i++) {
    if (entries[i]) {
      await walkEntry(entries[i], entries[i].name, files, dirs);
    } else if (plain[i]) {
      files.push({ rel: plain[i].name, file: plain[i] });
    }
  }
  await upload(files, dirs);
}

// -- wiring ----------------------------------------------------------------------------------

function start() {
  window.addEventListener("hashchange", load);
  $("btn-mkdir").addEventListener("click", mkdir);
  $("btn-rename").addEventListener("click", rename);
  $("btn-move").addEventListener("click", move);
  $("btn-delete").addEventListener("click", remove);
  $("btn-download").addEventListener("click", download);
  $("btn-cancel").addEventListener("click", cancelUpload);
  $("pick-files").addEventListener("change", (ev) => fromPicker(ev.target, false));
  $("pick-dir").addEventListener("change", (ev) => fromPicker(ev.target, true));
  $("btn-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - state.limit);
    load();
  });
  $("btn-next").addEventListener("click", () => { state.offset += state.limit; load(); });
  $("select-all").addEventListener("change", (ev) => {
    for (const box of document.querySelectorAll("#rows input[type=checkbox]")) {
      if (box.checked !== ev.target.checked) { box.click(); }
    }
  });
  $("ask-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); $("ask").close("ok"); }
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", fromDrop);
  window.addEventListener("beforeunload", (ev) => {
    if (state.upload) { ev.preventDefault(); }
  });
  load();
}

start();
