import assert from "node:assert/strict";
import { test } from "node:test";
import { checkRemovedShare, maxRemovedShareFromWire, TooManyRemoved } from "../../services/depgraph/core/import-guard.js";
import { loadDepGraphConfig } from "../../services/depgraph/config.js";
import { loadDispatcherConfig } from "../../services/dispatcher/config.js";
import { packagePage } from "../../services/depgraph/package-pages.js";
import { scanHelperEnv } from "../../services/depgraph/scan-helper.js";
import { utf8Chunks } from "../../services/cli/import.js";
import { clip, escapeControls, quote } from "../../services/shared/quote.js";
import { InvalidRequest } from "../../services/depgraph/core/errors.js";
import { record } from "../support/records.js";

test("quote escapes control bytes and cuts long input, saying how long it was", () => {
  assert.equal(quote("a\u001b[2Jb"), '"a\\u001b[2Jb"');
  const q = quote("x".repeat(10_000), 50);
  assert.ok(q.length < 100);
  assert.match(q, /\.\.\. \(10000 characters\)$/);
  assert.equal(clip("short", 10), "short");
  assert.ok(clip("y".repeat(5000), 300).length <= 300);
  assert.equal(escapeControls("ok\tline\u001b]0;title\u0007\r\n\u009b"), "ok\tline\\x1b]0;title\\x07\\x0d\\x0a\\x9b");
});

test("a whole-tree import may remove up to max_removed_share of the packages, counted by location", () => {
  const tree = ["a", "b", "c", "d"].map((n) => ({ record: { location: `misc/${n}` } }));
  const keep = (names: string[]) => names.map((n) => record({ pkgname: `${n}-2.0`, location: `misc/${n}` }));
  checkRemovedShare(tree, keep(["a", "b"]), 0.5);
  assert.throws(() => checkRemovedShare(tree, keep(["a"]), 0.5), (e: unknown) => {
    assert.ok(e instanceof TooManyRemoved);
    assert.equal(e.removed, 3);
    assert.match(e.message, /would remove 3 of the tree's 4 packages \(75%/);
    return true;
  });
  checkRemovedShare(tree, keep(["a"]), 0.75);
  checkRemovedShare(tree, [], 1);
  checkRemovedShare([], keep(["a"]), 0.5);
  assert.equal(maxRemovedShareFromWire(0), 0.5);
  assert.equal(maxRemovedShareFromWire(1), 1);
  assert.equal(maxRemovedShareFromWire(0.2), 0.2);
  for (const bad of [-0.1, 1.01, Number.NaN, Infinity]) assert.equal(typeof maxRemovedShareFromWire(bad), "string");
});

test("package pages stop at page_size or the byte budget, always hold one, and refuse sizes over the maximum", () => {
  const names = Array.from({ length: 50 }, (_, i) => `p${String(i).padStart(2, "0")}-1.0`);
  assert.equal(packagePage(names, { pageSize: 0, pageToken: "" }, () => 10).page.length, 50);
  const first = packagePage(names, { pageSize: 20, pageToken: "" }, () => 10);
  assert.deepEqual([first.page.length, first.next], [20, "20"]);
  const budget = packagePage(names, { pageSize: 0, pageToken: "10" }, () => 100, 450);
  assert.deepEqual([budget.page[0], budget.page.length, budget.next], ["p10-1.0", 4, "14"]);
  assert.equal(packagePage(names, { pageSize: 0, pageToken: "" }, () => 10_000, 450).page.length, 1, "one package over the budget still makes a page");
  assert.throws(() => packagePage(names, { pageSize: 10_001, pageToken: "" }, () => 1), InvalidRequest);
  assert.throws(() => packagePage(names, { pageSize: 0, pageToken: "-1" }, () => 1), /page_token "-1" is not one/);
  assert.throws(() => packagePage(names, { pageSize: 0, pageToken: "51" }, () => 1), InvalidRequest);
});

test("the scan helper's environment is built from a short list, never the whole of depgraph's", () => {
  const parent = { PATH: "/usr/pkg/bin:/usr/bin", HOME: "/home/op", PKGFARM_OPERATOR_TOKEN: "t".repeat(32), PKGFARM_TLS_KEY: "/k.pem", TMPDIR: "/var/tmp", AWS_SECRET: "x" };
  assert.deepEqual(scanHelperEnv(parent, "/usr/pkgsrc", ["devel/gmake"]), {
    PATH: "/usr/pkg/bin:/usr/bin", HOME: "/home/op", LC_ALL: "C", TMPDIR: "/var/tmp", PKGFARM_TREE: "/usr/pkgsrc", PKGFARM_LOCATION: "devel/gmake",
  });
  assert.deepEqual(scanHelperEnv({}, "/t", ["a/b", "c/d"]), { PATH: "/usr/bin:/bin:/usr/sbin:/sbin", LC_ALL: "C", TMPDIR: "/tmp", PKGFARM_TREE: "/t" });
});

test("pkgfarm import cuts its messages by size at character boundaries, whatever the lines", async () => {
  const text = "é".repeat(10) + "\n" + "€".repeat(7);
  async function* source() {
    yield Buffer.from(text);
  }
  const parts: string[] = [];
  for await (const part of utf8Chunks(source(), 5)) parts.push(part);
  assert.equal(parts.join(""), text);
  assert.ok(parts.every((p) => !p.includes("\ufffd")), "no character was split");
  assert.ok(parts.every((p) => Buffer.byteLength(p) <= 5));
});

test("--read-auth token needs a token to check, on depgraph and the dispatcher", () => {
  const dg = loadDepGraphConfig(["--read-auth", "token"], {});
  assert.ok("errors" in dg && dg.errors.some((e) => /--read-auth token .* needs a token/.test(e)));
  const ok = loadDepGraphConfig(["--read-auth", "token", "--max-import-mib", "16"], { PKGFARM_READ_TOKEN: "r".repeat(20) });
  assert.ok(!("errors" in ok), JSON.stringify(ok));
  assert.equal(ok.readAuth, "token");
  assert.equal(ok.maxImportBytes, 16 * 1024 * 1024);
  const bad = loadDepGraphConfig(["--read-auth", "closed"], {});
  assert.ok("errors" in bad && bad.errors.some((e) => /--read-auth \(PKGFARM_READ_AUTH\) must be one of open, token/.test(e)));
  const dispatcher = loadDispatcherConfig([], { PKGFARM_READ_AUTH: "token", PKGFARM_AGENT_TOKEN: "a".repeat(20) });
  assert.ok(!("errors" in dispatcher) && dispatcher.readAuth === "token");
  const none = loadDispatcherConfig(["--read-auth", "token"], {});
  assert.ok("errors" in none && none.errors.some((e) => /needs a token/.test(e)));
});
