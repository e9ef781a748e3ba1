// The published repository, from real packages (test/fixtures/pkgsrc): its
// pkg_summary against the kit's pkg_info -X, SHA512.bz2 against sha512sum,
// the category links, pkg_add from it in a sandbox, and the atomic switch.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, beforeEach, test } from "node:test";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import {
  Bzip2Unavailable,
  InvalidRepositoryEntry,
  publishRepository,
  RepositoryPackageMissing,
  RepositoryTargetInvalid,
  selectPublishable,
  type PublishCandidate,
} from "../../services/dispatcher/repository/index.js";
import { parseSummary } from "../../services/shared/pkgsrc/index.js";
import { pkgsrcUnavailable } from "../support/pkgsrc.js";
import { runWithKit } from "../support/pkgsrc-sandbox.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const FIXTURES = path.join(ROOT, "test/fixtures/pkgsrc");
const ALL = ["pkg_chk-2.0.6", "pkg_rolling-replace-0.24.1", "pkg_tarup-1.9.1", "sysexits-1.1"];
const skipKit = pkgsrcUnavailable();

const scratch = mkdtempSync(path.join(tmpdir(), "pkgfarm-repository-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
let store: string;
let target: string;

beforeEach(() => {
  const dir = path.join(scratch, `case-${++n}`);
  store = path.join(dir, "packages", "Linux-6.18.44-x86_64", "All");
  target = path.join(dir, "repository", "Linux-6.18.44-x86_64");
  mkdirSync(store, { recursive: true });
  for (const p of ALL) copyFileSync(path.join(FIXTURES, `${p}.tgz`), path.join(store, `${p}.tgz`));
});

const bunzip = (file: string) => execFileSync("bzip2", ["-dc", file], { encoding: "utf8" });

test("the repository has All/, pkg_summary.gz/.bz2 as pkg_info -X writes them, SHA512.bz2 as digest writes it, and the category links", { skip: skipKit }, async () => {
  const published = await publishRepository({ allDir: store, target, packages: ALL });
  assert.ok(lstatSync(target).isSymbolicLink());
  assert.equal(realpathSync(target), published.directory);
  assert.deepEqual(readdirSync(target).sort(), ["All", "SHA512.bz2", "devel", "pkgtools"]);
  assert.deepEqual(readdirSync(path.join(target, "All")).sort(), [...ALL.map((p) => `${p}.tgz`), "pkg_summary.bz2", "pkg_summary.gz"].sort());
  for (const p of ALL) {
    // Hard links: the store's bytes, not a copy.
    assert.equal(statSync(path.join(target, "All", `${p}.tgz`)).ino, statSync(path.join(store, `${p}.tgz`)).ino);
  }

  // pbulk: `cd All; sed 's/$/.tgz/' success | sort | xargs pkg_info -X | gzip`.
  const expected = runWithKit(["/usr/pkg/sbin/pkg_info", "-X", ...ALL.map((p) => `${p}.tgz`)], { cwd: path.join(target, "All") });
  const gz = gunzipSync(readFileSync(path.join(target, "All", "pkg_summary.gz"))).toString("utf8");
  assert.equal(gz, expected);
  assert.equal(bunzip(path.join(target, "All", "pkg_summary.bz2")), expected);
  assert.equal(published.summary, expected);
  assert.deepEqual(parseSummary(gz).map((e) => e.get("PKGNAME")), ALL);

  // pbulk: `{ All/pkg_summary.bz2; All/pkg_summary.gz; All/<pkg>.tgz } | sort | xargs digest SHA512`.
  const files = ["All/pkg_summary.bz2", "All/pkg_summary.gz", ...ALL.map((p) => `All/${p}.tgz`)].sort();
  const sums = execFileSync("sha512sum", files, { cwd: target, encoding: "utf8" }).trim().split("\n").map((l) => {
    const [hex, file] = l.split(/\s+\*?/);
    return `SHA512 (${file}) = ${hex}\n`;
  });
  assert.equal(bunzip(path.join(target, "SHA512.bz2")), sums.join(""));

  // pkgsrc's package-links: <category>/<pkg>.tgz -> ../All/<pkg>.tgz for each of CATEGORIES.
  assert.deepEqual(readdirSync(path.join(target, "pkgtools")).sort(), ALL.map((p) => `${p}.tgz`));
  assert.deepEqual(readdirSync(path.join(target, "devel")), ["sysexits-1.1.tgz"]);
  assert.equal(readlinkSync(path.join(target, "devel", "sysexits-1.1.tgz")), "../All/sysexits-1.1.tgz");
  assert.equal(readFileSync(path.join(target, "devel", "sysexits-1.1.tgz")).length, statSync(path.join(store, "sysexits-1.1.tgz")).size);
  assert.deepEqual(published.packages.find((p) => p.pkgname === "sysexits-1.1")?.categories, ["pkgtools", "devel"]);
});

test("pkg_add installs from the published repository, dependencies included, in a sandbox", { skip: skipKit }, async () => {
  await publishRepository({ allDir: store, target, packages: ALL });
  // pkg_add looks for the dependencies beside the package, as it does for a URL's All/.
  const out = runWithKit(["sh", "-c", 'pkg_add "$1/All/pkg_rolling-replace-0.24.1.tgz" && for p in pkg_chk pkg_tarup pkg_rolling-replace; do pkg_info -e $p; done && echo installed', "x", target]);
  assert.match(out, /^pkg_chk-2\.0\.6\npkg_tarup-1\.9\.1\npkg_rolling-replace-0\.24\.1\ninstalled\n$/);
});

test("a new publication switches the whole repository at once; old generations are kept, then removed", async () => {
  const first = await publishRepository({ allDir: store, target, packages: ["pkg_chk-2.0.6"], keepGenerations: 1 });
  // The store's file is replaced by a rebuild (as an upload renames over it):
  // the published package and its index do not change with it.
  const replaced = path.join(store, "pkg_chk-2.0.6.tgz.new");
  copyFileSync(path.join(FIXTURES, "sysexits-1.1.tgz"), replaced);
  execFileSync("mv", [replaced, path.join(store, "pkg_chk-2.0.6.tgz")]);
  const firstSize = statSync(path.join(first.directory, "All", "pkg_chk-2.0.6.tgz")).size;
  assert.equal(firstSize, statSync(path.join(FIXTURES, "pkg_chk-2.0.6.tgz")).size);
  assert.match(gunzipSync(readFileSync(path.join(target, "All", "pkg_summary.gz"))).toString(), new RegExp(`FILE_SIZE=${firstSize}\n`));

  copyFileSync(path.join(FIXTURES, "pkg_chk-2.0.6.tgz"), path.join(store, "pkg_chk-2.0.6.tgz"));
  const second = await publishRepository({ allDir: store, target, packages: ALL, keepGenerations: 1 });
  assert.equal(realpathSync(target), second.directory);
  assert.ok(existsSync(first.directory), "the previous generation is kept for downloads still reading it");
  const third = await publishRepository({ allDir: store, target, packages: ["sysexits-1.1"], keepGenerations: 1 });
  assert.ok(!existsSync(first.directory), "the one before is removed");
  assert.ok(existsSync(second.directory));
  assert.deepEqual(readdirSync(path.join(target, "All")).sort(), ["pkg_summary.bz2", "pkg_summary.gz", "sysexits-1.1.tgz"]);
  assert.deepEqual(readdirSync(path.dirname(target)).filter((name) => name.includes("switch")), [], "no temp symlink left");
  assert.equal(realpathSync(target), third.directory);
});

test("a reader that resolves the repository while it is republished always finds a complete, consistent one", async () => {
  const sets = [["pkg_chk-2.0.6", "sysexits-1.1"], ALL, ["pkg_tarup-1.9.1"]];
  await publishRepository({ allDir: store, target, packages: sets[0]!, keepGenerations: 2 });
  let done = false;
  let checked = 0;
  const reader = (async () => {
    while (!done) {
      const dir = realpathSync(target);
      const summary = parseSummary(gunzipSync(readFileSync(path.join(dir, "All", "pkg_summary.gz"))).toString());
      assert.equal(bunzip(path.join(dir, "All", "pkg_summary.bz2")), gunzipSync(readFileSync(path.join(dir, "All", "pkg_summary.gz"))).toString());
      const listed = summary.map((e) => e.get("FILE_NAME")).sort();
      const present = readdirSync(path.join(dir, "All")).filter((f) => f.endsWith(".tgz")).sort();
      assert.deepEqual(present, listed, `${dir}: All/ holds exactly what pkg_summary lists`);
      for (const e of summary) assert.equal(String(statSync(path.join(dir, "All", e.get("FILE_NAME")!)).size), e.get("FILE_SIZE"));
      assert.equal(bunzip(path.join(dir, "SHA512.bz2")).split("\n").filter((l) => l !== "").length, listed.length + 2);
      checked++;
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    for (let i = 1; i <= 9; i++) await publishRepository({ allDir: store, target, packages: sets[i % sets.length]!, keepGenerations: 2 });
  } finally {
    done = true;
  }
  await reader;
  assert.ok(checked > 0);
  assert.deepEqual(readdirSync(path.join(target, "All")).filter((f) => f.endsWith(".tgz")), ["pkg_chk-2.0.6.tgz", "sysexits-1.1.tgz"]);
});

test("bad targets, missing packages, bad names and a missing bzip2 leave the published repository as it was", async () => {
  const good = await publishRepository({ allDir: store, target, packages: ["sysexits-1.1"] });
  const generations = () => readdirSync(path.join(path.dirname(target), `.${path.basename(target)}.generations`)).sort();
  const before = generations();

  await assert.rejects(publishRepository({ allDir: store, target, packages: ["sysexits-1.1", "nope-1.0"] }), (e: unknown) => e instanceof RepositoryPackageMissing && e.pkgname === "nope-1.0");
  await assert.rejects(publishRepository({ allDir: store, target, packages: ["sysexits-1.1"], bzip2: "/nonexistent/bzip2" }), (e: unknown) => e instanceof Bzip2Unavailable && /install bzip2/.test(e.message));
  await assert.rejects(publishRepository({ allDir: store, target, packages: ["../../etc/passwd"] }), InvalidRepositoryEntry);
  assert.equal(realpathSync(target), good.directory);
  assert.deepEqual(generations(), before, "no half-written generation is left behind");

  const realDir = path.join(scratch, `case-${n}`, "repository", "plain");
  mkdirSync(realDir);
  writeFileSync(path.join(realDir, "keep"), "x");
  await assert.rejects(publishRepository({ allDir: store, target: realDir, packages: ["sysexits-1.1"] }), RepositoryTargetInvalid);
  assert.deepEqual(readdirSync(realDir), ["keep"]);
});

test("selectPublishable leaves out NO_BIN_ON_FTP and RESTRICTED packages and everything that depends on them, as pbulk does", () => {
  const candidates: PublishCandidate[] = [
    { pkgname: "a-1", dependencies: [], scanVars: { NO_BIN_ON_FTP: "${RESTRICTED}" } },
    { pkgname: "b-1", dependencies: ["a-1"], scanVars: {} },
    { pkgname: "c-1", dependencies: ["b-1", "e-1"], scanVars: {} },
    { pkgname: "d-1", dependencies: [], scanVars: new Map([["RESTRICTED", "no redistribution"], ["NO_BIN_ON_FTP", ""]]) },
    { pkgname: "e-1", dependencies: [], scanVars: { NO_BIN_ON_FTP: "", RESTRICTED: " " } },
  ];
  const r = selectPublishable(candidates, ["e-1", "c-1", "a-1", "d-1", "b-1", "f-1"]);
  assert.deepEqual(r.publish, ["e-1", "f-1"]);
  assert.deepEqual(r.withheld, [
    { pkgname: "a-1", reason: "NO_BIN_ON_FTP: ${RESTRICTED}" },
    { pkgname: "b-1", reason: "depends on withheld a-1" },
    { pkgname: "c-1", reason: "depends on withheld b-1" },
    { pkgname: "d-1", reason: "RESTRICTED: no redistribution" },
  ]);
  // Only what was built is published or listed as withheld.
  assert.deepEqual(selectPublishable(candidates, ["c-1"]), { publish: [], withheld: [{ pkgname: "c-1", reason: "depends on withheld b-1" }] });
});
