// The Sessions page (read-mostly): the caller's sessions, their mounts and apps, links to
// the apps that serve over HTTP, and a button that destroys one.

import { api, sessionUrl } from "./api.js";
import { $, ask, el, fail, say } from "./ui.js";
import { LIVE_STATUSES, formatTime, mountText } from "./logic.js";

export async function load() {
  const all = $("sessions-all").checked;
  const { sessions } = await api("GET", "/v1/sessions", undefined, { query: { all: String(all) } });
  const rows = $("session-rows");
  rows.replaceChildren();
  for (const s of sessions) { rows.append(row(s)); }
  $("sessions-empty").hidden = sessions.length > 0;
}

function appCell(s) {
  const cell = el("td", {});
  for (const app of s.apps || []) {
    const live = app.status === "running";
    const line = el("div", {}, `${app.name} (${app.status}) `);
    if (live && app.name === "filebrowser") {
      line.append(el("button", {
        type: "button", class: "link", text: "open", "aria-label": `Open the file manager of ${s.name}`,
        onclick: () => openFilebrowser(s),
      }));
    } else if (live && app.kind === "service") {
      line.append(el("button", {
        type: "button", class: "link", text: "open", "aria-label": `Open ${app.name} of ${s.name}`,
        onclick: () => openService(s, app.name),
      }));
    } else if (live && app.endpoint && /^https?:/.test(app.endpoint) && app.kind !== "service") {
      line.append(el("a", { href: app.endpoint, target: "_blank", rel: "noopener", text: app.endpoint }));
    } else if (live && app.endpoint) {
      line.append(el("code", { text: app.endpoint }));
    }
    cell.append(line);
  }
  if (!cell.childNodes.length) { cell.append(el("span", { class: "muted", text: "-" })); }
  return cell;
}

/** Open `find()`'s URL in a new window (opened at once: no pop-up blocker takes it). */
async function openLink(find) {
  const win = window.open("", "_blank");
  try {
    const url = await find();
    if (win) { win.opener = null; win.location.href = url; }
  } catch (err) {
    if (win) { win.close(); }
    fail(err);
  }
}

const openFilebrowser = (s) => openLink(async () => (await api("GET", sessionUrl(s.id, "/filebrowser"))).url);

/** A service's link carries its token, which only the session's apps list gives. */
const openService = (s, name) => openLink(async () => {
  const { apps } = await api("GET", sessionUrl(s.id, "/apps"));
  const found = apps.find((a) => a.name === name && a.url);
  if (!found) { throw new Error(`${name} of ${s.name} is not running any more`); }
  return found.url;
});

function row(s) {
  const live = LIVE_STATUSES.has(s.status);
  const mounts = el("td", {});
  for (const m of s.mounts || []) { mounts.append(el("div", { text: mountText(m) })); }
  if (!mounts.childNodes.length) { mounts.append(el("span", { class: "muted", text: "-" })); }
  const status = el("td", { text: s.status });
  if (s.status_reason) { status.append(el("div", { class: "muted", text: s.status_reason })); }
  return el("tr", { "data-id": s.id },
    el("td", { text: s.name }),
    el("td", { class: "mono", text: s.short_id, title: s.id }),
    el("td", { text: s.kind }),
    status,
    mounts,
    appCell(s),
    el("td", { text: formatTime(s.created_at) }),
    el("td", {}, live ? el("button", {
      type: "button", class: "danger", text: "Destroy", "aria-label": `Destroy ${s.name}`,
      onclick: () => destroy(s),
    }) : null),
  );
}

async function destroy(s) {
  const ok = await ask({
    title: `Destroy ${s.name}?`, input: false, ok: "Destroy", danger: true,
    text: "Its container (or app server) is stopped; what it wrote to its folders stays.",
    check: async () => { await api("DELETE", sessionUrl(s.id)); return null; },
  });
  if (ok) {
    await load().catch(fail);
    say(`Destroyed ${s.name}`, true);
  }
}

export function wire() {
  $("sessions-all").addEventListener("change", () => load().catch(fail));
  $("btn-sessions-reload").addEventListener("click", () => load().catch(fail));
}
