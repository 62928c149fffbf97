// Small DOM helpers shared by the console's pages.

export const $ = (id) => document.getElementById(id);

/** An element with attributes/properties and children (strings become text). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) { continue; }
    if (k === "class") { node.className = v; }
    else if (k === "text") { node.textContent = v; }
    else if (k.startsWith("on")) { node.addEventListener(k.slice(2), v); }
    else if (k in node && typeof v !== "string") { node[k] = v; }
    else { node.setAttribute(k, v === true ? "" : v); }
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** Show a line for people: `ok` green, otherwise red (an error). */
export function say(text, ok = false) {
  const box = $("message");
  box.textContent = text || "";
  box.classList.toggle("ok", ok);
  box.hidden = !text;
}

export function errorText(err) {
  return err && err.code ? `${err.message} [${err.code}]` : String(err);
}

export const fail = (err) => say(errorText(err));

/** Show or clear the error beside a field (and mark the field invalid). */
export function fieldError(id, text, field) {
  const p = $(id);
  p.textContent = text || "";
  p.hidden = !text;
  if (field) { field.setAttribute("aria-invalid", text ? "true" : "false"); }
}

/** Open a dialog; its [data-close] buttons and Escape close it. */
export function openDialog(dialog, focus) {
  for (const b of dialog.querySelectorAll("[data-close]")) { b.onclick = () => dialog.close(); }
  if (!dialog.open) { dialog.showModal(); }
  if (focus) { focus.focus(); }
}

/**
 * Ask for a value (or a plain confirmation, `input: false`) in the shared dialog. `check`
 * runs on submit and may return an error to show beside the field (the dialog stays open),
 * or throw an ApiError from the server, shown the same way. Resolves to the value given, or
 * null when cancelled.
 */
export function ask({ title, text = "", label = "", value = "", input = true, ok = "OK",
  danger = false, check = null }) {
  const dialog = $("dlg-ask");
  const field = $("ask-input");
  $("ask-title").textContent = title;
  $("ask-text").textContent = text;
  $("ask-label").textContent = label;
  $("ask-label").hidden = !input;
  field.hidden = !input;
  field.value = value;
  $("ask-ok").textContent = ok;
  $("ask-ok").classList.toggle("danger", danger);
  fieldError("ask-error", "", field);
  return new Promise((resolve) => {
    const form = $("ask-form");
    let answered = null;
    const submit = async (ev) => {
      ev.preventDefault();
      const given = input ? field.value : true;
      if (check) {
        let problem = null;
        try { problem = await check(given); } catch (err) { problem = errorText(err); }
        if (problem) { fieldError("ask-error", problem, field); return; }
      }
      answered = given;
      dialog.close();
    };
    const closed = () => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("close", closed);
      resolve(answered);
    };
    form.addEventListener("submit", submit);
    dialog.addEventListener("close", closed);
    openDialog(dialog, input ? field : $("ask-ok"));
    if (input) { field.select(); }
  });
}
