// The Data page: the folder lists (tabs), the storage status and quota panel, invitations,
// the create dialog and each folder's actions.

import { api, folderUrl } from "./api.js";
import { $, ask, el, errorText, fail, fieldError, openDialog, say } from "./ui.js";
import {
  TABS, arrange, createProblem, formatBytes, marks, nameProblem, quotaLeaves, sessionsUsing,
  shortId, tabOf, typeLabel, usageBar,
} from "./logic.js";

let me = null;
const view = {
  tab: "folders", filter: "", key: "name", descending: false,
  folders: [], trash: [], hosts: [], sessions: [], invitations: { received: [], sent: [] },
};

const COLUMNS = [
  ["name", "Name"], ["id", "Id"], ["host", "Location"], ["type", "Type"],
  ["permission", "Permission"], ["owner", "Owner"], ["usage_mode", "Usage mode"],
  ["status", "Status"],
];
const MODES = { general: "General", model: "Models", data: "Data" };

const quiet = (promise, fallback) => promise.catch(() => fallback);

let generation = 0;

export async function load(tab) {
  view.tab = TABS.includes(tab) ? tab : "folders";
  const mine = ++generation;
  const [plain, trash, status, hosts, invitations, sessions] = await Promise.all([
    api("GET", "/v1/vfolders"),
    api("GET", "/v1/vfolders", undefined, { query: { trash: "true" } }),
    api("GET", "/v1/storage-status"),
    api("GET", "/v1/hosts"),
    api("GET", "/v1/invitations"),
    quiet(api("GET", "/v1/sessions"), { sessions: [] }),
  ]);
  if (mine !== generation) { return; } // a later load (after a change) shows its answers
  view.folders = plain.vfolders;
  view.trash = trash.vfolders;
  view.hosts = hosts.hosts;
  view.invitations = invitations;
  view.sessions = sessions.sessions;
  renderTabs();
  renderFolders();
  renderInvitations();
  await renderStorage(status);
}

// -- the list --------------------------------------------------------------------------------

function renderTabs() {
  for (const b of document.querySelectorAll("#tabs [role=tab]")) {
    const on = b.dataset.tab === view.tab;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
  }
  $("folder-panel").setAttribute("aria-labelledby", "tab-" + view.tab);
}

function currentFolders() {
  const pool = view.tab === "trash" ? view.trash : view.folders.filter((f) => tabOf(f) === view.tab);
  return arrange(pool, view);
}

