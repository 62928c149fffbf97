// The daemon's API as the console calls it: the session cookie identifies the caller, and
// every call that changes something carries the CSRF token in X-CSRF-Token.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const TIMEOUT_MS = 60_000;
let csrf = null;

export function setCsrf(token) { csrf = token || null; }

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) { return decodeURIComponent(v.join("=")); }
  }
  return null;
}

/** Headers a call needs: the CSRF token on every mutating method. */
export function headers(method, extra = {}) {
  const out = { ...extra };
  if (!SAFE.has(method)) {
    const token = csrf || cookie("vfd_csrf");
    if (token) { out["X-CSRF-Token"] = token; }
  }
  return out;
}

async function errorOf(res) {
  const text = await res.text();
  try {
    const err = JSON.parse(text).error;
    if (err && err.code) { return new ApiError(res.status, err.code, err.message, err.details); }
  } catch (e) { /* not JSON */ }
  return new ApiError(res.status, "http_" + res.status, text || res.statusText);
}

/** Call `path` (under the daemon's root); the JSON answer, or an ApiError. */
export async function api(method, path, body, { query } = {}) {
  const url = query ? `${path}?${new URLSearchParams(query)}` : path;
  const init = { method, credentials: "same-origin", headers: headers(method) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  init.signal = abort.signal;
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "network", abort.signal.aborted ? "the daemon did not answer in time"
      : "the daemon cannot be reached");
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok) {
    const err = await errorOf(res);
    if (res.status === 401) { window.dispatchEvent(new CustomEvent("vfd-signed-out")); }
    throw err;
  }
  if (res.status === 204) { return null; }
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

const enc = encodeURIComponent;
export const folderUrl = (name, rest = "") => `/v1/vfolders/${enc(name)}${rest}`;
export const sessionUrl = (ref, rest = "") => `/v1/sessions/${enc(ref)}${rest}`;

/**
 * PUT `blob` to `url` with progress (fetch has no upload progress): resolves to the JSON
 * answer; `onProgress(loaded)`; `signal` aborts it.
 */
export function putWithProgress(url, blob, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.withCredentials = true;
    for (const [k, v] of Object.entries(headers("PUT", { "Content-Type": "application/octet-stream" }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.onprogress = (ev) => onProgress(ev.loaded);
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (e) { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) { resolve(data); return; }
      const err = (data && data.error) || { code: "http_" + xhr.status, message: xhr.statusText };
      reject(new ApiError(xhr.status, err.code, err.message, err.details));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "the connection failed"));
    xhr.onabort = () => reject(new ApiError(0, "cancelled", "upload cancelled"));
    if (signal) { signal.addEventListener("abort", () => xhr.abort(), { once: true }); }
    xhr.send(blob);
  });
}

/** Download `url` by a link click (the cookie goes with it; no CSRF needed for GET). */
export function download(url, filename = "") {
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
}

/** Save `text` as a file named `filename` (the SFTP key). */
export function saveText(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/octet-stream" }));
  download(url, filename);
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
