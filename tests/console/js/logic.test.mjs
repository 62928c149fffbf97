// Unit tests of the console's pure logic: node --test tests/console/js/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  arrange, createProblem, formatBytes, marks, nameProblem, pageOf, paxRecord, quotaLeaves,
  sessionsUsing, shortId, sortEntries, tabOf, tarHeader, tarParts, uploadKey, usageBar,
} from "../../../src/vfd/console/static/js/logic.js";

test("names: the server's rules, with its codes", () => {
  assert.equal(nameProblem("data"), null);
  assert.equal(nameProblem("x".repeat(64)), null);
  assert.equal(nameProblem("é".repeat(64)), null, "characters, not bytes, are counted");
  assert.equal(nameProblem("😀".repeat(64)), null, "code points, not UTF-16 units");
  const long = nameProblem("x".repeat(65));
  assert.equal(long.code, "name_too_long");
  assert.equal(long.message, "folder name has 65 characters; at most 64 are allowed");
  assert.equal(nameProblem("").code, "invalid_name");
  assert.equal(nameProblem(".").code, "invalid_name");
  assert.equal(nameProblem("..").code, "invalid_name");
  assert.equal(nameProblem("a/b").code, "invalid_name");
  assert.equal(nameProblem(" a").code, "invalid_name");
  assert.equal(nameProblem("a\t").code, "invalid_name");
  assert.match(nameProblem("ev\u202eil").message, /U\+202E/);
  assert.match(nameProblem("a\u200bb").message, /U\+200B/);
  assert.match(nameProblem("a\u2028b").message, /U\+2028/);
  assert.match(nameProblem("a\ue000").message, /U\+E000/);
  assert.match(nameProblem("a\x07").message, /U\+0007/);
  for (const reserved of [".jupyter", ".bashrc", ".zshrc", ".bash_profile", ".vfd", "lost+found"]) {
    assert.equal(nameProblem(reserved).code, "reserved_name", reserved);
  }
  assert.equal(nameProblem(".local"), null);
  assert.equal(nameProblem(".config"), null);
  assert.equal(nameProblem(".ssh"), null, "an automount .ssh holds authorized_keys");
});

test("create: automount needs the dot, and only there", () => {
  assert.equal(createProblem({ name: ".venv", mode: "automount", type: "user" }), null);
  assert.match(createProblem({ name: "venv", mode: "automount", type: "user" }).message, /starts with a dot/);
  assert.match(createProblem({ name: ".venv", mode: "general", type: "user" }).message, /Auto Mount/);
  assert.equal(createProblem({ name: "x".repeat(65), mode: "general", type: "user" }).code, "name_too_long");
  assert.equal(createProblem({ name: "models", mode: "model", type: "project" }), null);
});

const F = (name, extra = {}) => ({
  id: name + "0".repeat(32 - name.length), name, host: "local", ownership: "user", owner: "a@x",
  usage_mode: "general", permission: "wd", status: "ready", automount: false, is_owner: true,
  ...extra,
});

test("tabs and marks", () => {
  assert.equal(tabOf(F("data")), "folders");
  assert.equal(tabOf(F(".venv", { automount: true })), "automount");
  assert.equal(tabOf(F("m", { usage_mode: "model" })), "models");
  assert.deepEqual(marks(F("a")), []);
  assert.deepEqual(marks(F("a", { is_owner: false })), ["shared"]);
  assert.deepEqual(marks(F("a", { ownership: "project", is_owner: false })), ["project"]);
  assert.equal(shortId("0123abcd-ef01-2345-6789-abcdefabcdef"), "0123abcd");
});

test("arrange: filter by name, sort by any column, ties by name", () => {
  const list = [F("b10", { host: "h2" }), F("B2", { host: "h1" }), F("a", { host: "h2" }), F("c")];
  assert.deepEqual(arrange(list).map((f) => f.name), ["a", "B2", "b10", "c"], "numeric, any case");
  assert.deepEqual(arrange(list, { descending: true }).map((f) => f.name), ["c", "b10", "B2", "a"]);
  assert.deepEqual(arrange(list, { filter: "b" }).map((f) => f.name), ["B2", "b10"]);
  assert.deepEqual(arrange(list, { key: "host" }).map((f) => f.name), ["B2", "a", "b10", "c"]);
  assert.deepEqual(arrange(list, { filter: "zzz" }), []);
  assert.equal(list[0].name, "b10", "the input is not changed");
});

test("formatting of bytes and quota bars", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(20 * 1024 * 1024), "20 MiB");
  assert.equal(formatBytes(null), "-");
  assert.deepEqual(usageBar(512, 1024), { fraction: 0.5, text: "512 B of 1.0 KiB (50%)", over: false });
  assert.equal(usageBar(2048, 1024).fraction, 1);
  assert.equal(usageBar(2048, 1024).over, true);
  assert.match(usageBar(5, 0).text, /no limit/);
  assert.equal(quotaLeaves({ max_bytes: 10, used_bytes: 10 }), false);
  assert.equal(quotaLeaves({ max_bytes: 0, used_bytes: 10 }), true);
});

