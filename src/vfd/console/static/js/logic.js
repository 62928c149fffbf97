// The console's pure logic: no DOM, no network. Unit-tested with `node --test`
// (tests/console/js/).

// -- folder names: the rules of vfd.folders.names.validate_name ------------------------------

export const MAX_NAME_CHARS = 64;
const RESERVED_NAMES = new Set([
  ".jupyter", ".terminfo", ".tmux.conf", ".profile", ".cache", ".vfd", "lost+found",
]);
const RESERVED_PATTERNS = [/^\.[a-z0-9]+rc$/, /^\.[a-z0-9]+_profile$/];
// control, format, private use, surrogate, unassigned, line and paragraph separators
const UNSHOWN = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Cn}\p{Zl}\p{Zp}]/u;
// what Python's str.strip() removes (Unicode White_Space and the C0 separators)
const EDGE_SPACE = /^[\s\x1c-\x1f\x85]|[\s\x1c-\x1f\x85]$/u;

function codePoint(c) {
  return "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
}

/** Why `name` cannot name a folder, as `{code, message}` (the server's code), or null. */
export function nameProblem(name) {
  const chars = [...name];
  if (chars.length === 0) {
    return { code: "invalid_name", message: "folder name must not be empty" };
  }
  if (chars.length > MAX_NAME_CHARS) {
    return {
      code: "name_too_long",
      message: `folder name has ${chars.length} characters; at most ${MAX_NAME_CHARS} are allowed`,
    };
  }
  if (name === "." || name === "..") {
    return { code: "invalid_name", message: `'${name}' cannot name a folder` };
  }
  if (name.includes("/")) {
    return { code: "invalid_name", message: "folder name must not contain '/'" };
  }
  const bad = name.match(UNSHOWN);
  if (bad) {
    return {
      code: "invalid_name",
      message: `folder name must not contain ${codePoint(bad[0])} (control, format, ` +
        "private-use, unassigned or separator characters could make it look like another name)",
    };
  }
  if (EDGE_SPACE.test(name)) {
    return { code: "invalid_name", message: "folder name must not start or end with whitespace" };
  }
  if (RESERVED_NAMES.has(name) || RESERVED_PATTERNS.some((p) => p.test(name))) {
    return { code: "reserved_name", message: `'${name}' is a reserved folder name` };
  }
  return null;
}

/** The create dialog's checks: the name rules, then what the chosen kind asks of it. */
export function createProblem({ name, mode, type }) {
  const basic = nameProblem(name);
  if (basic) { return basic; }
  const dot = name.startsWith(".");
  if (mode === "automount" && !dot) {
    return { code: "invalid_name", message: "an automount folder's name starts with a dot" };
  }
  if (mode !== "automount" && dot) {
    return {
      code: "invalid_name",
      message: "a name starting with a dot makes an automount folder: choose Auto Mount",
    };
  }
  if (type === "project" && dot) {
    return { code: "invalid_argument", message: "project folders cannot be automount folders" };
  }
  return null;
}

// -- the folder list -------------------------------------------------------------------------

export const TABS = ["folders", "automount", "models", "trash"];

/** Which tab of the list a folder (from the plain, not the trash, listing) belongs to. */
export function tabOf(folder) {
  if (folder.automount || folder.name.startsWith(".")) { return "automount"; }
  if (folder.usage_mode === "model") { return "models"; }
  return "folders";
}

/** Marks of a folder for people: shared with the caller, a project's. */
export function marks(folder) {
  const out = [];
  if (folder.ownership === "project") { out.push("project"); }
  else if (!folder.is_owner) { out.push("shared"); }
  return out;
}

export const shortId = (id) => (id || "").replace(/-/g, "").slice(0, 8);

export const typeLabel = (folder) => (folder.ownership === "project" ? "Project" : "User");

const COLLATOR = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

