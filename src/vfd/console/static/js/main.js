// The console's entry: who is signed in, the pages and the address's #/ route.

import { api, setCsrf } from "./api.js";
import { $, errorText, fail, fieldError, say } from "./ui.js";
import * as data from "./data.js";
import * as explorer from "./explorer.js";
import * as sessions from "./sessions.js";

export const me = { user: null, admin: false };

const PAGES = ["signin", "data", "explorer", "sessions"];
let shown = null;

/** Show one page; true when it was not the one shown (focus then moves to it). */
function show(page) {
  const changed = page !== shown;
  shown = page;
  for (const p of PAGES) { $("page-" + p).hidden = p !== page; }
  for (const a of document.querySelectorAll("#nav a")) {
    const current = a.dataset.page === page || (page === "explorer" && a.dataset.page === "data");
    if (current) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
  }
  return changed;
}

/** Who is signed in (the session cookie); false when no one is. */
async function identify() {
  let s;
  try {
    s = await api("GET", "/v1/console/session");
  } catch (err) {
    if (err.status === 401) { return false; }
    throw err;
  }
  setCsrf(s.csrf_token);
  me.user = s.user;
  me.admin = s.role === "admin";
  $("who").textContent = `${me.user.email}${me.admin ? " (admin)" : ""}`;
  $("nav").hidden = false;
  $("btn-signout").hidden = false;
  return true;
}

function signinPage() {
  show("signin");
  $("nav").hidden = true;
  $("btn-signout").hidden = true;
  $("who").textContent = "";
  $("signin-token").focus();
}

async function route() {
  if (!me.user) { return; }
  say("");
  const raw = location.hash.replace(/^#\/?/, "");
  const parts = raw.split("/").map((p) => { try { return decodeURIComponent(p); } catch (e) { return p; } });
  const page = parts[0] === "folder" && parts[1] ? "explorer" : parts[0] === "sessions" ? "sessions" : "data";
  const moved = show(page);
  try {
    if (page === "explorer") {
      await explorer.open(parts[1], parts.slice(2).filter(Boolean).join("/"));
    } else if (page === "sessions") {
      await sessions.load();
    } else {
      await data.load(parts[1] || "folders");
    }
  } catch (err) {
    fail(err);
  }
  // a new page (not a tab of the same one) takes the focus, as a page load would
  if (moved) { $("content").focus({ preventScroll: true }); }
}

/** Sign in with an API token (the form also works without script: it posts itself). */
async function signInWithToken(ev) {
  ev.preventDefault();
  const field = $("signin-token");
  try {
    await api("POST", "/v1/console/signin", { token: field.value });
  } catch (err) {
    fieldError("signin-error", errorText(err), field);
    field.focus();
    return;
  }
  field.value = "";
  location.reload();
}

async function signOut() {
  try {
    await api("POST", "/v1/console/signout");
  } catch (err) {
    if (err.status !== 401) { fail(err); return; }
  }
  location.assign(location.pathname);
}

async function start() {
  data.wire(me);
  explorer.wire(me);
  sessions.wire(me);
  $("btn-signout").addEventListener("click", signOut);
  $("signin-form").addEventListener("submit", signInWithToken);
  window.addEventListener("hashchange", route);
  window.addEventListener("vfd-signed-out", () => {
    for (const dialog of document.querySelectorAll("dialog[open]")) { dialog.close(); }
    me.user = null;
    signinPage();
  });
  let signedIn = false;
  try { signedIn = await identify(); } catch (err) { fail(err); return; }
  if (!signedIn) { signinPage(); return; }
  await route();
}

start();