test("explorer: directories first, pages of 200 with a note", () => {
  const entries = sortEntries([{ name: "b", type: "file" }, { name: "z", type: "dir" }, { name: "a", type: "file" }]);
  assert.deepEqual(entries.map((e) => e.name), ["z", "a", "b"]);
  const many = Array.from({ length: 450 }, (_, i) => ({ name: `f${i}`, type: "file" }));
  const first = pageOf(many, 0);
  assert.equal(first.rows.length, 200);
  assert.match(first.note, /450 entries: showing 1 to 200/);
  const last = pageOf(many, 400);
  assert.equal(last.rows.length, 50);
  assert.equal(last.offset, 400);
  assert.equal(pageOf(many, 999).offset, 400, "past the end: the last page");
  assert.equal(pageOf(many.slice(0, 3), 0).note, "");
  assert.equal(pageOf([], 0).rows.length, 0);
});

test("upload keys fit the daemon's rule", () => {
  for (let i = 0; i < 50; i++) { assert.match(uploadKey(), /^[A-Za-z0-9_-]{8,64}$/); }
});

const decoder = new TextDecoder();
const field = (block, at, len) => decoder.decode(block.slice(at, at + len)).replace(/\0.*$/s, "");

test("tar: ustar headers with a right checksum", () => {
  const h = tarHeader({ name: "dir/file.txt", size: 1234, type: "0", mode: 0o644, mtime: 1700000000 });
  assert.equal(h.length, 512);
  assert.equal(field(h, 0, 100), "dir/file.txt");
  assert.equal(parseInt(field(h, 124, 12), 8), 1234);
  assert.equal(field(h, 156, 1), "0");
  assert.equal(field(h, 257, 6), "ustar");
  const stored = parseInt(field(h, 148, 8), 8);
  const copy = h.slice();
  copy.fill(32, 148, 156);
  assert.equal(copy.reduce((a, b) => a + b, 0), stored);
});

test("tar: pax records count their own length", () => {
  for (const value of ["a", "x".repeat(90), "x".repeat(994), "ü".repeat(300)]) {
    const rec = paxRecord("path", value);
    const len = parseInt(rec, 10);
    assert.equal(new TextEncoder().encode(rec).length, len, value.length);
    assert.ok(rec.endsWith("\n"));
  }
});

test("tar: a tree's parts, parents first, long and non-ASCII names in pax", async () => {
  const file = (text) => new Blob([text]);
  const { parts, bytes, entries } = tarParts([
    { rel: "top/a.txt", file: file("hello") },
    { rel: "top/sub/deeper/b.bin", file: file("") },
    { rel: "top/" + "n".repeat(150), file: file("xyz") },
    { rel: "top/ünï.txt", file: file("u") },
  ], ["top/empty"]);
  assert.equal(bytes, 9);
  assert.deepEqual(entries, ["top"]);
  const blob = new Blob(parts);
  assert.equal(blob.size % 512, 0);
  const buf = new Uint8Array(await blob.arrayBuffer());
  const names = [];
  let pax = null;
  for (let at = 0; at + 512 <= buf.length;) {
    const h = buf.slice(at, at + 512);
    if (h.every((b) => b === 0)) { break; }
    const size = parseInt(field(h, 124, 12), 8);
    const type = field(h, 156, 1);
    const data = buf.slice(at + 512, at + 512 + size);
    if (type === "x") {
      pax = decoder.decode(data).match(/ path=(.*)\n/)[1];
    } else {
      names.push([pax || field(h, 0, 100), type, decoder.decode(data)]);
      pax = null;
    }
    at += 512 + Math.ceil(size / 512) * 512;
  }
  assert.deepEqual(names, [
    ["top/", "5", ""], ["top/empty/", "5", ""], ["top/a.txt", "0", "hello"],
    ["top/sub/", "5", ""], ["top/sub/deeper/", "5", ""], ["top/sub/deeper/b.bin", "0", ""],
    ["top/" + "n".repeat(150), "0", "xyz"], ["top/ünï.txt", "0", "u"],
  ]);
});

test("sessions holding a folder: live ones, ids with or without dashes", () => {
  const id = "0123456789abcdef0123456789abcdef";
  const dashed = "01234567-89ab-cdef-0123-456789abcdef";
  const sessions = [
    { name: "s1", status: "running", mounts: [{ folder_id: dashed }] },
    { name: "s2", status: "terminated", mounts: [{ folder_id: id }] },
    { name: "s3", status: "pending", mounts: [{ folder_id: "ff" }] },
  ];
  assert.deepEqual(sessionsUsing(id, sessions).map((s) => s.name), ["s1"]);
});