function renderHead() {
  const head = $("folder-head");
  head.replaceChildren();
  for (const [key, label] of COLUMNS) {
    const sorted = view.key === key;
    const th = el("th", { scope: "col" });
    if (sorted) { th.setAttribute("aria-sort", view.descending ? "descending" : "ascending"); }
    th.append(el("button", {
      type: "button", class: "sort", "data-key": key,
      text: label + (sorted ? (view.descending ? " ▼" : " ▲") : ""),
      onclick: () => {
        view.descending = view.key === key ? !view.descending : false;
        view.key = key;
        renderFolders();
        head.querySelector(`[data-key="${key}"]`).focus();
      },
    }));
    head.append(th);
  }
  head.append(el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" })));
}

function renderFolders() {
  renderHead();
  const rows = $("folder-rows");
  rows.replaceChildren();
  const list = currentFolders();
  const tabLabel = $("tab-" + view.tab).textContent;
  $("folders-caption").textContent = tabLabel;
  for (const f of list) { rows.append(folderRow(f)); }
  $("folders-empty").hidden = list.length > 0;
  $("folders-empty").textContent = view.filter ? `No folder name holds “${view.filter}”.`
    : `No folders in ${tabLabel}.`;
}

function folderRow(f) {
  const using = sessionsUsing(f.id, view.sessions);
  const ready = f.status === "ready";
  const nameCell = el("td", { class: "name" });
  if (ready) {
    nameCell.append(el("a", { href: "#/folder/" + encodeURIComponent(f.name), text: f.name }));
  } else {
    nameCell.append(el("span", { text: f.name }));
  }
  for (const m of marks(f)) { nameCell.append(" ", el("span", { class: "badge " + m, text: m })); }
  const status = el("td", { text: f.status });
  if (using.length) {
    const names = using.map((s) => s.name).join(", ");
    status.append(" ", el("span", { class: "badge busy", text: `in use: ${names}`, title: "mounted by " + names }));
  }
  const tr = el("tr", { "data-name": f.name },
    nameCell,
    el("td", { class: "mono", text: shortId(f.id), title: f.id }),
    el("td", { text: f.host }),
    el("td", { text: typeLabel(f) }),
    el("td", { text: f.permission }),
    el("td", { text: f.owner }),
    el("td", { text: MODES[f.usage_mode] || f.usage_mode }),
    status,
    el("td", { class: "actions" }, ...actions(f, using)),
  );
  return tr;
}

function button(label, folder, onclick, extra = {}) {
  return el("button", {
    type: "button", text: label, "aria-label": `${label} ${folder.name}`, onclick, ...extra,
  });
}

function actions(f, using) {
  if (view.tab === "trash") {
    const out = [];
    if (f.status === "delete-pending") { out.push(button("Restore", f, () => restore(f))); }
    if (f.permission === "wd" || f.is_owner) {
      out.push(button("Delete forever", f, () => purge(f), { class: "danger" }));
    }
    return out;
  }
  const out = [];
  const ready = f.status === "ready";
  if (ready) {
    out.push(el("a", {
      class: "button", href: "#/folder/" + encodeURIComponent(f.name), text: "Open",
      "aria-label": `Open ${f.name}`,
    }));
  }
  if (ready && f.permission === "wd") { out.push(button("Rename", f, () => rename(f))); }
  if (ready && f.is_owner && f.ownership === "user" && !f.automount) {
    out.push(button("Share", f, () => share(f)));
  }
  if (!f.is_owner && f.ownership === "user") { out.push(button("Leave", f, () => leave(f))); }
  if (f.permission === "wd" && f.status !== "cloning") {
    const names = using.map((s) => s.name).join(", ");
    out.push(button("Move to trash", f, () => trash(f), {
      class: "danger", disabled: using.length > 0,
      title: using.length ? `in use by ${names}: end the session first` : undefined,
    }));
  }
  return out;
}

async function reload(message) {
  await load(view.tab);
  if (message) { say(message, true); }
}

async function rename(f) {
  const name = await ask({
    title: `Rename ${f.name}`, label: "New name", value: f.name, ok: "Rename",
    check: async (value) => {
      if (value === f.name) { return null; }
      const problem = nameProblem(value);
      if (problem) { return problem.message; }
      await api("PATCH", folderUrl(f.name), { name: value });
      return null;
    },
  });
  if (name !== null && name !== f.name) { await reload(`Renamed ${f.name} to ${name}`); }
}

async function trash(f) {
  const ok = await ask({
    title: `Move ${f.name} to the trash?`, input: false, ok: "Move to trash", danger: true,
    text: "It can be restored from the Trash tab until it is deleted forever.",
    check: async () => { await api("DELETE", folderUrl(f.name)); return null; },
  });
  if (ok) { await reload(`${f.name} is in the trash`); }
}

async function restore(f) {
  try {
    await api("POST", folderUrl(f.name, "/restore"));
    await reload(`Restored ${f.name}`);
  } catch (err) { fail(err); }
}

async function purge(f) {
  const done = await ask({
    title: `Delete ${f.name} forever?`, danger: true, ok: "Delete forever",
    text: "Its files are removed and cannot be recovered.",
    label: `Type the folder's name, ${f.name}, to confirm`,
    check: async (value) => {
      await api("POST", folderUrl(f.name, "/purge"), { confirm: value });
      return null;
    },
  });
  if (done !== null) { await reload(`Deleted ${f.name} forever`); }
}

async function leave(f) {
  const ok = await ask({
    title: `Leave ${f.name}?`, input: false, ok: "Leave", danger: true,
    text: `${f.owner} shared it with you; you will no longer reach it.`,
    check: async () => { await api("POST", folderUrl(f.name, "/leave")); return null; },
  });
  if (ok) { await reload(`You left ${f.name}`); }
}

// -- sharing ---------------------------------------------------------------------------------

let sharing = null;
let shareLoads = 0;

/** The share dialog's lists: who has the folder (each with a Revoke button) and who has not
 * answered an invitation yet, from GET /v1/vfolders/{name}/members. */
async function renderShare() {
  const f = sharing;
  const mine = ++shareLoads;
  const answer = await api("GET", folderUrl(f.name, "/members"));
  if (mine !== shareLoads || sharing !== f) { return; } // a later render or another folder
  const members = $("share-members");
  members.replaceChildren();
  for (const m of answer.members) {
    members.append(el("li", {},
      el("span", { text: `${m.email} (${m.permission}), since ${m.since.slice(0, 10)} ` }),
      el("button", {
        type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke ${m.email}`,
        onclick: () => revoke(m.email),
      }),
    ));
  }
  if (!answer.members.length) { members.append(el("li", { class: "muted", text: "no one" })); }
  const pending = $("share-pending");
  pending.replaceChildren();
  for (const inv of answer.invitations) {
    pending.append(el("li", {
      text: `${inv.email} (${inv.permission}), invited ${inv.created_at.slice(0, 10)}`,
    }));
  }
  if (!answer.invitations.length) { pending.append(el("li", { class: "muted", text: "none" })); }
}

function share(f) {
  sharing = f;
  $("share-title").textContent = `Share ${f.name}`;
  $("share-emails").value = "";
  fieldError("share-error", "", $("share-emails"));
  for (const id of ["share-members", "share-pending"]) {
    $(id).replaceChildren(el("li", { class: "muted", text: "loading" }));
  }
  openDialog($("dlg-share"), $("share-emails"));
  renderShare().catch((err) => fieldError("share-error", errorText(err), $("share-emails")));
}

async function invite(ev) {
  ev.preventDefault();
  const emails = $("share-emails").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!emails.length) {
    fieldError("share-error", "Give at least one email", $("share-emails"));
    return;
  }
  try {
    await api("POST", folderUrl(sharing.name, "/invite"), {
      emails, permission: $("share-permission").value,
    });
    fieldError("share-error", "", $("share-emails"));
    $("share-emails").value = "";
    say(`Invited ${emails.join(", ")} to ${sharing.name}`, true);
    await renderShare();
  } catch (err) {
    fieldError("share-error", errorText(err), $("share-emails"));
  }
}

async function revoke(email) {
  const f = sharing;
  try {
    await api("DELETE", folderUrl(f.name, "/members/" + encodeURIComponent(email)));
    fieldError("share-error", "", $("share-emails"));
    say(`${f.name} is no longer shared with ${email}`, true);
    await renderShare();
    $("share-members-title").focus(); // the button pressed is gone: keep the focus nearby
  } catch (err) {
    fieldError("share-error", errorText(err), $("share-emails"));
  }
}

function renderInvitations() {
  const list = $("invitation-list");
  list.replaceChildren();
  const received = view.invitations.received;
  $("invitations").hidden = received.length === 0;
  for (const inv of received) {
    const answer = (how) => async () => {
      try {
        await api("POST", `/v1/invitations/${encodeURIComponent(inv.id)}/${how}`);
        await reload(how === "accept" ? `You reach ${inv.vfolder} now` : `Declined ${inv.vfolder}`);
      } catch (err) { fail(err); }
    };
    list.append(el("li", {},
      `${inv.inviter} invites you to ${inv.vfolder} (${inv.permission}) `,
      el("button", { type: "button", text: "Accept", "aria-label": `Accept ${inv.vfolder}`, onclick: answer("accept") }),
      " ",
      el("button", { type: "button", text: "Decline", "aria-label": `Decline ${inv.vfolder}`, onclick: answer("reject") }),
    ));
  }
}

// -- storage status and quota ----------------------------------------------------------------

function bar(label, used, limit) {
  const u = usageBar(used, limit);
  return el("div", { class: "bar" + (u.over ? " over" : "") },
    el("meter", { min: "0", max: "1", value: String(u.fraction), "aria-label": label }),
    el("span", { text: u.text }));
}

async function renderStorage(status) {
  const counts = $("storage-counts");
  counts.replaceChildren(
    el("dt", { text: "Folders you created" }),
    el("dd", { id: "count-created", text: status.limit ? `${status.created} of ${status.limit}` : `${status.created} (no limit)` }),
    el("dt", { text: "Project folders" }), el("dd", { id: "count-project", text: String(status.project_folders) }),
    el("dt", { text: "Folders shared with you" }), el("dd", { id: "count-invited", text: String(status.invited_folders) }),
  );
  // live use per quota scope: the usage of one folder of the scope on each host (the
  // hosts' list has the use the store last recorded, which trails the mount)
  const byScope = new Map();
  for (const f of view.folders) {
    const counted = f.ownership === "project" || f.is_owner;
    if (counted && f.status === "ready" && !byScope.has(f.host + " " + f.scope)) {
      byScope.set(f.host + " " + f.scope, f);
    }
  }
  const usages = (await Promise.all([...byScope.values()].map(
    (f) => quiet(api("GET", folderUrl(f.name, "/usage")), null)
      .then((u) => (u ? { ...u, owner: f.owner, project: f.ownership === "project" } : null)),
  ))).filter(Boolean);
  const rows = $("quota-rows");
  rows.replaceChildren();
  for (const h of view.hosts) {
    const live = usages.find((u) => !u.project && u.host === h.name && u.scope === (h.quota || {}).scope);
    const q = live || h.quota || { used_bytes: 0, max_bytes: 0 };
    const projects = el("td", {});
    for (const u of usages.filter((x) => x.project && x.host === h.name)) {
      projects.append(el("div", { class: "muted", text: u.owner }), bar(`${u.owner} on ${h.name}`, u.used_bytes, u.max_bytes));
    }
    if (!projects.childNodes.length) { projects.append(el("span", { class: "muted", text: "-" })); }
    const cap = h.capacity || {};
    rows.append(el("tr", { "data-host": h.name },
      el("th", { scope: "row", text: h.name + (h.allowed ? "" : " (not allowed)") }),
      el("td", { class: "user-quota" }, bar(`your quota on ${h.name}`, q.used_bytes, q.max_bytes)),
      projects,
      el("td", {}, bar(`disk of ${h.name}`, (cap.total_bytes || 0) - (cap.free_bytes || 0), cap.total_bytes || 0),
        el("div", { class: "muted", text: `${formatBytes(cap.free_bytes)} free` })),
    ));
  }
}

// -- the create dialog -----------------------------------------------------------------------

let projects = [];

function createState() {
  return {
    name: $("create-name").value,
    mode: $("create-mode").value,
    type: $("create-type-project").checked ? "project" : "user",
  };
}

function createFields() {
  const s = createState();
  const automount = s.mode === "automount";
  $("create-type-project").disabled = !me.admin || automount;
  if (automount && s.type === "project") { $("create-type-user").checked = true; }
  $("create-project-row").hidden = !$("create-type-project").checked;
  $("create-cloneable-row").hidden = s.mode !== "model";
  const problem = s.name === "" ? null : createProblem(createState());
  fieldError("create-name-error", problem ? problem.message : "", $("create-name"));
}

async function openCreate() {
  if (!view.hosts.length) { view.hosts = (await api("GET", "/v1/hosts")).hosts; }
  const hosts = $("create-host");
  hosts.replaceChildren();
  for (const h of view.hosts) {
    const free = h.capacity ? `${formatBytes(h.capacity.free_bytes)} free` : "";
    const room = quotaLeaves(h.quota) ? "" : ", your quota is full";
    hosts.append(el("option", {
      value: h.name, text: `${h.name} — ${free}${room}${h.allowed ? "" : " (not allowed)"}`,
      disabled: !h.allowed,
    }));
  }
  const firstAllowed = view.hosts.find((h) => h.allowed);
  if (firstAllowed) { hosts.value = firstAllowed.name; }
  if (me.admin) {
    projects = (await quiet(api("GET", "/v1/admin/projects"), { projects: [] })).projects;
    $("create-project").replaceChildren(...projects.map((p) => el("option", { value: p.name, text: p.name })));
  }
  $("create-form").reset();
  if (firstAllowed) { hosts.value = firstAllowed.name; }
  for (const id of ["create-name-error", "create-host-error", "create-project-error", "create-error"]) {
    fieldError(id, "");
  }
  createFields();
  openDialog($("dlg-create"), $("create-mode"));
}

const FIELD_OF_CODE = {
  invalid_name: "name", name_too_long: "name", reserved_name: "name", vfolder_exists: "name",
  host_not_allowed: "host", host_not_found: "host", quota_exceeded: "host",
  project_not_found: "project", admin_required: "project",
};

async function submitCreate(ev) {
  ev.preventDefault();
  const s = createState();
  const problem = createProblem(s);
  if (problem) {
    fieldError("create-name-error", problem.message, $("create-name"));
    $("create-name").focus();
    return;
  }
  const body = { name: s.name, usage_mode: s.mode === "model" ? "model" : "general" };
  if ($("create-host").value) { body.host = $("create-host").value; }
  if (s.type === "project") {
    body.project = $("create-project").value;
    body.permission = $("create-permission").value;
  }
  if (s.mode === "model") { body.cloneable = $("create-cloneable").checked; }
  try {
    await api("POST", "/v1/vfolders", body);
  } catch (err) {
    const field = (err.details && err.details.field) || FIELD_OF_CODE[err.code];
    const target = { name: "create-name", host: "create-host", project: "create-project" }[field];
    if (target) {
      fieldError(target + "-error", errorText(err), $(target));
      $(target).focus();
    } else {
      fieldError("create-error", errorText(err));
    }
    return;
  }
  $("dlg-create").close();
  const tab = s.mode === "automount" ? "automount" : s.mode === "model" ? "models" : "folders";
  if (location.hash !== "#/data/" + tab) { location.hash = "#/data/" + tab; }
  await load(tab);
  say(`Created ${s.name}`, true);
}

// -- wiring ----------------------------------------------------------------------------------

export function wire(who) {
  me = who;
  $("filter").addEventListener("input", (ev) => { view.filter = ev.target.value; renderFolders(); });
  const tabs = [...document.querySelectorAll("#tabs [role=tab]")];
  for (const b of tabs) {
    b.addEventListener("click", () => { location.hash = "#/data/" + b.dataset.tab; });
    b.addEventListener("keydown", (ev) => {
      const i = tabs.indexOf(b);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
      if (next === undefined) { return; }
      ev.preventDefault();
      const to = tabs[(next + tabs.length) % tabs.length];
      to.focus();
      to.click();
    });
  }
  $("btn-create").addEventListener("click", () => openCreate().catch(fail));
  for (const id of ["create-name", "create-mode", "create-type-user", "create-type-project"]) {
    $(id).addEventListener(id === "create-name" ? "input" : "change", createFields);
  }
  $("create-form").addEventListener("submit", submitCreate);
  $("share-form").addEventListener("submit", invite);
  $("dlg-share").addEventListener("close", () => { sharing = null; load(view.tab).catch(fail); });
}