const SORT_KEYS = {
  name: (f) => f.name,
  id: (f) => f.id,
  host: (f) => f.host,
  type: (f) => typeLabel(f),
  permission: (f) => f.permission,
  owner: (f) => f.owner,
  usage_mode: (f) => f.usage_mode,
  status: (f) => f.status,
};

/** Folders whose name holds `filter` (any case), sorted by `key` (ties by name). */
export function arrange(folders, { filter = "", key = "name", descending = false } = {}) {
  const needle = filter.trim().toLowerCase();
  const pick = SORT_KEYS[key] || SORT_KEYS.name;
  const kept = folders.filter((f) => !needle || f.name.toLowerCase().includes(needle));
  kept.sort((a, b) => {
    const c = COLLATOR.compare(String(pick(a) ?? ""), String(pick(b) ?? ""))
      || COLLATOR.compare(a.name, b.name);
    return descending ? -c : c;
  });
  return kept;
}

// -- formatting ------------------------------------------------------------------------------

/** Bytes in binary units, as `vfd` prints them: 0 B, 512 B, 1.5 KiB, 20 MiB. */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) { return "-"; }
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  if (i === 0) { return `${v} B`; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** `used` against `limit` (0 or null: no limit) as {fraction, text, over}. */
export function usageBar(used, limit) {
  if (!limit) {
    return { fraction: 0, text: `${formatBytes(used)} used (no limit)`, over: false };
  }
  return {
    fraction: Math.min(used / limit, 1),
    text: `${formatBytes(used)} of ${formatBytes(limit)} (${Math.floor((used / limit) * 100)}%)`,
    over: used > limit,
  };
}

/** Whether a quota leaves `room` bytes (true without a limit). */
export function quotaLeaves(quota, room = 1) {
  if (!quota || !quota.max_bytes) { return true; }
  return quota.max_bytes - quota.used_bytes >= room;
}

export function formatTime(iso) {
  if (!iso) { return "-"; }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) { return iso; }
  return d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

// -- the explorer ----------------------------------------------------------------------------

export const PAGE_SIZE = 200;

/** Directory entries as the explorer lists them: directories first, then by name. */
export function sortEntries(entries) {
  const rank = (e) => (e.type === "dir" ? 0 : 1);
  return [...entries].sort((a, b) => rank(a) - rank(b) || COLLATOR.compare(a.name, b.name));
}

/** The page of `entries` at `offset`, and a note when the directory has more than one page. */
export function pageOf(entries, offset, size = PAGE_SIZE) {
  const start = Math.max(0, Math.min(offset, Math.max(0, entries.length - 1)));
  const first = Math.floor(start / size) * size;
  const rows = entries.slice(first, first + size);
  const note = entries.length > size
    ? `This directory holds ${entries.length} entries: showing ${first + 1} to ${first + rows.length}, ` +
      `${size} at a time.`
    : "";
  return { rows, offset: first, total: entries.length, note };
}

/** A path inside a folder from its parts, without empty parts. */
export const joinPath = (...parts) => parts.filter((p) => p !== "" && p !== undefined).join("/");

/** The parent directory of a path inside a folder ("" for the root). */
export function parentOf(path) {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

/** A fresh key for the upload routes (8-64 of [A-Za-z0-9_-]). */
export function uploadKey(random = Math.random) {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  let out = "c";
  for (let i = 0; i < 23; i++) { out += alphabet[Math.floor(random() * alphabet.length)]; }
  return out;
}

// -- tar: a directory tree for PUT .../upload-archive -----------------------------------------
// Built from Blob parts (headers, the files themselves, padding), so no file is read into
// memory; names that do not fit ustar, and sizes past its 8 GiB, travel in pax headers.

const BLOCK = 512;
const encoder = new TextEncoder();

function octal(n, width) {
  // width bytes: width-1 octal digits and a NUL
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

function put(block, offset, text) {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  block.set(bytes, offset);
}

/** One 512-byte ustar header. `name` must fit (≤ 100 bytes); `size` ≤ 8 GiB - 1. */
export function tarHeader({ name, size = 0, type = "0", mode = 0o644, mtime = 0 }) {
  const block = new Uint8Array(BLOCK);
  put(block, 0, encoder.encode(name).slice(0, 100));
  put(block, 100, octal(mode, 8));
  put(block, 108, octal(0, 8));
  put(block, 116, octal(0, 8));
  put(block, 124, octal(size, 12));
  put(block, 136, octal(Math.max(0, Math.floor(mtime)), 12));
  put(block, 148, "        ");
  put(block, 156, type);
  put(block, 257, "ustar\0");
  put(block, 263, "00");
  let sum = 0;
  for (const b of block) { sum += b; }
  put(block, 148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/** A pax record `LEN key=value\n`, LEN counting itself. */
export function paxRecord(key, value) {
  const body = ` ${key}=${value}\n`;
  const bodyLen = encoder.encode(body).length;
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) { len = String(len).length + bodyLen; }
  return `${len}${body}`;
}

const padding = (size) => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);
const USTAR_MAX_SIZE = 8 ** 11 - 1;

function member(parts, { name, size, type, mode, mtime }, data) {
  const raw = encoder.encode(name);
  const fitsName = raw.length <= 100 && /^[\x20-\x7e]*$/.test(name);
  if (!fitsName || size > USTAR_MAX_SIZE) {
    let pax = "";
    if (!fitsName) { pax += paxRecord("path", name); }
    if (size > USTAR_MAX_SIZE) { pax += paxRecord("size", String(size)); }
    const paxBytes = encoder.encode(pax);
    parts.push(tarHeader({ name: "PaxHeader", size: paxBytes.length, type: "x" }));
    parts.push(paxBytes, padding(paxBytes.length));
  }
  const short = fitsName ? name : name.replace(/[^\x20-\x7e]/g, "_").slice(0, 99);
  parts.push(tarHeader({ name: short, size: size > USTAR_MAX_SIZE ? 0 : size, type, mode, mtime }));
  if (data !== undefined) { parts.push(data, padding(size)); }
}

/**
 * The parts of a tar stream of `files` ({rel, file: Blob with size and lastModified}) and
 * empty `dirs` (rel paths), with every parent directory made first. Returns
 * {parts, bytes, entries}: the parts for `new Blob(parts)`, the files' data bytes, and the
 * top-level names.
 */
export function tarParts(files, dirs = []) {
  const parts = [];
  const made = new Set();
  const entries = new Set();
  const dir = (rel) => {
    if (made.has(rel)) { return; }
    const up = parentOf(rel);
    if (up) { dir(up); }
    made.add(rel);
    member(parts, { name: rel + "/", size: 0, type: "5", mode: 0o755, mtime: Date.now() / 1000 });
  };
  let bytes = 0;
  for (const rel of dirs) { entries.add(rel.split("/")[0]); dir(rel); }
  for (const { rel, file } of files) {
    entries.add(rel.split("/")[0]);
    const up = parentOf(rel);
    if (up) { dir(up); }
    const mtime = (file.lastModified || Date.now()) / 1000;
    member(parts, { name: rel, size: file.size, type: "0", mode: 0o644, mtime }, file);
    bytes += file.size;
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return { parts, bytes, entries: [...entries] };
}

// -- sessions --------------------------------------------------------------------------------

export const LIVE_STATUSES = new Set(["pending", "scheduled", "preparing", "running", "terminating"]);

/** A session's mounts as people read them: `f1 → /home/work/f1 (ro)`. */
export function mountText(m) {
  return `${m.folder} → ${m.target}${m.permission === "ro" ? " (ro)" : ""}`;
}

/** The sessions that hold a folder (by id) among `sessions`. */
export function sessionsUsing(folderId, sessions) {
  const id = (x) => String(x || "").replace(/-/g, "").toLowerCase();
  return sessions.filter((s) => LIVE_STATUSES.has(s.status)
    && (s.mounts || []).some((m) => id(m.folder_id) === id(folderId)));
}
